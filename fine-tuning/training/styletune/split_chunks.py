"""Where a passage too long for one example should be cut: scene breaks first,
then the paragraph boundaries that read most like a scene change, so that every
part fits. Used by stage 0 for scenes over the budget and by
`split_oversized_chunks.py` for chunk files stage 1 finds too long.

A boundary's score adds up narrative signals, each named in the dry run:
- an explicit scene break (`* * *`, `#`, `~`, extra blank lines) between the paragraphs;
- a time jump or a new place at the start of the next paragraph ("That night",
  "The next morning", "At the station");
- a change of vocabulary and of the people named (the words of the few
  hundred words before and after have little in common: a new scene);
- a shift between dialogue and narration, or between first- and third-person narration;
- a chapter-opening typographic habit (`THE papers next day...`: first word in capitals).
A cut never falls inside a paragraph, after one that stops mid-sentence, or
before one that starts in lower case. Only when a single paragraph is longer
than the limit does a cut fall at a sentence end inside it (the last resort,
said so wherever it happens).
"""
import bisect
import math
import re
from collections import Counter
from dataclasses import dataclass, field

from .sentences import boundaries, paragraph_spans

SCENE_BREAK_SCORE = 100.0
# Signal weights (tuned on the four novels outside the quality benchmark).
W_LEXICAL = 6.0
W_NAMES = 2.0
W_TIME = 2.5
W_PLACE = 1.0
W_DIALOGUE = 1.0
W_POV = 1.5
W_CAPS_OPENING = 6.0
W_CLOSING = 0.5
LEXICAL_WINDOW_WORDS = 400

_STOP = set("""a about above after again against all am an and any are as at be because been
before being below between both but by can could did do does doing down during each few for
from further had has have having he her here hers herself him himself his how i if in into is
it its itself just me more most my myself no nor not now of off on once only or other our ours
out over own same she should so some such than that the their theirs them themselves then there
these they this those through to too under until up very was we were what when where which
while who whom why will with would you your yours yourself said says one upon into shall may
might must us ye thee thou thy mr mrs miss dr sir""".split())
_WORD = re.compile(r"[a-z][a-z’']+")
_NAME = re.compile(r"(?<=[a-z,;] )([A-Z][a-z]{2,})")
_TIME_NOUNS = (r"(?:morning|evening|night|afternoon|day|days|week|weeks|month|months|year|years|"
               r"hour|hours|dawn|daybreak|dusk|sunset|sunrise|noon|midnight|twilight|autumn|"
               r"winter|spring|summer|sunday|monday|tuesday|wednesday|thursday|friday|saturday|"
               r"o’clock|o'clock|fortnight|time)")
_WEEKDAY = r"(?:sunday|monday|tuesday|wednesday|thursday|friday|saturday)"
# A time phrase in the first few words: "That night", "On the sixth day", "A week
# afterwards", "Saturday lives in my memory", "It was late in the afternoon".
_TIME = re.compile(
    rf"^\W*(?:\w+\W+){{0,3}}?(?:that|this|next|following|early|late|later|by|at|on|one|a|few|"
    rf"some|several|each|every|during|until|till|towards?|after|before|\d+|two|three|four|five|"
    rf"six|seven|ten|nearly|in)\s+(?:\w+\s+){{0,2}}?{_TIME_NOUNS}\b"
    rf"|^\W*{_WEEKDAY}\b|^\W*it was (?:late|early|nearly|past|not until|on|in|at)\b",
    re.IGNORECASE)
_TIME_WORDS = re.compile(r"^\W*(meanwhile|afterwards|later|next day|time ran on|"
                         r"(?:when|after|as soon as) (?:i|we|he|she|they) (?:had|got|reached|"
                         r"returned|came|awoke|woke|parted|left))\b", re.IGNORECASE)
_PLACE = re.compile(r"^\W*(?:at|in|inside|outside|back at|back in|on board|aboard|across|"
                    r"beyond)\s+(?:the|a|an|his|her|their|my|our)?\s*[A-Z][A-Za-z’']+")
_CAPS_OPENING = 6.0
W_CLOSING = 0.5
LEXICAL_WINDOW_WORDS = 400

_STOP = set("""a about above after again against all am an and any are as at be because been
before being below between both but by can could did do does doing down during each few for
from further had has have having he her here hers herself him himself his how i if in into is
it its itself just me more most my myself no nor not now of off on once only or other our ours
out over own same she should so some such than that the their theirs them themselves then there
these they this those through to too under until up very was we were what when where which
while who whom why will with would you your yours yourself said says one upon into shall may
might must us ye thee thou thy mr mrs miss dr sir""".split())
_WORD = re.compile(r"[a-z][a-z’']+")
_NAME = re.compile(r"(?<=[a-z,;] )([A-Z][a-z]{2,})")
_TIME = re.compile(
    r"^\W*(?:\w+\W+){0,5}?(that|the next|next|the following|this|one|each|every|early|late|"
    r"later|by|at|on|in|towards?|during|until|till|about|some|a few|several|two|three|four|"
    r"five|ten|many)?\W*(morning|evening|night|afternoon|day|days|week|weeks|month|months|year|"
    r"years|hour|hours|minutes|dawn|daybreak|dusk|sunset|sunrise|noon|midnight|twilight|"
    r"autumn|winter|spring|summer|sunday|monday|tuesday|wednesday|thursday|friday|saturday|"
    r"january|february|march|april|may|june|july|august|september|october|november|december|"
    r"o’clock|o'clock|time)\b", re.IGNORECASE)
_TIME_WORDS = re.compile(r"^\W*(meanwhile|afterwards|later|next day|the next|that night|"
                         r"that evening|that morning|the following|time ran on|it was (?:late|"
                         r"early|nearly|past|not until)|nearly a|a (?:week|month|year|fortnight)|"
                         r"some (?:days|weeks|months|years|time)|(?:when|after) (?:i|we|he|she|they) "
                         r"(?:had|got|reached|returned|came|awoke|woke))", re.IGNORECASE)
_PLACE = re.compile(r"^\W*(?:at|in|inside|outside|back at|back in|on board|aboard|across|"
                    r"beyond)\s+(?:the|a|an|his|her|their|my|our)?\s*[A-Za-z’']+", re.IGNORECASE)
# "THE papers", "I CONFESS", "A FORTNIGHT later", "MR. UTTERSON the lawyer"
_CAPS_OPENING = re.compile(r"^(?:[A-Z][A-Z’']+|[AI]\s+[A-Z][A-Z’']+)(?:[.,]?\s+[A-Z][A-Z’'.]+)*[.,]?\s+[a-z]")
_DIALOGUE = re.compile(r"[\"“”‘’']")
_ENDS_SENTENCE = re.compile(r"[.!?…]['\"’”)\]*_]*$|[—–-]['\"’”]$|[’”\"]$")


@dataclass
class Candidate:
    offset: int                 # the part after the cut starts here
    score: float
    signals: list = field(default_factory=list)
    inside_paragraph: bool = False


def _words(text):
    return [w for w in _WORD.findall(text.lower()) if w not in _STOP and len(w) > 2]


def _cosine(a: Counter, b: Counter) -> float:
    if not a or not b:
        return 0.0
    dot = sum(v * b.get(k, 0) for k, v in a.items())
    return dot / math.sqrt(sum(v * v for v in a.values()) * sum(v * v for v in b.values()))


def _dialogue_share(text):
    return min(1.0, len(_DIALOGUE.findall(text)) / max(1, len(text) / 120))


def _first_person_share(words):
    first = sum(w in ("i", "me", "my", "we", "our", "us") for w in words)
    third = sum(w in ("he", "she", "him", "her", "his", "they", "them") for w in words)
    return first / max(1, first + third)


_PAGE_MARKER = re.compile(r"^\[?\d{1,4}[)\]]$")
_SCENE_GLYPHS = re.compile(r"^[^\w\s]{1,3}(\s*[^\w\s]{1,3}){0,6}$")


def units(text):
    """Paragraphs that can start a part: (start, end, is_scene_break_glyph). A page
    number line ('12)') goes with the paragraph after it."""
    spans = paragraph_spans(text)
    out, pending = [], None
    for a, b in spans:
        para = text[a:b].strip()
        if _PAGE_MARKER.match(para):
            pending = pending if pending is not None else a
            continue
        out.append((pending if pending is not None else a, b, bool(_SCENE_GLYPHS.match(para))))
        pending = None
    if pending is not None and out:
        out[-1] = (out[-1][0], len(text.rstrip()), out[-1][2])
    return out


def candidates(text, scene_gap=None):
    """Every paragraph boundary where a part may start, scored."""
    paras = units(text)
    if len(paras) < 2:
        return []
    if scene_gap is None:
        gaps = sorted(text.count("\n", paras[i - 1][1], paras[i][0]) for i in range(1, len(paras)))
        scene_gap = gaps[len(gaps) // 2] + 1
    words_per = [_words(text[a:b]) for a, b, _ in paras]
    raw_per = [re.findall(r"[a-z’']+", text[a:b].lower()) for a, b, _ in paras]
    cum = [0]
    for w in words_per:
        cum.append(cum[-1] + len(w))
    # names: capitalised words not at a sentence start
    names_per = [set(_NAME.findall(text[a:b])) for a, b, _ in paras]
    out = []
    lexical = []
    for i in range(1, len(paras)):
        # windows of about LEXICAL_WINDOW_WORDS content words either side
        lo = i
        while lo > 0 and cum[i] - cum[lo - 1] <= LEXICAL_WINDOW_WORDS:
            lo -= 1
        hi = i
        while hi < len(paras) and cum[hi + 1] - cum[i] <= LEXICAL_WINDOW_WORDS:
            hi += 1
        before = Counter(w for ws in words_per[max(0, lo - 1):i] for w in ws)
        after = Counter(w for ws in words_per[i:hi + 1] for w in ws)
        lexical.append(1.0 - _cosine(before, after))
    # depth relative to the neighbourhood, so a general drift does not dominate
    for i in range(1, len(paras)):
        a, b, glyph = paras[i]
        prev_a, prev_b, prev_glyph = paras[i - 1]
        prev_text, para = text[prev_a:prev_b].strip(), text[a:b].strip()
        signals, score = [], 0.0
        if glyph:
            continue  # a cut goes after the scene-break line, not before it
        gap = text.count("\n", prev_b, a)
        if prev_glyph:
            score += SCENE_BREAK_SCORE
            signals.append(f"scene break '{prev_text}'")
        elif gap >= scene_gap + 1:
            score += SCENE_BREAK_SCORE
            signals.append(f"scene break ({gap - 1} blank lines)")
        if para[:1].islower():
            continue
        last_line = prev_text.rsplit("\n", 1)[-1].strip()
        signed = last_line.isupper() and len(last_line) < 40  # a letter's signature
        if not prev_glyph and not signed and not _ENDS_SENTENCE.search(prev_text):
            continue
        lex = lexical[i - 1]
        local = lexical[max(0, i - 1 - 6):i - 1 + 7]
        depth = lex - sorted(local)[len(local) // 2]
        if depth > 0:
            score += W_LEXICAL * depth
            if depth > 0.08:
                signals.append(f"vocabulary changes ({lex:.2f})")
        names_before = set().union(*names_per[max(0, i - 4):i])
        names_after = set().union(*names_per[i:i + 4])
        if names_before or names_after:
            shared = len(names_before & names_after) / max(1, len(names_before | names_after))
            score += W_NAMES * (1 - shared) * 0.5
            new = sorted(names_after - names_before)[:3]
            if shared < 0.2 and new:
                signals.append("people change (" + ", ".join(new) + ")")
        opening = para[:80]
        if _TIME.search(opening[:60]) or _TIME_WORDS.search(opening):
            score += W_TIME
            signals.append(f"time jump ('{' '.join(para.split()[:4])}...')")
        elif _PLACE.search(opening):
            score += W_PLACE
            signals.append(f"new place ('{' '.join(para.split()[:4])}...')")
        d_before = _dialogue_share(" ".join(text[x:y] for x, y, _ in paras[max(0, i - 3):i]))
        d_after = _dialogue_share(" ".join(text[x:y] for x, y, _ in paras[i:i + 3]))
        if abs(d_before - d_after) > 0.5:
            score += W_DIALOGUE * abs(d_before - d_after)
            signals.append("dialogue to narration" if d_before > d_after else "narration to dialogue")
        pov_b = _first_person_share([w for ws in raw_per[max(0, i - 4):i] for w in ws])
        pov_a = _first_person_share([w for ws in raw_per[i:i + 4] for w in ws])
        if abs(pov_a - pov_b) > 0.5:
            score += W_POV * abs(pov_a - pov_b)
            signals.append("point of view changes")
        if _CAPS_OPENING.match(para) and not _CAPS_OPENING.match(prev_text):
            score += W_CAPS_OPENING
            signals.append("opens with a word in capitals (a chapter-opening habit)")
        if len(prev_text) < 200 and not _DIALOGUE.search(prev_text[:2]):
            score += W_CLOSING
        out.append(Candidate(a, score, signals or ["paragraph boundary"]))
    return out


def sentence_candidates(text, punkt, start, end):
    """Last resort inside one paragraph: sentence ends (clean ones first)."""
    out = []
    for b in boundaries(text[start:end], punkt):
        if b.tier == 0:
            out.append(Candidate(start + b.start, 0.0, ["sentence end inside a paragraph "
                                                         "(last resort: the paragraph alone is over the limit)"],
                                 inside_paragraph=True))
    return out


class Measure:
    """Token counts of any slice of one text, from one tokenisation: the rendered
    example's overhead (template, special tokens) plus the tokens of the slice.
    Used to search; the parts chosen are then counted exactly as stage 1 does."""

    def __init__(self, counter, text, margin=0):
        self.ends = counter.token_ends([text])[0]
        empty = counter.render([{"role": "user", "content": ""}, {"role": "assistant", "content": ""}])
        self.overhead = counter.count_rendered([empty])[0] + margin

    def tokens(self, a, b):
        return bisect.bisect_right(self.ends, b) - bisect.bisect_right(self.ends, a) + self.overhead


def plan(text_len, cands, tokens, limit=None, n_parts=None, min_part=0):
    """Choose cuts: each part fits `limit` (tokens(a, b) <= limit), as few parts as
    possible (or exactly n_parts), the highest total score among those; a part
    under min_part tokens costs a penalty. Returns [Candidate] or None if no plan fits."""
    cands = sorted(cands, key=lambda c: c.offset)
    points = [Candidate(0, 0.0)] + cands
    n = len(points)
    end = text_len
    INF = (math.inf, 0.0)

    def part_ok(a, b):
        return limit is None or tokens(a, b) <= limit

    def part_cost(a, b):
        return 10.0 if min_part and tokens(a, b) < min_part else 0.0

    max_parts = n_parts or n
    # best[k][j]: (negative score, prev) for k parts whose last starts at points[j]
    best = [dict() for _ in range(max_parts + 1)]
    best[1][0] = (0.0, None)
    for k in range(1, max_parts + 1):
        for j, (val, _) in sorted(best[k].items()):
            if k == max_parts:
                continue
            for t in range(j + 1, n):
                a, b = points[j].offset, points[t].offset
                if not part_ok(a, b):
                    if limit is not None and tokens(a, b) > limit:
                        break
                    continue
                v = val - points[t].score + part_cost(a, b)
                if t not in best[k + 1] or v < best[k + 1][t][0]:
                    best[k + 1][t] = (v, j)
        finals = [(val + part_cost(points[j].offset, end), j) for j, (val, _) in best[k].items()
                  if part_ok(points[j].offset, end)]
        if finals and (n_parts is None or k == n_parts):
            _, j = min(finals)
            chosen, kk = [], k
            while j is not None and j != 0:
                chosen.append(points[j])
                j = best[kk][j][1]
                kk -= 1
            return list(reversed(chosen))
    return None


def example_tokens(config, counter, named_texts, punkt=None) -> dict:
    """{name: the longest rendered example stage 1 makes of that text}: the same
    cut choice (prefix ratio, seed, cuts per chunk, Punkt trained on the same
    set of chunk texts) and the same rendered count, special tokens included."""
    from pathlib import Path

    from .chunks import Chunk
    from .examples import count_rendered, cut_chunks
    from .fileio import normalise
    from .sentences import build_punkt

    chunks = [Chunk(Path(name), normalise(text), "") for name, text in named_texts]
    chunks = [c for c in chunks if c.text]
    if not chunks:
        return {}
    if punkt is None:
        punkt, _ = build_punkt([c.text for c in chunks])
    s = config.pipeline
    examples = cut_chunks(chunks, punkt, counter, s.prefix_ratio, s.seed,
                          lambda c: s.cuts_per_chunk)
    count_rendered(examples, counter)
    out = {}
    for e in examples:
        out[e.chunk.name] = max(out.get(e.chunk.name, 0), e.total_tokens)
    return out
