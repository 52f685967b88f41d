"""Stage 2's checks and plan, run by 2_train_lora.sh before Axolotl starts.

    python fine-tuning/training/train_preflight.py --config CONFIG --env-out FILE [--resume]

Checks each thing a training run needs and stops at the first that is missing,
with one line saying what and how to fix it (exit 3); prints the plan; writes
the merged config Axolotl reads (the rehearsal config `extends:` the main one)
and a small shell file of settings for the script (AXOLOTL_CONFIG, OUTPUT_DIR,
RESUME_FROM, LOG_DIR).
"""
import json
import math
import re
import shlex
import shutil
import sys
from importlib import metadata
from pathlib import Path

from styletune import paths
from styletune.config import effective_yaml, load_config
from styletune.errors import UserError
from styletune.fileio import sha256_bytes, write_atomic
from styletune.train.checkpoints import newest_checkpoint
from styletune.train.model_size import embedding_parameter_count, model_shape, parameter_count

PINNED = ("torch", "axolotl", "transformers", "peft", "bitsandbytes", "accelerate")


class PreflightError(UserError):
    """A training prerequisite is missing; the message is one line with the fix."""
    label = "preflight failed"
    exit_code = 3


def check_packages() -> list:
    """Installed versions match the pins in requirements.txt."""
    pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)==([^\s#]+)", (paths.REPO_DIR / "requirements.txt")
                           .read_text(), re.MULTILINE))
    lines = []
    for name in PINNED:
        try:
            have = metadata.version(name)
        except metadata.PackageNotFoundError:
            raise PreflightError(f"{name} is not installed in {sys.prefix}: run `make install`") from None
        want = pins.get(name)
        if want and have.split("+")[0] != want:
            raise PreflightError(f"{name} {have} is installed but requirements.txt pins {want}: "
                                 "run `make install`")
        lines.append(f"{name} {have}")
    return lines


def check_gpu(device: str) -> str:
    """An NVIDIA GPU the installed torch can drive, or CPU when the config says so."""
    import torch

    if device == "cpu":
        return "CPU (rehearsal config: no GPU used)"
    if not torch.cuda.is_available():
        raise PreflightError(
            "no NVIDIA GPU visible to PyTorch (torch " + torch.__version__ + "). Train on the GPU "
            "machine; to rehearse on this one use --config configs/cpu_rehearsal.yaml")
    major, minor = torch.cuda.get_device_capability(0)
    arch = f"sm_{major}{minor}"
    if arch not in torch.cuda.get_arch_list():
        raise PreflightError(
            f"{torch.cuda.get_device_name(0)} is {arch}, but this torch build ({torch.__version__}, "
            f"CUDA {torch.version.cuda}) has kernels only for {', '.join(torch.cuda.get_arch_list())}: "
            "install a PyTorch build with CUDA 12.8 or newer (`pip install torch==2.13.0` from PyPI)")
    free, total = torch.cuda.mem_get_info(0)
    import bitsandbytes.cextension as bnb_ext
    if not isinstance(bnb_ext.lib, bnb_ext.CudaBNBNativeLibrary):
        raise PreflightError("bitsandbytes could not load its CUDA library: reinstall it "
                             "(`make install`); it needs 0.45.3+ for an RTX 50-series card")
    return (f"{torch.cuda.get_device_name(0)} ({arch}), {free / 2**30:.1f} of "
            f"{total / 2**30:.1f} GiB free, torch {torch.__version__} CUDA {torch.version.cuda}")


def check_data(cfg) -> dict:
    """Stage 1's files exist, are not empty, match the chunks and fit sequence_len."""
    train, val = cfg.train_path, cfg.validation_path
    manifest_path = train.with_suffix(".manifest.json")
    for path in (train, val, manifest_path):
        if not path.is_file() or path.stat().st_size == 0:
            raise PreflightError(f"no training data at {paths.shown(path)}: run "
                                 f"1_prepare_data.py --config {paths.shown(cfg.path)} first")
    manifest = json.loads(manifest_path.read_text())
    for out, digest in manifest["outputs"].items():
        path = paths.REPO_DIR / out
        if path.suffix == ".jsonl" and (not path.is_file() or sha256_bytes(path.read_bytes()) != digest):
            raise PreflightError(f"{out} changed after stage 1 wrote it: rerun 1_prepare_data.py")
    book = paths.REPO_DIR / manifest["book_dir"]
    for entry in manifest["inputs"]:
        chunk = book / entry["file"]
        if not chunk.is_file() or sha256_bytes(chunk.read_bytes()) != entry["sha256"]:
            raise PreflightError(f"stale data: {entry['file']} changed after stage 1 ran: rerun "
                                 "1_prepare_data.py (with --force)")
    longest = max(e["total_tokens"] for e in manifest["examples"])
    if longest > cfg.sequence_len:
        raise PreflightError(f"an example has {longest} tokens, over sequence_len "
                             f"{cfg.sequence_len}: rerun 1_prepare_data.py, which names the chunk")
    return manifest


def check_base_model(cfg) -> str:
    """A local folder, the Hugging Face cache, or a token to download with."""
    base = cfg.base_model
    if Path(base).is_dir():
        return f"local folder {paths.shown(base)}"
    from huggingface_hub import get_token, try_to_load_from_cache
    if isinstance(try_to_load_from_cache(base, "config.json"), str):
        return f"{base} (in the Hugging Face cache)"
    if get_token():
        return (f"{base} (will download, about 16 GB; the token's account must have accepted "
                "the model's licence on its Hugging Face page)")
    raise PreflightError(f"{base} is not downloaded and no Hugging Face token is set: accept the "
                         "licence on the model's page, run `hf auth login`, or set base_model to "
                         "a local folder")


# Throughputs for the time estimate: CPU measured here (SmolLM2-135M, QLoRA, 2 cores);
# GPU a planning figure for the 8B on one RTX 5090, not measured on one: an H200 ran
# 4,398 tokens/s (bench_gpu_training.py), and a 5090 has about half its memory bandwidth.
TOKENS_PER_SECOND = {"cpu": 40, "cuda": 3000}


def plan(cfg, manifest) -> dict:
    d = cfg.data
    examples = [e for e in manifest["examples"] if e["split"] == "train"]
    batch = d.get("micro_batch_size", 1) * d.get("gradient_accumulation_steps", 1)
    steps = math.ceil(len(examples) / batch) * d.get("num_epochs", 1)
    if d.get("max_steps"):
        steps = min(steps, d["max_steps"])
    tokens = sum(e["total_tokens"] for e in examples) * d.get("num_epochs", 1)
    if d.get("max_steps"):
        tokens = round(tokens * steps / (math.ceil(len(examples) / batch) * d.get("num_epochs", 1)))
    device = cfg.pipeline.train_device
    memory = estimate_memory_gib(cfg) if device == "cuda" else None
    minutes = tokens / TOKENS_PER_SECOND[device] / 60
    return {"training examples": len(examples),
            "validation examples": len(manifest["examples"]) - len(examples),
            "epochs": d.get("num_epochs", 1), "micro-batch": d.get("micro_batch_size", 1),
            "gradient accumulation": d.get("gradient_accumulation_steps", 1),
            "optimizer steps": steps, "training tokens": tokens,
            "estimated peak GPU memory": (f"~{memory:.0f} GiB (rough)" if memory else
                                          "n/a" if device == "cpu" else "unknown until downloaded"),
            "estimated time": f"~{minutes:.0f} min at {TOKENS_PER_SECOND[device]} tokens/s (rough)"}


def estimate_memory_gib(cfg) -> float | None:
    """Rough peak GPU memory for QLoRA with gradient checkpointing: 4-bit linear
    weights (NF4 with double quantisation, ~0.56 bytes each with their scales),
    16-bit embeddings and lm_head (bitsandbytes leaves them unquantised), fp32
    logits and their gradient for one row, one saved activation per layer, plus
    CUDA context and LoRA state."""
    shape = model_shape(cfg)
    if shape is None:
        return None
    h, layers, vocab = shape["hidden_size"], shape["num_hidden_layers"], shape["vocab_size"]
    params, embeddings = parameter_count(shape), embedding_parameter_count(shape)
    seq = cfg.sequence_len * cfg.data.get("micro_batch_size", 1)
    gib = 2 ** 30
    weights = (params - embeddings) * 0.56 + embeddings * 2
    return weights / gib + seq * vocab * 8 / gib + layers * seq * h * 2 * 4 / gib + 1.5


def check_disk(cfg, need_gb: float) -> str:
    cfg.output_dir.parent.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(cfg.output_dir.parent).free / 2**30
    if free < need_gb:
        raise PreflightError(f"only {free:.1f} GiB free at {paths.shown(cfg.output_dir.parent)}; "
                             f"checkpoints need about {need_gb:.0f} GiB: free some space")
    return f"{free:.0f} GiB free"


def run(args) -> int:
    cfg = load_config(args.config)
    device = cfg.pipeline.train_device
    print(f"config: {paths.shown(cfg.path)}")
    print(f"  ok  packages: {', '.join(check_packages())}")
    print(f"  ok  device: {check_gpu(device)}")
    manifest = check_data(cfg)
    print(f"  ok  data: {paths.shown(cfg.train_path)} and {paths.shown(cfg.validation_path)} "
          "match the chunks")
    print(f"  ok  base model: {check_base_model(cfg)}")
    print(f"  ok  disk: {check_disk(cfg, 1 if device == 'cpu' else 5)}")
    print("plan:")
    for key, value in plan(cfg, manifest).items():
        print(f"  {key}: {value}")
    log_dir = cfg.pipeline.log_dir
    axolotl_cfg = log_dir / f"{cfg.path.stem}.axolotl.yaml"
    write_atomic(axolotl_cfg, effective_yaml(cfg).encode())
    resume = newest_checkpoint(cfg.output_dir) if args.resume else None
    if args.resume and resume is None:
        raise PreflightError(f"--resume: no checkpoint-N folder in {paths.shown(cfg.output_dir)}; "
                             "start without --resume")
    if not args.resume and newest_checkpoint(cfg.output_dir) is not None:
        raise PreflightError(f"{paths.shown(cfg.output_dir)} already holds checkpoints: add --resume "
                             "to continue that run, or move the folder away to start afresh")
    # A local base model needs no Hub at all: say so, and Axolotl skips its token check.
    offline = "1" if Path(cfg.base_model).is_dir() else ""
    settings = {"AXOLOTL_CONFIG": axolotl_cfg, "OUTPUT_DIR": cfg.output_dir,
                "RESUME_FROM": resume or "", "LOG_DIR": log_dir, "LOCAL_MODEL": offline}
    write_atomic(Path(args.env_out),
                 "".join(f"{k}={shlex.quote(str(v))}\n" for k, v in settings.items()).encode())
    return 0
