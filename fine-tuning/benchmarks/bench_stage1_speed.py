#!/usr/bin/env python3
"""Benchmark: stage 1 over all seven novels in fine-tuning/data/corpus, beside Axolotl's
own tokenisation of the same data.

The novels (about 670k words) are cut into ~2,000-token chunk files in a
temporary book folder; then, each timed as a fresh process the way a user runs
it, `1_prepare_data.py` with the CPU rehearsal config (SmolLM2 tokenizer) and
`axolotl preprocess` on the JSONL stage 1 wrote. Medians over --repeats runs.

Run:    python fine-tuning/benchmarks/bench_stage1_speed.py [--repeats 3]
Output: stage 1 end to end: median 9.8 s (runs: ...), 469 chunks, 48.1 chunks/s, ...
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from styletune.privacy import OFFLINE_AND_UNTRACKED

HERE = Path(__file__).resolve().parent
FT = HERE.parent
from corpus_chunks import write_novel_as_chunks  # noqa: E402  (beside this script)

CORPUS = FT / "data" / "corpus"
ENV = {**os.environ, **OFFLINE_AND_UNTRACKED}


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--corpus", type=Path, default=CORPUS)
    p.add_argument("--skip-axolotl", action="store_true")
    return p.parse_args()


def timed(cmd, cwd=None):
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=ENV, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"failed: {' '.join(map(str, cmd))}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return elapsed


def main():
    args = parse_args()
    novels = sorted(args.corpus.glob("*.txt"))
    if not novels:
        sys.exit(f"no novels in {args.corpus}")
    tmp = Path(tempfile.mkdtemp(prefix="bench_stage1_"))
    book = tmp / "book"
    for novel in novels:
        write_novel_as_chunks(novel, book, first=len(list(book.glob("chunk_*"))) + 1)
    words = sum(len(p.read_text().split()) for p in book.iterdir())
    out = tmp / "out"
    cfg = tmp / "bench.yaml"
    cfg.write_text(yaml.safe_dump({
        "extends": str(FT / "configs" / "cpu_rehearsal.yaml"),
        "sequence_len": 32768,
        "datasets": [{"path": str(out / "train.jsonl")}],
        "test_datasets": [{"path": str(out / "val.jsonl")}],
        "dataset_prepared_path": str(out / "prepared"),
        "style_pipeline": {"book_dir": str(book), "report_dir": str(out / "report")},
    }))
    script = FT / "training" / "1_prepare_data.py"
    runs = [timed([sys.executable, str(script), "--config", str(cfg), "--force"])
            for _ in range(args.repeats)]
    import json
    manifest = json.loads((out / "train.manifest.json").read_text())
    n_chunks = len(manifest["inputs"])
    tokens = sum(e["total_tokens"] for e in manifest["examples"])
    med = statistics.median(runs)
    print(f"corpus: {len(novels)} novels, {words:,} words, {n_chunks} chunks, {tokens:,} tokens (SmolLM2)")
    print(f"stage 1 end to end: median {med:.1f} s (runs: {', '.join(f'{r:.1f}' for r in runs)}), "
          f"{n_chunks / med:.1f} chunks/s, {tokens / med:,.0f} tokens/s")
    in_range = sum(0.05 <= e["prefix_ratio"] <= 0.10 for e in manifest["examples"])
    print(f"cuts with prefix in 5-10%: {in_range}/{len(manifest['examples'])}")
    if not args.skip_axolotl:
        from styletune.config import effective_yaml, load_config
        axo = tmp / "axolotl.yaml"
        axo.write_text(effective_yaml(load_config(cfg)))
        axolotl = Path(sys.executable).with_name("axolotl")
        axo_runs = []
        for _ in range(args.repeats):
            shutil.rmtree(out / "prepared", ignore_errors=True)
            axo_runs.append(timed([str(axolotl), "preprocess", str(axo)], cwd=FT))
        amed = statistics.median(axo_runs)
        print(f"axolotl preprocess, same JSONL: median {amed:.1f} s "
              f"(runs: {', '.join(f'{r:.1f}' for r in axo_runs)}); stage 1 / axolotl = {med / amed:.2f}")
    shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
