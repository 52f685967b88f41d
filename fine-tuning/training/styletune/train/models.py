"""Models as stages 3-5 load and check them: the base as training saw it (NF4 for
QLoRA), the tokenizer training saved, probe conversations in the training format,
their logits, and the verdict on a merged model against base + adapter, measured
against this machine's own rounding noise."""
import json
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from styletune.data.tokens import config_tokens, training_template
from styletune.train.bnb_cpu import keep_4bit_layers_trainable

# The merge must reproduce the adapter's effect on the logits: the mean
# |merged - (base + adapter)| may be at most this share of the mean
# |(base + adapter) - base| (a merge that dropped or swapped the adapter scores
# about 1.0 or more).
EFFECT_SHARE = 0.5


# ... and at its strength: the merged model's shift from the base, regressed on the
# adapter's (<m - b, r - b> / |r - b|^2), may be off 1 by at most this. A merge at the
# wrong scale (lora_alpha / r misread, rsLoRA's sqrt(r)) keeps much of the effect and
# can pass the share test, not this one; rounding noise, not aligned with the
# adapter's shift, hardly moves the regression.
SCALE_TOLERANCE = 0.1


# That test only means something when the adapter's effect stands well above the
# rounding noise of this merge on this machine, measured each time as the base alone
# through both routes (bitsandbytes' 4-bit forward, and the dequantised weights
# saved in merged_dtype): a correct merge differs from base + adapter by about that
# noise, a lost adapter by the whole effect.
SIGNAL_OVER_NOISE = 4.0


PROBE_TOKENS = 128


SAMPLE_TOKENS = 40


def is_qlora(cfg) -> bool:
    return cfg.axolotl.load_in_4bit or cfg.axolotl.adapter == "qlora"


def merges_into_nf4(cfg) -> bool:
    """Stage 3 adds a QLoRA adapter to the NF4-rounded base (style_pipeline.merge_into:
    nf4), not to the original weights."""
    return is_qlora(cfg) and cfg.pipeline.merge_into == "nf4"


def training_bnb_config(cfg, dtype):
    """The BitsAndBytesConfig Axolotl builds for QLoRA training (loaders/model.py)."""
    import torch
    from transformers import BitsAndBytesConfig
    kwargs = {"load_in_4bit": True, "llm_int8_threshold": 6.0, "llm_int8_has_fp16_weight": False,
              "bnb_4bit_compute_dtype": dtype, "bnb_4bit_use_double_quant": True,
              "bnb_4bit_quant_type": "nf4", "bnb_4bit_quant_storage": torch.bfloat16}
    kwargs.update(cfg.axolotl.bnb_config_kwargs)
    return BitsAndBytesConfig(**kwargs)


def load_training_base(cfg, device: str, dtype_name: str, quantized: bool):
    """The base as training saw it: NF4 for QLoRA (bitsandbytes), else unquantised."""
    import torch
    from transformers import AutoModelForCausalLM
    dtype = getattr(torch, dtype_name)
    kwargs = {"dtype": dtype, "device_map": device}
    if quantized:
        kwargs["quantization_config"] = training_bnb_config(cfg, dtype)
    model = AutoModelForCausalLM.from_pretrained(cfg.base_model, **kwargs)
    if quantized:
        # As in training: never bitsandbytes' inference-only fused CPU path (bnb_cpu).
        keep_4bit_layers_trainable(model)
    model.eval()
    return model


def load_tokenizer(cfg, adapter: Path):
    """The tokenizer training saved beside the adapter (with the config's special
    tokens), else the base model's; carrying the chat template training rendered."""
    from transformers import AutoTokenizer
    source = next((p for p in (adapter, adapter.parent) if (p / "tokenizer.json").is_file()),
                  cfg.base_model)
    tok = AutoTokenizer.from_pretrained(str(source))
    # As Axolotl does before training: a token the vocabulary lacks is added.
    special, extra = config_tokens(cfg)
    tok.add_special_tokens(special)
    tok.add_tokens(extra, special_tokens=True)
    tok.chat_template = training_template(cfg)
    return tok


def probe_conversations(cfg) -> list[list[dict]]:
    """A few conversations in the training format: validation examples when stage 1 wrote them."""
    convs = []
    if cfg.validation_path.is_file():
        for line in cfg.validation_path.read_text(encoding="utf-8").splitlines()[:3]:
            convs.append(json.loads(line)["messages"])
    if not convs:
        convs = [[{"role": "user", "content": "The station turned slowly above the clouds."},
                  {"role": "assistant", "content": "Nobody aboard had slept for two days, and "
                   "the captain had stopped pretending that she would."}]]
    return convs


def probe_ids(tok, cfg) -> list:
    """Token ids of the probe conversations, rendered as in training, cut to PROBE_TOKENS."""
    import torch
    out = []
    for conv in probe_conversations(cfg):
        ids = tok.apply_chat_template(conv, tokenize=True, return_dict=False)
        ids = ids["input_ids"] if isinstance(ids, dict) else ids
        out.append(torch.tensor([list(ids)[:PROBE_TOKENS]]))
    return out


def logits_of(model, probes) -> list:
    import torch
    device = next(model.parameters()).device
    with torch.no_grad():
        return [model(ids.to(device)).logits.float().cpu() for ids in probes]


def attach_adapter(model, adapter: Path):
    from peft import PeftModel
    peft_model = PeftModel.from_pretrained(model, str(adapter))
    peft_model.eval()
    return peft_model


@contextmanager
def weights_as_saved(model, dtype_name: str):
    """Run the model as if its weights had been saved in `dtype_name` and loaded back:
    each layer's weights are rounded while it runs and restored after (one layer's
    copy at a time, so an 8B model needs no second copy)."""
    import torch
    dtype = getattr(torch, dtype_name)

    def round_params(module, _args):
        module._unrounded = [(p, p.data) for p in module.parameters(recurse=False)]
        for p, data in module._unrounded:
            p.data = data.to(dtype).to(data.dtype)

    def restore(module, _args, _out):
        for p, data in module.__dict__.pop("_unrounded"):
            p.data = data

    handles = [h for m in model.modules() if any(True for _ in m.parameters(recurse=False))
               for h in (m.register_forward_pre_hook(round_params), m.register_forward_hook(restore))]
    try:
        yield model
    finally:
        for h in handles:
            h.remove()


@dataclass
class Verdict:
    mean_abs_diff: float
    max_abs_diff: float
    adapter_effect: float
    top1_agreement: float
    noise_floor: float
    scale: float                # the merged model's shift from the base, projected on the adapter's (1: right)
    tolerance: float = field(init=False)
    distinguishable: bool = field(init=False)
    passed: bool = field(init=False)

    def __post_init__(self):
        self.tolerance = EFFECT_SHARE * self.adapter_effect
        self.distinguishable = self.adapter_effect >= SIGNAL_OVER_NOISE * self.noise_floor
        self.passed = (self.distinguishable and self.mean_abs_diff <= self.tolerance
                       and abs(self.scale - 1) <= SCALE_TOLERANCE)

    def line(self) -> str:
        return (f"mean |merged - (base + adapter)| = {self.mean_abs_diff:.2e} "
                f"(max {self.max_abs_diff:.2e}); the adapter's own effect = {self.adapter_effect:.2e}; "
                f"tolerance {self.tolerance:.2e}; rounding noise (measured) {self.noise_floor:.2e}; "
                f"its shift from the base {self.scale:.3f} times the adapter's; "
                f"top-1 token agreement {self.top1_agreement:.1%}")

    def failure(self, saved_dtype: str) -> str:
        if not self.distinguishable:
            return (f"the adapter moves the logits by {self.adapter_effect:.1e}, less than "
                    f"{SIGNAL_OVER_NOISE:g}x this merge's rounding noise ({self.noise_floor:.1e}): the check "
                    "cannot tell a merged adapter from a lost one, and the merged model would barely "
                    f"differ from the base. Set style_pipeline.merged_dtype: float32 (now {saved_dtype}), "
                    "or train for more steps")
        if self.mean_abs_diff <= self.tolerance:
            return (f"the merged model moves from the base {self.scale:.2f} times the adapter's shift, "
                    "not once (see above): the merge scaled the adapter wrongly (lora_alpha / lora_r, "
                    "use_rslora). Check that the config is the one that trained this adapter")
        return ("the merged model does not reproduce base + adapter (see above). Check that the "
                "config is the one that trained this adapter")


def _flat(logits):
    import torch
    return torch.cat([x.flatten(0, 1) for x in logits])


def compare_logits(merged, reference, base, floor) -> Verdict:
    """How closely the merged model reproduces base + adapter, against the adapter's
    effect and the rounding noise `floor` (mean |base through the merge's route - base|)."""
    m, r, b = _flat(merged), _flat(reference), _flat(base)
    shift = (r - b).double()
    return Verdict(mean_abs_diff=(m - r).abs().mean().item(), max_abs_diff=(m - r).abs().max().item(),
                   adapter_effect=(r - b).abs().mean().item(),
                   top1_agreement=(m.argmax(-1) == r.argmax(-1)).float().mean().item(),
                   noise_floor=floor,
                   scale=((m - b).double() * shift).sum().item() / max(shift.square().sum().item(), 1e-30))


def route_noise(base_logits, dequantised_logits, compute_dtype: str) -> float:
    """Mean |logits| difference of the base alone through the two routes; never below
    the compute dtype's resolution at these logits (eps x mean |logit|), since a
    difference under that is rounding whatever the route (the two routes can agree
    exactly: bitsandbytes' float32 CPU path is dequantise-then-matmul)."""
    import torch
    b = _flat(base_logits)
    measured = (_flat(dequantised_logits) - b).abs().mean().item()
    return max(measured, torch.finfo(getattr(torch, compute_dtype)).eps * b.abs().mean().item())


def greedy_sample(model, tok, cfg) -> str:
    """A short greedy continuation of the first probe prompt (the user turn only)."""
    import torch
    prompt = [probe_conversations(cfg)[0][0]]
    ids = tok.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True, return_dict=False)
    ids = ids["input_ids"] if isinstance(ids, dict) else ids
    device = next(model.parameters()).device
    with torch.no_grad():
        out = model.generate(torch.tensor([list(ids)], device=device), max_new_tokens=SAMPLE_TOKENS,
                             do_sample=False, pad_token_id=tok.pad_token_id)
    return tok.decode(out[0, len(ids):], skip_special_tokens=True)


def generation_config(cfg, tok, base_model: str):
    """The base's generation defaults, with the turn's end token first among the EOS
    ids (generation stops where training taught a passage to end) and the config's sampling."""
    from transformers import GenerationConfig
    try:
        gen = GenerationConfig.from_pretrained(base_model)
    except OSError:
        gen = GenerationConfig()
    end = tok.convert_tokens_to_ids(tok.eos_token)
    others = gen.eos_token_id if isinstance(gen.eos_token_id, list) else \
        [gen.eos_token_id] if gen.eos_token_id is not None else []
    gen.eos_token_id = [end] + [i for i in others if i != end]
    gen.pad_token_id = tok.pad_token_id
    s = cfg.pipeline.sampling
    gen.do_sample, gen.temperature, gen.top_p, gen.min_p = True, s["temperature"], s["top_p"], s["min_p"]
    # no repetition_penalty: transformers' and vLLM's cover the whole prompt, not the
    # last repeat_last_n tokens as llama.cpp's and Ollama's do
    gen.top_k = s["top_k"]
    return gen


def reference_logits(cfg, choice, device: str, dtype: str, quantized: bool, probes):
    """(base, base + adapter) logits on the probes, the base loaded as training saw it."""
    import gc
    base = load_training_base(cfg, device, dtype, quantized)
    base_logits = logits_of(base, probes)
    with_adapter = attach_adapter(base, choice.path)
    ref_logits = logits_of(with_adapter, probes)
    del base, with_adapter
    gc.collect()
    return base_logits, ref_logits


def dequantised_base(cfg, device: str, dtype: str, quantized: bool):
    base = load_training_base(cfg, device, dtype, quantized)
    return base.dequantize() if quantized else base  # the NF4-rounded weights, in the compute dtype


def rounding_floor(dequantised, base_logits, probes, saved: str, dtype: str) -> float:
    """The merge's own rounding noise: the base alone, dequantised and saved in merged_dtype."""
    with weights_as_saved(dequantised, saved):
        return route_noise(base_logits, logits_of(dequantised, probes), dtype)


def dequantised_floor(cfg, device: str, dtype: str, quantized: bool, probes, base_logits, saved: str) -> float:
    """rounding_floor on a base loaded for the purpose and freed after (the streamed route)."""
    import gc
    base = dequantised_base(cfg, device, dtype, quantized)
    floor = rounding_floor(base, base_logits, probes, saved, dtype)
    del base
    gc.collect()
    return floor


def check_reloaded(cfg, partial: Path, probes, ref_logits, base_logits, floor: float, device: str,
                   dtype: str, tok) -> tuple[Verdict, str]:
    """The merged folder loaded back whole: its logits against base + adapter, and a greedy sample."""
    import gc

    import torch
    from transformers import AutoModelForCausalLM
    reloaded = AutoModelForCausalLM.from_pretrained(str(partial), dtype=getattr(torch, dtype),
                                                    device_map=device)
    reloaded.eval()
    verdict = compare_logits(logits_of(reloaded, probes), ref_logits, base_logits, floor)
    sample = greedy_sample(reloaded, tok, cfg)
    del reloaded
    gc.collect()
    return verdict, sample


def probe_counts(probes) -> dict:
    return {"probe_sequences": len(probes), "probe_tokens": sum(p.shape[1] for p in probes)}
