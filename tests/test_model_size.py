"""One parameter count for stages 2 and 3 (styletune.train.model_size), checked
against real models built from config.json-shaped dicts: grouped-query
attention, tied and untied embeddings, a head_dim of its own, biases; and the
published count of Llama-3.1-8B. The checkpoint-N helpers both stages use."""
import json

import pytest
from conftest import SMOL
from styletune.train.checkpoints import checkpoint_step, checkpoints, newest_checkpoint
from styletune.train.model_size import parameter_count

LLAMA_31_8B = dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                   num_attention_heads=32, num_key_value_heads=8, vocab_size=128256,
                   tie_word_embeddings=False)
TINY = dict(vocab_size=1000, hidden_size=64, intermediate_size=96, num_hidden_layers=3,
            num_attention_heads=4)
SHAPES = {
    "gqa, tied": dict(TINY, num_key_value_heads=2, tie_word_embeddings=True),
    "gqa, untied": dict(TINY, num_key_value_heads=1, tie_word_embeddings=False),
    "own head_dim, biases": dict(TINY, num_key_value_heads=2, head_dim=32, attention_bias=True,
                                 mlp_bias=True),
    "llama-3.1-8b": LLAMA_31_8B,
}


def real_count(shape: dict) -> tuple[int, dict]:
    """numel of a LlamaForCausalLM built (without memory, on the meta device) from
    `shape`, and the config.json that model would save."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    config = LlamaConfig(**shape)
    with torch.device("meta"):
        model = LlamaForCausalLM(config)
    saved = json.loads(config.to_json_string(use_diff=True))  # as save_pretrained writes it
    return sum(p.numel() for p in model.parameters()), saved


@pytest.mark.parametrize("name", list(SHAPES))
def test_count_equals_the_models_own(name):
    expected, config_json = real_count(SHAPES[name])
    assert parameter_count(config_json) == expected


def test_llama_31_8b_matches_the_published_count():
    assert parameter_count(LLAMA_31_8B) == 8_030_261_248


def test_rehearsal_model_config_json():
    """SmolLM2-135M (tied embeddings, 3 KV heads of 9) from its own config.json."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(SMOL))
    shape = json.loads((SMOL / "config.json").read_text())
    assert parameter_count(shape) == sum(p.numel() for p in model.parameters())


def test_stages_2_and_3_use_the_one_count(make_config):
    from styletune.config import load_config
    from styletune.train import model_size, preflight, resources
    cfg = load_config(make_config())
    shape = json.loads((SMOL / "config.json").read_text())
    assert resources.base_parameter_count(cfg) == parameter_count(shape)
    assert model_size.parameter_count is preflight.parameter_count is parameter_count


def test_checkpoints_by_step_number_not_name(tmp_path):
    for name in ("checkpoint-9", "checkpoint-10", "checkpoint-2", "checkpoint-10-old", "checkpoints"):
        (tmp_path / name).mkdir()
    (tmp_path / "checkpoint-11").write_text("a file, not a folder")
    (tmp_path / "checkpoint-2" / "adapter_model.safetensors").write_text("")
    assert [step for step, _ in checkpoints(tmp_path)] == [2, 9, 10]
    assert newest_checkpoint(tmp_path).name == "checkpoint-10"
    assert newest_checkpoint(tmp_path, holding="adapter_model.safetensors").name == "checkpoint-2"
    assert newest_checkpoint(tmp_path / "checkpoint-9") is None
    assert checkpoint_step(tmp_path / "checkpoint-10") == 10
    assert checkpoint_step(tmp_path / "checkpoint-10-old") is None
