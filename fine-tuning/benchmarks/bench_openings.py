#!/usr/bin/env python3
"""Do scene openings teach how the writer opens a scene? An A/B on a real novel, on CPU.

The War of the Worlds goes through stage 0 (chunks at chapter and scene boundaries,
the headings and blank lines between them recorded), its last chapters are held out
as bench_style_transfer.py holds them out, and the first --train-chunks of the rest
train (the others are left out, to keep the arms short). Two LoRA runs of
SmolLM2-135M-Instruct, identical but for `scene_openings` (join drills off in both:
bench_style_transfer.py measures those), each the repository's own stages 1 and 2,
for the same number of optimiser steps on the same schedule (--epochs of the arm with
openings; the arm without sees its examples more often in as many steps), the final
weights of each (one evaluation, at the end). Then each model's loss per token on
text neither run trained on:

- held-out openings: the rows stage 1 holds out with the validation examples (the
  last words of one scene or chapter, the heading or blank lines after it, the next
  one's opening up to its first cut);
- held-out completions: the validation examples, what stage 4's perplexity reads.

Run:    python fine-tuning/benchmarks/bench_openings.py [--train-chunks 40] [--epochs 1] [--work DIR]
Output (2026-12-06, docs/benchmarks.md; 43 min on 2 cores):
        held-out openings (11 rows, 598 tokens): base 3.925, without openings 3.704, with 3.669
            nats/token; lower with openings on 10 of 11 rows
        held-out completions (12 rows, 7,911 tokens): base 3.574, without openings 3.436, with 3.452
            nats/token; lower with openings on 0 of 12 rows
"""
import argparse
import json
import sys
import tempfile
from pathlib import Path

import bench_style_transfer as bench
import yaml

ARMS = ("without", "with")


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--train-chunks", type=int, default=40, help="chunks trained, from the start (default 40)")
    p.add_argument("--epochs", type=int, default=1,
                   help="epochs of the arm with openings; the other trains as many steps (default 1)")
    p.add_argument("--learning-rate", type=float, default=0.0005)
    p.add_argument("--work", help="working folder (default: a new temporary folder, kept)")
    p.add_argument("--evaluate-only", action="store_true", help="score an earlier --work folder's two arms again")
    return p.parse_args()


def arm_config(work: Path, args, arm: str, held: list[str], excluded: list[str], steps: int | None = None) -> Path:
    """bench_style_transfer's config in work/<arm>, reading the shared chunk folder;
    with `steps`, that many optimiser steps, evaluated and saved once at the end."""
    style_args = argparse.Namespace(max_tokens=900, epochs=args.epochs, learning_rate=args.learning_rate,
                                    join_drills=0, packing=False)
    (work / arm).mkdir(parents=True, exist_ok=True)
    path = bench.write_config(work / arm, style_args, held)
    cfg = yaml.safe_load(path.read_text(encoding="utf-8"))
    cfg["style_pipeline"].update(book_dir=str(work / "chunks"), exclude_chunks=excluded,
                                 scene_openings=arm == "with")
    if steps:
        cfg.update(max_steps=steps, num_epochs=100, evals_per_epoch=None, saves_per_epoch=None,
                   eval_strategy="steps", save_strategy="steps", eval_steps=steps, save_steps=steps)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    return path


def rows_in(path: Path) -> int:
    return sum(1 for line in path.read_text(encoding="utf-8").splitlines() if line.strip())


def held_out_rows(cfg):
    """(the validation chunks' opening rows, validation examples), stage 1's own. The
    chunks just before the held-out block are left out (a gap no row crosses) unless
    --train-chunks reaches them; then the first held-out chunk's opening is a row too."""
    from styletune.data.prepare import prepare_data
    result = prepare_data(cfg)
    return result.validation_openings, result.validation


def nll_per_row(model, tokenizer, conversations) -> list[tuple[float, int]]:
    """(summed loss in nats, labelled tokens) of each (messages, ends_turn), tokenised
    and labelled as training does."""
    import torch
    import torch.nn.functional as F
    from styletune.data.tokens import IGNORE_INDEX, training_ids
    out = []
    with torch.no_grad():
        for messages, ends_turn in conversations:
            ids = training_ids(tokenizer, messages, ends_turn)
            x = torch.tensor([ids["input_ids"]])
            labels = torch.tensor(ids["labels"][1:])
            logits = model(x).logits[0, :-1].float()
            loss = F.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX, reduction="sum")
            out.append((loss.item(), int((labels != IGNORE_INDEX).sum())))
    return out


def score(work: Path, configs: dict) -> dict:
    from peft import PeftModel
    from styletune.config import load_config
    from styletune.train.models import training_template
    from transformers import AutoModelForCausalLM, AutoTokenizer
    cfg = load_config(configs["with"])
    rows, validation = held_out_rows(cfg)
    sets = {"held-out openings": [(r.messages(), False) for r in rows],
            "held-out completions": [(e.messages(), True) for e in validation]}
    tokenizer = AutoTokenizer.from_pretrained(cfg.base_model)
    tokenizer.chat_template = training_template(cfg)
    scores = {}
    for name in ("base", *ARMS):
        model = AutoModelForCausalLM.from_pretrained(cfg.base_model, dtype="float32")
        if name != "base":
            model = PeftModel.from_pretrained(model, str(load_config(configs[name]).output_dir))
        model.eval()
        scores[name] = {what: nll_per_row(model, tokenizer, convs) for what, convs in sets.items()}
    (work / "scores.json").write_text(json.dumps(scores, indent=1))
    return scores


def summary(scores: dict) -> list[str]:
    lines = []
    for what in scores["base"]:
        mean = {m: sum(s for s, _ in scores[m][what]) / sum(n for _, n in scores[m][what]) for m in scores}
        rows = scores["base"][what]
        better = sum(w[0] < o[0] for w, o in zip(scores["with"][what], scores["without"][what]))
        lines.append(f"{what} ({len(rows)} rows, {sum(n for _, n in rows):,} tokens): base {mean['base']:.3f}, "
                     f"without openings {mean['without']:.3f}, with {mean['with']:.3f} nats/token; "
                     f"lower with openings on {better} of {len(rows)} rows")
    return lines


def main():
    args = parse_args()
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="bench_openings_"))
    work.mkdir(parents=True, exist_ok=True)
    log, times, py = work / "bench.log", {}, sys.executable
    print(f"working folder: {work} (log: {log})", flush=True)
    configs = {arm: work / arm / "bench.yaml" for arm in ARMS}
    if not args.evaluate_only:
        first = arm_config(work, args, "without", [], [])
        bench.run_stage("stage 0 (segment)", [py, bench.TRAINING / "0_segment_manuscript.py", bench.NOVEL,
                                              "--config", first, "--out", work / "chunks", "--force"], times, log)
        held = bench.held_out_chunks(work / "chunks", 0.10)
        names = sorted(p.name for p in (work / "chunks").glob("chunk_*.txt"))
        excluded = [n for n in names if n not in held][args.train_chunks:]
        print(f"  {len(names)} chunks: {len(names) - len(held) - len(excluded)} train, {len(held)} held out "
              f"({held[0]} ...), {len(excluded)} left out", flush=True)
        for arm in ARMS:
            arm_config(work, args, arm, held, excluded)
            bench.run_stage(f"{arm}: stage 1", [py, bench.TRAINING / "1_prepare_data.py", "--config",
                                                configs[arm], "--force"], times, log)
        batch = yaml.safe_load(configs["with"].read_text())["gradient_accumulation_steps"]
        steps = -(-rows_in(work / "with" / "data" / "train.jsonl") // batch) * args.epochs
        print(f"  {steps} optimiser steps each ({rows_in(work / 'without' / 'data' / 'train.jsonl')} rows "
              f"without openings, {rows_in(work / 'with' / 'data' / 'train.jsonl')} with)", flush=True)
        for arm in ARMS:
            arm_config(work, args, arm, held, excluded, steps)
            bench.run_stage(f"{arm}: stage 2", ["bash", bench.TRAINING / "2_train_lora.sh", "--config",
                                                configs[arm]], times, log)
    print()
    for line in summary(score(work, configs)):
        print(line)
    print(f"total: {sum(times.values()) / 60:.1f} min; scores: {work / 'scores.json'}")


if __name__ == "__main__":
    main()
