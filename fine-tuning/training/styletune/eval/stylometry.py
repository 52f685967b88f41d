"""The style profile for stage 4: words, sentence lengths, dialogue, punctuation and
lexical variety, measured the same way for the models' text and the author's.

Everything here takes plain strings, uses only numpy and the standard library, and
downloads nothing.

Tokens
    `words`: lower-cased runs of letters and digits with internal apostrophes
    (`don't`, `o'clock`); the curly ’ is read as ' so "don’t" and "don't" are one
    word. Quote marks, dashes and the underscores/asterisks of italics are not
    words. `sentences`: the fast regex splitter of `styletune.text.sentences` (not
    its Punkt one, which is built to find cut points and trains a model): a
    sentence ends after . ! ? … and any closing quotes or brackets, when what
    follows is not a lower-case word (`"Where?" she asked.` is one sentence), never
    after a title or abbreviation from `sentences.GUARDED_ABBREVIATIONS` or an
    initial or run of them ("J.", "A.J."); a paragraph break always ends one. Good enough for
    length statistics, not for cutting text.

Profile (`style_profile`)
    Sentence lengths (words per sentence), dialogue share (words inside
    quotation marks: curly and straight double quotes, and single quotes told
    apart from apostrophes by context, see `styletune.text.quotes.quoted_spans`), punctuation per 1,000
    words, and MATTR (Covington & McFall 2010: the mean type-token ratio over all
    windows of `window` words, which unlike plain TTR does not fall as the text
    grows). MATTR needs at least `window` words; below that, plain TTR is
    reported and `mattr_method` says so. Compare profiles on equal-length samples.

The attribution measures are in eval/attribution.py, the health checks in
eval/health.py.
"""
from __future__ import annotations

import bisect
import re
from collections import Counter

import numpy as np

from styletune.text.quotes import merged_spans, quoted_spans
from styletune.text.sentences import sentences

# ---------------------------------------------------------------- tokens

WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")


def words(text: str) -> list[str]:
    """Lower-cased word tokens; curly ’ inside a word is read as '."""
    return [m.group().lower().replace("’", "'") for m in WORD.finditer(text)]


# ---------------------------------------------------------------- dialogue

def dialogue_share(text: str) -> float:
    """Share of words inside quotation marks."""
    spans = merged_spans(quoted_spans(text)[0])
    span_starts = [s for s, _ in spans]
    starts = [m.start() for m in WORD.finditer(text)]
    if not starts:
        return 0.0
    inside = 0
    for pos in starts:
        i = bisect.bisect_right(span_starts, pos) - 1
        inside += i >= 0 and pos < spans[i][1]
    return inside / len(starts)


# ---------------------------------------------------------------- profile

_PUNCTUATION = {
    ",": re.compile(r","), ";": re.compile(r";"), ":": re.compile(r":"),
    "!": re.compile(r"!"), "?": re.compile(r"\?"),
    ".": re.compile(r"(?<![.\s])(?<!\. )\.(?!\s?\.)"),  # periods that are not part of an ellipsis
    "—": re.compile(r"—|-{2,}"),                        # typewriter -- is an em dash
    "–": re.compile(r"–"),
    "…": re.compile(r"…|\.\s?\.\s?\."),
}


def punctuation_per_1000_words(text: str, n_words: int | None = None) -> dict[str, float]:
    """Rates of , ; : ! ? . — – … and quote marks per 1,000 words."""
    n_words = n_words if n_words is not None else len(words(text))
    scale = 1000.0 / n_words if n_words else 0.0
    rates = {mark: len(p.findall(text)) * scale for mark, p in _PUNCTUATION.items()}
    rates["quotes"] = quoted_spans(text)[1] * scale
    return rates


def mattr(tokens: list[str], window: int = 500) -> float:
    """Moving-average type-token ratio (Covington & McFall 2010); plain TTR when the
    text is shorter than the window."""
    if not tokens:
        raise ValueError("mattr of an empty text")
    if len(tokens) <= window:
        return len(set(tokens)) / len(tokens)
    counts = Counter(tokens[:window])
    types = len(counts)
    total = types  # sum of the type counts of every window, updated as the window slides
    for out_word, in_word in zip(tokens, tokens[window:]):
        counts[out_word] -= 1
        if counts[out_word] == 0:
            types -= 1
        if counts[in_word] == 0:
            types += 1
        counts[in_word] += 1
        total += types
    return total / (len(tokens) - window + 1) / window


def style_profile(text: str, window: int = 500) -> dict:
    """Sentence lengths, dialogue share, punctuation rates and MATTR of one text."""
    tokens = words(text)
    if not tokens:
        raise ValueError("style_profile: the text has no words")
    lengths = [n for n in (len(words(s)) for s in sentences(text)) if n]
    return {
        "words": len(tokens),
        "sentence_lengths": lengths,
        "mean_sentence_length": float(np.mean(lengths)),
        "dialogue_share": dialogue_share(text),
        "punctuation_per_1000_words": punctuation_per_1000_words(text, len(tokens)),
        "mattr": mattr(tokens, window),
        "mattr_window": window,
        "mattr_method": "mattr" if len(tokens) > window else
                        f"ttr (text of {len(tokens)} words, shorter than the {window}-word window)",
    }
