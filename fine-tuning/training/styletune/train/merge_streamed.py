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

The files are read by shards.py, the sample of layers is checked by merge_check.py;
this module merges and writes.
"""
import json
import math
import time
from pathlib import Path

from styletune import paths
from styletune.errors import MergeError
from styletune.fileio import write_atomic
from styletune.train import merge_output, model_size, models
from styletune.train.merge_check import verify_layers
from styletune.train.shards import INDEX_FILE, BaseShards, StreamedAdapter, base_shards, read_header

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
    skeleton, quantizer = training_skeleton(cfg, shards.folder, dtype, models.merges_into_nf4(cfg))
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
    quantized, saved = models.merges_into_nf4(cfg), cfg.pipeline.merged_dtype
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
                              "decoder layers against base + delta recomputed independently "
                              "(NF4(base) with bitsandbytes' Linear4bit where merge_into is nf4)",
                    "layers": [c.__dict__ for c in checks], "passed": all(c.passed for c in checks)}
    sample = None
    failure = None if verification["passed"] else "a merged weight does not match base + delta (see above)"
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
                                  route="streamed: shard by shard, " + merge_output.method_of(cfg))
    merge_output.finish(partial, out, manifest, failure, sample, t0, say)
    return manifest
