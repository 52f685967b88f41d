"""Sentence boundaries a cut may use, from nltk Punkt plus guards for fiction.

Punkt comes pretrained for English when nltk's `punkt_tab` data is installed;
otherwise it is trained on the author's own chunks (no download), which also
teaches it their abbreviations. Punkt alone still splits "Dr. | Watson" before
a capitalised name, so titles and initials get a guard of their own, and three
rules specific to fiction rank the boundaries:
- never before a lower-case word (`"Where?" | she asked.` is one sentence);
- a boundary that separates a speech from its tag (`"Stop!" | Fenn shouted.`)
  is used only when no cleaner boundary is in range (tier 1);
- a boundary inside an open quotation (a speech that runs on) only when the
  chunk has no other boundary at all, e.g. a chunk that is one long quoted
  letter (tier 2); the report lists it.
"""
import bisect
import re
from dataclasses import dataclass

from nltk.tokenize.punkt import PunktSentenceTokenizer, PunktTrainer

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
_SENTENCE_END = re.compile(r"[.!?…]['\"’”)\]*_]*$")
_WORD_BEFORE = re.compile(r"([\w.]+)[.!?…]?['\"’”)\]*_]*$")
_TAG_MAX_WORDS = 8


@dataclass(frozen=True)
class Boundary:
    end: int    # prefix = text[:end]
    start: int  # completion = text[start:]; text[end:start] is whitespace only
    tier: int   # 0 clean; 1 separates a speech from its tag; 2 inside an open quotation


_LINE_ENDS_SENTENCE = re.compile(r"[.!?…:;\-—–'\"’”)\]*_]\s*$")


def _is_hard_wrapped(text: str) -> bool:
    """True when blank-line blocks are paragraphs whose lines were wrapped by hand
    (Project Gutenberg, typewriter-era files): most lines inside a block then stop
    mid-sentence, while in one-paragraph-per-line text they end a paragraph."""
    inner = [line for block in text.split("\n\n") for line in block.strip().split("\n")[:-1]]
    if not inner:
        return False
    ended = sum(bool(_LINE_ENDS_SENTENCE.search(line)) for line in inner)
    return ended < 0.5 * len(inner)


def paragraph_spans(text: str):
    """(start, end) of each paragraph: every non-blank line, unless the text is
    hard-wrapped, when a paragraph is a block between blank lines. A blank line in
    one-paragraph-per-line text (a scene break) is just an empty line."""
    sep = "\n\n" if _is_hard_wrapped(text) else "\n"
    spans, pos = [], 0
    for part in text.split(sep):
        if part.strip():
            lead = len(part) - len(part.lstrip())
            spans.append((pos + lead, pos + len(part.rstrip())))
        pos += len(part) + len(sep)
    return spans


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


def build_punkt(texts):
    """(tokenizer, description): pretrained English Punkt if installed, else trained here."""
    try:
        from nltk.tokenize.punkt import PunktTokenizer
        tokenizer = PunktTokenizer("english")
        source = "nltk Punkt, pretrained English model"
    except (LookupError, ImportError, OSError):
        sample = _training_sample(texts)
        trainer = PunktTrainer()
        trainer.INCLUDE_ALL_COLLOCS = True
        trainer.train("\n\n".join(sample), finalize=True)
        tokenizer = PunktSentenceTokenizer(trainer.get_params())
        source = f"nltk Punkt trained on the author's {len(sample)} chunk(s)" + \
            (f" (an even sample of {len(texts)})" if len(sample) < len(texts) else "")
    tokenizer._params.abbrev_types.update(a for a in GUARDED_ABBREVIATIONS)
    return tokenizer, source


def _guarded(sentence: str) -> bool:
    """True when the sentence ends on a title, abbreviation or initial, not a real end."""
    m = _WORD_BEFORE.search(sentence)
    if not m:
        return False
    word = m.group(1).lower().rstrip(".")
    return word in GUARDED_ABBREVIATIONS or (len(word) == 1 and word.isalpha()
                                              and sentence.rstrip().endswith("."))


_QUOTE_EVENTS = (
    re.compile(r"(“)|(”)"),
    # single quotes: an opening mark starts the paragraph or follows a space or
    # dash; a closing mark ends a word and is followed by a space or punctuation
    # (so the apostrophe in "don’t" is neither)
    re.compile(r"((?:^|(?<=[\s(—–-]))[‘'](?=\S))|((?<=\S)[’'](?=$|[\s,.;:!?—–)]))"),
)


def _quote_depths(paragraph: str):
    """(positions, depths): how many quotations are open after each quote mark.

    Every style is tracked at once (curly, straight and single quotes), since a
    book may nest one in another; a stray apostrophe can only forbid a cut, never
    allow one inside a speech. Each paragraph starts with none open.
    """
    events = [(m.end(), "straight", 1) for m in re.finditer('"', paragraph)]
    for name, pattern in zip(("curly", "single"), _QUOTE_EVENTS):
        events += [(m.end(), name, 1 if m.group(1) else -1) for m in pattern.finditer(paragraph)]
    levels = {"straight": 0, "curly": 0, "single": 0}
    positions, depths = [], []
    for pos, name, delta in sorted(events):
        if name == "straight":
            levels[name] ^= 1
        else:
            levels[name] = max(0, levels[name] + delta)
        positions.append(pos)
        depths.append(sum(levels.values()))
    return positions, depths


def _depth_at(quotes, offset: int) -> int:
    positions, depths = quotes
    i = bisect.bisect_right(positions, offset)
    return depths[i - 1] if i else 0


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
        quotes = _quote_depths(text[p_start:p_end])
        spans = list(punkt.span_tokenize(text[p_start:p_end]))
        spans = [(p_start + a, p_start + b) for a, b in spans]
        for (a, b), nxt in zip(spans, spans[1:] + [None]):
            sentence = text[a:b]
            if not _SENTENCE_END.search(sentence) or _guarded(sentence):
                continue
            quoted = _depth_at(quotes, b - p_start) > 0
            if nxt is None:  # paragraph end: the next paragraph starts the completion
                if i + 1 < len(paragraphs):
                    found.append(Boundary(b, paragraphs[i + 1][0], 2 if quoted else 0))
                continue
            following = text[nxt[0]:nxt[1]]
            if following[:1].islower():
                continue
            tier = 2 if quoted else 1 if _is_speech_tag(sentence, following) else 0
            found.append(Boundary(b, nxt[0], tier))
    return found
