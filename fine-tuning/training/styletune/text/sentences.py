"""Sentence boundaries a cut may use, from nltk Punkt plus guards for fiction.

Punkt is trained on the author's own chunks (no download, and never nltk's
pretrained model, so every machine cuts alike), which teaches it their
abbreviations. Punkt alone still splits "Dr. | Watson" before
a capitalised name, so titles and initials get a guard of their own, and three
rules specific to fiction rank the boundaries:
- never before a lower-case word (`"Where?" | she asked.` is one sentence);
- a boundary that separates a speech from its tag (`"Stop!" | Fenn shouted.`)
  is used only when no cleaner boundary is in range (Tier.SPEECH_TAG);
- a boundary inside an open quotation (a speech that runs on) only when the
  chunk has no other boundary at all, e.g. a chunk that is one long quoted
  letter (Tier.IN_QUOTATION); the report lists it.

`sentences` / `paragraph_sentences` are a second, fast splitter for statistics
(the stylometry's sentence lengths, the seam scorer's TextTiling blocks): a
regex, no model, deterministic; the same abbreviation guard, the same rule
about a lower-case word. Good for counting sentences, not for cutting text.
"""
import re
from dataclasses import dataclass
from enum import IntEnum

from nltk.tokenize.punkt import PunktSentenceTokenizer, PunktTrainer

from styletune.text.paragraphs import paragraph_spans
from styletune.text.patterns import CLOSERS, ENDS_SENTENCE, FINAL_PUNCTUATION
from styletune.text.quotes import depth_at, quote_depths

# Lower-case, without the final period. Missing a real sentence end here only
# removes one candidate cut, so the list errs on the generous side.
GUARDED_ABBREVIATIONS = {
    "mr", "mrs", "ms", "mssrs", "messrs", "dr", "drs", "st", "ste", "prof", "capt", "cpt",
    "col", "gen", "lt", "sgt", "cmdr", "adm", "maj", "rev", "revd", "hon", "fr", "sr", "jr",
    "mt", "no", "nos", "vs", "etc", "e.g", "i.e", "a.m", "p.m", "cf", "viz", "vol", "ch",
    "pp", "fig", "approx", "dept", "est", "inc", "ltd", "co", "esq", "gov", "pres", "sen",
    "rep", "supt", "insp", "det", "u.s", "u.k",
}
SPEECH_VERBS = {
    "said", "says", "asked", "asks", "replied", "answered", "shouted", "cried", "called",
    "whispered", "muttered", "murmured", "added", "snapped", "yelled", "told", "sighed",
    "exclaimed", "continued", "insisted", "repeated", "screamed", "laughed", "breathed",
    "began", "went", "agreed", "protested", "demanded", "admitted", "observed", "remarked",
    "returned", "rejoined", "retorted", "groaned", "hissed", "growled", "pleaded", "warned",
}
# The final punctuation of a sentence, its closers after it: "cold." / "Stop!”"
# A candidate sentence end inside a paragraph: terminal punctuation, closers, then whitespace.
_END_CANDIDATE = re.compile(rf"([.!?…]+)({CLOSERS}*)(?=\s|$)")
# The word a final "." closes; the s of "Paul’s." is no initial.
_WORD_BEFORE_DOT = re.compile(r"(?<!['’])([\w.]+)$")
_TAG_MAX_WORDS = 8
# An initial or a run of them, its last dot taken off: "J", "A.J", "J.R.R"
_INITIALS = re.compile(r"(?:[^\W\d_]\.)*[^\W\d_]")


class Tier(IntEnum):
    """How clean a sentence end is as a cut: the lower, the cleaner."""
    CLEAN = 0
    SPEECH_TAG = 1      # between a speech and its tag: `"Stop!" | Fenn shouted.`
    IN_QUOTATION = 2    # inside an open quotation (a speech or letter that runs on)


@dataclass(frozen=True)
class Boundary:
    end: int    # prefix = text[:end]
    start: int  # completion = text[start:]; text[end:start] is whitespace only
    tier: Tier


# Punkt learns abbreviations from frequencies: a novel's worth of text is plenty,
# and training time grows with the text, so longer inputs train on a sample.
PUNKT_TRAIN_CHARS = 1_000_000


def _training_sample(texts):
    """Whole texts spread evenly through the book, up to PUNKT_TRAIN_CHARS."""
    total = sum(len(t) for t in texts)
    if total <= PUNKT_TRAIN_CHARS:
        return texts
    step = total / PUNKT_TRAIN_CHARS
    return [t for i, t in enumerate(texts) if int(i / step) != int((i - 1) / step) or i == 0]


# A rough sentence end, to find repeats in the training text (Punkt decides the real ones).
_ROUGH_END = re.compile(rf"[.!?…]{CLOSERS}*\s+")


def _without_repeats(text: str) -> str:
    """The text with every sentence that repeats an earlier one left out.

    Punkt counts how often a word carries a period: a sentence repeated a thousand
    times ("The cat sat on the mat. " * 2500, a chorus, a test pattern) teaches it
    that "mat." is an abbreviation, and even two copies teach it that "The" after
    it is a capital mid-sentence; then it finds no sentence end in the chunk at
    all. A repeat is no new evidence. An author's own abbreviation keeps its
    evidence: the rough pieces cut here end at the abbreviation's period, so they
    carry the words before it ("at the Fifth Ave. "), which vary."""
    pieces, start = [], 0
    for m in _ROUGH_END.finditer(text):
        pieces.append(text[start:m.end()])
        start = m.end()
    pieces.append(text[start:])
    seen, kept = set(), []
    for piece in pieces:
        if piece.strip() not in seen:
            seen.add(piece.strip())
            kept.append(piece)
    return "".join(kept)


def build_punkt(texts):
    """(tokenizer, description): Punkt trained on the author's own chunks, which learns
    their abbreviations. Never nltk's pretrained model, even where its data is
    installed: the same book then gives the same cuts on every machine (that download
    is optional and outside the lock), and the one the tests and benchmarks measure."""
    sample = _training_sample(texts)
    trainer = PunktTrainer()
    trainer.INCLUDE_ALL_COLLOCS = True
    trainer.train("\n\n".join(_without_repeats(t) for t in sample), finalize=True)
    tokenizer = PunktSentenceTokenizer(trainer.get_params())
    source = f"nltk Punkt trained on the author's {len(sample)} chunk(s)" + \
        (f" (an even sample of {len(texts)})" if len(sample) < len(texts) else "")
    tokenizer._params.abbrev_types.update(a for a in GUARDED_ABBREVIATIONS)
    return tokenizer, source


def ends_on_abbreviation(before: str, punct: str) -> bool:
    """True when `punct` after `before` closes a title, abbreviation or initial, not a
    sentence. Only a single '.' can: an ellipsis or a '!' ends a sentence even after
    "etc". An initial may come in a run ("A.J. Fenn", "J.R.R."); "I." is the pronoun
    ("said I."), not an initial."""
    if punct != ".":
        return False
    m = _WORD_BEFORE_DOT.search(before)
    if not m:
        return False
    word = m.group(1).lower().rstrip(".")
    return word in GUARDED_ABBREVIATIONS or (bool(_INITIALS.fullmatch(word)) and word != "i")


def _guarded(sentence: str) -> bool:
    """True when the sentence ends on a title, abbreviation or initial, not a real end."""
    m = FINAL_PUNCTUATION.search(sentence.rstrip())
    return bool(m) and ends_on_abbreviation(sentence.rstrip()[:m.start()], m.group(1))


def sentence_ends(paragraph: str) -> list[int]:
    """Offsets where the regex splitter ends a sentence inside one paragraph: after
    . ! ? … and any closers, unless a lower-case word follows (`"Where?" she asked.`,
    `wait... perhaps`) or the '.' closes an abbreviation or initial."""
    ends = []
    for m in _END_CANDIDATE.finditer(paragraph):
        rest = paragraph[m.end():].lstrip()
        if rest and rest[0].islower():
            continue
        if ends_on_abbreviation(paragraph[:m.start()], m.group(1)):
            continue
        ends.append(m.end())
    return ends


def paragraph_sentences(paragraph: str) -> list[str]:
    """The sentences of one paragraph (regex splitter), stripped, none empty."""
    out, start = [], 0
    for end in sentence_ends(paragraph) + [len(paragraph)]:
        piece = paragraph[start:end].strip()
        if piece:
            out.append(piece)
        start = end
    return out


def sentences(text: str) -> list[str]:
    """The sentences of `text` (regex splitter); a paragraph break always ends one."""
    return [s for a, b in paragraph_spans(text) for s in paragraph_sentences(text[a:b])]


def _is_speech_tag(sentence_before: str, sentence_after: str) -> bool:
    """`"Stop!" | Fenn shouted.`: a quote ending in ?/! followed by a short tag."""
    if not re.search(r"[?!…—,][’”\"']+\s*$", sentence_before):
        return False
    words = re.findall(r"[\w’']+", sentence_after)
    return len(words) <= _TAG_MAX_WORDS and any(w.lower() in SPEECH_VERBS for w in words)


def boundaries(text: str, punkt, until: int | None = None):
    """Every boundary a cut may use, in text order; with `until`, stop at the first
    paragraph starting past it (once one boundary is found): a prompt is short."""
    found = []
    paragraphs = paragraph_spans(text)
    for i, (p_start, p_end) in enumerate(paragraphs):
        if until is not None and p_start > until and found:
            break
        quotes = quote_depths(text[p_start:p_end])
        spans = list(punkt.span_tokenize(text[p_start:p_end]))
        spans = [(p_start + a, p_start + b) for a, b in spans]
        for (a, b), nxt in zip(spans, spans[1:] + [None]):
            sentence = text[a:b]
            if not ENDS_SENTENCE.search(sentence) or _guarded(sentence):
                continue
            quoted = depth_at(quotes, b - p_start) > 0
            if nxt is None:  # paragraph end: the next paragraph starts the completion
                if i + 1 < len(paragraphs):
                    found.append(Boundary(b, paragraphs[i + 1][0], 2 if quoted else 0))
                continue
            following = text[nxt[0]:nxt[1]]
            if following[:1].islower():
                continue
            tier = (Tier.IN_QUOTATION if quoted else Tier.SPEECH_TAG if _is_speech_tag(sentence, following)
                    else Tier.CLEAN)
            found.append(Boundary(b, nxt[0], tier))
    return found
