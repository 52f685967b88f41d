"""Stage 1's tokenizer loading: a tokenizer that cannot be had (not downloaded,
gated, no such repo, an unreadable tokenizer.json, no network) ends in the advice
on how to get one; anything else is a bug and shows as itself, never as advice."""
import shutil

import huggingface_hub
import pytest
from conftest import SMOL
from styletune.config import load_config
from styletune.data import tokens
from styletune.errors import ConfigError

ADVICE = "accept its licence"


def counter_for(make_config, base_model):
    return tokens.load_counter(load_config(make_config(base_model=base_model)))


def test_model_not_downloaded_gives_the_advice(make_config):
    # HF_HUB_OFFLINE (conftest): a Hub id that is not in the cache cannot be had.
    with pytest.raises(ConfigError, match=ADVICE) as err:
        counter_for(make_config, "meta-llama/Llama-3.1-8B-Instruct")
    assert "LocalEntryNotFoundError" in str(err.value)


def test_name_that_is_no_repo_id_gives_the_advice(make_config):
    with pytest.raises(ConfigError, match=ADVICE) as err:
        counter_for(make_config, "not/a/repo-id")
    assert "HFValidationError" in str(err.value)


def test_unreadable_tokenizer_json_gives_the_advice(make_config, tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    shutil.copy(SMOL / "tokenizer_config.json", folder)
    (folder / "tokenizer.json").write_text('{"version": "1.0", "model": {"type": "Nope"}}')
    with pytest.raises(ConfigError, match=ADVICE) as err:
        counter_for(make_config, str(folder))
    assert "TokenizerFileError" in str(err.value)


def test_hub_unreachable_gives_the_advice(make_config, monkeypatch):
    """huggingface_hub 1.x ends a download with no network in a RuntimeError about
    its closed HTTP client; that one means "cannot download"."""
    def closed_client(*args, **kwargs):
        raise RuntimeError("Cannot send a request, as the client has been closed.")
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", closed_client)
    with pytest.raises(ConfigError, match=ADVICE) as err:
        counter_for(make_config, "acme/novel-model")
    assert "ConnectionError" in str(err.value)


@pytest.mark.parametrize("error", [TypeError("a bug"), RuntimeError("another bug")])
def test_a_bug_in_a_hub_download_is_not_advice(make_config, monkeypatch, error):
    def broken(*args, **kwargs):
        raise error
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", broken)
    with pytest.raises(type(error), match="bug"):
        counter_for(make_config, "acme/novel-model")


def test_a_bug_in_our_loading_code_is_not_advice(make_config, monkeypatch):
    """With a tokenizer that loads (the local SmolLM2 folder), a TypeError raised
    while reading it propagates as a TypeError."""
    def broken(value):
        raise TypeError("a bug in reading the special tokens")
    monkeypatch.setattr(tokens, "_token_text", broken)
    with pytest.raises(TypeError, match="a bug"):
        counter_for(make_config, str(SMOL))
