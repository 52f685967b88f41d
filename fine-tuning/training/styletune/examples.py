"""Prefix-completion examples: where each chunk is cut, and the exact counts."""
import bisect
import random
from dataclasses import dataclass

from .errors import InputError
from .sentences import Boundary, boundaries

# Candidates beyond this multiple of the upper ratio (in characters) cannot be in
# range; skipping them keeps counting cheap on long chunks.
_SEARCH_SPAN = 2.0


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
        """The author's text only, no system message (the design: a system prompt is
        set in the editor at inference, and the serving template must render the
        same turns). The whitespace at the cut belongs to neither turn; the
        manifest keeps both offsets, so nothing of the chunk is lost."""
        return [{"role": "user", "content": self.prefix},
                {"role": "assistant", "content": self.completion}]


def _targets(rng, k, lo, hi):
    """k target ratios, one from each equal slice of [lo, hi], so several cuts spread out."""
    return [lo + (j + rng.random()) / k * (hi - lo) for j in range(k)]


def _distance(ratio, lo, hi):
    return max(lo - ratio, ratio - hi, 0.0)


def _boundaries_or_error(chunk, punkt, until):
    found = boundaries(chunk.text, punkt, until)
    if not found:
        raise InputError(f"{chunk.path}: no sentence end where a prompt could stop (no '.', '!' "
                         "or '?' before the last paragraph). Add the missing punctuation, or "
                         "merge this chunk with its neighbour.")
    return found


def _pick(chunk, cands, total, lo, hi, seed, k):
    """Choose up to k (boundary, prefix_tokens) from one chunk's candidates.

    Preference: a clean boundary in range, then a speech/tag boundary in range,
    then the nearest boundary outside any quotation, and only when the chunk has
    none of those, a boundary inside a quotation. Ratios here use the chunk's
    whole token count; the exact ratio is computed once the completion is counted.
    """
    ratio = lambda c: c[1] / total  # noqa: E731
    outside = [c for c in cands if c[0].tier < 2]
    cands = outside or cands
    in_range = [c for c in cands if lo <= ratio(c) <= hi]
    if not in_range:  # the nearest boundary, reported as an exception
        return [min(cands, key=lambda c: (_distance(ratio(c), lo, hi), c[0].end))]
    best = min(c[0].tier for c in in_range)
    pool = [c for c in in_range if c[0].tier == best]
    rng = random.Random(f"{seed}:{chunk.name}")
    chosen = []
    for target in _targets(rng, min(k, len(pool)), lo, hi):
        left = [c for c in pool if c not in chosen]
        chosen.append(min(left, key=lambda c: (abs(ratio(c) - target), c[0].end)))
    return sorted(chosen, key=lambda c: c[0].end)


def cut_chunks(chunks, punkt, counter, ratio_range, seed, cuts_for):
    """Cut every chunk; `cuts_for(chunk)` says how many cuts it gets. Same inputs
    and seed, same cuts. Cut points are ranked from one tokenisation of each
    chunk, then the chosen prefixes and completions are counted exactly; every
    call is batched over all chunks (the tokenizer spreads a batch over the cores)."""
    lo, hi = ratio_range
    all_ends = counter.token_ends([c.text for c in chunks])
    picks = []
    for chunk, ends in zip(chunks, all_ends):
        # Only boundaries in the first stretch of a chunk can give a prefix in range.
        found = _boundaries_or_error(chunk, punkt, until=int(hi * _SEARCH_SPAN * len(chunk.text)))
        cands = [(b, bisect.bisect_right(ends, b.end)) for b in found]
        picks += [(chunk, b) for b, _ in _pick(chunk, cands, len(ends), lo, hi, seed, cuts_for(chunk))]
    prefixes = counter.count_texts([chunk.text[:b.end] for chunk, b in picks])
    completions = counter.count_texts([chunk.text[b.start:] for chunk, b in picks])
    return [Example(chunk, b, p, c, lo <= p / (p + c) <= hi)
            for (chunk, b), p, c in zip(picks, prefixes, completions)]


def count_rendered(examples, counter) -> None:
    """Fill in each example's full length as the trainer will see it."""
    rendered = [counter.render(e.messages()) for e in examples]
    for example, n in zip(examples, counter.count_rendered(rendered)):
        example.total_tokens = n
