"""What a streamed merge reads (merge_streamed.py): the adapter's safetensors and the
base model's shards, each header first and one tensor at a time, so no file is ever
loaded whole; and the sizes the route plan needs (resources.py)."""
import json
import math
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path

from styletune import paths
from styletune.errors import MergeError
from styletune.train import model_size
from styletune.train.adapter import ADAPTER_CONFIG, ADAPTER_FILE

INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"
LORA_KEY = re.compile(r"^base_model\.model\.(?P<module>.+)\.lora_(?P<which>[AB])\.weight$")

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
        self.meta = json.loads((folder / ADAPTER_CONFIG).read_text(encoding="utf-8"))
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
