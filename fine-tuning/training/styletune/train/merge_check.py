"""Stage 3's check of a streamed merge, for a model too big to load for the logit
check: the adapter's weights in the first, middle and last decoder layers recomputed
independently (bitsandbytes' Linear4bit built from the config, PEFT's own LoRA layer)
and compared with what the merge wrote."""
import re
from dataclasses import dataclass, field
from pathlib import Path

from styletune.errors import MergeError
from styletune.train import models
from styletune.train.adapter import ADAPTER_FILE
from styletune.train.models import EFFECT_SHARE
from styletune.train.shards import BaseShards, StreamedAdapter

LAYER_INDEX = re.compile(r"\.layers\.(\d+)\.")


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
        return (f"{self.weight}: {self.mismatched:.2%} of values differ from base + delta "
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


def verify_layers(cfg, adapter: StreamedAdapter, merger, shards: BaseShards,
                  partial: Path, compute: str, saved: str, device: str, say) -> list[WeightCheck]:
    """Each sampled weight checked and said; `merger` (merge_streamed.WeightMerger) knows
    the model's layers and which weights training quantised."""
    num_layers = int(getattr(merger.skeleton.config, "num_hidden_layers", 1))
    checks = []
    for key in sample_weights(adapter.targets, num_layers):
        check = check_weight(cfg, key, shards, partial, adapter.folder, merger.is_quantised(key),
                             compute, saved, device)
        say(f"  {check.line()}")
        checks.append(check)
    return checks
