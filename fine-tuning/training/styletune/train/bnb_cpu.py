"""4-bit layers on a CPU with AVX512-BF16: keep bitsandbytes' inference-only path
out of training and out of the merge's check.

bitsandbytes 0.50 (`nn/modules.py`, `Linear4bit.forward`) repacks a 4-bit weight
in place into a fused-kernel layout the first time the layer runs in eval mode
without gradients on such a CPU, and the layer then runs the fused `gemv_4bit`
op for good, in training too. That op casts activations to bf16 and has no
backward, so after Axolotl's first evaluation the gradient no longer flows
through any frozen 4-bit layer: the rehearsal stopped learning, and the merge's
reference logits carried bf16 noise as large as the adapter's effect.
`fine-tuning/benchmarks/diagnose_bnb_cpu_paths.py` measures each effect.

A layer whose `support_avx512bf16_for_cpu` is False never repacks, so training,
evaluation and the merge all run the dequantise-and-matmul path, the one every
other CPU and every GPU run takes. The cost is the fused kernel's speed in
evaluation, which on a CPU rehearsal is seconds.
"""


def fused_cpu_path_available() -> bool:
    """True when this CPU would send 4-bit layers down bitsandbytes' fused path."""
    from bitsandbytes.nn import modules
    return bool(modules.has_avx512bf16())


def keep_4bit_layers_trainable(model) -> int:
    """Switch the fused-path repacking off on every 4-bit layer; returns how many."""
    from bitsandbytes.nn import Linear4bit
    layers = [m for m in model.modules() if isinstance(m, Linear4bit)]
    for layer in layers:
        layer.support_avx512bf16_for_cpu = False
    return len(layers)
