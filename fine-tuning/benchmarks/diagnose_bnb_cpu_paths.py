#!/usr/bin/env python3
"""Diagnosis: what bitsandbytes' AVX512-BF16 CPU path changes in a QLoRA run.

bitsandbytes 0.50 gives 4-bit layers a second CPU path when the CPU has
AVX512-BF16: the first forward in eval mode without gradients (an evaluation)
repacks each layer's weight *in place* into a fused-kernel layout (bf16 scales,
double quantisation undone), and from then on every forward of that layer, in
training too, runs the fused `gemv_4bit` op, which casts activations to bf16 and
has no backward. This script measures each effect on the rehearsal model
(SmolLM2-135M in NF4, float32 compute, LoRA r=16 on every linear layer), and the
same with styletune's guard (`bnb_cpu.keep_4bit_layers_trainable`) applied:

  forward:   mean |logits| difference, fused path against the dequantise path
  backward:  LoRA gradients after one evaluation forward, against a fresh model's
  weights:   the dequantised weights after the repacking, against the original

Run:    python fine-tuning/benchmarks/diagnose_bnb_cpu_paths.py
Dated results from real runs: docs/benchmarks.md.
On a CPU without AVX512-BF16 the two paths are one, and the script says so.
"""
import argparse
import sys

from styletune import paths
from styletune.startup import setup_process
from styletune.train import bnb_cpu

TEXT = ("The station turned slowly above the clouds. Nobody aboard had slept for two days, "
        "and the captain had stopped pretending that she would. In the archive chapel the "
        "lamps burned low, and Fenn counted the shelves twice before he spoke.")


def load(model_dir, guard: bool):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig
    q = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                           bnb_4bit_compute_dtype=torch.float32, bnb_4bit_quant_storage=torch.bfloat16)
    model = AutoModelForCausalLM.from_pretrained(model_dir, quantization_config=q, dtype=torch.float32,
                                                 device_map="cpu")
    if guard:
        bnb_cpu.keep_4bit_layers_trainable(model)
    torch.manual_seed(0)
    lora = LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", init_lora_weights=False)
    return get_peft_model(model, lora)


def logits(model, ids, train: bool):
    import torch
    model.train(train)
    with torch.no_grad():
        return model(ids).logits.float()


def lora_grads(model, ids) -> dict:
    model.train()
    model.zero_grad()
    model(ids, labels=ids).loss.backward()
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def first_4bit_weight(model):
    import bitsandbytes as bnb
    import bitsandbytes.functional as F
    layer = next(m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit))
    w = layer.weight
    state = w.quant_state
    if getattr(state, "packing_format_for_cpu", False):   # what save/merge do first
        data, state = F._convert_weight_packed_for_cpu_inverse(w.data.clone(), state)
        return F.dequantize_4bit(data, state)
    return F.dequantize_4bit(w.data, state)


def grad_report(fresh: dict, after: dict) -> str:
    import torch

    def norm(grads, names):
        return float(torch.stack([grads[n].norm() for n in names if n in grads]).sum()) if names else 0.0
    names = [n for n in fresh if "lora_A" in n]
    first = [n for n in names if ".layers.0." in n]
    return (f"LoRA A gradient norm, layer 0: x{norm(after, first) / norm(fresh, first):.2f}; "
            f"all layers: x{norm(after, names) / norm(fresh, names):.2f} (1.00 = unchanged)")


def diagnose(model_dir, guard: bool) -> None:
    label = "with the guard" if guard else "bitsandbytes as it is"
    print(f"\n== {label}")
    model = load(model_dir, guard)
    from transformers import AutoTokenizer
    tok_ids = AutoTokenizer.from_pretrained(model_dir)(TEXT, return_tensors="pt").input_ids
    w0 = first_4bit_weight(model)
    dequant = logits(model, tok_ids, train=True)        # training mode: never repacked
    fresh_grads = lora_grads(model, tok_ids)
    evaluated = logits(model, tok_ids, train=False)     # an evaluation: repacks unless guarded
    import bitsandbytes as bnb
    layers = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    packed = sum(bool(getattr(m.weight.quant_state, "packing_format_for_cpu", False)) for m in layers)
    d = (evaluated - dequant).abs()
    agree = (evaluated.argmax(-1) == dequant.argmax(-1)).float().mean()
    print(f"4-bit layers repacked by one evaluation: {packed} of {len(layers)}")
    print(f"forward, evaluation vs training path: mean |d logits| {d.mean():.1e} (max {d.max():.1e}), "
          f"top-1 agreement {agree:.1%}")
    after_grads = lora_grads(model, tok_ids)
    print(f"backward after that evaluation: {grad_report(fresh_grads, after_grads)}")
    w1 = first_4bit_weight(model)
    print(f"dequantised weights after it: max |dW| {(w1 - w0).abs().max():.1e} "
          f"(weights up to {w0.abs().max():.2f})")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default=str(paths.REHEARSAL_MODEL))
    args = p.parse_args()
    setup_process()
    import bitsandbytes
    print(f"bitsandbytes {bitsandbytes.__version__}, CPU reports AVX512-BF16: "
          f"{bnb_cpu.fused_cpu_path_available()}")
    if not bnb_cpu.fused_cpu_path_available():
        print("this CPU takes one path only (no fused AVX512-BF16 kernels): nothing to compare")
    diagnose(args.model, guard=False)
    diagnose(args.model, guard=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
