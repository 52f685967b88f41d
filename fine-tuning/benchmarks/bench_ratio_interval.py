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

Run:    python fine-tuning/benchmarks/bench_ratio_interval.py [--books 1000]
Output (2026-12-07, 1,000 books a row, ~80 s on 2 cores):
        2 chunks: the book's ratio inside the interval, bootstrap 64.7%, chunks + t 95.2%
        4 chunks: ... bootstrap 83.5%, chunks + t 95.7%; 10 chunks: 89.5%, 95.2%
"""
import argparse

import numpy as np
from styletune.eval import evaluate

BOOK_LOG_RATIO = -0.15   # tuned/base 0.86, near the rehearsal's
CHUNK_SPREAD = 0.05      # standard deviation of a chunk's own log-ratio around the book's
TOKENS = 2000
BOOTSTRAP = 200


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
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
