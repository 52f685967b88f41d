"""Prefix-completion examples: where each chunk is cut, and the exact counts."""
import random
from dataclasses import dataclass

from .errors import InputError
from .sentences import Boundary, boundaries

# Candidates beyond this multiple of the upper ratio (in characters) cannot be in
# range; skipping them keeps counting cheap on long chunks.
_SEARCH_SPAN = 2.0
_MARGIN = 0.01


@dataclass
class Example:
    chunk: object       # chunks.Chunk
    cut: Boundary
    prefix_tokens: int
    completion_tokens: int
    in_range: bool
    total_tokens: int = 0  # the rendered conversation, special tokens included

    @property
    def prefix(self) -> str:
        return self.chunk.text[:self.cut.end]

    @property
    def completion(self) -> str:
        return self.chunk.text[self.cut.start:]

    @property
    def ratio(self) -> float:
        return self.prefix_tokens / (self.prefix_tokens + self.completion_tokens)

    def messages(self):
        """No system message: Continue supplies one at inference."""
        return [{"role": "user", "content": self.prefix},
                {"role": "assistant", "content": self.completion}]


def _targets(rng, k, lo, hi):
    """k target ratios, one from each equal slice of [lo, hi], so several cuts spread out."""
    return [lo + (j + rng.random()) / k * (hi - lo) for j in range(k)]


def _distance(ratio, lo, hi):
    return max(lo - ratio, ratio - hi, 0.0)


def cut_chunk(chunk, punkt, counter, ratio_range, seed, k=1):
    """Choose up to k cuts of one chunk. Same inputs and seed, same cuts.

    Preference: a clean boundary in range, then a speech/tag boundary in range,
    then the nearest boundary outside any quotation, and only when the chunk has
    none of those, a boundary inside a quotation.
    """
    lo, hi = ratio_range
    text = chunk.text
    found = boundaries(text, punkt)
    if not found:
        raise InputError(f"{chunk.path}: no sentence end where a prompt could stop (no '.', '!' "
                         "or '?' before the last paragraph). Add the missing punctuation, or "
                         "merge this chunk with its neighbour.")
    limit = max(hi * _SEARCH_SPAN * len(text), found[0].end)
    reach = [b for b in found if b.end <= limit]
    total = counter.count_texts([text])[0]
    approx = list(zip(reach, counter.count_texts([text[:b.end] for b in reach])))
    for tiers in ((0, 1), (2,)):
        cands = [(b, p) for b, p in approx if b.tier in tiers]
        if cands:
            return _choose(chunk, cands, total, counter, lo, hi, seed, k)
    # only quotation boundaries beyond the search span: the first one
    return _choose(chunk, approx[:1], total, counter, lo, hi, seed, 1)


def _choose(chunk, cands, total, counter, lo, hi, seed, k):
    text = chunk.text
    # Tokens can merge across the cut, so p + c differs from the whole by a token
    # or two: count completions exactly for every boundary near the range.
    near = [(b, p) for b, p in cands if _distance(p / total, lo, hi) <= _MARGIN]
    if not near:  # nothing in reach: the nearest boundary, reported as an exception
        near, k = [min(cands, key=lambda s: _distance(s[1] / total, lo, hi))], 1
    completions = counter.count_texts([text[b.start:] for b, _ in near])
    scored = [Example(chunk, b, p, c, lo <= p / (p + c) <= hi) for (b, p), c in zip(near, completions)]
    in_range = [e for e in scored if e.in_range]
    best_tier = min((e.cut.tier for e in in_range), default=None)
    pool = [e for e in in_range if e.cut.tier == best_tier]
    if not pool:
        return [min(scored, key=lambda e: _distance(e.ratio, lo, hi))]
    rng = random.Random(f"{seed}:{chunk.name}")
    chosen = []
    for target in _targets(rng, min(k, len(pool)), lo, hi):
        left = [e for e in pool if e not in chosen]
        chosen.append(min(left, key=lambda e: (abs(e.ratio - target), e.cut.end)))
    return sorted(chosen, key=lambda e: e.cut.end)


def count_rendered(examples, counter) -> None:
    """Fill in each example's full length as the trainer will see it."""
    rendered = [counter.render(e.messages()) for e in examples]
    for example, n in zip(examples, counter.count_rendered(rendered)):
        example.total_tokens = n
