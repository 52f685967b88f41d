"""bitsandbytes' two CPU paths for 4-bit layers (styletune/train/bnb_cpu.py): with the
guard, an evaluation leaves a QLoRA model exactly as trainable as before it, on
either path; without it, on a CPU with AVX512-BF16, it does not (the bug the guard
exists for: fine-tuning/benchmarks/diagnose_bnb_cpu_paths.py measures it)."""
import pytest
from styletune.train import bnb_cpu


def qlora_model(base_dir, guard: bool):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig
    quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                               bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=torch.float32)
    model = AutoModelForCausalLM.from_pretrained(str(base_dir), quantization_config=quant,
                                                 dtype=torch.float32, device_map="cpu")
    if guard:
        assert bnb_cpu.keep_4bit_layers_trainable(model) == 14   # 2 layers x 7 projections
    torch.manual_seed(0)
    return get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear",
                                            init_lora_weights=False))


def lora_grads(model, ids):
    model.train()
    model.zero_grad()
    model(ids, labels=ids).loss.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if "lora_A" in n}


def evaluate_once(model, ids):
    import torch
    model.eval()
    with torch.no_grad():
        return model(ids).logits


def grads_before_and_after_an_evaluation(base_dir, guard):
    import torch
    model = qlora_model(base_dir, guard)
    ids = torch.arange(100, 140).unsqueeze(0)
    before = lora_grads(model, ids)
    evaluate_once(model, ids)
    return before, lora_grads(model, ids)


def test_an_evaluation_leaves_4bit_layers_trainable(tiny, bnb_cpu_path):
    import torch
    before, after = grads_before_and_after_an_evaluation(tiny / "base", guard=True)
    assert before.keys() == after.keys() and len(before) == 14
    for name in before:
        assert torch.equal(before[name], after[name]), name


def test_without_the_guard_the_fused_path_cuts_the_gradient(tiny):
    import torch
    if not bnb_cpu.fused_cpu_path_available():
        pytest.skip("this CPU lacks AVX512-BF16 (`lscpu | grep avx512_bf16`): bitsandbytes "
                    "takes one CPU path only, so there is nothing to guard against here")
    before, after = grads_before_and_after_an_evaluation(tiny / "base", guard=False)
    first_layer = [n for n in before if ".layers.0." in n]
    lost = [n for n in first_layer if n not in after or not torch.allclose(before[n], after[n], rtol=0.05)]
    # If this fails, bitsandbytes has stopped repacking layers for training: the guard
    # in bnb_cpu.py (and the rehearsal config's plugin) may then be dropped.
    assert lost == first_layer, "bitsandbytes' fused path no longer changes the gradients"
