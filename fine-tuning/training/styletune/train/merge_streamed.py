"""Stage 3 for a base too big for this machine's memory: the merge done shard by shard.

The in-memory merge (merge.py) loads the whole base in NF4, dequantises it and lets PEFT
add the adapter; for Llama-3.1-70B that is ~40 GiB in NF4 and ~131 GiB dequantised in
bf16. Here the base's safetensors shards are read one at a time. Each weight training
quantised takes the NF4 round trip training's load gave it: transformers' own
bitsandbytes quantizer is applied to a meta-device skeleton of the model (no memory), so
which modules are quantised (lm_head and tied weights are not), the cast to the compute
dtype before quantising, the block size, double quantisation, quant storage and the
config's `bnb_config_kwargs` are training's, and the same conversion op quantises. Then
the adapter's B @ A x scale is added, the result is cast to merged_dtype, and the output
shard is written before the next one is read: peak memory is one output shard plus one
weight's temporaries.

Verification: a model this size cannot be loaded for the logit check, so a sample of
merged weights (the LoRA targets of the first, middle and last decoder layers) is
recomputed independently, with bitsandbytes' Linear4bit built from the config and PEFT's
own LoRA layer, and compared with what was written. When the whole model does fit, the
logit check runs as well.

Only a plain LoRA adapter is handled; what it cannot reproduce (modules_to_save, DoRA,
new token embeddings, ...) is refused before anything is written.
"""
import json
import math
import re
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path

from styletune import paths
from styletune.errors import MergeError
from styletune.fileio import write_atomic
from styletune.train import merge_output, model_size, models
from styletune.train.adapter import ADAPTER_FILE
from styletune.train.models import EFFECT_SHARE

INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"
LORA_KEY = re.compile(r"^base_model\.model\.(?P<module>.+)\.lora_(?P<which>[AB])\.weight$")
LAYER_INDEX = re.compile(r"\.layers\.(\d+)\.")

# adapter_config.json keys that, when set, change the merged weights in ways this merge
# does not reproduce (PEFT would, in memory).
UNSUPPORTED = {
    "modules_to_save": "whole modules (e.g. embeddings or lm_head) trained and saved beside the adapter",
    "use_dora": "DoRA (a learned magnitude rescales each merged weight)",
    "trainable_token_indices": "retrained or added token embeddings",
    "lora_bias": "a trained bias on lora_B",
    "target_parameters": "LoRA on raw parameters (mixture-of-experts weights)",
    "layer_replication": "replicated layers",
    "fan_in_fan_out": "Conv1D-style (transposed) weights",
    "use_qalora": "QA-LoRA",
    "alora_invocation_tokens": "activated LoRA",
    "use_bdlora": "block-diagonal LoRA",
    "arrow_config": "Arrow routing",
    "megatron_config": "Megatron parallel layers",
}


# --- the adapter -------------------------------------------------------------------------

def refuse_unsupported(meta: dict, folder: Path) -> None:
    """A clear refusal, before anything is written, for an adapter this merge cannot reproduce."""
    found = [f"{key} ({why})" for key, why in UNSUPPORTED.items() if meta.get(key)]
    if meta.get("peft_type", "LORA") != "LORA":
        found.append(f"peft_type {meta['peft_type']} (only LoRA)")
    if meta.get("bias", "none") != "none":
        found.append(f"bias {meta['bias']!r} (trained biases)")
    if found:
        raise MergeError(f"the adapter in {paths.shown(folder)} uses " + "; ".join(found) + ": the "
                         "streamed merge handles only plain LoRA on linear layers. Merge in memory "
                         "on a machine with the RAM (drop --streamed), or train without it")


def check_adapter(folder: Path) -> None:
    """The refusals StreamedAdapter makes, for the plan: before anything is loaded."""
    StreamedAdapter(folder)


class StreamedAdapter:
    """The adapter's LoRA pairs, read one module at a time from its safetensors file.
    `targets` maps each base weight name (model.layers.0.self_attn.q_proj.weight) to its module."""

    def __init__(self, folder: Path):
        from safetensors import safe_open
        self.folder = folder
        self.meta = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
        refuse_unsupported(self.meta, folder)
        self._file = safe_open(str(folder / ADAPTER_FILE), framework="pt")
        self.targets = self._pair_keys(list(self._file.keys()))

    def _pair_keys(self, keys: list[str]) -> dict[str, str]:
        modules, strays = {}, []
        for key in keys:
            m = LORA_KEY.match(key)
            if m is None:
                strays.append(key)
            else:
                modules.setdefault(m["module"], set()).add(m["which"])
        if strays:
            raise MergeError(f"the adapter in {paths.shown(self.folder)} holds tensors that are not "
                             f"LoRA A/B pairs on linear layers ({', '.join(strays[:3])}"
                             f"{', ...' if len(strays) > 3 else ''}): the streamed merge cannot add "
                             "them; merge in memory (drop --streamed)")
        unpaired = [m for m, ab in modules.items() if ab != {"A", "B"}]
        if unpaired:
            raise MergeError(f"the adapter lacks lora_A or lora_B for {unpaired[0]}: a damaged file")
        return {module + ".weight": module for module in modules}

    def _pair(self, module: str):
        prefix = f"base_model.model.{module}"
        return self._file.get_tensor(prefix + ".lora_A.weight"), self._file.get_tensor(prefix + ".lora_B.weight")

    def scale(self, module: str, rank: int) -> float:
        """PEFT's scaling: lora_alpha / r (/ sqrt(r) with rsLoRA), with rank_pattern and
        alpha_pattern matched against the module name as PEFT matches them."""
        from peft.utils.other import get_pattern_key
        ranks, alphas = self.meta.get("rank_pattern") or {}, self.meta.get("alpha_pattern") or {}
        r = ranks.get(get_pattern_key(ranks.keys(), module), self.meta["r"])
        alpha = alphas.get(get_pattern_key(alphas.keys(), module), self.meta["lora_alpha"])
        if r != rank:
            raise MergeError(f"adapter_config.json gives {module} rank {r}, its weights have rank "
                             f"{rank}: the config does not belong to these weights")
        return alpha / (math.sqrt(r) if self.meta.get("use_rslora") else r)

    def delta(self, weight_key: str, device: str):
        """B @ A x scale in float32 (PEFT keeps adapter weights in float32 when it merges)."""
        module = self.targets[weight_key]
        a, b = self._pair(module)
        a, b = a.to(device).float(), b.to(device).float()
        return (b @ a) * self.scale(module, a.shape[0])


# --- the base's files ------------------------------------------------------------------

@dataclass
class BaseShards:
    folder: Path
    files: list[str]
    indexed: bool                       # whether the base has model.safetensors.index.json
    headers: dict[str, dict] = field(default_factory=dict)   # file -> {key: (dtype, shape)}

    def file_of(self, key: str) -> str:
        return next(name for name, keys in self.headers.items() if key in keys)

    def largest_file_bytes(self) -> int:
        return max((self.folder / name).stat().st_size for name in self.files)

    def tensors(self):
        """(key, safetensors dtype, shape) of every tensor, file by file."""
        for name in self.files:
            for key, (dtype, shape) in self.headers[name].items():
                yield key, dtype, shape


def named(path: Path) -> str:
    """A file as the user should read it, a Hugging Face cache snapshot's link not resolved to its blob."""
    return f"{paths.shown(path.parent)}/{path.name}"


def redownload_fix(path: Path) -> str:
    """How to replace a damaged file of the base model: from the Hugging Face cache (the link
    in the snapshot and the blob it points to), else in the local folder."""
    repo = next((part[len("models--"):].replace("--", "/") for part in path.parts
                 if part.startswith("models--")), None)
    if path.is_symlink() or repo:
        blob = f" and the blob it links to, {paths.shown(path)}" if path.is_symlink() else ""
        return (f"re-download the base model: delete {named(path)}{blob} from the Hugging Face cache, "
                f"then run `hf download {repo or 'MODEL'}` (or stage 2) again")
    return (f"re-download the base model: replace {named(path)} in the local folder with a fresh copy "
            "of the model's files")


def damaged(path: Path, what: str) -> MergeError:
    return MergeError(f"{named(path)} is damaged or truncated ({what}): {redownload_fix(path)}")


def read_header(path: Path) -> dict:
    """{key: (dtype, shape)} from a safetensors file's JSON header, without reading tensors.
    A file cut short or damaged (the header, or a size other than the header describes) is a
    MergeError naming the file and how to replace it."""
    try:
        with open(path, "rb") as f:
            size = f.seek(0, 2)
            f.seek(0)
            if size < 8:
                raise damaged(path, f"{size} bytes, shorter than a safetensors header")
            length = struct.unpack("<Q", f.read(8))[0]
            if length > size - 8:
                raise damaged(path, f"its header claims {length} bytes, the file holds {size}")
            header = json.loads(f.read(length))
        tensors = {k: (v["dtype"], v["shape"]) for k, v in header.items() if k != "__metadata__"}
        described = 8 + length + max((int(v["data_offsets"][1]) for k, v in header.items()
                                      if k != "__metadata__"), default=0)
    except OSError as err:
        raise damaged(path, f"cannot be read: {err.strerror or err}") from None
    except (ValueError, KeyError, TypeError, AttributeError, IndexError):
        # ValueError covers json's JSONDecodeError and a header that is not UTF-8
        raise damaged(path, "its header is not a safetensors header") from None
    if described != size:
        raise damaged(path, f"{size} bytes, its header describes {described}")
    return tensors


def base_folder(base: str) -> Path:
    """The base's files: a local folder, else its snapshot in the Hugging Face cache (never downloaded)."""
    if Path(base).is_dir():
        return Path(base)
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError
    try:
        return Path(snapshot_download(base, local_files_only=True))
    except (LocalEntryNotFoundError, OSError, ValueError):
        raise MergeError(f"the streamed merge reads {base}'s safetensors files, and they are not "
                         "in the Hugging Face cache: stage 2 downloads them, or run `hf download "
                         f"{base}`") from None


def base_shards(base: str) -> BaseShards:
    folder = base_folder(base)
    index = folder / INDEX_FILE
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
            files, indexed = sorted(set(weight_map.values())), True
        except OSError as err:
            raise damaged(index, f"cannot be read: {err.strerror or err}") from None
        except (ValueError, KeyError, TypeError, AttributeError):
            raise damaged(index, "not the JSON index of a sharded checkpoint") from None
    elif (folder / SINGLE_FILE).is_file():
        files, indexed = [SINGLE_FILE], False
    else:
        raise MergeError(f"no safetensors weights in {paths.shown(folder)} ({INDEX_FILE} or "
                         f"{SINGLE_FILE}): the streamed merge reads only safetensors")
    missing = [name for name in files if not (folder / name).is_file()]
    if missing:
        raise MergeError(f"{paths.shown(folder)} lacks {missing[0]} (of {len(files)} shards): the "
                         "download is incomplete; run stage 2's download again")
    return BaseShards(folder, files, indexed, {name: read_header(folder / name) for name in files})


# --- sizes, for the plan ---------------------------------------------------------------

def output_bytes(shards: BaseShards, saved: str) -> int:
    floating = ("F", "BF")
    return sum(math.prod(shape) * model_size.dtype_bytes(saved if dtype.startswith(floating) else dtype)
               for _, dtype, shape in shards.tensors())


def peak_ram_bytes(shards: BaseShards, saved: str) -> int:
    """One output shard held before it is written, plus one weight's temporaries (the weight in
    float32, its NF4 round trip, the LoRA delta, the sum), plus 1 GiB for the libraries."""
    ratio = max(model_size.dtype_bytes(saved) / model_size.DTYPE_BYTES.get(dtype, 2) for _, dtype, _ in shards.tensors())
    largest = max(math.prod(shape) for _, _, shape in shards.tensors())
    return int(shards.largest_file_bytes() * max(ratio, 1.0) + 4 * 4 * largest + 2**30)


def resource_lines(shards: BaseShards, out: Path, saved: str) -> list[str]:
    """Disk for the output and RAM for one shard at a time; raises when either is short."""
    import shutil
    gib = model_size.gib
    need_disk = gib(output_bytes(shards, saved)) * 1.02
    free_disk = gib(shutil.disk_usage(out.parent).free)
    if free_disk < need_disk:
        raise MergeError(f"only {free_disk:.1f} GiB free at {paths.shown(out.parent)}; the merged model "
                         f"needs ~{need_disk:.1f} GiB ({saved}): free some space or set "
                         "style_pipeline.merged_dir elsewhere")
    need_ram, ram = gib(peak_ram_bytes(shards, saved)), model_size.available_ram_gib()
    if ram < need_ram:
        raise MergeError(f"{ram:.1f} GiB of RAM available; even the streamed merge needs ~{need_ram:.1f} "
                         "GiB (one shard and one layer at a time): close other programs")
    return [f"disk: {free_disk:.0f} GiB free, merged model ~{need_disk:.1f} GiB",
            f"RAM: {ram:.0f} GiB available, the streamed merge needs ~{need_ram:.1f} GiB "
            f"(the largest of {len(shards.files)} shard(s) and one layer at a time)"]


# --- the merge, weight by weight ---------------------------------------------------------

def training_skeleton(cfg, folder: Path, dtype_name: str, quantized: bool):
    """(model on the meta device, bitsandbytes quantizer or None): the modules training's
    from_pretrained turned into Linear4bit, found by transformers' own rule."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM
    from transformers.quantizers import AutoHfQuantizer
    dtype = getattr(torch, dtype_name)
    config = AutoConfig.from_pretrained(str(folder))
    if getattr(config, "quantization_config", None):
        raise MergeError(f"the base in {paths.shown(folder)} is saved already quantised "
                         f"({config.quantization_config.get('quant_method', '?')}): a QLoRA base is a "
                         "16-bit checkpoint that training quantises as it loads")
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    if not quantized:
        return model, None
    quantizer = AutoHfQuantizer.from_config(models.training_bnb_config(cfg, dtype))
    quantizer.preprocess_model(model, device_map={"": "cpu"}, dtype=dtype)
    return model, quantizer


def saved_names(model) -> set[str]:
    """The tensors save_pretrained writes: parameters (a tied one once) and persistent buffers."""
    names = {n for n, _ in model.named_parameters()}
    for prefix, module in model.named_modules():
        names |= {f"{prefix}.{n}" if prefix else n for n, b in module.named_buffers(recurse=False)
                  if n not in module._non_persistent_buffers_set}
    return names


class WeightMerger:
    """One base tensor in, its merged tensor (merged_dtype, on CPU) out."""

    def __init__(self, skeleton, quantizer, adapter: StreamedAdapter, device: str, compute: str, saved: str):
        import torch
        from transformers.integrations.bitsandbytes import Bnb4bitQuantize
        self.skeleton, self.quantizer, self.adapter, self.device = skeleton, quantizer, adapter, device
        self.compute, self.saved = getattr(torch, compute), getattr(torch, saved)
        self.quantize_op = Bnb4bitQuantize(quantizer) if quantizer else None
        # what from_pretrained keeps: a checkpoint tensor the model has no place for (an old
        # rotary buffer, a tied lm_head stored anyway) is dropped on load and never saved
        self.kept = saved_names(skeleton)

    def is_quantised(self, key: str) -> bool:
        return self.quantizer is not None and self.quantizer.param_needs_quantization(self.skeleton, key)

    def as_training_loaded(self, key: str, value):
        """The weight as training's load held it, in the compute dtype: through NF4 and back
        for a quantised one, exactly as from_pretrained quantised it."""
        from transformers.integrations.bitsandbytes import dequantize_bnb_weight
        if not self.is_quantised(key):
            return value.to(self.device, self.skeleton.get_parameter_or_buffer(key).dtype)
        packed = self.quantize_op.convert({key: value.to(self.device, self.compute)}, model=self.skeleton)[key]
        # bitsandbytes leaves the quantisation state on the (meta) module: drop it, or the
        # skeleton would keep every layer's statistics alive until the end
        self.skeleton.get_submodule(key.rsplit(".", 1)[0]).quant_state = None
        return dequantize_bnb_weight(packed).to(self.compute)

    def __call__(self, key: str, value):
        weight = self.as_training_loaded(key, value)
        if key in self.adapter.targets:
            # as PEFT's merge does it: float32 delta added to the compute-dtype weight, rounded once
            weight = (weight.float() + self.adapter.delta(key, self.device)).to(self.compute)
        return weight.to(self.saved).cpu()


def check_targets(adapter: StreamedAdapter, merger: WeightMerger, shards: BaseShards) -> None:
    stored = {key for name in shards.files for key in shards.headers[name]}
    stray = sorted(k for k in adapter.targets if k not in stored or k not in merger.kept)
    if stray:
        raise MergeError(f"the adapter targets {stray[0]}, which this base does not store as a weight "
                         "of its own (wrong base, or a tied weight): use the config that trained it")
    missing = sorted(merger.kept - stored - set(getattr(merger.skeleton, "all_tied_weights_keys", {})))
    if missing:
        raise MergeError(f"the base's files lack {missing[0]} ({len(missing)} tensor(s) the model needs): "
                         "an incomplete or renamed checkpoint")


def write_shards(shards: BaseShards, merger: WeightMerger, partial: Path, say) -> dict[str, str]:
    """Each base shard read, merged and written before the next is opened; returns the weight map."""
    from safetensors import safe_open
    from safetensors.torch import save_file
    weight_map = {}
    for number, name in enumerate(shards.files, 1):
        t0, merged, out = time.time(), 0, {}
        with safe_open(str(shards.folder / name), framework="pt") as f:
            for key in f.keys():
                if key not in merger.kept:
                    continue
                out[key] = merger(key, f.get_tensor(key))
                merged += key in merger.adapter.targets
        save_file(out, str(partial / name), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(out, name))
        say(f"  shard {number}/{len(shards.files)} {name}: {len(out)} tensors, {merged} with the "
            f"adapter added ({time.time() - t0:.0f} s)")
        del out
    return weight_map


def write_index(partial: Path, weight_map: dict[str, str], shards: BaseShards) -> None:
    """The index save_pretrained writes for a sharded model (none for a single file)."""
    if not shards.indexed:
        return
    headers = [read_header(partial / name) for name in sorted(set(weight_map.values()))]
    tensors = [(dtype, math.prod(shape)) for header in headers for dtype, shape in header.values()]
    metadata = {"total_parameters": sum(n for _, n in tensors),
                "total_size": sum(n * model_size.dtype_bytes(dtype) for dtype, n in tensors)}
    index = {"metadata": metadata, "weight_map": dict(sorted(weight_map.items()))}
    write_atomic(partial / INDEX_FILE, (json.dumps(index, indent=2) + "\n").encode())


def write_config(folder: Path, partial: Path, saved: str) -> None:
    """The base's config.json with the saved dtype, as save_pretrained writes it for the merged model."""
    from transformers import AutoConfig
    config = AutoConfig.from_pretrained(str(folder))
    config.dtype = saved
    config.save_pretrained(str(partial))


# --- verification, a sample of layers ----------------------------------------------------

@dataclass
class WeightCheck:
    """One merged weight against NF4(base) + delta recomputed independently and rounded
    as the merge saves it. Judged by how many saved values differ, against how many a
    merge that lost the adapter would get wrong: in bf16 a trained adapter's delta is
    often smaller than the rounding step, so |merged - reference| alone cannot tell a
    lost adapter from rounding, but the values the delta moves across a rounding step
    can (in float32, every value it touches)."""
    weight: str
    mismatched: float           # share of saved values that differ from round(NF4 base + delta)
    lost_mismatched: float      # the same share for round(NF4 base): a merge without the adapter
    mean_abs_diff: float        # mean |merged - (NF4 base + delta)|, unrounded
    max_abs_diff: float
    adapter_effect: float       # mean |delta|
    distinguishable: bool = field(init=False)
    passed: bool = field(init=False)

    def __post_init__(self):
        self.distinguishable = self.lost_mismatched > 0
        self.passed = self.distinguishable and self.mismatched <= EFFECT_SHARE * self.lost_mismatched

    def line(self) -> str:
        return (f"{self.weight}: {self.mismatched:.2%} of values differ from NF4 base + delta "
                f"(without the adapter: {self.lost_mismatched:.2%}); mean |diff| {self.mean_abs_diff:.2e} "
                f"(max {self.max_abs_diff:.2e}), delta {self.adapter_effect:.2e}; "
                f"{'ok' if self.passed else 'FAILED'}")


def sample_weights(targets, num_layers: int) -> list[str]:
    """The adapter's weights in the first, middle and last decoder layers."""
    layers = {0, num_layers // 2, num_layers - 1}
    chosen = [k for k in sorted(targets) if (m := LAYER_INDEX.search(k)) and int(m[1]) in layers]
    return chosen or sorted(targets)[:: max(1, len(targets) // 3)]


def independent_nf4(cfg, weight, compute: str, device: str):
    """NF4 round trip of one weight through a bitsandbytes Linear4bit built from the
    config's quantisation settings (not through transformers' loader)."""
    import bitsandbytes as bnb
    import torch
    bnb_cfg = models.training_bnb_config(cfg, getattr(torch, compute))
    layer = bnb.nn.Linear4bit(weight.shape[1], weight.shape[0], bias=False,
                              compute_dtype=bnb_cfg.bnb_4bit_compute_dtype,
                              compress_statistics=bnb_cfg.bnb_4bit_use_double_quant,
                              quant_type=bnb_cfg.bnb_4bit_quant_type,
                              quant_storage=bnb_cfg.bnb_4bit_quant_storage, device="meta")
    p = layer.weight
    layer.weight = bnb.nn.Params4bit(weight.to(getattr(torch, compute)), requires_grad=False,
                                     blocksize=p.blocksize, compress_statistics=p.compress_statistics,
                                     quant_type=p.quant_type, quant_storage=p.quant_storage, module=layer)
    layer = layer.to(device)
    return bnb.functional.dequantize_4bit(layer.weight.data, layer.weight.quant_state).float()


def peft_delta(adapter_dir: Path, weight_key: str, shape, device: str):
    """The delta PEFT itself computes for one module (its own scaling, rank and alpha
    patterns, rsLoRA), on a stand-in module at the same name."""
    import torch
    from peft import LoraConfig, inject_adapter_in_model, set_peft_model_state_dict
    from safetensors import safe_open
    module = weight_key.removesuffix(".weight")
    root = torch.nn.Module()
    parent = root
    for part in module.split(".")[:-1]:
        parent.add_module(part, torch.nn.Module())
        parent = getattr(parent, part)
    parent.add_module(module.split(".")[-1], torch.nn.Linear(shape[1], shape[0], bias=False, device="meta"))
    config = LoraConfig.from_pretrained(str(adapter_dir))
    config.inference_mode = True
    inject_adapter_in_model(config, root, low_cpu_mem_usage=True)
    layer = root.get_submodule(module)
    # the stand-in base weight stays on the meta device (no memory): only the LoRA pair gets storage
    layer.lora_A.to_empty(device="cpu")
    layer.lora_B.to_empty(device="cpu")
    with safe_open(str(adapter_dir / ADAPTER_FILE), framework="pt") as f:
        prefix = f"base_model.model.{module}."
        pairs = {k.removeprefix("base_model.model."): f.get_tensor(k) for k in f.keys() if k.startswith(prefix)}
    result = set_peft_model_state_dict(root, pairs)
    if result.unexpected_keys or any("lora_" in k for k in result.missing_keys):
        raise MergeError(f"PEFT could not load the adapter's weights for {module} to check them")
    return layer.get_delta_weight("default").float().to(device)


def check_weight(cfg, key: str, shards: BaseShards, partial: Path, adapter_dir: Path,
                 quantised: bool, compute: str, saved: str, device: str) -> WeightCheck:
    import torch
    from safetensors import safe_open
    with safe_open(str(shards.folder / shards.file_of(key)), framework="pt") as f:
        base = f.get_tensor(key)
    with safe_open(str(partial / shards.file_of(key)), framework="pt") as f:
        merged = f.get_tensor(key).to(device).float()
    start = independent_nf4(cfg, base, compute, device) if quantised else \
        base.to(device, getattr(torch, compute)).float()
    delta = peft_delta(adapter_dir, key, base.shape, device)
    reference = start + delta

    def as_saved(weight):
        return weight.to(getattr(torch, compute)).to(getattr(torch, saved)).float()

    expected = as_saved(reference)
    error = (merged - reference).abs()
    return WeightCheck(key, mismatched=(merged != expected).float().mean().item(),
                       lost_mismatched=(as_saved(start) != expected).float().mean().item(),
                       mean_abs_diff=error.mean().item(), max_abs_diff=error.max().item(),
                       adapter_effect=delta.abs().mean().item())


def verify_layers(cfg, adapter: StreamedAdapter, merger: WeightMerger, shards: BaseShards,
                  partial: Path, compute: str, saved: str, device: str, say) -> list[WeightCheck]:
    num_layers = int(getattr(merger.skeleton.config, "num_hidden_layers", 1))
    checks = []
    for key in sample_weights(adapter.targets, num_layers):
        check = check_weight(cfg, key, shards, partial, adapter.folder, merger.is_quantised(key),
                             compute, saved, device)
        say(f"  {check.line()}")
        checks.append(check)
    return checks


# --- stage 3, streamed ---------------------------------------------------------------------

def refuse_resized_vocabulary(tok, skeleton) -> None:
    vocab = skeleton.get_input_embeddings().num_embeddings
    if len(tok) > vocab:
        raise MergeError(f"the tokenizer has {len(tok)} tokens, the base's embeddings {vocab}: training "
                         "added tokens and resized the embeddings, which the streamed merge does not "
                         "reproduce; merge in memory (drop --streamed)")


def prepare_merger(cfg, tok, adapter: StreamedAdapter, shards: BaseShards, device: str,
                   dtype: str) -> WeightMerger:
    """Everything the merge needs, and every refusal, before a file is written."""
    skeleton, quantizer = training_skeleton(cfg, shards.folder, dtype, models.is_qlora(cfg))
    refuse_resized_vocabulary(tok, skeleton)
    merger = WeightMerger(skeleton, quantizer, adapter, device, dtype, cfg.pipeline.merged_dtype)
    check_targets(adapter, merger, shards)
    return merger


def write_streamed(merger: WeightMerger, shards: BaseShards, partial: Path, saved: str, say) -> None:
    weight_map = write_shards(shards, merger, partial, say)
    write_index(partial, weight_map, shards)
    write_config(shards.folder, partial, saved)


def merge_streamed(cfg, choice, out: Path, device: str, dtype: str, full_check: bool, say=print) -> dict:
    """Merge shard by shard into out.partial, verify (sampled layers; the logits as well when
    the whole model fits), then move it into place. Returns the manifest."""
    quantized, saved = models.is_qlora(cfg), cfg.pipeline.merged_dtype
    tok = models.load_tokenizer(cfg, choice.path)
    probes = models.probe_ids(tok, cfg)
    adapter, shards = StreamedAdapter(choice.path), base_shards(cfg.base_model)
    merger = prepare_merger(cfg, tok, adapter, shards, device, dtype)
    t0 = time.time()
    if full_check:
        say("the whole model fits here: base and base + adapter first, for the logit check")
        base_logits, ref_logits = models.reference_logits(cfg, choice, device, dtype, quantized, probes)
        floor = models.dequantised_floor(cfg, device, dtype, quantized, probes, base_logits, saved)
    say(f"merging shard by shard ({len(shards.files)} shard(s), {device}, compute {dtype})")
    partial = merge_output.fresh_partial(out)
    write_streamed(merger, shards, partial, saved, say)
    merge_output.save_tokenizer_and_generation(cfg, tok, partial)

    say("verifying a sample of merged weights (first, middle and last layer)")
    checks = verify_layers(cfg, adapter, merger, shards, partial, dtype, saved, device, say)
    verification = {"method": "per-layer: the adapter's weights in the first, middle and last "
                              "decoder layers against NF4(base) + delta recomputed with "
                              "bitsandbytes' Linear4bit and PEFT's LoRA layer",
                    "layers": [c.__dict__ for c in checks], "passed": all(c.passed for c in checks)}
    sample = None
    failure = None if verification["passed"] else "a merged weight does not match NF4(base) + delta (see above)"
    if full_check:
        say("verifying the merged folder (the whole model fits here)")
        verdict, sample = models.check_reloaded(cfg, partial, probes, ref_logits, base_logits, floor,
                                               device, dtype, tok)
        say(f"verify: {verdict.line()}")
        verification = {**verdict.__dict__, **models.probe_counts(probes), **verification,
                        "method": "logits (the merged folder reloaded whole against base + adapter) "
                                  "and " + verification["method"],
                        "passed": verification["passed"] and verdict.passed}
        failure = failure or (None if verdict.passed else verdict.failure(saved))
    manifest = merge_output.manifest_for(cfg, choice, tok, dtype, device, verification,
                                  route="streamed: shard by shard, " + merge_output.method_of(quantized))
    merge_output.finish(partial, out, manifest, failure, sample, t0, say)
    return manifest
