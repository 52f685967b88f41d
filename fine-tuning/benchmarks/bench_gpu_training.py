#!/usr/bin/env python3
"""Benchmark: stage 2 on the writer's shape of run, on a GPU, with no download.

Builds a model with random weights shaped like Llama-3.1-8B-Instruct (hidden
4096, 32 layers, 8 KV heads, MLP 14336, vocabulary 128256; ~16 GB in bf16 on
disk; `--model DIR` keeps it there for the next run), a book of 40 chunks of about 2,300 tokens from a public-domain novel
(36 + 4 examples: a little more than the writer's book, 35 chunks of ~2,000 tokens,
whose 31 examples the preflight's notes count), runs stage 1 and then `2_train_lora.sh` with the
main config (only the model, its tokenizer-driven keys and the file locations
overridden) for --steps optimiser steps, and prints trainable tokens/s, peak GPU
memory (allocated and reserved; over 28 GiB flagged) and the projected time for
the full 36 x 3-epoch run. The book's examples alone: stage 1's join drills and
scene openings are off here. They are most of a real run's rows but about a tenth
of its tokens, and a step holding drills alone (about half the steps, the longest
rows first) times the per-step overhead, not the speed on prose, which is what the
profiles change; the projection counts the examples' tokens, so a real run's drill
steps come on top of it. Each profile's figures print as soon as it has run, so a
run cut short by a time limit keeps those before it.

Peak memory is taken at the longest example sequence_len allows: one of the 36
training chunks ends at the sentence that makes stage 1's longest example of it
just fit sequence_len, and rows are grouped by length (group_by_length; with one
row a micro-batch nothing more is padded), which puts the longest row in the
first, untimed step. The bench checks the first step's token count, says whether
the peak covers it, and prints the memory plan (gpu_plan) beside each peak.

Targets (issue 4, on an H100 standing in for the RTX 5090): >= 3,000 tokens/s,
peak memory <= 20 GB, full run <= 5 minutes. Issue 23: a profile >= 1.5x main at
<= 28 GiB. Grouping by length orders the timed steps long rows first, so judge a
profile by its ratio to main in the same run, not by main's earlier random-order
4,450 tokens/s.

Profiles (`--compare PROFILE...`): overlays on the config, run one after another on
the same model and data, each printed with its tokens/s, peak memory, loss at each
step and its speed relative to the first that ran; one that fails is reported and
the rest still run (exit 1). Every profile in PROFILES is UNMEASURED
until a GPU run prints its figures; the main config changes only where one shows
the win. `--set KEY=VALUE` (repeatable, VALUE read as YAML) overrides any key for
every profile.

Run:    python fine-tuning/benchmarks/bench_gpu_training.py [--steps 12]
        python fine-tuning/benchmarks/bench_gpu_training.py --compare main liger packing
        python fine-tuning/benchmarks/bench_gpu_training.py --compare all   (every profile)
        python fine-tuning/benchmarks/bench_gpu_training.py --set micro_batch_size=2
        python fine-tuning/benchmarks/bench_gpu_training.py --config configs/multi_gpu.yaml --gpus 1
        (the FSDP overlay in one process: shows that config trains; --gpus N on N GPUs)
        python fine-tuning/benchmarks/bench_gpu_training.py --shape tiny --cpu [--gpus 2]
        (a smoke run of the same path on CPU with a 2-layer model, minutes; --gpus 2
        runs two CPU processes through Axolotl's distributed path)
Dated results from real runs: docs/benchmarks.md.
"""
import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml
from styletune import paths
from styletune.config import load_config
from styletune.data.examples import example_sizes
from styletune.data.prepare import planned_outputs, prepare_data
from styletune.data.tokens import load_counter
from styletune.fileio import normalise, read_text, write_outputs
from styletune.text.gutenberg import gutenberg_body
from styletune.text.sentences import paragraph_spans, sentence_ends
from styletune.train import gpu_plan
from styletune.train.preflight import TOKEN_MEAN_PLUGIN

HERE = Path(__file__).resolve().parent
FT = HERE.parent

from corpus_chunks import paragraph_chunks  # noqa: E402  (beside this script)

SMOL = paths.REHEARSAL_MODEL
NOVEL = FT / "data" / "corpus" / "stoker_dracula.txt"  # long enough for 40 chunks
SHAPES = {
    "llama-3.1-8b": gpu_plan.LLAMA31_8B,   # the plan's shape: its estimate prints beside the peak
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, vocab_size=49152, tie_word_embeddings=False),
}
WRITER = {"train": 36, "validation": 4, "epochs": 3}
LONG_CHUNK = "chunk_001_bench.txt"   # its longest example just fits sequence_len
# chunks held out, one in each quarter, never the long one: the peak needs it in training
VALIDATION = [f"chunk_{i:03d}_bench.txt" for i in (10, 20, 30, 40)]
FIT_MARGIN = 16   # tokens under sequence_len: stage 1's punkt, trained on the whole book, may cut elsewhere
CARD_GIB = 28   # a profile must fit the writer's 32 GB card with room (issue 23)
# Speed overlays Axolotl supports for QLoRA on one GPU, all UNMEASURED (issue 23).
# None changes what the model learns: the same examples, the same loss over the
# completion, the same global batch (micro-batch x accumulation = the main config's 4);
# packing alone puts more rows in each of those 4, which changes the recipe
# (CHANGES_ROWS_PER_STEP).
PROFILES = {
    "main": {},
    # Liger's fused kernels: RMSNorm and a cross-entropy fused with lm_head that never
    # builds the 128k-vocabulary logits in full. Its SwiGLU and RoPE are asked for but
    # do not run beside Axolotl's Triton LoRA kernels, which Axolotl 0.19 turns on by
    # itself on one GPU (tests/test_distributed.py): those replace each MLP's forward,
    # and the attention patch copies the rotary function before Liger swaps it.
    "liger": {"plugins": [TOKEN_MEAN_PLUGIN, "axolotl.integrations.liger.LigerPlugin"], "liger_rms_norm": True,
              "liger_glu_activation": True, "liger_rope": True, "liger_fused_linear_cross_entropy": True},
    # all four of Liger's kernels, Axolotl's LoRA kernels off: which set is faster
    "liger-no-lora-kernels": {"plugins": [TOKEN_MEAN_PLUGIN, "axolotl.integrations.liger.LigerPlugin"],
                              "liger_rms_norm": True, "liger_glu_activation": True, "liger_rope": True,
                              "liger_fused_linear_cross_entropy": True,
                              "lora_mlp_kernel": False, "lora_qkv_kernel": False, "lora_o_kernel": False},
    # 4 examples a step, of similar lengths (less padding), same global batch
    "batch4-grouped": {"micro_batch_size": 4, "gradient_accumulation_steps": 1, "group_by_length": True},
    # memory for speed: no recomputation in the backward pass
    "no-checkpointing": {"gradient_checkpointing": False},
    "compile": {"torch_compile": True},
    # rows packed into sequences of up to sequence_len (Axolotl pads each to it): the
    # join drills, most of the rows and few of the tokens, ride with the examples
    # instead of taking a step each. SDPA keeps them apart (position_ids restart at
    # each row; tests/test_packing.py). It changes the recipe: ~5x fewer optimiser
    # updates an epoch, and a drill shares its step's loss with examples. A speed-up
    # here is only half the answer: a real run must show the same validation loss
    # and Joins (stage 4), perhaps with more epochs or another learning rate.
    "packing": {"sample_packing": True, "pad_to_sequence_len": True},
}
# The two that should add up: four rows share each dequantisation of the 4-bit weights,
# and the fused cross-entropy never holds their 128k-wide logits. gpu_plan at 4 rows of
# 4,096 tokens: batch4-grouped 31.4 GiB (15.7 of it logits: over the 28 GiB),
# batch4-liger 16.0 GiB. Unmeasured.
PROFILES["batch4-liger"] = {**PROFILES["batch4-grouped"], **PROFILES["liger"]}
# What a profile's plugins need beyond Axolotl's own dependencies (a GPU image given
# only gpu-wheels.sh's wheels lacks Liger's): checked before any model is built
PLUGIN_PACKAGES = {"axolotl.integrations.liger": "liger_kernel"}
# The profiles that change how many rows a step holds (the learning recipe, not the
# rows: tests/test_packing.py), and the keys that do it.
CHANGES_ROWS_PER_STEP = {"packing": tuple(PROFILES["packing"])}


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=12,
                   help="optimiser steps (at least 2: Axolotl gives the first no rate, and the median "
                        "leaves out the second's, warm-up, when there are more)")
    p.add_argument("--shape", choices=SHAPES, default="llama-3.1-8b")
    p.add_argument("--cpu", action="store_true", help="smoke run on CPU (use with --shape tiny)")
    p.add_argument("--chars-per-chunk", type=int, default=9500, help="~2,300 tokens of prose")
    p.add_argument("--keep", action="store_true", help="keep the temporary folder")
    p.add_argument("--model", type=Path, metavar="DIR",
                   help="the random model's folder: built there if it holds none, reused if it "
                        "holds one of this --shape (gpu_check.sh builds the 8B once for all its runs)")
    p.add_argument("--config", help="the config the benchmark extends, relative to fine-tuning/ "
                                    "(default: the main config; with --cpu, the rehearsal one)")
    p.add_argument("--gpus", type=int, help="processes, passed to 2_train_lora.sh --gpus")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key for every profile (VALUE is YAML); repeatable")
    p.add_argument("--compare", nargs="+", choices=[*PROFILES, "all"], default=["main"], metavar="PROFILE",
                   help=f"profiles to run one after another ({', '.join(PROFILES)}), or all of "
                        "them; default: main")
    args = p.parse_args()
    if "all" in args.compare:
        args.compare = list(PROFILES)
    try:
        args.overrides = parse_sets(args.set)
    except ValueError as err:
        p.error(str(err))
    if args.steps < 2:
        p.error("--steps must be at least 2 (Axolotl gives the first step no rate)")
    return args


def missing_packages(overlay: dict) -> list[str]:
    """The packages the overlay's plugins need that this Python cannot import."""
    import importlib.util
    needed = {package for plugin in overlay.get("plugins", []) for prefix, package in PLUGIN_PACKAGES.items()
              if plugin.startswith(prefix)}
    return sorted(package for package in needed if importlib.util.find_spec(package) is None)


def parse_sets(items: list[str]) -> dict:
    """--set KEY=VALUE pairs as a dict, each VALUE read as YAML (true, 4, [a, b])."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set {item!r}: expected KEY=VALUE")
        out[key.strip()] = yaml.safe_load(value)
    return out


def random_model(dest: Path, shape: dict) -> Path:
    """A Llama with random weights and SmolLM2's tokenizer (ids stay below its
    49,152-token vocabulary, so any vocabulary size works)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(**shape, max_position_embeddings=8192, rope_theta=500000.0,
                         bos_token_id=1, eos_token_id=2)
    torch.manual_seed(0)
    torch.set_default_dtype(torch.bfloat16)  # build in bf16: half the RAM of fp32 for 8B
    # Random init of 8B weights on CPU runs on one thread (~5 min measured); on the
    # GPU it takes seconds. Training loads the saved copy in its own process either way.
    device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        with torch.device(device):
            model = LlamaForCausalLM(config)
    finally:
        torch.set_default_dtype(torch.float32)
    model.save_pretrained(dest, safe_serialization=True)
    del model  # free the GPU for the training process (the cache too)
    if device == "cuda":
        torch.cuda.empty_cache()
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(SMOL / name, dest / name)
    return dest


def reusable_model(folder: Path, shape: str) -> Path | None:
    """`folder` when it holds a saved random model of this shape, else None. A folder
    that holds something else is refused, not overwritten."""
    config = folder / "config.json"
    if not config.is_file():
        if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
            sys.exit(f"--model {folder}: not a folder, or not empty and holds no model; name an empty or new folder")
        return None
    if not (folder / "tokenizer_config.json").is_file():   # copied last: a build cut short
        sys.exit(f"--model {folder}: an unfinished model (a build cut short?); delete the folder")
    saved = json.loads(config.read_text(encoding="utf-8"))
    if any(saved.get(k) != v for k, v in SHAPES[shape].items()):
        sys.exit(f"--model {folder}: holds a model of another shape than {shape}; name another folder")
    return folder


def writer_sized_book(dest: Path, chars: int, cfg) -> None:
    """The writer's 40 chunks of about `chars` characters (whole paragraphs), the first
    of them as long as sequence_len allows (longest_fitting)."""
    body, _ = gutenberg_body(normalise(read_text(NOVEL)))
    chunks = [c for c in paragraph_chunks(normalise(body), chars) if len(c) > 0.8 * chars]
    needed = 1 + WRITER["train"] + WRITER["validation"]   # two of them make the long one
    if len(chunks) < needed:
        sys.exit(f"--chars-per-chunk {chars}: {NOVEL.name} gives {len(chunks)} chunks of that size, "
                 f"the bench needs {needed}; name a smaller size")
    chunks = [longest_fitting(chunks[0] + "\n\n" + chunks[1], cfg),
              *chunks[2:1 + WRITER["train"] + WRITER["validation"]]]
    dest.mkdir(parents=True)
    for i, text in enumerate(chunks, 1):
        (dest / f"chunk_{i:03d}_bench.txt").write_text(text + "\n", encoding="utf-8")


def longest_fitting(text: str, cfg) -> str:
    """The longest lead of `text`, ending at a sentence end, whose longest stage-1
    example (counted by stage 1's own builder, `example_sizes`) fits sequence_len less
    FIT_MARGIN: a binary search over the sentence ends, the example growing with the text."""
    ends = sorted({a + end for a, b in paragraph_spans(text)
                   for end in [*sentence_ends(text[a:b]), b - a]})
    counter, limit = load_counter(cfg), cfg.sequence_len - FIT_MARGIN
    longest = lambda i: max(example_sizes([(LONG_CHUNK, text[:ends[i]])], None,  # noqa: E731
                                          counter, cfg.pipeline).values())
    lo, hi = 0, len(ends) - 1   # the first sentence fits (stage 1 checks); find the last end that does
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if longest(mid) <= limit else (lo, mid - 1)
    return text[:ends[lo]]


def bench_config(tmp: Path, model: Path, args, profile: str = "main") -> Path:
    """The benchmark's config: the chosen config with the model, the files, the
    profile's overlay and --set on top. Stage 1's files are shared (no profile
    changes them: tests/test_distributed.py), each profile gets its own output folders."""
    base = FT / (args.config or "configs/" + ("cpu_rehearsal.yaml" if args.cpu
                                               else "qlora_style_transfer.yaml"))
    out = tmp / "out" / profile
    rehearsal = load_config(FT / "configs" / "cpu_rehearsal.yaml").data
    data = {
        "extends": str(base),
        "base_model": str(model),
        # SmolLM2's tokenizer: ChatML's turn tokens exist in it, Llama 3's do not; the
        # rehearsal's template is the main one's continuation layout on ChatML's tokens
        "chat_template": rehearsal["chat_template"],
        "chat_template_jinja": rehearsal["chat_template_jinja"],
        "special_tokens": {"pad_token": "<|im_end|>", "eos_token": "<|im_end|>"},
        "datasets": [{"path": str(tmp / "data" / "train.jsonl")}],
        "test_datasets": [{"path": str(tmp / "data" / "val.jsonl")}],
        "dataset_prepared_path": str(out / "prepared"),
        "output_dir": str(out / "adapter"),
        "max_steps": args.steps,
        "eval_strategy": "no", "save_strategy": "no", "load_best_model_at_end": False,
        "eval_steps": None, "save_steps": None, "evals_per_epoch": None, "saves_per_epoch": None,
        "style_pipeline": {"book_dir": str(tmp / "book"), "report_dir": str(out / "report"),
                           "log_dir": str(out / "logs"), "validation_chunks": VALIDATION,
                           # the examples alone: the speed on prose (the docstring says why)
                           "join_drills_per_chunk": 0, "scene_openings": False},
        # rows in length order within random groups, the longest first: the first
        # (untimed) step holds the longest example, so the peak covers it. With one
        # row a micro-batch nothing is padded; packing profiles pack their own way
        # (every packed row padded to sequence_len).
        "group_by_length": True,
        **PROFILES[profile], **args.overrides,
    }
    path = tmp / f"bench_{profile}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


# A logged figure as transformers prints it: quoted, 4 significant digits, so 1.023e+04
# from 10,000 up; token counts unquoted
NUMBER = r"'?([0-9.]+(?:e[+-]?[0-9]+)?)"


def train_once(cfg_path: Path, args) -> dict:
    """One stage-2 run; its per-step tokens/s, peak memory and losses from the log."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    gpus = ["--gpus", str(args.gpus)] if args.gpus else []
    proc = subprocess.run(["bash", str(FT / "training" / "2_train_lora.sh"), "--config",
                           str(cfg_path), *gpus], capture_output=True, text=True, env=env)
    log = proc.stdout + proc.stderr
    if proc.returncode != 0:   # the other profiles still run: a GPU lease is short
        print(log[-3000:])
        lines = [line.strip() for line in log.splitlines() if line.strip()]
        errors = [line for line in lines if re.match(r"[\w.]*(Error|Exception)\b", line)]
        # the cause, not the launcher's wrapper around it; running out of memory first
        own = [line for line in errors if not re.match(r"[\w.]*(CalledProcessError|ChildFailedError)", line)]
        cause = [line for line in errors if "OutOfMemoryError" in line] or own or errors or lines[-1:] or [""]
        return {"failed": f"exit {proc.returncode}: {cause[-1][:200]}"}
    logged = lambda key: [float(x) for x in re.findall(key + NUMBER, log)]  # noqa: E731
    if not logged(r"'tokens/train_per_sec_per_gpu': "):
        print(log[-3000:])
        return {"failed": "trained, but Axolotl's log holds no tokens/s (its format changed?)"}
    return {"rates": logged(r"'tokens/train_per_sec_per_gpu': "),
            "memory": logged(r"'memory/max_allocated \(GiB\)': "),
            # what the card must hold: the allocator's reserve, not only what tensors use
            "reserved": logged(r"'memory/device_reserved \(GiB\)': "),
            "losses": logged(r"\{'loss': "),
            # token slots (padding included) of all steps so far, one figure a step
            "slots": logged(r"'tokens/total': ")}


def planned_peak(cfg, longest: int, args) -> float | None:
    """gpu_plan's figure for this config at its longest sequence; None where the plan's
    terms do not hold (gpu_plan.checkpointed)."""
    keys = cfg.axolotl
    if not gpu_plan.checkpointed(keys):
        return None
    plan = gpu_plan.memory_plan(SHAPES[args.shape], keys, args.gpus or 1, gpu_plan.longest_sequence(longest, keys))
    return plan.need_per_gpu_gib


def covers(run: dict) -> str:
    """Whether the first step held the longest training row, so the peak is at it. With
    one micro-batch a step its token slots (rows x the padded length) say so; with
    several they are only consistent with it (the sampler's order is the evidence)."""
    if not run["slots"]:
        return f"{run['longest']:,} tokens; unknown whether the first step held it (no tokens/total in the log)"
    first, rows, steps = run["slots"][0], run["micro_batch"], run["accumulation"]
    said = (f"{run['longest']:,} tokens (sequence_len {run['sequence_len']:,}); the first step held "
            f"{first:,.0f} token slots in {steps} micro-batch{'es' if steps > 1 else ''}: ")
    if first < rows * run["longest"]:
        return said + "NOT in the first step, the peak may be under it"
    if steps == 1:
        return said + "the peak covers it"
    return said + ("consistent with it (packed rows: the packer's own order)" if run.get("packed") else
                   "consistent with it (rows grouped by length, the longest first)")


def loss_gap(run: dict, profile: str, base: dict, base_profile: str) -> float | None:
    """The largest step-by-step difference between two loss curves, where the steps hold
    the same rows: the same rows a step (micro-batch x accumulation; grouping by length
    orders them alike), neither profile packing. None where they do not."""
    rows = lambda r: r["micro_batch"] * r["accumulation"]  # noqa: E731
    if rows(run) != rows(base) or {profile, base_profile} & set(CHANGES_ROWS_PER_STEP):
        return None
    pairs = list(zip(run["losses"], base["losses"]))
    return max((abs(a - b) for a, b in pairs), default=None)


def device_name(args, torch) -> str:
    return "CPU" if args.cpu else torch.cuda.get_device_name(0)


def report_header(args, torch) -> None:
    print(f"device: {device_name(args, torch)} | shape: {args.shape} | steps: {args.steps} | config: "
          f"{args.config or ('configs/cpu_rehearsal.yaml' if args.cpu else 'the main config')} | processes: {args.gpus or 'default'} | "
          f"--set: {args.overrides or 'none'}", flush=True)


def report(profile: str, runs: dict, args, torch) -> None:
    """One profile's figures, as soon as it has run: its speed relative to the first
    profile that ran and how far its loss curve strays from that profile's."""
    device, run = device_name(args, torch), runs[profile]
    if "failed" in run:
        print(f"[{profile}] FAILED, {run['failed']}" + ("" if "not installed" in run["failed"]
                                                        else " (the log's tail is printed above)"))
        print(json.dumps({"profile": profile, "device": device, "failed": run["failed"]}), flush=True)
        return
    baseline = next(name for name, r in runs.items() if "failed" not in r)   # the first profile that ran
    first = median_rate(runs[baseline])
    rate = median_rate(run)
    gap = loss_gap(run, profile, runs[baseline], baseline)
    peak, reserved = max(run["memory"], default=0), max(run["reserved"], default=0)
    print(f"[{profile}] tokens/s: median {rate:,.0f} ({rate / first:.2f}x {baseline}; per step: "
          f"{', '.join(f'{r:,.0f}' for r in run['rates'])})")
    over = f" - OVER the {CARD_GIB} GiB a 32 GB card allows with room" if max(peak, reserved) > CARD_GIB else ""
    plan = f"{run['plan']:.1f} GiB" if run["plan"] else "none, it assumes gradient checkpointing"
    print(f"[{profile}] peak GPU memory: {peak:.1f} GiB allocated, {reserved:.1f} GiB reserved{over} "
          f"(the plan: {plan})" if not args.cpu else f"[{profile}] peak GPU memory: n/a on CPU")
    print(f"[{profile}] longest example: {covers(run)}")
    print(f"[{profile}] loss per step: {', '.join(f'{x:.3f}' for x in run['losses'])}")
    if profile != baseline:
        print(f"[{profile}] loss vs {baseline}: " + (
            f"largest difference at a step {gap:.3f} over {len(run['losses'])} steps" if gap is not None
            else "not comparable step by step (the steps hold other rows)"))
    print(f"[{profile}] full run ({WRITER['train']} examples x {WRITER['epochs']} epochs, "
          f"{run['full']:,.0f} tokens): ~{run['full'] / rate / 60:.1f} min")
    print(json.dumps({"profile": profile, "device": device, "tokens_per_s": rate, "peak_gib": peak,
                      "reserved_gib": reserved, "plan_gib": run["plan"], "longest_example": run["longest"],
                      "first_step_slots": (run["slots"] or [0])[0], "relative_to": baseline, "relative_speed": rate / first, "losses": run["losses"], "loss_gap": gap,
                      "full_run_min": run["full"] / rate / 60}), flush=True)


def median_rate(run: dict) -> float:
    """The median tokens/s of the timed steps: Axolotl gives the first step none, and
    the second (warm-up: kernels compiled, the allocator growing) is left out when
    there are more."""
    return statistics.median(run["rates"][1:] or run["rates"])


def main():
    args = parse_args()
    # a time limit's SIGTERM (gpu_check.sh --time-limit) ends the run through `finally`,
    # so the temporary folder goes with it
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    import torch
    if not args.cpu and not torch.cuda.is_available():
        print("no GPU here: this benchmark needs one (a smoke run of the same path on CPU: "
              "--shape tiny --cpu)")
        return 0
    if not (SMOL / "tokenizer.json").is_file():
        sys.exit(f"no {SMOL}: run `make model` first")
    unrunnable = {p: missing_packages({**PROFILES[p], **args.overrides}) for p in args.compare}
    unrunnable = {p: missing for p, missing in unrunnable.items() if missing}
    if unrunnable and len(unrunnable) == len(args.compare):
        sys.exit(f"not installed: {', '.join(sorted({m for ms in unrunnable.values() for m in ms}))} "
                 "(the README's 'On a GPU machine' says how to carry it)")
    tmp = Path(tempfile.mkdtemp(prefix="bench_gpu_"))
    try:
        model = reusable_model(args.model, args.shape) if args.model else None
        if model is None:
            model = args.model or tmp / "model"
            print(f"building a random {args.shape} model in {model} ...", flush=True)
            random_model(model, SHAPES[args.shape])
        else:
            print(f"the random {args.shape} model in {model}, reused", flush=True)
        first = load_config(bench_config(tmp, model, args, args.compare[0]))
        writer_sized_book(tmp / "book", args.chars_per_chunk, first)
        result = prepare_data(first)   # once: every profile trains on the same files
        write_outputs(planned_outputs(result), force=True)
        lengths = [e.total_tokens for e in result.train]
        print(f"data: {len(result.train)} training examples, median {statistics.median(lengths)} tokens "
              f"(max {max(lengths)} of sequence_len {result.config.sequence_len})", flush=True)
        runs = {}
        report_header(args, torch)
        for profile in args.compare:
            if profile in unrunnable:   # reported with the others; no model load spent on it
                runs[profile] = {"failed": f"not run: {', '.join(unrunnable[profile])} is not installed "
                                           "(the README's 'On a GPU machine' says how to carry it)"}
                report(profile, runs, args, torch)
                continue
            cfg_path = bench_config(tmp, model, args, profile)
            print(f"[{profile}] training ...", flush=True)
            runs[profile] = train_once(cfg_path, args)
            cfg = load_config(cfg_path)
            keys = cfg.axolotl
            runs[profile].update(full=sum(lengths) / len(lengths) * WRITER["train"] * WRITER["epochs"],
                                 longest=max(lengths), sequence_len=result.config.sequence_len,
                                 micro_batch=keys.micro_batch_size, accumulation=keys.gradient_accumulation_steps,
                                 packed=bool(keys.sample_packing), plan=planned_peak(cfg, max(lengths), args))
            report(profile, runs, args, torch)
        if any("failed" in run for run in runs.values()):
            return 1
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
