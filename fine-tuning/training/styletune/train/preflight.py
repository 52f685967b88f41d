"""Stage 2's checks and plan, run by 2_train_lora.sh before Axolotl starts.

    python fine-tuning/training/train_preflight.py --config CONFIG --env-out FILE [--resume] [--gpus N]

Checks each thing a training run needs and stops at the first that is missing,
with one line saying what and how to fix it (exit 3): the packages, the GPUs (how
many, the same architecture on all, free memory on each against the plan), the
data, the base model, the disk, the checkpoints. Prints the plan, with memory per
GPU and time labelled as estimates. Writes the merged config Axolotl reads (an
overlay `extends:` the main config; on several GPUs, with the gradient accumulation
that keeps the config's batch) and a small shell file of settings for the script:
AXOLOTL_CONFIG, OUTPUT_DIR, RESUME_FROM, LOG_DIR, LOCAL_MODEL, ACCELERATE_USE_CPU,
PROCESSES, OMP_NUM_THREADS on CPU, LAUNCH, Axolotl's own launcher arguments
(gpu_plan.launch_arguments), and exports of every tracker off (privacy.TRACKERS_OFF).
"""
import json
import math
import os
import re
import shlex
import shutil
import sys
from dataclasses import replace
from importlib import metadata
from pathlib import Path

from styletune import paths
from styletune.config import EVERY, Reads, effective_yaml, load_config
from styletune.data.drills import CONTINUATION_WORDS
from styletune.data.prepare import stage1_command
from styletune.errors import UserError
from styletune.fileio import sha256_bytes, write_atomic
from styletune.privacy import TRACKERS_OFF
from styletune.stage import Files, Stage, training_data
from styletune.train import gpu_plan
from styletune.train.checkpoints import newest_checkpoint
from styletune.train.model_size import parameter_count, weights_to_download

# Stage 2's settings: Axolotl reads the whole config.
READS = Reads(axolotl=(EVERY,), pipeline=("train_device",))
STAGE = Stage("2", "2_train_lora.sh", "train the LoRA adapter", READS,
              inputs=lambda cfg, book: training_data(cfg),
              outputs=lambda cfg, book: [Files(cfg.output_dir, what="a LoRA adapter and its checkpoints")])

CPU_PLUGIN = "styletune.train.axolotl_plugin.QLoRAOnCPU"
TOKEN_MEAN_PLUGIN = "styletune.train.axolotl_plugin.TokenMeanLoss"
PINNED = ("torch", "axolotl", "transformers", "peft", "bitsandbytes", "accelerate")


class PreflightError(UserError):
    """A training prerequisite is missing; the message is one line with the fix."""
    label = "preflight failed"
    exit_code = 3


# A machine that brings its own build of a pinned package (a GPU image's CUDA torch)
# names it here, comma-separated; the difference is printed and recorded, never hidden.
PIN_EXCEPTIONS_VAR = "STYLETUNE_PIN_EXCEPTIONS"


def pin_exceptions_allowed() -> set[str]:
    return {n.strip().lower() for n in os.environ.get(PIN_EXCEPTIONS_VAR, "").split(",") if n.strip()}


def pinned_versions() -> dict[str, str]:
    """{name: version} of every `name==version` line of requirements.txt."""
    return dict(re.findall(r"^([A-Za-z0-9_.-]+)==([^\s#]+)", (paths.REPO_DIR / "requirements.txt")
                           .read_text(), re.MULTILINE))


def check_packages() -> tuple[list, dict]:
    """Installed versions match the pins in requirements.txt, except the packages
    STYLETUNE_PIN_EXCEPTIONS names. Returns (one line per package, {name: {"pinned",
    "installed"}} for each allowed difference)."""
    pins = pinned_versions()
    lines, excepted, allowed = [], {}, pin_exceptions_allowed()
    for name in PINNED:
        try:
            have = metadata.version(name)
        except metadata.PackageNotFoundError:
            raise PreflightError(f"{name} is not installed in {sys.prefix}: run `make install`") from None
        want = pins.get(name)
        if want and have.split("+")[0] != want:
            if name not in allowed:
                raise PreflightError(f"{name} {have} is installed but requirements.txt pins {want}: "
                                     f"run `make install` (a machine with its own {name} build: "
                                     f"{PIN_EXCEPTIONS_VAR}={name})")
            excepted[name] = {"pinned": want, "installed": have}
            lines.append(f"{name} {have} (NOT the pinned {want}: allowed by {PIN_EXCEPTIONS_VAR})")
            continue
        lines.append(f"{name} {have}")
    return lines, excepted


def processes_for(device: str, requested: int | None) -> int:
    """How many training processes: --gpus N, else every visible GPU (one on CPU)."""
    import torch

    if requested is not None and requested < 1:
        raise PreflightError(f"--gpus {requested}: give a number of GPUs, 1 or more")
    if device == "cpu":
        return requested or 1
    visible = torch.cuda.device_count()
    if visible and requested and requested > visible:   # none at all: check_gpus says so
        raise PreflightError(f"--gpus {requested}, but PyTorch sees {visible} GPU(s): use --gpus "
                             f"{max(visible, 1)} or fewer (CUDA_VISIBLE_DEVICES limits which it sees)")
    return requested or max(visible, 1)


def check_gpus(device: str, processes: int, triton: bool = True) -> list[dict]:
    """The GPUs the run will use: NVIDIA, the same architecture on all, each one
    drivable by the installed torch and bitsandbytes (and, where the run uses Triton
    kernels, the C toolchain Triton builds with). [] on the CPU rehearsal."""
    import torch

    if device == "cpu":
        return []
    if not torch.cuda.is_available():
        raise PreflightError(no_gpu_reason(torch.__version__, torch.version.cuda, nvidia_driver()))
    gpus = []
    for index in range(processes):
        major, minor = torch.cuda.get_device_capability(index)
        free, total = torch.cuda.mem_get_info(index)
        gpus.append({"index": index, "name": torch.cuda.get_device_name(index),
                     "arch": f"sm_{major}{minor}", "free_gib": free / 2**30, "total_gib": total / 2**30})
    archs = sorted({g["arch"] for g in gpus})
    if len(archs) > 1:
        listing = ", ".join(f"GPU {g['index']} {g['name']} ({g['arch']})" for g in gpus)
        raise PreflightError(f"the GPUs differ in architecture ({listing}): FSDP and DDP need the "
                             "same kind of GPU in every process; limit the run to one kind with "
                             "CUDA_VISIBLE_DEVICES and --gpus")
    if archs[0] not in torch.cuda.get_arch_list():
        raise PreflightError(
            f"{gpus[0]['name']} is {archs[0]}, but this torch build ({torch.__version__}, "
            f"CUDA {torch.version.cuda}) has kernels only for {', '.join(torch.cuda.get_arch_list())}: "
            "install a PyTorch build with CUDA 12.8 or newer "
            f"(`pip install torch=={pinned_versions().get('torch', '')}` from PyPI)")
    import bitsandbytes.cextension as bnb_ext
    if not isinstance(bnb_ext.lib, bnb_ext.CudaBNBNativeLibrary):
        raise PreflightError("bitsandbytes could not load its CUDA library: reinstall it "
                             "(`make install`); it needs 0.45.3+ for an RTX 50-series card")
    problem = triton and triton_build_problem(c_compiler(), python_include_dir())
    if problem:
        raise PreflightError(problem)
    return gpus


# The oldest Linux driver each CUDA runtime of torch's wheels runs on (NVIDIA's CUDA
# toolkit release notes); PyPI's torch 2.13.0 is built with CUDA 13.0
DRIVER_FOR_CUDA = {"13.0": 580, "12.9": 575, "12.8": 570, "12.6": 560}


def nvidia_driver() -> str | None:
    """The NVIDIA driver's version as nvidia-smi gives it; None without one."""
    import subprocess
    if not shutil.which("nvidia-smi"):
        return None
    done = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                          capture_output=True, text=True)
    return done.stdout.split()[0] if done.returncode == 0 and done.stdout.split() else None


def no_gpu_reason(torch_version: str, torch_cuda: str | None, driver: str | None) -> str:
    """Why PyTorch sees no GPU, most likely cause first: a CPU build of torch, a driver
    older than torch's CUDA needs (torch then says nothing but 'no GPU'), no driver."""
    rehearse = "; to rehearse on a machine without one use --config configs/cpu_rehearsal.yaml"
    if torch_cuda is None:
        return (f"no GPU is visible to PyTorch: this torch ({torch_version}) is a CPU-only build. On the "
                "GPU machine install PyPI's CUDA build: `make install` in a new venv, or `pip install "
                f"--force-reinstall torch=={torch_version.split('+')[0]}`" + rehearse)
    needed = DRIVER_FOR_CUDA.get(".".join(torch_cuda.split(".")[:2]))
    if driver and needed and int(driver.split(".")[0]) < needed:
        return (f"no GPU is visible to PyTorch: the NVIDIA driver is {driver}, but torch {torch_version} "
                f"is built with CUDA {torch_cuda}, which needs driver {needed} or newer. Update the driver "
                f"(Ubuntu: `sudo ubuntu-drivers install`, or nvidia-driver-{needed}), reboot, and rerun")
    if driver is None:
        version = f" ({needed} or newer for CUDA {torch_cuda})" if needed else ""
        return (f"no GPU is visible to PyTorch (torch {torch_version}, CUDA {torch_cuda}) and `nvidia-smi` "
                f"does not answer: install the NVIDIA driver{version}, reboot, and "
                "check that `nvidia-smi` lists the card" + rehearse)
    return (f"no GPU is visible to PyTorch (torch {torch_version}, CUDA {torch_cuda}, driver {driver}): "
            "check that `nvidia-smi` lists the card and CUDA_VISIBLE_DEVICES does not hide it" + rehearse)


def triton_build_problem(cc: str | None, include_dir: str) -> str | None:
    """What Triton lacks to build its GPU launchers (it compiles one with the system's C
    compiler against Python.h the first time a kernel runs: Axolotl's LoRA kernels are
    Triton): said before the model loads, not minutes into training."""
    python = f"python{sys.version_info.major}.{sys.version_info.minor}"
    if cc is None:
        return (f"no C compiler (gcc or clang), which Triton needs for Axolotl's LoRA kernels: install "
                f"one (Debian/Ubuntu: `sudo apt install build-essential {python}-dev`) or set CC; or "
                "train without them (lora_mlp_kernel, lora_qkv_kernel, lora_o_kernel: false; slower)")
    if not (Path(include_dir) / "Python.h").is_file():
        return (f"no Python.h in {include_dir}, which Triton needs to build its GPU kernels: install "
                f"Python's headers (Debian/Ubuntu: `sudo apt install {python}-dev`)")
    return None


def uses_triton(data: dict) -> bool:
    """Axolotl's LoRA kernels (on unless each is set false) and Liger are Triton kernels."""
    kernels = ("lora_mlp_kernel", "lora_qkv_kernel", "lora_o_kernel")
    return (any(data.get(k) is not False for k in kernels)
            or any(str(p).startswith(gpu_plan.LIGER_PLUGIN) for p in data.get("plugins") or []))


def c_compiler() -> str | None:
    """The compiler Triton would pick (triton/runtime/build.py: $CC, else gcc, else clang)."""
    return os.environ.get("CC") or shutil.which("gcc") or shutil.which("clang")


def python_include_dir() -> str:
    import sysconfig
    scheme = sysconfig.get_default_scheme()
    return sysconfig.get_paths(scheme="posix_prefix" if scheme == "posix_local" else scheme)["include"]


def describe_gpus(gpus: list[dict]) -> str:
    import torch

    if not gpus:
        return "CPU (rehearsal config: no GPU used)"
    first = gpus[0]
    frees = ", ".join(f"{g['free_gib']:.1f}" for g in gpus)
    count = f"{len(gpus)} x " if len(gpus) > 1 else ""
    return (f"{count}{first['name']} ({first['arch']}), {frees} of {first['total_gib']:.1f} GiB free, "
            f"torch {torch.__version__} CUDA {torch.version.cuda}")


def check_distributed_config(cfg, processes: int) -> None:
    """What Axolotl cannot do with this config and this many processes, said before it starts."""
    if cfg.pipeline.train_device != "cpu":
        return
    if gpu_plan.strategy(cfg.axolotl, processes).startswith("fsdp"):
        # Axolotl 0.19 builds FSDP2's device mesh on "cuda" (utils/distributed.py), and
        # accelerate's CPU state has no FSDP at all (FSDP1 trains as DDP, then fails to save).
        raise PreflightError("FSDP needs GPUs: Axolotl and accelerate have no FSDP on a CPU. "
                             "Rehearse the multi-process path with configs/cpu_rehearsal.yaml "
                             "--gpus 2 (DDP), and train the FSDP configs on the GPU machine")
    if processes == 1:
        return
    plugins = cfg.axolotl.plugins
    if CPU_PLUGIN not in plugins:
        raise PreflightError(f"several CPU processes need the plugin {CPU_PLUGIN} in `plugins:` "
                             "(configs/cpu_rehearsal.yaml has it): it places each process's "
                             "model on the CPU, where Axolotl would pick a GPU")


def check_data(cfg) -> dict:
    """Stage 1's files exist, are not empty, match the chunks and fit sequence_len."""
    train, val = cfg.train_path, cfg.validation_path
    manifest_path = cfg.data_manifest_path
    for path in (train, val, manifest_path):
        if not path.is_file() or path.stat().st_size == 0:
            raise PreflightError(f"no training data at {paths.shown(path)}: run "
                                 f"1_prepare_data.py --config {paths.typed(cfg.path)} first")
    manifest = json.loads(manifest_path.read_text())
    book = paths.REPO_DIR / manifest["book_dir"]
    rerun = stage1_command(cfg, book, force=True)      # the same book: not the config's default
    for out, digest in manifest["outputs"].items():
        path = paths.REPO_DIR / out
        if path.suffix == ".jsonl" and (not path.is_file() or sha256_bytes(path.read_bytes()) != digest):
            raise PreflightError(f"{out} changed after stage 1 wrote it: rerun\n  {rerun}")
    for entry in manifest["inputs"]:
        chunk = book / entry["file"]
        if not chunk.is_file() or sha256_bytes(chunk.read_bytes()) != entry["sha256"]:
            raise PreflightError(f"stale data: {entry['file']} changed after stage 1 ran: rerun\n  {rerun}")
    longest = longest_example(manifest)
    if longest > cfg.sequence_len:
        raise PreflightError(f"an example has {longest} tokens, over sequence_len "
                             f"{cfg.sequence_len}: rerun\n  {rerun}\nwhich names the chunk")
    return manifest


def check_base_model(cfg) -> str:
    """A local folder, the Hugging Face cache, or a token to download with."""
    base = cfg.base_model
    if Path(base).is_dir():
        return f"local folder {paths.shown(base)}"
    from huggingface_hub import get_token
    missing, shards = weights_to_download(base)
    if not missing:
        return f"{base} (in the Hugging Face cache)"
    if get_token():
        if problem := access_problem(base):
            raise PreflightError(problem)
        shape = gpu_plan.shape_of(cfg)
        size = f"about {parameter_count(shape) * 2 / 1e9 * missing / shards:.0f} GB" if shape else "size unknown"
        part = f"{missing} of {shards} weight files " if missing < shards else ""
        return (f"{base} (will download {part}{size}; the token's account must have accepted "
                "the model's licence on its Hugging Face page)")
    raise PreflightError(f"{base} is not downloaded and no Hugging Face token is set: accept the "
                         "licence on the model's page, run `hf auth login`, or set base_model to "
                         "a local folder")


def access_problem(base: str) -> str | None:
    """Whether the token's account may download `base` (a gated model's licence must be
    accepted on its page first): asked of the hub before anything is downloaded, so the
    writer does not learn it from Axolotl's traceback. A hub that cannot be reached says
    nothing here; the download will."""
    from huggingface_hub import auth_check
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError
    try:
        auth_check(base)
    except GatedRepoError:
        return (f"the Hugging Face account of this token may not download {base} yet: accept its "
                f"licence on https://huggingface.co/{base} (a gated model; approval can take a "
                "while), then rerun")
    except RepositoryNotFoundError:
        return (f"{base} is no model this token can see on the Hugging Face hub: check base_model's "
                "spelling (and that the token is the account's: `hf auth whoami`)")
    except Exception:   # offline, a proxy, the hub down: the download itself will say
        return None
    return None


def plan(cfg, manifest, processes: int = 1) -> dict:
    """The run in figures: examples, batch, steps, tokens, memory per GPU, time.
    Memory and time are estimates (gpu_plan), labelled so."""
    k = cfg.axolotl
    examples = [e for e in manifest["examples"] if e["split"] == "train"]
    drills, openings = manifest.get("join_drills", []), manifest.get("scene_openings", [])
    rows = examples + drills + openings   # every training row is a step's share
    packed = gpu_plan.sequences([e["total_tokens"] for e in rows], k)
    micro, accumulation = k.micro_batch_size, k.gradient_accumulation_steps
    batch = micro * accumulation * processes
    epochs = k.num_epochs
    steps_per_epoch = math.ceil(gpu_plan.micro_batches(len(packed), k) / (accumulation * processes))
    steps = min(math.ceil(steps_per_epoch * epochs), k.max_steps or math.inf)
    tokens = round(sum(packed) * epochs * steps / (steps_per_epoch * epochs))
    device = cfg.pipeline.train_device
    shape = gpu_plan.shape_of(cfg) if device == "cuda" else None
    params = parameter_count(shape) if shape else None
    speed = gpu_plan.tokens_per_second(device, params, processes)
    where = f"{processes} GPUs" if processes > 1 and device == "cuda" else \
        f"{processes} CPU processes" if processes > 1 else "1 GPU" if device == "cuda" else "CPU"
    out = {"training examples": len(examples),
           "join drills": len(drills),
           "scene openings": len(openings),
           "validation examples": len(manifest["examples"]) - len(examples),
           "validation scene openings": len(manifest.get("validation_scene_openings", [])),
           "processes": f"{processes} ({gpu_plan.strategy(k, processes)})",
           "epochs": f"{epochs:g}" + (f" (max_steps {steps} ends the run after {steps / steps_per_epoch:.2g} epoch(s))"
                                      if steps < steps_per_epoch * epochs else ""),
           "batch": f"{micro} {'packed sequence' if k.sample_packing else 'example'}(s) x "
                    f"{accumulation} accumulation step(s) x {processes} process(es) = {batch}",
           "optimizer steps": steps, "training tokens": tokens}
    if (drills or openings) and not k.sample_packing:
        out["steps without an example"] = (
            f"~{short_rows_only_share(len(examples), len(drills) + len(openings), batch):.0%} expected "
            "(join drills and scene openings alone; rows are shuffled)")
    if device == "cuda":
        mem = gpu_plan.memory_plan(shape, k, processes, longest_sequence(cfg, manifest)) if shape else None
        out["estimated peak memory per GPU"] = (
            f"~{mem.need_per_gpu_gib:.0f} GiB (training {mem.per_gpu_gib:.1f}, loading "
            f"{mem.load_peak_gib:.1f}; an estimate, not measured"
            f"{'' if gpu_plan.checkpointed(k) else gpu_plan.UNCHECKPOINTED})" if mem else "unknown until downloaded")
        if mem and mem.cpu_ram_gib:
            out["estimated CPU RAM for the run"] = f"~{mem.cpu_ram_gib:.0f} GiB (an estimate)"
    note = "" if device == "cpu" else "; an estimate, not measured on this GPU"
    out["estimated time"] = (f"~{tokens / speed / 60:.0f} min at ~{speed:,.0f} tokens/s on {where}"
                             f"{note}")
    return out


def short_rows_only_share(examples: int, short: int, batch: int) -> float:
    """The chance that a step's `batch` rows, drawn at random from the shuffled rows,
    are all short rows (join drills, scene openings: tens to a few hundred labelled
    tokens each): short choose batch over rows choose batch. Adam moves the adapter
    about as far on such a step as on one holding ~8,000 tokens of prose, which is
    why the share is worth knowing (docs/benchmarks.md, known shortfalls)."""
    return math.comb(short, batch) / math.comb(examples + short, batch)


def longest_example(manifest) -> int:
    return max(e["total_tokens"] for e in manifest["examples"])


def longest_sequence(cfg, manifest) -> int:
    """The longest sequence a training step holds (what memory is planned for)."""
    return gpu_plan.longest_sequence(longest_example(manifest), cfg.axolotl)


def check_memory(cfg, manifest, gpus: list[dict], processes: int) -> str | None:
    """Each GPU's free memory against the plan; None when the model's size is not known yet."""
    shape = gpu_plan.shape_of(cfg)
    if not gpus or shape is None:
        return None
    return check_memory_for(shape, cfg, gpus, processes, longest_sequence(cfg, manifest))


def check_memory_for(shape: dict, cfg, gpus: list[dict], processes: int, tokens: int) -> str:
    mem = gpu_plan.memory_plan(shape, cfg.axolotl, processes, tokens)
    short = [g for g in gpus if g["free_gib"] < mem.need_per_gpu_gib]
    if short:
        g = short[0]
        raise PreflightError(
            f"GPU {g['index']} ({g['name']}) has {g['free_gib']:.1f} GiB free; the plan needs "
            f"~{mem.need_per_gpu_gib:.0f} GiB per GPU on {processes} ({mem.strategy}): "
            + memory_fix(cfg, mem))
    check_cpu_ram(mem)
    return (f"~{mem.need_per_gpu_gib:.0f} GiB per GPU planned (an estimate"
            f"{gpu_plan.measured_note(cfg.path.name, shape, processes, cfg.axolotl)}"
            f"{'' if gpu_plan.checkpointed(cfg.axolotl) else gpu_plan.UNCHECKPOINTED}); the least free is "
            f"{min(g['free_gib'] for g in gpus):.1f} GiB")


def memory_fix(cfg, mem) -> str:
    fsdp = cfg.axolotl.fsdp_config or {}
    if not mem.strategy.startswith("fsdp"):
        return "shard the model over several GPUs with --config configs/multi_gpu.yaml"
    if mem.load_peak_gib > mem.per_gpu_gib and not fsdp.get("cpu_ram_efficient_loading"):
        return ("every GPU loads the whole 4-bit model before FSDP shards it; use bigger GPUs, "
                "or configs/llama31_70b.yaml's loading (FSDP1, cpu_ram_efficient_loading)")
    if not fsdp.get("offload_params"):
        return "use more GPUs, or set fsdp_config.offload_params: true (weights wait in CPU RAM)"
    return "use more GPUs, or lower sequence_len (stage 1 must then be rerun)"


def checkpoint_gib(cfg) -> float:
    """Disk for the checkpoints a run keeps (save_total_limit, plus the final adapter):
    per checkpoint the LoRA weights and their AdamW state, ~16 bytes a parameter."""
    shape = gpu_plan.shape_of(cfg)
    if shape is None:
        return 5.0
    lora = gpu_plan.lora_parameters(shape, cfg.axolotl.lora_r)
    # no limit: Axolotl keeps every save, saves_per_epoch of them an epoch (one without it)
    saves = math.ceil(cfg.axolotl.num_epochs * (cfg.data.get("saves_per_epoch") or 1))
    kept = (cfg.axolotl.save_total_limit or saves) + 1
    return lora * gpu_plan.LORA_STATE_BYTES * kept / 2**30


def check_disk(cfg) -> str:
    need = 1.0 if cfg.pipeline.train_device == "cpu" else max(5.0, checkpoint_gib(cfg))
    cfg.output_dir.parent.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(cfg.output_dir.parent).free / 2**30
    if free < need:
        raise PreflightError(f"only {free:.1f} GiB free at {paths.shown(cfg.output_dir.parent)}; "
                             f"checkpoints need about {need:.0f} GiB: free some space")
    return f"{free:.0f} GiB free, checkpoints need ~{need:.0f} GiB"


def check_download_room(cfg) -> None:
    """A model still to download must fit in the Hugging Face cache (the 70B: ~141 GB)."""
    from huggingface_hub import constants
    shape = gpu_plan.shape_of(cfg)
    base = cfg.base_model
    if Path(base).is_dir() or shape is None:
        return
    missing, shards = weights_to_download(base)
    if not missing:
        return
    cache = Path(constants.HF_HUB_CACHE)
    cache.mkdir(parents=True, exist_ok=True)
    need = parameter_count(shape) * 2 / 2**30 * 1.02 * missing / shards
    free = shutil.disk_usage(cache).free / 2**30
    if free < need:
        raise PreflightError(f"{base} needs ~{need:.0f} GiB to download, and {cache} has {free:.0f} GiB "
                             "free: free some space, or set HF_HOME to a bigger disk")


def check_cpu_ram(mem) -> None:
    """The sharded loader and the checkpoints' gather hold the 4-bit model in CPU RAM."""
    import psutil
    available = psutil.virtual_memory().available / 2**30
    if mem.cpu_ram_gib > available:
        raise PreflightError(f"the run needs ~{mem.cpu_ram_gib:.0f} GiB of CPU RAM (process 0 holds the "
                             f"whole 4-bit model) and {available:.0f} GiB is available: close other "
                             "programs, or use a machine with more RAM")


RUN_RECORD = "styletune_run.json"


def check_resume(cfg, resume: bool, processes: int) -> Path | None:
    """The checkpoint to resume from (None for a fresh run); a resumed run keeps the
    process count it started with, since the batch and the data order depend on it."""
    newest = newest_checkpoint(cfg.output_dir)
    if resume and newest is None:
        raise PreflightError(f"--resume: no checkpoint-N folder in {paths.shown(cfg.output_dir)}; "
                             "start without --resume")
    if not resume and newest is not None:
        raise PreflightError(f"{paths.shown(cfg.output_dir)} already holds checkpoints: add --resume "
                             "to continue that run, or move the folder away to start afresh")
    record = cfg.output_dir / RUN_RECORD
    if resume and record.is_file():
        try:
            before = json.loads(record.read_text())["processes"]
        except (ValueError, KeyError, TypeError):
            raise PreflightError(f"{paths.shown(record)} is damaged: delete it, and give --resume "
                                 "the --gpus N the run started with") from None
        if before != processes:
            raise PreflightError(f"--resume: that run trained on {before} process(es), this one would "
                                 f"use {processes}: add --gpus {before}")
    return newest if resume else None


def batch_of(keys, processes: int) -> int:
    return keys.micro_batch_size * keys.gradient_accumulation_steps * processes


def axolotl_data(cfg, processes: int) -> dict:
    """The merged config as Axolotl gets it; on several processes, with the gradient
    accumulation that keeps the config's global batch (gpu_plan.accumulation_for)."""
    data = dict(cfg.data)
    if processes > 1:
        data["gradient_accumulation_steps"] = gpu_plan.accumulation_for(
            cfg.axolotl.gradient_accumulation_steps, processes)
    return data


def environment(cfg, processes: int) -> dict:
    """Settings for 2_train_lora.sh: where things are, and how to launch."""
    # A local base model needs no Hub at all: say so, and Axolotl skips its token check.
    offline = "1" if Path(cfg.base_model).is_dir() else ""
    # The CPU rehearsal: transformers then sets up CPU processes (gloo) for the Trainer.
    cpu = "true" if cfg.pipeline.train_device == "cpu" else ""
    settings = {"OUTPUT_DIR": cfg.output_dir, "LOG_DIR": cfg.pipeline.log_dir, "LOCAL_MODEL": offline,
                "ACCELERATE_USE_CPU": cpu, "PROCESSES": processes}
    if cpu:
        settings["OMP_NUM_THREADS"] = os.environ.get("OMP_NUM_THREADS") or cpu_threads(processes)
    return settings


def cpu_threads(processes: int) -> int:
    """Threads for each CPU training process: the cores this one may use, shared out.
    Unset, accelerate's launcher (and torchrun) give each process one thread
    (OMP_NUM_THREADS=1), which left one of two cores idle in every CPU run."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores // processes)


def shell_settings(settings: dict, launch: list[str]) -> bytes:
    lines = [f"{k}={shlex.quote(str(v))}" for k, v in settings.items()]
    # Axolotl and accelerate's processes inherit the trackers off (privacy.py: its one list;
    # a value the writer set stays theirs, as disable_telemetry left it in this process).
    lines += [f"export {k}={shlex.quote(os.environ.get(k, v))}" for k, v in TRACKERS_OFF.items()]
    lines.append("LAUNCH=(" + " ".join(shlex.quote(a) for a in launch) + ")")
    return ("\n".join(lines) + "\n").encode()


def run(args) -> int:
    cfg = load_config(args.config)
    device = cfg.pipeline.train_device
    print(f"config: {paths.shown(cfg.path)}")
    packages, excepted = check_packages()
    print(f"  ok  packages: {', '.join(packages)}")
    processes = processes_for(device, args.gpus)
    check_distributed_config(cfg, processes)
    gpus = check_gpus(device, processes, uses_triton(cfg.data))
    print(f"  ok  device: {describe_gpus(gpus)}")
    manifest = check_data(cfg)
    print(f"  ok  data: {paths.shown(cfg.train_path)} and {paths.shown(cfg.validation_path)} "
          "match the chunks")
    print(f"  ok  base model: {check_base_model(cfg)}")
    memory = check_memory(cfg, manifest, gpus, processes)
    if memory:
        print(f"  ok  GPU memory: {memory}")
    check_download_room(cfg)
    print(f"  ok  disk: {check_disk(cfg)}")
    resume = check_resume(cfg, args.resume, processes)
    run_cfg = replace(cfg, data=axolotl_data(cfg, processes))
    print("plan:")
    for key, value in plan(run_cfg, manifest, processes).items():
        print(f"  {key}: {value}")
    if processes == 1 and gpu_plan.strategy(cfg.axolotl, 1).startswith("fsdp"):
        print(f"  note: FSDP on one GPU trains (through torchrun) but slower than the main config, "
              f"qlora_style_transfer.yaml, which fits one GPU: {gpu_plan.FSDP_ONE_GPU_MEASURED}")
    if TOKEN_MEAN_PLUGIN not in cfg.axolotl.plugins and run_cfg.axolotl.gradient_accumulation_steps * processes > 1:
        print(f"  note: `plugins:` lacks {TOKEN_MEAN_PLUGIN}: each row of a step weighs the same "
              f"whatever its length, so a {CONTINUATION_WORDS}-word join drill counts as much as a whole example "
              "(a config's own `plugins:` list replaces the one it extends; add it there)")
    if batch_of(run_cfg.axolotl, processes) != batch_of(cfg.axolotl, 1):
        print(f"  note: the config's batch of {batch_of(cfg.axolotl, 1)} becomes {batch_of(run_cfg.axolotl, processes)} "
              f"on {processes} processes (each takes its own example a step)")
    axolotl_cfg = cfg.pipeline.log_dir / f"{cfg.path.stem}.axolotl.yaml"
    write_atomic(axolotl_cfg, effective_yaml(run_cfg).encode())
    record = {"processes": processes, **({"pin_exceptions": excepted} if excepted else {})}
    write_atomic(cfg.output_dir / RUN_RECORD, (json.dumps(record) + "\n").encode())
    settings = {"AXOLOTL_CONFIG": axolotl_cfg, "RESUME_FROM": resume or "",
                **environment(cfg, processes)}
    write_atomic(Path(args.env_out), shell_settings(settings, gpu_plan.launch_arguments(processes, cfg.axolotl)))
    return 0
