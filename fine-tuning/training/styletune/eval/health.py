"""Health checks for stage 4's continuations: loops, copying from training, and
whether a continuation ends on a sentence end. Plain strings in, deterministic.

Health checks
    `repetition`: distinct-1/2 (Li et al. 2016: unique n-grams over all n-grams),
    the share of 4-gram occurrences whose 4-gram occurs more than once, and the
    longest word span that occurs twice (the two occurrences may overlap, as in a
    loop). `memorisation`: the longest word span found verbatim in the training
    text, and the share of the text's 8-grams that occur in it (8-gram overlap is
    the usual verbatim-copy signal; an author's own held-out text has near zero).
    Both use 64-bit rolling hashes of word n-grams, so they are linear in the text
    sizes (a binary search over the span length; every match found is checked
    word by word). `ends_cleanly`: whether a continuation ends on sentence-final
    punctuation, optionally closed by a quote or bracket.
"""
from __future__ import annotations

from collections import Counter

import numpy as np

from styletune.eval.stylometry import words
from styletune.text.patterns import ENDS_SENTENCE
from styletune.text.sentences import ends_on_abbreviation

# ---------------------------------------------------------------- n-gram hashing

_MASK = (1 << 64) - 1
_BASE = 0x9E3779B97F4A7C15 | 1  # odd 64-bit multiplier


def _word_ids(*token_lists: list[str]) -> list[np.ndarray]:
    """The token lists as arrays of integer ids from one shared vocabulary."""
    vocab: dict[str, int] = {}
    return [np.array([vocab.setdefault(w, len(vocab) + 1) for w in tokens], dtype=np.uint64)
            for tokens in token_lists]


class _RollingHash:
    """Prefix hashes of a word-id array, so the hash of any n-gram costs O(1) (mod 2**64)."""

    def __init__(self, ids: np.ndarray):
        prefix = [0]
        for x in ids.tolist():
            prefix.append((prefix[-1] * _BASE + x) & _MASK)
        self.prefix = np.array(prefix, dtype=np.uint64)
        self.ids = ids

    def ngrams(self, n: int) -> np.ndarray:
        """Hash of every n-gram, in order (empty when the text is shorter than n)."""
        if n > len(self.ids) or n <= 0:
            return np.zeros(0, dtype=np.uint64)
        power = np.uint64(pow(_BASE, n, 1 << 64))
        with np.errstate(over="ignore"):
            return self.prefix[n:] - self.prefix[:-n] * power


def _longest(check, upper: int) -> int:
    """The largest n in [0, upper] with check(n) true, given check is monotone (true up to some n)."""
    lo, hi = 0, upper
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if check(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


def _has_repeat(h: _RollingHash, n: int) -> bool:
    hashes = h.ngrams(n)
    order = np.argsort(hashes, kind="stable")
    same = np.nonzero(hashes[order][1:] == hashes[order][:-1])[0]
    ids = h.ids
    # verify word by word (a hash collision must not count as a repeat)
    return any(np.array_equal(ids[order[k]:order[k] + n], ids[order[k + 1]:order[k + 1] + n])
               for k in same[:50])


def _has_common(a: _RollingHash, b: _RollingHash, n: int) -> bool:
    ha, hb = a.ngrams(n), b.ngrams(n)
    if not len(ha) or not len(hb):
        return False
    order = np.argsort(hb, kind="stable")
    sorted_hb = hb[order]
    where = np.minimum(np.searchsorted(sorted_hb, ha), len(hb) - 1)
    hits = np.nonzero(sorted_hb[where] == ha)[0]
    # verify word by word (a hash collision must not count as a match)
    return any(np.array_equal(a.ids[i:i + n], b.ids[order[where[i]]:order[where[i]] + n])
               for i in hits[:50])


# ---------------------------------------------------------------- health checks

def _distinct(tokens: list[str], n: int) -> float:
    grams = list(zip(*(tokens[i:] for i in range(n))))
    return len(set(grams)) / len(grams) if grams else 0.0


def repetition(text: str) -> dict:
    """distinct-1/2, share of 4-gram occurrences that repeat, longest span occurring twice."""
    tokens = words(text)
    grams = Counter(zip(*(tokens[i:] for i in range(4))))
    total4 = sum(grams.values())
    (ids,) = _word_ids(tokens)
    h = _RollingHash(ids)
    return {
        "words": len(tokens),
        "distinct_1": _distinct(tokens, 1),
        "distinct_2": _distinct(tokens, 2),
        "repeated_4gram_share": sum(c for c in grams.values() if c > 1) / total4 if total4 else 0.0,
        "longest_repeated_span_words": _longest(lambda n: _has_repeat(h, n), max(0, len(tokens) - 1)),
    }


def memorisation(text: str, training_text: str, n: int = 8) -> dict:
    """Longest word span of text found verbatim in training_text; share of its n-grams found there."""
    tokens, train_tokens = words(text), words(training_text)
    ids, train_ids = _word_ids(tokens, train_tokens)
    h, train_h = _RollingHash(ids), _RollingHash(train_ids)
    grams = h.ngrams(n)
    copied = float(np.isin(grams, train_h.ngrams(n)).mean()) if len(grams) else 0.0
    upper = min(len(tokens), len(train_tokens))
    return {
        "words": len(tokens),
        "longest_overlap_words": _longest(lambda k: _has_common(h, train_h, k), upper),
        "copied_ngram_share": copied,
        "n": n,
    }


# ---------------------------------------------------------------- endings

def ends_cleanly(text: str) -> bool:
    """True when the text, whitespace stripped, ends on . ! ? or … (then optionally
    closing quotes or brackets), and not on a title such as "Mr."."""
    text = text.strip()
    m = ENDS_SENTENCE.search(text)
    return bool(m) and not ends_on_abbreviation(text[:m.start()], text[m.start()])
