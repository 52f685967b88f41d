"""Where a model loads and how stage 3 merges, decided before anything loads: the
device and compute dtype (`choose_placement`, the one decision for stages 3 and 4), the route (in
memory, or shard by shard when the model does not fit: `choose_route`), and the
disk and RAM that route needs (`check_resources`)."""
import shutil
from dataclasses import dataclass
from pathlib import Path

from styletune import paths
from styletune.errors import MergeError, UserError
from styletune.train.model_size import (
    available_ram_gib,
    bf16_run_bytes,
    cpu_compute_dtype,
    dtype_bytes,
    gib,
    gpu_bytes_needed,
    model_shape,
    parameter_count,
)


def base_parameter_count(cfg) -> int | None:
    """Parameters of the base model, from its config.json (None if not local or cached)."""
    shape = model_shape(cfg)
    return parameter_count(shape) if shape is not None else None


@dataclass
class Placement:
    """Where a model loads: `device_map` as from_pretrained takes it ("cuda", "cpu", or
    "auto": accelerate spreads the layers over the GPUs, and then CPU RAM unless
    `max_memory` names the GPUs only), the compute dtype, and why."""
    device_map: str
    dtype: str
    why: str
    max_memory: dict | None = None      # {GPU index: bytes}; no "cpu" key: nothing spills into RAM


def choose_placement(params: int | None, gpus: list[tuple[str, int]], ram_bytes: int,
                     requested: str = "auto", spread: bool = True, error=UserError) -> Placement:
    """Where a model of `params` parameters loads: the one decision for stage 3 (which
    merges on one device: spread=False) and stage 4 (which may spread it). `gpus`:
    (name, free bytes) of each visible GPU, first the one a plain "cuda" uses. Sizes
    from model_size: bf16 weights + a fifth + 2 GiB for CUDA; on CPU float32 when RAM
    allows (exact, and CPU bf16 is slow), else bf16.
      auto  one GPU when the model fits there; else (spread) every visible GPU, then
            CPU RAM (device_map="auto"), or (not spread) the CPU; the CPU without a GPU.
      cuda  GPUs only: one GPU when the model fits there, or whatever it takes on the
            first (not spread); spread, every visible GPU up to its free memory, refused
            when even all of them cannot hold it.
      cpu   the CPU.
    `error` is the stage's own error type."""
    if requested == "cpu" or not gpus:
        if requested == "cuda":
            raise error("--device cuda: no CUDA GPU is visible to PyTorch; use --device cpu")
        if spread and params and bf16_run_bytes(params) > ram_bytes:
            raise error(f"the model needs ~{gib(bf16_run_bytes(params)):.0f} GiB of RAM even in bf16, "
                        f"{gib(ram_bytes):.0f} GiB available: run it where GPUs can hold it")
        return Placement("cpu", cpu_compute_dtype(params, ram_bytes),
                         "asked for with --device cpu" if requested == "cpu" else "no CUDA GPU")
    need, (name, free) = gpu_bytes_needed(params or 0), gpus[0]
    if need <= free:
        return Placement("cuda", "bfloat16", f"{name}: {gib(free):.0f} GiB free, the model needs ~{gib(need):.0f}")
    if not spread:
        if requested == "cuda":
            return Placement("cuda", "bfloat16", f"{name} (asked for with --device cuda)")
        return Placement("cpu", cpu_compute_dtype(params, ram_bytes),
                         f"the GPU has {gib(free):.1f} GiB free, the model needs ~{gib(need):.0f}")
    together = sum(f for _, f in gpus)
    spread_over = f"{len(gpus)} GPUs" if len(gpus) > 1 else "the GPU"
    if need <= together:
        only = requested == "cuda"
        return Placement("auto", "bfloat16", f"sharded over {spread_over}{' only (--device cuda)' if only else ''}: "
                                             f"the model needs ~{gib(need):.0f} GiB, one GPU has {gib(free):.0f}, "
                                             f"together {gib(together):.0f}",
                         max_memory={i: f for i, (_, f) in enumerate(gpus)} if only else None)
    if requested == "cuda":
        raise error(f"--device cuda: the model needs ~{gib(need):.0f} GiB of GPU memory, the "
                    f"{len(gpus)} visible GPU(s) have {gib(together):.0f} GiB free together: use "
                    "--device auto to put the rest in CPU RAM (slow), or run it on a machine "
                    "with more GPU memory")
    if need <= together + 0.8 * ram_bytes:
        return Placement("auto", "bfloat16", f"sharded over {spread_over} and CPU RAM (slow: the layers in RAM "
                                             f"cross to a GPU at every step): the model needs ~{gib(need):.0f} "
                                             f"GiB, the GPUs have {gib(together):.0f}")
    raise error(f"the model needs ~{gib(need):.0f} GiB; the GPUs have {gib(together):.0f} GiB free and "
                f"RAM {gib(ram_bytes):.0f} GiB: run it on a machine with more GPU memory")


def visible_gpus() -> list[tuple[str, int]]:
    """(name, free bytes) of each GPU PyTorch sees."""
    import torch
    if not torch.cuda.is_available():
        return []
    return [(torch.cuda.get_device_name(i), torch.cuda.mem_get_info(i)[0])
            for i in range(torch.cuda.device_count())]


def placement_for(cfg, requested: str, spread: bool = True, error=UserError) -> Placement:
    """choose_placement for the config's base model on this machine."""
    return choose_placement(base_parameter_count(cfg), visible_gpus(), int(available_ram_gib() * 2**30),
                            requested, spread, error)


def placement(cfg, requested: str) -> tuple[str, str, str, int | None]:
    """Stage 3's (device, why, compute dtype, parameter count): one device."""
    p = placement_for(cfg, requested, spread=False, error=MergeError)
    return p.device_map, p.why, p.dtype, base_parameter_count(cfg)


def in_memory_ram_gib(params: int, dtype: str) -> float:
    """RAM the in-memory merge on CPU needs: the whole base in the compute dtype, plus half
    again for the copy PEFT's merge and save_pretrained make of one layer at a time and the
    libraries."""
    return gib(params * dtype_bytes(dtype)) * 1.5


@dataclass
class Route:
    """How stage 3 merges: in memory (the whole base loaded, PEFT merges) or streamed
    (shard by shard, merge_streamed.py)."""
    streamed: bool
    fits: bool          # the whole model loads here, so the end-to-end logit check can run
    why: str
    device: str = "cpu"
    device_why: str = ""
    dtype: str = "float32"
    params: int | None = None


def decide_route(params: int | None, device: str, dtype: str, ram_gib: float, force_streamed: bool) -> Route:
    """In memory when the whole model fits (on the GPU choose_placement chose, or in RAM), streamed
    when it does not or when asked for. The device fields are filled in by choose_route."""
    need = in_memory_ram_gib(params, dtype) if params and device == "cpu" else 0.0
    fits = need <= ram_gib
    if device == "cuda":
        room = "the whole model fits on the GPU"
    elif params:
        room = f"the in-memory merge needs ~{need:.1f} GiB of RAM, {ram_gib:.1f} GiB available"
    else:
        room = "model size unknown until downloaded"
    if force_streamed:
        return Route(True, fits, "streamed, shard by shard: asked for with --streamed (" + room + ")")
    if fits:
        return Route(False, True, "in memory (" + room + ")")
    return Route(True, False, "streamed, shard by shard: " + room)


def streamed_device(requested: str) -> tuple[str, str, str]:
    """(device, why, compute dtype) for the streamed merge's per-weight work: it needs only a
    layer's room, so any visible GPU will do (bitsandbytes quantises far faster there);
    bf16 there, as the in-memory merge on a GPU, float32 on CPU (a layer at a time affords it)."""
    import torch
    if requested != "cpu" and torch.cuda.is_available():
        return "cuda", torch.cuda.get_device_name(0) + ", one layer at a time", "bfloat16"
    return "cpu", "asked for with --device cpu" if requested == "cpu" else "no CUDA GPU", "float32"


def choose_route(cfg, requested: str, force_streamed: bool) -> Route:
    device, why, dtype, params = placement(cfg, requested)
    route = decide_route(params, device, dtype, available_ram_gib(), force_streamed)
    if route.streamed and not route.fits:
        device, why, dtype = streamed_device(requested)
    # a streamed merge of a model that fits runs where the whole model loads, so that the
    # logit check compares like with like
    route.device, route.device_why, route.dtype, route.params = device, why, dtype, params
    return route


def check_resources(cfg, out: Path, route: Route) -> list[str]:
    """Lines for the plan; raises when disk or RAM is short."""
    out.parent.mkdir(parents=True, exist_ok=True)
    if route.streamed:
        from styletune.train import shards
        return shards.resource_lines(shards.base_shards(cfg.base_model), out,
                                             cfg.pipeline.merged_dtype)
    save_bytes = dtype_bytes(cfg.pipeline.merged_dtype)
    params, lines = route.params, []
    free_disk = gib(shutil.disk_usage(out.parent).free)
    if params:
        need_disk = gib(params * save_bytes) * 1.05
        if free_disk < need_disk:
            raise MergeError(f"only {free_disk:.1f} GiB free at {paths.shown(out.parent)}; the merged "
                             f"model needs ~{need_disk:.1f} GiB ({cfg.pipeline.merged_dtype}): free some space "
                             "or set style_pipeline.merged_dir elsewhere")
        lines.append(f"disk: {free_disk:.0f} GiB free, merged model ~{need_disk:.1f} GiB")
        if route.device == "cpu":
            need_ram = in_memory_ram_gib(params, route.dtype)
            ram = available_ram_gib()
            if ram < need_ram:
                raise MergeError(f"{ram:.1f} GiB of RAM available, the merge on CPU needs "
                                 f"~{need_ram:.0f} GiB: close other programs or merge on a GPU")
            lines.append(f"RAM: {ram:.0f} GiB available, merge needs ~{need_ram:.1f} GiB")
    else:
        lines.append(f"disk: {free_disk:.0f} GiB free (model size unknown until downloaded; "
                     "an 8B model needs ~16 GiB in bf16)")
    return lines


# --- loading and merging ------------------------------------------------------------
