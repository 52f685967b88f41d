"""Stage 3: choose the adapter, merge it into the base, verify the merged folder
against base + adapter, and write it.

A QLoRA adapter was trained on the NF4-rounded base. Two merges are defensible:
- `style_pipeline.merge_into: nf4` (the default): the base loaded exactly as
  Axolotl loads it for training (bitsandbytes NF4, double quantisation, the
  config's `bnb_config_kwargs`), dequantised, and the adapter added to that: the
  very function training optimised (Axolotl's "NF4 simulation", which its
  `merge-lora` does by default for a QLoRA config, as of Axolotl 0.19);
- `original`: the adapter added to the original weights, as Axolotl's `merge-lora`
  does with `merge_method: legacy`: the base's full precision, with a correction
  learnt on another.
Measured on the rehearsal model (SmolLM2-135M, QLoRA, 45 steps; 2026-12-05,
fine-tuning/benchmarks/bench_merge_into.py and bench_joins.py): `original` reads
held-out perplexity 0.931 [0.917, 0.948] of the nf4 merge's (three held-out chunks,
lower on each), but joins the writer's typed text worse on a novel neither saw (40
prompts a row, first token right): after a typed space at a sentence end 91.6%
against 95.9% (greedy 78% against 97%), after a typed paragraph break 32.9% against
53.2%, the seed prompt with a typed space 80.7% against 98.4%. The joins are what
the writer sees, so nf4 stays the default. NF4 costs that small model much
(perplexity 32.1 -> 40.5); an 8B loses far less to it, so both gaps shrink there,
unmeasured. The check is the same either way: the merged folder reloaded against
the base it was merged into plus the adapter. A plain LoRA config (no
`load_in_4bit`) merges into the unquantised base.

That merge holds the whole model. When it does not fit (Llama-3.1-70B: ~131 GiB in
bf16), or with --streamed, merge_streamed.py does the same arithmetic shard by shard;
choose_route decides and says why.
"""
import time
from pathlib import Path

from styletune import paths
from styletune.config import EVERY, Reads, load_config
from styletune.errors import MergeError
from styletune.stage import Files, Stage, merged_model
from styletune.train.adapter import AdapterChoice, adapter_by_hand, check_adapter_base, choose_adapter
from styletune.train.merge_output import finish, fresh_partial, manifest_for, method_of, save_tokenizer_and_generation
from styletune.train.models import (
    attach_adapter,
    check_reloaded,
    dequantised_base,
    load_tokenizer,
    merges_into_nf4,
    probe_counts,
    probe_ids,
    reference_logits,
    rounding_floor,
)
from styletune.train.resources import check_resources, choose_route

# Stage 3's settings: the training config (adapter, quantisation, template) and how to save.
READS = Reads(axolotl=(EVERY,), pipeline=("merged_dtype", "merge_into", "sampling"))
STAGE = Stage("3", "3_merge_adapter.py", "merge the adapter into the base model, and verify it", READS,
              # The validation file (probe text) is not declared: it changes only with stage 1's
              # outputs, which retrain the adapter, and a declared one would rerun every recorded merge.
              inputs=lambda cfg, book: [Files(cfg.output_dir, what="the adapter")],
              outputs=lambda cfg, book: [merged_model(cfg)],
              revision=2)       # 2: tokenizer_config.json states add_bos_token (Ollama reads it)


def merge(cfg, choice: AdapterChoice, out: Path, device: str, dtype: str, say=print) -> dict:
    """Merge in memory into out.partial, verify it, then move it into place. Returns the manifest."""
    import gc

    import torch
    quantized = merges_into_nf4(cfg)
    tok = load_tokenizer(cfg, choice.path)
    probes = probe_ids(tok, cfg)
    saved = cfg.pipeline.merged_dtype

    t0 = time.time()
    say("loading the base" + (" as training saw it (NF4, bitsandbytes)" if quantized else ", unquantised"))
    base_logits, ref_logits = reference_logits(cfg, choice, device, dtype, quantized, probes)

    say("merging")
    base = dequantised_base(cfg, device, dtype, quantized)
    floor = rounding_floor(base, base_logits, probes, saved, dtype)
    merged = attach_adapter(base, choice.path).merge_and_unload()
    merged = merged.to(getattr(torch, saved))
    partial = fresh_partial(out)
    merged.save_pretrained(partial, max_shard_size="5GB")
    save_tokenizer_and_generation(cfg, tok, partial)
    del base, merged
    gc.collect()

    say("verifying the merged folder")
    verdict, sample = check_reloaded(cfg, partial, probes, ref_logits, base_logits, floor, device, dtype, tok)
    say(f"verify: {verdict.line()}")
    verification = {**verdict.__dict__, **probe_counts(probes),
                    "method": "logits: the merged folder reloaded whole against base + adapter"}
    manifest = manifest_for(cfg, choice, tok, dtype, device, verification,
                            route="in memory: the whole base loaded, merged by PEFT")
    finish(partial, out, manifest, None if verdict.passed else verdict.failure(saved), sample, t0, say)
    return manifest


# What the stage script runs (its parser is in fine-tuning/training/3_merge_adapter.py).
def run(args) -> int:
    cfg = load_config(paths.resolve_cli(args.config))
    choice = (choose_adapter(cfg.output_dir) if args.auto
              else adapter_by_hand(paths.resolve_cli(args.adapter)))
    check_adapter_base(cfg, choice)
    out = paths.resolve_cli(args.output) if args.output else cfg.pipeline.merged_dir
    print(f"config: {paths.shown(cfg.path)}")
    print(f"adapter: {paths.shown(choice.path)}\n  why: {choice.reason}")
    loss = f", validation loss {choice.eval_loss:.4f}" if choice.eval_loss is not None else ""
    print(f"  step {choice.step if choice.step is not None else 'unknown'}{loss}")
    print(f"base model: {cfg.axolotl.base_model}")
    print(f"method: {method_of(cfg)}")
    route = choose_route(cfg, args.device, args.streamed)
    print(f"route: {route.why}")
    print(f"device: {route.device} ({route.device_why}); compute {route.dtype}, "
          f"saved as {cfg.pipeline.merged_dtype}")
    if route.streamed:
        from styletune.train import shards
        shards.check_adapter(choice.path)
        print("verify: " + ("the logits of the whole merged model, and " if route.fits else "")
              + "a sample of merged weights (first, middle and last layer)")
    for line in check_resources(cfg, out, route):
        print(f"  ok  {line}")
    kept = out.exists() and not args.force
    if kept and not args.dry_run:
        raise MergeError(f"{paths.shown(out)} already exists: add --force to replace it "
                               "(the old folder stays until the new one is verified)")
    print(f"output: {paths.shown(out)}" + (" (already exists: the merge needs --force to replace it)"
                                             if kept else ""))
    if args.dry_run:
        print("dry run: nothing loaded or written")
        return 0
    if route.streamed:
        from styletune.train import merge_streamed
        merge_streamed.merge_streamed(cfg, choice, out, route.device, route.dtype, full_check=route.fits)
    else:
        merge(cfg, choice, out, route.device, route.dtype)
    size = sum(p.stat().st_size for p in out.iterdir()) / 2**30
    print(f"wrote {paths.shown(out)} ({size:.1f} GiB)")
    print(f"next: measure the style transfer, then serve it:\n  python fine-tuning/training/4_evaluate_style.py "
          f"--config {paths.typed(cfg.path)}")
    return 0
