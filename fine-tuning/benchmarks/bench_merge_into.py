#!/usr/bin/env python3
"""Which base should stage 3 add a QLoRA adapter to? Held-out perplexity of the base,
the base rounded to NF4 as training saw it, and the adapter added to each
(style_pipeline.merge_into: original / nf4), on the config's validation chunks.

The adapter is scored unmerged: PEFT on the original base is what merge_into: original
writes, and PEFT on the dequantised NF4 base what nf4 writes (tests/test_merge.py holds
the merged weights to that). Prints each model's perplexity, chunk by chunk, and the
paired block-bootstrap ratios (stage 4's own).

Run, on the rehearsal model with three held-out chunks (about 10 min on 2 cores):
    cat > /tmp/mq.yaml <<EOF
    extends: $PWD/fine-tuning/configs/cpu_rehearsal.yaml
    datasets: [{path: /tmp/mq/training.jsonl}]
    test_datasets: [{path: /tmp/mq/validation.jsonl}]
    dataset_prepared_path: /tmp/mq/prepared
    output_dir: /tmp/mq/adapter
    style_pipeline: {validation_share: 0.3, report_dir: /tmp/mq, log_dir: /tmp/mq/logs}
    EOF
    python fine-tuning/training/1_prepare_data.py --config /tmp/mq.yaml --force
    fine-tuning/training/2_train_lora.sh --config /tmp/mq.yaml
    python fine-tuning/benchmarks/bench_merge_into.py --config /tmp/mq.yaml

The joins (what the writer sees) are measured apart, on the two merged folders:
    python fine-tuning/training/3_merge_adapter.py --config /tmp/mq.yaml --auto --output /tmp/mq/nf4
    (and with `style_pipeline: {merge_into: original}` in the overlay, --output /tmp/mq/original)
    python fine-tuning/benchmarks/bench_joins.py /tmp/mq/nf4 /tmp/mq/original

Output (2026-12-05, SmolLM2-135M, 45 steps: the rehearsal config then had 4 drills a chunk, 5,782 held-out tokens):
    base                   ppl  32.07   per chunk 37.15 29.89 32.65
    base in NF4            ppl  40.47   per chunk 49.08 37.94 39.08
    original + adapter     ppl  28.47   per chunk 31.51 26.97 29.17
    NF4 + adapter          ppl  30.57   per chunk 35.74 28.60 30.61
    original + adapter / NF4 + adapter  0.931 [0.917, 0.948]  per chunk 0.882 0.943 0.953
"""
import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "training"))

from styletune import cli  # noqa: E402  (cli turns a missing package into one line)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\nRun")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="the config that trained the adapter (a QLoRA one)")
    p.add_argument("--adapter", help="the adapter folder (default: the config's output_dir)")
    p.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples (default 2000)")
    return p.parse_args()


def run(args) -> int:
    import numpy as np
    import torch
    from peft import PeftModel
    from styletune import paths
    from styletune.config import load_config
    from styletune.eval.evaluate import completion_token_nll, perplexity_ratio
    from styletune.eval.prompts import read_conversations
    from styletune.train.models import dequantised_base, is_qlora, load_tokenizer
    from transformers import AutoModelForCausalLM

    cfg = load_config(paths.resolve_cli(args.config))
    if not is_qlora(cfg):
        sys.exit(f"{args.config}: not a QLoRA config; a LoRA adapter has one base to go on")
    adapter = paths.resolve_cli(args.adapter) if args.adapter else cfg.output_dir
    validation = read_conversations(cfg.validation_path, "validation data")
    tok = load_tokenizer(cfg, adapter)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = "bfloat16" if device == "cuda" else "float32"

    def scored(model):
        model.eval()
        return [completion_token_nll(model, tok, c) for c in validation]

    base = AutoModelForCausalLM.from_pretrained(cfg.base_model, dtype=getattr(torch, dtype), device_map=device)
    nll = {"base": scored(base)}
    nll["original + adapter"] = scored(PeftModel.from_pretrained(base, str(adapter)))
    nf4 = dequantised_base(cfg, device, dtype, True)
    nll["base in NF4"] = scored(nf4)
    nll["NF4 + adapter"] = scored(PeftModel.from_pretrained(nf4, str(adapter)))
    print(f"{len(validation)} held-out chunks, {sum(len(n) for n in nll['base']):,} tokens; "
          f"adapter {paths.shown(adapter)}")
    for name in ("base", "base in NF4", "original + adapter", "NF4 + adapter"):
        each = " ".join(f"{np.exp(n.mean()):.2f}" for n in nll[name])
        print(f"{name:22s} ppl {np.exp(np.concatenate(nll[name]).mean()):6.2f}   per chunk {each}")
    for a, b in (("original + adapter", "NF4 + adapter"), ("original + adapter", "base"),
                 ("NF4 + adapter", "base")):
        r = perplexity_ratio(nll[a], nll[b], args.bootstrap, 0)
        print(f"{a} / {b}  {r['ratio']:.3f} [{r['ci'][0]:.3f}, {r['ci'][1]:.3f}]  per chunk "
              + " ".join(f"{x:.3f}" for x in r["per_chunk"]))
    return 0


if __name__ == "__main__":
    sys.exit(cli.run_main(run, parse_args()))
