#!/usr/bin/env python3
"""Stage 3: merge the trained LoRA adapter into the base model, and prove the merge.

Reads   the config's `base_model` and `output_dir` (where stage 2 saved the
        adapter and its checkpoint-N/ folders); the validation file, for probe text.
Writes  `style_pipeline.merged_dir` (default outputs/merged/): safetensors
        shards, the tokenizer, chat_template.jinja (the template training
        rendered), generation_config.json (the turn's end token as EOS, the
        config's sampling defaults) and merge_manifest.json (base, adapter,
        checkpoint step, validation loss, merge method, verification figures).

--auto picks the adapter: the best checkpoint by validation loss, when training
recorded one (the final adapter in output_dir when it holds the same weights, as
load_best_model_at_end leaves it); else the final adapter; else the newest
checkpoint-N by step number. It prints which and why.

QLoRA trained the adapter against NF4-rounded base weights; style_pipeline.merge_into
says what it is added to: the base loaded in NF4 exactly as training loaded it,
dequantised (`nf4`, the default; what Axolotl's merge-lora calls NF4 simulation), or
the original weights (`original`: 0.93x the held-out perplexity on the rehearsal
model, but worse joins after typed text; styletune/train/merge.py). Before anything is replaced,
the merged folder is reloaded and its logits compared with base + adapter on a
few validation sequences; it must reproduce the adapter's effect (error at most
half the effect), and that effect must stand at least 4x above this merge's
rounding noise, measured as the base alone through both routes (the 4-bit
forward, and the dequantised weights in merged_dtype). Then a short greedy
continuation is printed. A GPU is used when one has room; otherwise CPU.

A base too big for this machine's memory (Llama-3.1-70B: ~131 GiB in bf16) is merged
shard by shard instead, automatically (the plan says which route and why; --streamed
forces it): with `nf4`, each weight training quantised goes through the same NF4 round
trip; the adapter is added, and the shard is written before the next is read, so the peak is one
shard plus one layer. As such a model cannot be loaded for the logit check, a sample
of merged weights (the adapter's in the first, middle and last layers) is recomputed
independently, with bitsandbytes and PEFT, and compared; when the model does fit, the
logit check runs too. merge_manifest.json says which route and which checks ran. Only
plain LoRA merges this way: modules_to_save, DoRA or new embeddings are refused.

Run     python fine-tuning/training/3_merge_adapter.py --auto
        python fine-tuning/training/3_merge_adapter.py --auto --config configs/cpu_rehearsal.yaml
        ... --adapter outputs/qlora-style-transfer/checkpoint-18   --output DIR
        ... --dry-run   --force   --device cpu   --streamed

What it prints and writes, stage by stage: docs/stages.md.
"""
import argparse
import sys

from styletune import cli  # beside this script; cli turns a missing package into one line


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser(__doc__)
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--auto", action="store_true",
                       help="find the adapter in the config's output_dir (see above)")
    which.add_argument("--adapter", metavar="PATH", help="merge this adapter folder instead")
    p.add_argument("--output", metavar="DIR", help="merged folder (default: style_pipeline.merged_dir)")
    p.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto",
                   help="where to merge (default: a GPU with room, else CPU)")
    p.add_argument("--streamed", action="store_true",
                   help="merge shard by shard even when the whole model fits (chosen by itself when not)")
    p.add_argument("--dry-run", action="store_true",
                   help="choose the adapter and check disk and memory; load and write nothing")
    p.add_argument("--force", action="store_true", help="replace an existing merged folder")
    return p



def main(argv=None) -> int:
    from styletune.train import merge
    return cli.run_main(merge.run, build_parser().parse_args(argv),
                        "interrupted: the previous merged folder (if any) is untouched")


if __name__ == "__main__":
    sys.exit(main())
