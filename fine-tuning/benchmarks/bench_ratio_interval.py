#!/usr/bin/env python3
"""Benchmark: how often stage 4's interval for tuned/base perplexity holds the book's
ratio, on simulated books (no model).

Each book's held-out chunks have their own tuned/base log-ratio, the book's plus a
chunk's own (standard deviation 0.05: scenes differ), and 2,000 tokens of per-token
noise each. For 2 to 10 chunks, the share of books whose interval holds the book's
ratio, for the two-level bootstrap of chunks and 64-token blocks (stage 4's interval
before 2026-12-07, and still with one held-out chunk) and for the interval over the
chunks with Student's t (evaluate.chunk_ratio_interval, from two chunks). A 95%
interval should hold it 95 times in 100.

Then the paired verdicts of the classifier row (attribution.paired_share_difference):
books of 2 to 10 held-out chunks of 8 prompts each, base and tuned labelled the
author's with a chunk's own pull on the difference (standard deviation 0.2) and no
true difference; how often each interval calls one, bootstrapping the prompts alone
or taking the chunks as units. A 95% interval should call one 5 times in 100.

Run:    python fine-tuning/benchmarks/bench_ratio_interval.py [--books 1000]
Output (2026-12-07, 1,000 books a row, ~80 s on 2 cores):
        2 chunks: the book's ratio inside the interval, bootstrap 64.7%, chunks + t 95.2%
        4 chunks: ... bootstrap 83.5%, chunks + t 95.7%; 10 chunks: 89.5%, 95.2%
        3 chunks x 8 prompts, no true difference: a difference called, prompts alone 15.0%, chunks + t 5.2%
        (400 books: 2 chunks 13.8% / 9.8%, 5 chunks 10.8% / 5.8%, 10 chunks 11.5% / 5.8%)
"""
import argparse

import numpy as np
from styletune.eval import evaluate
from styletune.eval.attribution import paired_share_difference
from styletune.settings import Evaluation

BOOK_LOG_RATIO = -0.15   # tuned/base 0.86, near the rehearsal's
CHUNK_SPREAD = 0.05      # standard deviation of a chunk's own log-ratio around the book's
TOKENS = 2000
BOOTSTRAP = 200
PROMPTS_PER_CHUNK = Evaluation.model_fields["prompts_per_chunk"].default   # stage 4's, 8


def bootstrap_interval(tuned, base, seed: int) -> tuple[float, float]:
    """The two-level bootstrap: the chunks with replacement, then 64-token blocks within each."""
    t, b = evaluate._blocks(tuned), evaluate._blocks(base)
    boot = [np.exp((t[i, 0].sum() - b[i, 0].sum()) / t[i, 1].sum())
            for i in evaluate._resampled_blocks(tuned, BOOTSTRAP, seed)]
    return float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--books", type=int, default=1000, help="simulated books a row (default 1000)")
    args = p.parse_args(argv)
    rng, truth = np.random.default_rng(0), np.exp(BOOK_LOG_RATIO)
    for chunks in (2, 4, 5, 6, 10):
        held = {"bootstrap": 0, "chunks + t": 0}
        for book in range(args.books):
            base = [rng.exponential(2.0, TOKENS) for _ in range(chunks)]
            tuned = [b + BOOK_LOG_RATIO + rng.normal(0, CHUNK_SPREAD) + rng.normal(0, 0.5, b.size) for b in base]
            for name, (low, high) in (("bootstrap", bootstrap_interval(tuned, base, book)),
                                      ("chunks + t", evaluate.chunk_ratio_interval(tuned, base))):
                held[name] += low <= truth <= high
        print(f"{chunks} chunks: the book's ratio inside the interval, "
              + ", ".join(f"{name} {n / args.books:.1%}" for name, n in held.items()), flush=True)
    for chunks in (2, 3, 5, 10):
        called = {"prompts alone": 0, "chunks + t": 0}
        groups = [c for c in range(chunks) for _ in range(PROMPTS_PER_CHUNK)]
        for book in range(args.books):
            base_p = np.clip(0.5 + rng.normal(0, 0.2, chunks), 0.02, 0.98)
            tuned_p = np.clip(base_p + rng.normal(0, 0.2, chunks), 0.02, 0.98)
            base, tuned = ((rng.random((chunks, PROMPTS_PER_CHUNK)) < p[:, None]).astype(int).ravel().tolist()
                           for p in (base_p, tuned_p))
            for name, by in (("prompts alone", None), ("chunks + t", groups)):
                low, high = paired_share_difference(tuned, base, groups=by, seed=book, n_boot=BOOTSTRAP)["ci"]
                called[name] += low > 0 or high < 0
        print(f"{chunks} chunks x {PROMPTS_PER_CHUNK} prompts, no true difference: a difference called, "
              + ", ".join(f"{name} {n / args.books:.1%}" for name, n in called.items()), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
