"""Stage 3: choose the adapter, merge it into the base the way training saw the
base, verify the merged folder against base + adapter, and write it.

A QLoRA adapter learned to correct the NF4-rounded base, not the original
bf16 weights. So the base is loaded exactly as Axolotl loads it for training
(bitsandbytes NF4, double quantisation, the config's `bnb_config_kwargs`),
dequantised, and the adapter is added to that: the equivalent of Axolotl's
`merge-lora` with NF4 simulation, done with the same bitsandbytes code that
trained, on GPU or CPU. A plain LoRA config (no `load_in_4bit`) merges into the
unquantised base.

That merge holds the whole model. When it does not fit (Llama-3.1-70B: ~131 GiB in
bf16), or with --streamed, merge_streamed.py does the same arithmetic shard by shard;
choose_route decides and says why.
"""
import json
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from styletune import paths
from styletune.config import load_config
from styletune.data.tokens import training_template
from styletune.errors import UserError
from styletune.fileio import sha256_bytes, write_atomic
from styletune.train.bnb_cpu import keep_4bit_layers_trainable
from styletune.train.checkpoints import checkpoint_step, checkpoints
from styletune.train.model_size import cpu_compute_dtype, gpu_bytes_needed, model_shape, parameter_count

ADAPTER_FILE = "adapter_model.safetensors"
MANIFEST = "merge_manifest.json"
# Bytes per value, by the dtype names safetensors headers use; dtype_bytes also takes the
# torch names merged_dtype and the compute dtype use.
DTYPE_BYTES = {"F64": 8, "F32": 4, "BF16": 2, "F16": 2, "I64": 8, "I32": 4, "I16": 2,
               "I8": 1, "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}
SAFETENSORS_NAMES = {"float32": "F32", "bfloat16": "BF16", "float16": "F16"}
# The merge must reproduce the adapter's effect on the logits: the mean
# |merged - (base + adapter)| may be at most this share of the mean
# |(base + adapter) - base| (a merge that dropped or swapped the adapter scores
# about 1.0 or more).
EFFECT_SHARE = 0.5
# That test only means something when the adapter's effect stands well above the
# rounding noise of this merge on this machine, measured each time as the base alone
# through both routes (bitsandbytes' 4-bit forward, and the dequantised weights
# saved in merged_dtype): a correct merge differs from base + adapter by about that
# noise, a lost adapter by the whole effect.
SIGNAL_OVER_NOISE = 4.0
PROBE_TOKENS = 128
SAMPLE_TOKENS = 40


class MergeError(UserError):
    """Stage 3 cannot go on; the message says why and what to do."""


@dataclass
class AdapterChoice:
    path: Path
    reason: str
    step: int | None = None
    eval_loss: float | None = None


def _trainer_state(folder: Path) -> dict:
    path = folder / "trainer_state.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _eval_loss_at(state: dict, step: int | None):
    losses = [e["eval_loss"] for e in state.get("log_history", [])
              if "eval_loss" in e and e.get("step") == step]
    return losses[-1] if losses else None


def choose_adapter(output_dir: Path) -> AdapterChoice:
    """The final adapter; else the best checkpoint by validation loss, when training
    recorded one; else the newest checkpoint by step number."""
    if not output_dir.is_dir():
        raise MergeError(f"no training output at {paths.shown(output_dir)}: run 2_train_lora.sh "
                         "first, or name an adapter with --adapter PATH")
    steps = checkpoints(output_dir, holding=ADAPTER_FILE)
    state = _trainer_state(steps[-1][1]) if steps else {}
    best = state.get("best_model_checkpoint")
    best_dir = output_dir / Path(best).name if best else None
    best_step = state.get("best_global_step")
    final = output_dir / ADAPTER_FILE
    newest_ckpt_time = (steps[-1][1] / ADAPTER_FILE).stat().st_mtime if steps else 0
    if final.is_file() and final.stat().st_mtime >= newest_ckpt_time - 1:
        reason = "the final adapter training saved in output_dir"
        step = state.get("global_step")
        if best_dir is not None:
            # load_best_model_at_end reloads the best checkpoint before the final save
            reason += f" (training recorded {best_dir.name} as best by validation loss)"
            step = best_step
        return AdapterChoice(output_dir, reason, step, state.get("best_metric") or
                             _eval_loss_at(state, step))
    note = (" (the final adapter in output_dir is older than the newest checkpoint, so it "
            "belongs to an earlier run)" if final.is_file() else "")
    if best_dir is not None and (best_dir / ADAPTER_FILE).is_file():
        return AdapterChoice(best_dir, "the best checkpoint by validation loss" + note,
                             best_step, state.get("best_metric"))
    if steps:
        step, path = steps[-1]
        return AdapterChoice(path, "the newest checkpoint by step number (no validation loss "
                             "recorded)" + note, step, _eval_loss_at(state, step))
    raise MergeError(f"no adapter in {paths.shown(output_dir)} (no {ADAPTER_FILE}, no "
                     "checkpoint-N/): run 2_train_lora.sh first, or name one with --adapter PATH")


def adapter_by_hand(path: Path) -> AdapterChoice:
    if not (path / "adapter_config.json").is_file() or not (path / ADAPTER_FILE).is_file():
        raise MergeError(f"--adapter {paths.shown(path)}: no adapter_config.json and "
                         f"{ADAPTER_FILE} there; name a training output folder or a checkpoint-N in it")
    step = checkpoint_step(path)
    return AdapterChoice(path, "named with --adapter", step,
                         _eval_loss_at(_trainer_state(path), step) if step is not None else None)


def check_adapter_base(cfg, choice: AdapterChoice) -> None:
    """An adapter only fits the base it was trained on."""
    meta = json.loads((choice.path / "adapter_config.json").read_text(encoding="utf-8"))
    trained_on = str(meta.get("base_model_name_or_path") or "")
    if trained_on and Path(trained_on).name != Path(cfg.base_model).name:
        raise MergeError(f"the adapter in {paths.shown(choice.path)} was trained on {trained_on!r}, "
                         f"but the config's base_model is {cfg.data['base_model']!r}: use the "
                         "config that trained it")


# --- resources --------------------------------------------------------------------

def dtype_bytes(dtype: str) -> int:
    """Bytes per value of a torch dtype name ("bfloat16") or a safetensors one ("BF16")."""
    return DTYPE_BYTES[SAFETENSORS_NAMES.get(dtype, dtype)]


def base_parameter_count(cfg) -> int | None:
    """Parameters of the base model, from its config.json (None if not local or cached)."""
    shape = model_shape(cfg)
    return parameter_count(shape) if shape is not None else None


def _gib(n_bytes: float) -> float:
    return n_bytes / 2**30


def available_ram_gib() -> float:
    import psutil
    return _gib(psutil.virtual_memory().available)


def pick_device(requested: str, params: int | None) -> tuple[str, str]:
    """(device, why). A GPU is used when present with room for the model in bf16."""
    import torch
    if requested == "cpu":
        return "cpu", "asked for with --device cpu"
    if not torch.cuda.is_available():
        if requested == "cuda":
            raise MergeError("--device cuda: no CUDA GPU is visible to PyTorch; use --device cpu")
        return "cpu", "no CUDA GPU"
    free, _ = torch.cuda.mem_get_info()
    need = gpu_bytes_needed(params or 0)
    if free < need and requested == "auto":
        return "cpu", f"the GPU has {_gib(free):.1f} GiB free, the merge needs ~{_gib(need):.0f}"
    return "cuda", torch.cuda.get_device_name(0)


def compute_dtype(device: str, params: int | None) -> str:
    """bf16 on a GPU; fp32 on CPU when RAM allows (exact, and CPU bf16 is slow), else bf16."""
    if device == "cuda":
        return "bfloat16"
    return cpu_compute_dtype(params, available_ram_gib() * 2**30)


def placement(cfg, requested: str) -> tuple[str, str, str, int | None]:
    """(device, why, compute dtype, parameter count) for loading the config's model."""
    params = base_parameter_count(cfg)
    device, why = pick_device(requested, params)
    return device, why, compute_dtype(device, params), params


def in_memory_ram_gib(params: int, dtype: str) -> float:
    """RAM the in-memory merge on CPU needs: the whole base in the compute dtype, plus half
    again for the copy PEFT's merge and save_pretrained make of one layer at a time and the
    libraries."""
    return _gib(params * dtype_bytes(dtype)) * 1.5


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
    """In memory when the whole model fits (on the GPU pick_device chose, or in RAM), streamed
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
        from styletune.train import merge_streamed
        return merge_streamed.resource_lines(merge_streamed.base_shards(cfg.base_model), out,
                                             cfg.pipeline.merged_dtype)
    save_bytes = dtype_bytes(cfg.pipeline.merged_dtype)
    params, lines = route.params, []
    free_disk = _gib(shutil.disk_usage(out.parent).free)
    if params:
        need_disk = _gib(params * save_bytes) * 1.05
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

def is_qlora(cfg) -> bool:
    return bool(cfg.data.get("load_in_4bit")) or cfg.data.get("adapter") == "qlora"


def training_bnb_config(cfg, dtype):
    """The BitsAndBytesConfig Axolotl builds for QLoRA training (loaders/model.py)."""
    import torch
    from transformers import BitsAndBytesConfig
    kwargs = {"load_in_4bit": True, "llm_int8_threshold": 6.0, "llm_int8_has_fp16_weight": False,
              "bnb_4bit_compute_dtype": dtype, "bnb_4bit_use_double_quant": True,
              "bnb_4bit_quant_type": "nf4", "bnb_4bit_quant_storage": torch.bfloat16}
    kwargs.update(cfg.data.get("bnb_config_kwargs") or {})
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
    tok.add_special_tokens({k: v for k, v in (cfg.data.get("special_tokens") or {}).items()
                            if isinstance(v, str)})
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
    tolerance: float = field(init=False)
    distinguishable: bool = field(init=False)
    passed: bool = field(init=False)

    def __post_init__(self):
        self.tolerance = EFFECT_SHARE * self.adapter_effect
        self.distinguishable = self.adapter_effect >= SIGNAL_OVER_NOISE * self.noise_floor
        self.passed = self.distinguishable and self.mean_abs_diff <= self.tolerance

    def line(self) -> str:
        return (f"mean |merged - (base + adapter)| = {self.mean_abs_diff:.2e} "
                f"(max {self.max_abs_diff:.2e}); the adapter's own effect = {self.adapter_effect:.2e}; "
                f"tolerance {self.tolerance:.2e}; rounding noise (measured) {self.noise_floor:.2e}; "
                f"top-1 token agreement {self.top1_agreement:.1%}")

    def failure(self, saved_dtype: str) -> str:
        if not self.distinguishable:
            return (f"the adapter moves the logits by {self.adapter_effect:.1e}, less than "
                    f"{SIGNAL_OVER_NOISE:g}x this merge's rounding noise ({self.noise_floor:.1e}): the check "
                    "cannot tell a merged adapter from a lost one, and the merged model would barely "
                    f"differ from the base. Set style_pipeline.merged_dtype: float32 (now {saved_dtype}), "
                    "or train for more steps")
        return ("the merged model does not reproduce base + adapter (see above). Check that the "
                "config is the one that trained this adapter")


def _flat(logits):
    import torch
    return torch.cat([x.flatten(0, 1) for x in logits])


def compare_logits(merged, reference, base, floor) -> Verdict:
    """How closely the merged model reproduces base + adapter, against the adapter's
    effect and the rounding noise `floor` (mean |base through the merge's route - base|)."""
    m, r, b = _flat(merged), _flat(reference), _flat(base)
    return Verdict(mean_abs_diff=(m - r).abs().mean().item(), max_abs_diff=(m - r).abs().max().item(),
                   adapter_effect=(r - b).abs().mean().item(),
                   top1_agreement=(m.argmax(-1) == r.argmax(-1)).float().mean().item(),
                   noise_floor=floor)


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
    return gen


def reference_logits(cfg, choice: AdapterChoice, device: str, dtype: str, quantized: bool, probes):
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


def fresh_partial(out: Path) -> Path:
    """The folder the merge writes into; it replaces `out` only once verified."""
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    return partial


def save_tokenizer_and_generation(cfg, tok, partial: Path) -> None:
    tok.save_pretrained(partial)
    generation_config(cfg, tok, cfg.base_model).save_pretrained(partial)


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


def method_of(quantized: bool) -> str:
    return ("QLoRA: base loaded in NF4 as in training (bitsandbytes), dequantised, adapter added"
            if quantized else "LoRA: adapter added to the unquantised base")


def manifest_for(cfg, choice: AdapterChoice, tok, dtype: str, device: str, verification: dict,
                 route: str) -> dict:
    return {
        "base_model": cfg.data["base_model"],
        "adapter": paths.shown(choice.path), "adapter_choice": choice.reason,
        "checkpoint_step": choice.step, "validation_loss": choice.eval_loss,
        "adapter_sha256": sha256_bytes((choice.path / ADAPTER_FILE).read_bytes()),
        "merge_method": method_of(is_qlora(cfg)), "merge_route": route,
        "chat_template": cfg.chat_template, "eos_token": tok.eos_token,
        "saved_dtype": cfg.pipeline.merged_dtype, "compute_dtype": dtype, "device": device,
        "verification": verification,
        "config": paths.shown(cfg.path), "config_sha256": cfg.sha256(),
    }


def finish(partial: Path, out: Path, manifest: dict, failure: str | None, sample: str | None,
           t0: float, say) -> None:
    """Write the manifest; move the folder into place only when the verification passed."""
    write_atomic(partial / MANIFEST, (json.dumps(manifest, indent=2) + "\n").encode())
    if failure:
        raise MergeError(f"{failure}. The merged folder is left in {paths.shown(partial)} for "
                         "inspection; nothing was replaced")
    if sample is not None:
        say(f'sample (greedy, {SAMPLE_TOKENS} tokens): "{sample.strip()}"')
    _move_into_place(partial, out)
    say(f"took {time.time() - t0:.0f} s")


def merge(cfg, choice: AdapterChoice, out: Path, device: str, dtype: str, say=print) -> dict:
    """Merge in memory into out.partial, verify it, then move it into place. Returns the manifest."""
    import gc

    import torch
    quantized = is_qlora(cfg)
    tok = load_tokenizer(cfg, choice.path)
    probes = probe_ids(tok, cfg)
    saved = cfg.pipeline.merged_dtype

    t0 = time.time()
    say("loading the base as training saw it" + (" (NF4, bitsandbytes)" if quantized else ""))
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


def _move_into_place(partial: Path, out: Path) -> None:
    """The old folder is removed only after the new one is complete and verified."""
    old = out.with_name(out.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        out.rename(old)
    partial.rename(out)
    shutil.rmtree(old, ignore_errors=True)


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
    print(f"base model: {cfg.data['base_model']}")
    print("method: " + ("QLoRA - NF4 base as in training, dequantised, adapter added"
                        if is_qlora(cfg) else "LoRA - adapter added to the unquantised base"))
    route = choose_route(cfg, args.device, args.streamed)
    print(f"route: {route.why}")
    print(f"device: {route.device} ({route.device_why}); compute {route.dtype}, "
          f"saved as {cfg.pipeline.merged_dtype}")
    if route.streamed:
        from styletune.train import merge_streamed
        merge_streamed.check_adapter(choice.path)
        print("verify: " + ("the logits of the whole merged model, and " if route.fits else "")
              + "a sample of merged weights (first, middle and last layer)")
    for line in check_resources(cfg, out, route):
        print(f"  ok  {line}")
    if out.exists() and not args.force:
        raise MergeError(f"{paths.shown(out)} already exists: add --force to replace it "
                               "(the old folder stays until the new one is verified)")
    print(f"output: {paths.shown(out)}")
    if args.dry_run:
        print("dry run: nothing loaded or written")
        return 0
    if route.streamed:
        merge_streamed.merge_streamed(cfg, choice, out, route.device, route.dtype, full_check=route.fits)
    else:
        merge(cfg, choice, out, route.device, route.dtype)
    size = sum(p.stat().st_size for p in out.iterdir()) / 2**30
    print(f"wrote {paths.shown(out)} ({size:.1f} GiB)")
    print(f"next: python fine-tuning/training/5_configure_continue.py --config {paths.shown(cfg.path)}")
    return 0
