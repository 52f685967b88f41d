"""Where a book or a chunk is cut: the chunker both stage 0 and the splitter use.

`candidates` (seam_model) scores every paragraph start; `plan` then chooses the
cuts by dynamic programming, maximising the seams' scores minus a length cost:
- a chunk's example must fit `Lengths.maximum` (stage 1's limit, counted by the
  same example builder as stage 1, `examples.longest_example`);
- a chunk under `Lengths.minimum` costs so much that only a whole chapter that
  short, or the writer's own cut, makes one;
- between those, `weight * ln(tokens / target)^2`: lengths near the target;
- cuts the writer decided (`forced`) are made, places they refused (`forbidden`)
  are not.
A scene-break mark scores the model's `mark_score`, high enough that it is cut
unless the scenes on both sides are short. A cut never falls inside a paragraph,
after one that stops mid-sentence, or before one that starts in lower case. Only
when a single paragraph is longer than the limit does a cut fall at a sentence end
inside it (the last resort, said so wherever it happens): a clean one where that
gives parts that fit, else one between a speech and its tag, else one inside a
quotation that seems to run on.

Also here: the nearest alternatives to a cut (`alternatives`) and the writer's own
choice of a place (`writer_cuts`, `cut_before_text`).
"""
import bisect
import math
import re
from dataclasses import dataclass

from styletune.data.seam_model import Candidate, candidates, units
from styletune.errors import InputError
from styletune.text.sentences import Tier, boundaries

# Tokens the search keeps free below sequence_len, for Continue's path line and slack:
# the first is stage 0's; the splitter tries the larger ones where a chunk will not fit.
MARGINS = (24, 64, 160)
# A chunk under the minimum: allowed only when nothing else fits (a short chapter)
# or the writer asked for the cut.
SHORT_COST = 1000.0
# A sentence end inside a paragraph: used only when no paragraph boundary fits.
INSIDE_PARAGRAPH_SCORE = -50.0


@dataclass(frozen=True)
class Lengths:
    """What the chunker aims at, in tokens of the rendered example."""
    target: int
    minimum: int
    maximum: int
    # The length cost's scale. Stage 0 passes seam_model.json's length_weight (tuned
    # with the model: segment.py); this default serves the chunker's unit tests.
    weight: float = 4.0

    def cost(self, tokens):
        if tokens > self.maximum:
            return math.inf
        short = SHORT_COST if tokens < self.minimum else 0.0
        return short + self.weight * math.log(max(tokens, 1) / self.target) ** 2


class Measure:
    """Token counts of any slice of one text, from one tokenisation: the rendered
    example's overhead (template, special tokens) plus the tokens of the slice.
    Used to search; the parts chosen are then counted exactly as stage 1 does."""

    def __init__(self, counter, text, margin=0):
        self.ends = counter.token_ends([text])[0]
        empty = [{"role": "user", "content": ""}, {"role": "assistant", "content": ""}]
        self.overhead = counter.count_conversations([empty])[0] + margin

    def tokens(self, a, b):
        return bisect.bisect_right(self.ends, b) - bisect.bisect_right(self.ends, a) + self.overhead


# What a cut at a sentence end inside a paragraph is called, by Boundary.tier.
_INSIDE_PARAGRAPH = {
    Tier.CLEAN: "sentence end inside a paragraph",
    Tier.SPEECH_TAG: "sentence end between a speech and its tag, inside a paragraph",
    Tier.IN_QUOTATION: "sentence end inside a quotation that seems to run on, inside a paragraph",
}


def sentence_candidates(text, punkt, start, end):
    """Last resort inside one paragraph: its sentence ends, each with its tier."""
    return [Candidate(start + b.start, INSIDE_PARAGRAPH_SCORE - 10 * b.tier,
                      [f"{_INSIDE_PARAGRAPH[b.tier]} (last resort: the paragraph alone is over the limit)"],
                      inside_paragraph=True, tier=b.tier)
            for b in boundaries(text[start:end], punkt)]


# --- choosing the cuts ---------------------------------------------------------------

def plan(text_len, cands, tokens, lengths: Lengths, forced=(), forbidden=()):
    """The cuts ([Candidate], in order) that maximise the chosen seams' scores
    minus every part's length cost (`tokens(a, b)` counts the part [a, b)), with
    every `forced` offset cut and no `forbidden` one; None when no plan keeps every
    part within lengths.maximum."""
    forced, forbidden = set(forced), set(forbidden)
    usable = {}
    for c in cands:      # one place per offset: the model's, where the writer's repeats it
        if c.offset not in forbidden and 0 < c.offset < text_len and c.offset not in usable:
            usable[c.offset] = c
    points = [Candidate(0, 0.0)] + [usable[o] for o in sorted(usable)] + [Candidate(text_len, 0.0)]
    n = len(points)
    best, prev = [-math.inf] * n, [None] * n
    best[0] = 0.0
    for j in range(1, n):
        end_score = points[j].score if j < n - 1 else 0.0
        for i in range(j - 1, -1, -1):
            cost = lengths.cost(tokens(points[i].offset, points[j].offset))
            if cost == math.inf:
                break                   # a part only grows as its start moves back
            value = best[i] + end_score - cost
            if value > best[j]:
                best[j], prev[j] = value, i
            if points[i].offset in forced:
                break                   # a part may not swallow a forced cut
    if best[-1] == -math.inf:
        return None
    chosen, j = [], prev[n - 1]
    while j:
        chosen.append(points[j])
        j = prev[j]
    chosen.reverse()
    if not forced <= {c.offset for c in chosen}:
        return None
    return chosen


def cut_to_fit(text, tokens, lengths: Lengths, punkt, marks=None, forced=(), forbidden=(),
               extra=(), fix="raise the limit", where="", scored=None):
    """(cuts, the places considered): [Candidate] cuts of `text` chosen by `plan`,
    every part within lengths.maximum (tokens(a, b) counts a part).

    Paragraph boundaries first (`extra` adds the writer's own places). Only when
    some paragraph alone is over the limit, sentence ends inside it, the cleanest
    tier that makes parts fit (a clean end, then one between a speech and its tag,
    then one inside a quotation: a stray quote mark can make the rest of a long
    paragraph look quoted). `punkt` may be a function that builds it, called only
    then. Raises InputError, naming the stretch that no cut can shorten, when no
    plan fits; `where` starts the message (the file) and `fix` ends it. `scored`:
    candidates(text, marks) computed before, for a caller that plans the text again."""
    cands = (candidates(text, marks) if scored is None else scored) + list(extra)
    cuts = plan(len(text), cands, tokens, lengths, forced, forbidden)
    if cuts is not None:
        return cuts, cands
    inside = _sentence_ends_in_long_paragraphs(text, tokens, lengths.maximum, punkt)
    allowed = cands
    for tier in sorted(_INSIDE_PARAGRAPH):
        allowed = cands + [c for c in inside if c.tier <= tier]
        cuts = plan(len(text), allowed, tokens, lengths, forced, forbidden)
        if cuts is not None:
            return cuts, allowed
    if forced or forbidden:
        raise InputError(f"{where}your answers (this run's --decide, and segment_decisions.json if "
                         f"there is one) leave no way to cut it into chunks of at most {lengths.maximum} "
                         "tokens: a 'whole' or 'drop' keeps a stretch too long together. Nothing was "
                         "written or recorded. Leave that answer out (or remove it from the file), or "
                         "add a cut inside the stretch ('cut:First words of a paragraph').")
    raise InputError(_no_fit_message(text, allowed, tokens, lengths.maximum, fix, where))


def _sentence_ends_in_long_paragraphs(text, tokens, limit, punkt):
    long_paragraphs = [(a, b) for a, b, _ in units(text) if tokens(a, b) > limit]
    if long_paragraphs and callable(punkt):
        punkt = punkt()
    return [c for a, b in long_paragraphs for c in sentence_candidates(text, punkt, a, b)]


def _no_fit_message(text, allowed, tokens, limit, fix, where):
    """The first stretch between two places a cut may use that is over the limit
    alone: what the writer must change (no plan exists exactly when there is one)."""
    offsets = [0] + sorted(c.offset for c in allowed) + [len(text)]
    a, b = next(((a, b) for a, b in zip(offsets, offsets[1:]) if tokens(a, b) > limit),
                (0, len(text)))
    opening = " ".join(text[a:b].split()[:8])
    return (f"{where}cannot be cut into parts of at most {limit} tokens: the passage starting "
            f"'{opening}...' is {tokens(a, b)} tokens with no paragraph break or sentence end "
            "where a cut may fall (none before a lower-case word or after a title such as "
            f"'Mr.'). Add a paragraph break or sentence punctuation in it, or {fix}.")


def places_between(places, lo, hi, tokens, lengths: Lengths, k=3, skip=None):
    """The k best places in (lo, hi) other than `skip` where one cut could go, each
    part still within the maximum: ranked by what the chunker maximises (the place's
    score minus both parts' length costs). Returns [(place, value)]."""
    value = lambda c: c.score - lengths.cost(tokens(lo, c.offset)) - lengths.cost(tokens(c.offset, hi))  # noqa: E731
    ranked = [(c, value(c)) for c in places if lo < c.offset < hi and c.offset != skip
              and not c.inside_paragraph]
    return sorted((cv for cv in ranked if cv[1] > -math.inf), key=lambda cv: (-cv[1], cv[0].offset))[:k]


def alternatives(cuts, places, tokens, lengths: Lengths, end, k=3):
    """For each cut, the k best other places between its neighbours (places_between)."""
    offsets = [0] + [c.offset for c in cuts] + [end]
    return [[c for c, _ in places_between(places, offsets[i - 1], offsets[i + 1], tokens, lengths, k,
                                          skip=cut.offset)]
            for i, cut in enumerate(cuts, 1)]


# --- the writer's choice (--cut-before) ----------------------------------------------

def squash(text):
    return " ".join(text.split())


# What a writer may type differently from the file, or leave out: emphasis marks,
# quotation marks of either shape, a dash as one character or two hyphens.
_AS_TYPED = str.maketrans({c: None for c in "_*\"“”‘’'"})


def as_typed(text):
    """`text` as it can be typed from how it reads: whitespace squashed, no _ or *
    emphasis, no quotation marks or apostrophes, every dash (—, –, --) one "-"."""
    return squash(re.sub(r"—|–|-+", "-", text.translate(_AS_TYPED)))


def paragraphs_starting(raw, want):
    """Offsets of the paragraphs of `raw` that begin with `want`, compared as_typed (a
    writer copies the words from the review, not the file's _italics_ marks)."""
    want = as_typed(want)
    # the words may run on into the next paragraph (a review's seam key does); a line
    # that is only marks ("* * *") is no paragraph to start with
    return [a for a, b, _ in units(raw) if as_typed(raw[a:b])
            and as_typed(raw[a:a + 4 * len(want) + 40]).startswith(want)]


def cut_before_text(raw, offset, words=6):
    """The paragraph's first words, enough of them that no other paragraph of the
    chunk starts the same way: what to pass to --cut-before for this place. A
    paragraph that another repeats word for word ("Yes.") takes the next one's first
    words too, as the matching does."""
    end = next((b for a, b, _ in units(raw) if a == offset), len(raw))
    own = len(raw[offset:end].split())
    split = raw[offset:].split()
    n = min(words, own)
    while n < min(len(split), max(own, 40)) and len(paragraphs_starting(raw, " ".join(split[:n]))) > 1:
        n += 1
    return " ".join(split[:n])


def writer_cuts(chunks, openings):
    """{chunk name: [Candidate]} from --cut-before: each opening must be the start of
    exactly one paragraph among `chunks` ([(chunk, raw text)]; whitespace and line
    wrapping ignored)."""
    found = {}
    for opening in openings:
        chunk, a = _the_one_paragraph(chunks, opening)
        if a == 0:
            raise InputError(f"--cut-before {opening!r} is the first paragraph of {chunk.name}: "
                             "a part must start later in the chunk")
        if any(c.offset == a for c in found.get(chunk.name, [])):
            raise InputError(f"--cut-before {opening!r} names a paragraph another --cut-before "
                             "already names: give each cut once; nothing was changed.")
        found.setdefault(chunk.name, []).append(Candidate(a, 0.0, ["your choice (--cut-before)"]))
    return {name: sorted(c, key=lambda c: c.offset) for name, c in found.items()}


def _the_one_paragraph(chunks, opening):
    """(chunk, offset) of the one paragraph that begins with `opening`, or InputError."""
    want = squash(opening)
    hits = [(chunk, a) for chunk, raw in chunks for a in paragraphs_starting(raw, want)] if want else []
    if len(hits) == 1:
        return hits[0]
    inside = [chunk.name for chunk, raw in chunks if want and want in squash(raw)]
    why = (f"{len(hits)} paragraphs begin with it: add words until one does" if len(hits) > 1 else
           f"it is inside a paragraph of {inside[0]}, and a cut never falls inside one"
           if inside else "no chunk over the limit contains it")
    raise InputError(f"--cut-before {opening!r}: {why}. Give the first words of the "
                     "paragraph that should start a new part, as they are in the file; "
                     "nothing was changed.")
