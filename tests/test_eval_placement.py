"""Stage 4: where each model is loaded. One GPU when the model fits there (as before);
device_map="auto" (accelerate: every visible GPU, then CPU RAM) when it does not, e.g.
Llama-3.1-70B-Instruct on 4 x 80 GB; with --device cuda, GPUs only (max_memory without
"cpu"), refused when they cannot hold it; the CPU without a GPU. The figures are real:
parameter counts from the models' config.json, free memory as torch.cuda.mem_get_info
reports it on those cards. Stage 3 decides with the same function (spread=False: one
device, since PEFT merges the whole model in place)."""
import pytest
from styletune.errors import EvaluationError
from styletune.eval import evaluate
from styletune.eval.evaluate import describe_device_map
from styletune.train import resources
from styletune.train.gpu_plan import LLAMA31_8B, LLAMA31_70B
from styletune.train.model_size import parameter_count


def choose_placement(*args, **kwargs):
    """Stage 4's call: spread over GPUs as needed, its own error type."""
    return resources.choose_placement(*args, **kwargs, error=EvaluationError)

GiB = 2**30
LLAMA_70B, LLAMA_8B = LLAMA31_70B, LLAMA31_8B
SMOL_135M = {"hidden_size": 576, "intermediate_size": 1536, "num_hidden_layers": 30,
             "num_attention_heads": 9, "num_key_value_heads": 3, "head_dim": 64, "vocab_size": 49152,
             "tie_word_embeddings": True}
P70, P8, P135M = (parameter_count(s) for s in (LLAMA_70B, LLAMA_8B, SMOL_135M))

H100 = ("NVIDIA H100 80GB HBM3", int(78.7 * GiB))
H200 = ("NVIDIA H200", int(139.8 * GiB))
RTX4090 = ("NVIDIA GeForce RTX 4090", int(23.1 * GiB))
T4 = ("Tesla T4", int(14.6 * GiB))


def test_the_parameter_counts_are_the_models():
    assert round(P70 / 1e9, 2) == 70.55 and round(P8 / 1e9, 2) == 8.03


@pytest.mark.parametrize("params, gpus, ram_gib, device_map, said", [
    (P8, [H100], 64, "cuda", "NVIDIA H100 80GB HBM3: 79 GiB free, the model needs ~20"),
    (P8, [RTX4090], 64, "cuda", "the model needs ~20"),
    (P70, [H100] * 4, 256, "auto", "sharded over 4 GPUs: the model needs ~160 GiB, one GPU has 79, together 315"),
    (P70, [H200] * 2, 256, "auto", "sharded over 2 GPUs"),
    (P70, [H200], 256, "auto", "sharded over the GPU and CPU RAM (slow"),
    (P70, [H100] * 2, 64, "auto", "sharded over 2 GPUs and CPU RAM"),   # 157 GiB of GPUs + RAM
    (P8, [T4], 64, "auto", "sharded over the GPU and CPU RAM"),
    (P135M, [], 16, "cpu", "no CUDA GPU"),
    (P8, [], 64, "cpu", "no CUDA GPU"),
])
def test_placement_for_each_model_and_machine(params, gpus, ram_gib, device_map, said):
    placement = choose_placement(params, gpus, ram_gib * GiB)
    assert placement.device_map == device_map
    assert said in placement.why
    assert placement.dtype == ("bfloat16" if gpus else "float32" if params * 6 < ram_gib * GiB else "bfloat16")


def test_what_cannot_hold_the_model_is_refused():
    with pytest.raises(EvaluationError, match="needs ~160 GiB; the GPUs have 15 GiB free and RAM 64 GiB"):
        choose_placement(P70, [T4], 64 * GiB)
    with pytest.raises(EvaluationError, match="needs ~158 GiB of RAM even in bf16, 64 GiB available"):
        choose_placement(P70, [], 64 * GiB)
    with pytest.raises(EvaluationError, match="--device cuda: no CUDA GPU"):
        choose_placement(P8, [], 64 * GiB, requested="cuda")


@pytest.mark.parametrize("params, gpus, device_map, said, max_memory", [
    # fits one GPU: that GPU, as with auto
    (P8, [H100], "cuda", "NVIDIA H100 80GB HBM3: 79 GiB free, the model needs ~20", None),
    (P8, [RTX4090, RTX4090], "cuda", "the model needs ~20", None),
    # too big for one: every visible GPU, each up to its free memory, no "cpu" key
    (P70, [H100] * 4, "auto", "sharded over 4 GPUs only (--device cuda): the model needs ~160 GiB, "
                              "one GPU has 79, together 315", {i: H100[1] for i in range(4)}),
    (P70, [H200] * 2, "auto", "sharded over 2 GPUs only", {0: H200[1], 1: H200[1]}),
    (P8, [T4, T4], "auto", "sharded over 2 GPUs only (--device cuda): the model needs ~20 GiB",
     {0: T4[1], 1: T4[1]}),
])
def test_device_cuda_means_gpus_only(params, gpus, device_map, said, max_memory):
    placement = choose_placement(params, gpus, 256 * GiB, requested="cuda")
    assert (placement.device_map, placement.dtype) == (device_map, "bfloat16")
    assert said in placement.why and "CPU RAM" not in placement.why
    assert placement.max_memory == max_memory
    assert placement.max_memory is None or "cpu" not in placement.max_memory


@pytest.mark.parametrize("params, gpus, said", [
    (P70, [H200], "needs ~160 GiB of GPU memory, the 1 visible GPU(s) have 140 GiB free together"),
    (P70, [H100], "needs ~160 GiB of GPU memory, the 1 visible GPU(s) have 79 GiB free together"),
    (P70, [RTX4090] * 4, "the 4 visible GPU(s) have 92 GiB free together"),
    (P8, [T4], "needs ~20 GiB of GPU memory, the 1 visible GPU(s) have 15 GiB free together"),
])
def test_device_cuda_refuses_what_the_gpus_cannot_hold(params, gpus, said):
    """Where auto would spill into 256 GiB of RAM, --device cuda is one line instead."""
    assert "CPU RAM" in choose_placement(params, gpus, 256 * GiB).why
    with pytest.raises(EvaluationError, match="--device cuda: the model ") as err:
        choose_placement(params, gpus, 256 * GiB, requested="cuda")
    assert said in str(err.value) and "--device auto" in str(err.value) and "\n" not in str(err.value)


def test_auto_spills_into_ram_without_a_gpu_budget():
    placement = choose_placement(P70, [H200], 256 * GiB)
    assert placement.device_map == "auto" and placement.max_memory is None


@pytest.mark.parametrize("params, ram_gib", [(P135M, 2), (P8, 24), (P8, 64), (P70, 256), (P70, 512),
                                             (None, 8)])
def test_cpu_dtype(params, ram_gib):
    """float32 on CPU when params x 4 bytes x 1.5 fits in RAM: 8B needs 44.9 GiB, 70B 394 GiB;
    stage 3 (one device) decides the same."""
    placement = choose_placement(params, [], ram_gib * GiB)
    assert placement.dtype == ("float32" if params is None or params * 6 < ram_gib * GiB else "bfloat16")
    if params is None or params * 3 < ram_gib * GiB:          # stage 4 would refuse the rest
        assert resources.choose_placement(params, [], ram_gib * GiB, spread=False).dtype == placement.dtype


@pytest.mark.parametrize("params, gpu, fits", [(P8, H100, True), (P8, RTX4090, True), (P8, T4, False),
                                               (P70, H200, False), (P135M, T4, True)])
def test_stage_3_merges_on_one_device(params, gpu, fits):
    """Stage 3 cannot spread the merge: one GPU when the model fits there, else the CPU
    (or the GPU anyway when asked for with --device cuda)."""
    one = resources.choose_placement(params, [gpu], 256 * GiB, spread=False)
    assert one.device_map == ("cuda" if fits else "cpu")
    assert (choose_placement(params, [gpu], 256 * GiB).device_map == "cuda") is fits
    assert resources.choose_placement(params, [gpu], 256 * GiB, "cuda", spread=False).device_map == "cuda"
    assert resources.choose_placement(params, [gpu], 256 * GiB, "cpu", spread=False).device_map == "cpu"


def test_asking_for_the_cpu_is_honoured():
    placement = choose_placement(P8, [H100] * 4, 64 * GiB, requested="cpu")
    assert (placement.device_map, placement.dtype) == ("cpu", "float32")


def accelerate_style_map(layers: int, gpus: int, cpu_layers: int = 0) -> dict:
    """A device map as accelerate writes one for a Llama: embeddings first, layers in order, lm_head last."""
    on_gpu = layers - cpu_layers
    device_map = {"model.embed_tokens": 0, "model.rotary_emb": 0}
    device_map.update({f"model.layers.{i}": (i * gpus // on_gpu if i < on_gpu else "cpu") for i in range(layers)})
    device_map.update({"model.norm": gpus - 1 if not cpu_layers else "cpu",
                       "lm_head": gpus - 1 if not cpu_layers else "cpu"})
    return device_map


def test_where_it_loaded_is_said_from_the_device_map():
    assert describe_device_map(accelerate_style_map(80, 4)) == "sharded over 4 GPUs (80 layers)"
    assert describe_device_map(accelerate_style_map(80, 1, cpu_layers=12)) == \
        "sharded over 1 GPU and CPU RAM (80 layers)"


def test_a_model_on_one_device_says_so(tiny):
    """A real load, as stage 4 does it, on this machine's one device."""
    placement = choose_placement(None, resources.visible_gpus(), 64 * GiB)
    model = evaluate.load_model(str(tiny / "base"), placement)
    assert evaluate.where_loaded(model) in ("on CPU", "on one GPU")


def two_gpus() -> bool:
    return len(resources.visible_gpus()) >= 2


@pytest.mark.skipif(not two_gpus(), reason="needs two CUDA GPUs: a model sharded over GPUs cannot be "
                                           "loaded on this machine, only the decision above is tested")
def test_a_model_sharded_over_two_gpus_is_measured(tmp_path):
    """Layers on two GPUs: the logits come back from the second, the inputs go to the first."""
    import shutil

    import torch
    from conftest import SMOL
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM
    config = LlamaConfig(vocab_size=49152, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False)
    LlamaForCausalLM(config).save_pretrained(tmp_path)
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        shutil.copy(SMOL / name, tmp_path / name)
    device_map = {"model.embed_tokens": 0, "model.rotary_emb": 0, "model.layers.0": 0,
                  "model.layers.1": 1, "model.norm": 1, "lm_head": 1}
    model = AutoModelForCausalLM.from_pretrained(str(tmp_path), dtype=torch.bfloat16, device_map=device_map)
    assert evaluate.where_loaded(model) == "sharded over 2 GPUs (2 layers)"
    tok = AutoTokenizer.from_pretrained(str(tmp_path))
    conversation = [{"role": "user", "content": "The station turned."},
                    {"role": "assistant", "content": "Nobody aboard had slept."}]
    assert len(evaluate.completion_token_nll(model, tok, conversation)) > 3
