#!/usr/bin/env python3
"""Stage 4: did the style transfer? The base and the tuned model on held-out text.

Reads   stage 1's validation and training files, the base model (`base_model`)
        and the tuned model: the merged folder from stage 3
        (`style_pipeline.merged_dir`), or base + adapter with --adapter PATH; the
        rules file (`style_pipeline.system_prompt_file`) for the chat route's row.
Writes  into `style_pipeline.evaluation.report_dir` (default outputs/style_report/):
          style_report.md     one table: each measure for base, tuned and the
                              author's own held-out text, with intervals and a verdict
          style_report.json   every figure, the settings, the prompts and continuations
          style_report.png    perplexity, Cosine Delta, sentence lengths, style shares
          continuations.md    every prompt with both models' continuations and the author's

Measures (thresholds are fixed before the run: targets and margins in the config's
`evaluation:` block, the floors for a verdict in styletune/eval/report.py):
  1. perplexity of the author's held-out completions in the training format
     (the tuned/base ratio's interval over the held-out chunks, Student's t, from two
     chunks on; with one, a block bootstrap, the ratio paired), and the
     train/validation gap (overfitting); and of the validation chunks' openings
     after the end of the chunk before (stage 1's held-out scene openings; no
     verdict from fewer than 3);
  2. continuations of each validation prefix and of later windows in the same
     chunks, same sampling and seed for both models;
  3. style distance to the author's training text: Cosine Delta over the most
     frequent words, a character n-gram classifier (author vs base-model text),
     sentence length, dialogue share, punctuation, MATTR on equal-length samples;
  4. health: repetition, copying from the training text (against the author's
     own rate), whether continuations end at a sentence end.
Nothing is downloaded: both models are the ones the config names.

Where each model loads (--device; the plan says which and why, and each load says
where it went, "sharded over 4 GPUs (80 layers)"):
  auto  (default) one GPU when the model fits there (bf16); a model too big for one
        (Llama-3.1-70B: ~160 GiB with room to run) is spread over every visible GPU,
        then CPU RAM (slow), by accelerate (device_map="auto"); without a GPU, the CPU.
  cuda  GPUs only: one GPU when the model fits there, else every visible GPU, each up
        to its free memory and never CPU RAM; an error when even all of them cannot
        hold the model.
  cpu   the CPU (float32 when RAM allows, else bf16).

Run     python fine-tuning/training/4_evaluate_style.py
        python fine-tuning/training/4_evaluate_style.py --config configs/cpu_rehearsal.yaml
        ... --adapter outputs/qlora-style-transfer/checkpoint-18   --device cpu   --force   --dry-run

What it prints and writes, stage by stage: docs/stages.md.
"""
import argparse
import sys

from styletune import cli  # beside this script; cli turns a missing package into one line


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser(__doc__)
    p.add_argument("--model", metavar="DIR", help="tuned model folder (default: style_pipeline.merged_dir)")
    p.add_argument("--adapter", metavar="PATH", help="compare base + this adapter instead of a merged folder")
    p.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto",
                   help="auto (default): one GPU when the model fits there, else every visible GPU, "
                        "then CPU RAM; CPU without a GPU. cuda: GPUs only (one, else all of them; "
                        "an error when they cannot hold it, never CPU RAM). cpu: the CPU")
    p.add_argument("--dry-run", action="store_true", help="check the inputs and show the plan; load nothing")
    p.add_argument("--force", action="store_true", help="replace an earlier report")
    return p



def main(argv=None) -> int:
    from styletune.eval import evaluate
    return cli.run_main(evaluate.run, build_parser().parse_args(argv),
                        "interrupted: an earlier report (if any) is untouched")


if __name__ == "__main__":
    sys.exit(main())
