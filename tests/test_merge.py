"""Stage 3 on CPU: which adapter --auto picks, and a real merge of a real LoRA
adapter into a tiny random Llama (NF4 as in training, verified, rerun-safe).
The SmolLM2 rehearsal adapter is merged in tests/test_train.py, after it trains."""
import json
import os
import shutil
import time

import pytest
from conftest import FT, load_script
from styletune import errors
from styletune.config import load_config
from styletune.train import adapter, merge_output, models

SCRIPT = load_script(FT / "training" / "3_merge_adapter.py")


def fake_adapter(folder, mtime=None, value=1.0):
    """An adapter file whose one tensor holds `value`."""
    import torch
    from safetensors.torch import save_file
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "adapter_config.json").write_text("{}")
    save_file({"lora_B": torch.full((2, 2), value)}, str(folder / adapter.ADAPTER_FILE))
    if mtime:
        os.utime(folder / adapter.ADAPTER_FILE, (mtime, mtime))


def trainer_state(folder, step, best=None, evals=()):
    history = [{"step": s, "eval_loss": loss} for s, loss in evals]
    state = {"global_step": step, "log_history": history}
    if best:
        state.update(best_model_checkpoint=f"somewhere/else/{best}",
                     best_global_step=int(best.split("-")[1]),
                     best_metric=min(loss for _, loss in evals))
    (folder / "trainer_state.json").write_text(json.dumps(state))


@pytest.fixture
def run_dir(tmp_path):
    """checkpoint-2 (best by eval loss) and checkpoint-10: name order is not step order."""
    out = tmp_path / "adapter"
    now = time.time()
    fake_adapter(out / "checkpoint-2", now - 100, value=2.0)
    fake_adapter(out / "checkpoint-10", now - 50)
    # Axolotl evaluates once before training too: no checkpoint for it, so not picked among
    trainer_state(out / "checkpoint-10", 10, best="checkpoint-2", evals=[(0, 2.1), (2, 1.5), (10, 1.9)])
    return out


def test_auto_prefers_the_final_adapter_and_says_it_holds_the_best(run_dir):
    fake_adapter(run_dir, value=2.0)       # load_best_model_at_end reloaded checkpoint-2
    choice = adapter.choose_adapter(run_dir)
    assert choice.path == run_dir
    assert "the same weights as checkpoint-2, best by validation loss" in choice.reason
    assert (choice.step, choice.eval_loss, choice.picked_among) == (2, 1.5, 2)


def test_auto_takes_the_best_checkpoint_when_the_final_adapter_is_the_last_steps(run_dir):
    """Training that did not reload the best at the end (a config whose evaluations
    and checkpoints Axolotl does not line up): the final adapter is step 10's, so the
    best checkpoint's own folder is merged, under its own step and loss."""
    fake_adapter(run_dir, value=10.0)
    choice = adapter.choose_adapter(run_dir)
    assert choice.path == run_dir / "checkpoint-2"
    assert "holds other weights: the last step's" in choice.reason
    assert (choice.step, choice.eval_loss, choice.picked_among) == (2, 1.5, 2)


def test_auto_takes_the_final_adapter_under_its_own_step_when_the_best_is_gone(run_dir):
    import shutil
    shutil.rmtree(run_dir / "checkpoint-2")
    fake_adapter(run_dir, value=10.0)
    choice = adapter.choose_adapter(run_dir)
    assert choice.path == run_dir and "checkpoint-2 as best by validation loss, but that folder is gone" \
        in choice.reason
    assert (choice.step, choice.eval_loss, choice.picked_among) == (10, 1.9, 0)


def test_auto_without_a_final_adapter_takes_the_best_checkpoint(run_dir):
    choice = adapter.choose_adapter(run_dir)
    assert choice.path == run_dir / "checkpoint-2"
    assert choice.reason.startswith("the best checkpoint by validation loss")
    assert choice.eval_loss == 1.5 and choice.picked_among == 2


def test_auto_with_a_stale_final_adapter_says_so(run_dir):
    fake_adapter(run_dir, time.time() - 1000)
    choice = adapter.choose_adapter(run_dir)
    assert choice.path == run_dir / "checkpoint-2"
    assert "older than the newest checkpoint" in choice.reason


def test_auto_without_validation_takes_the_highest_step_not_the_last_name(run_dir):
    trainer_state(run_dir / "checkpoint-10", 10)
    choice = adapter.choose_adapter(run_dir)
    assert choice.path == run_dir / "checkpoint-10"
    assert choice.step == 10 and "newest checkpoint by step number" in choice.reason
    assert choice.picked_among == 0


def test_no_adapter_names_stage_2(tmp_path, capsys):
    with pytest.raises(errors.MergeError, match="run 2_train_lora.sh first"):
        adapter.choose_adapter(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(errors.MergeError, match="no adapter in"):
        adapter.choose_adapter(tmp_path / "empty")


# --- a real merge: tiny random Llama, real PEFT adapter --------------------------------

def folder_hashes(folder):
    from styletune.fileio import sha256_bytes
    return {p.name: sha256_bytes(p.read_bytes()) for p in sorted(folder.iterdir())}


def tiny_config(make_config, tiny, tmp_path, **pipeline):
    return make_config({"merged_dir": str(tmp_path / "merged"), **pipeline},
                       base_model=str(tiny / "base"), output_dir=str(tiny / "adapter"))


@pytest.mark.parametrize("merge_into, method", [
    ("original", "QLoRA: adapter added to the original, unquantised base"),
    ("nf4", "QLoRA: base loaded in NF4 as in training (bitsandbytes), dequantised, adapter added")])
def test_tiny_merge_verifies_writes_and_reruns_identically(make_config, tiny, tmp_path, capsys, merge_into, method):
    cfg = tiny_config(make_config, tiny, tmp_path, merge_into=merge_into)
    assert SCRIPT.main(["--config", str(cfg), "--auto"]) == 0
    out = capsys.readouterr().out
    merged = tmp_path / "merged"
    assert f"method: {method}" in out
    assert "verify: mean |merged - (base + adapter)|" in out and "sample (greedy" in out
    names = {p.name for p in merged.iterdir()}
    assert {"model.safetensors", "config.json", "tokenizer.json", "chat_template.jinja",
            "generation_config.json", merge_output.MANIFEST} <= names
    manifest = json.loads((merged / merge_output.MANIFEST).read_text())
    v = manifest["verification"]
    # The rounding noise is measured, and the adapter stands far above it.
    assert v["passed"] and v["mean_abs_diff"] <= v["tolerance"]
    assert 0 < v["noise_floor"] * models.SIGNAL_OVER_NOISE <= v["adapter_effect"]
    assert manifest["merge_method"].startswith(method)
    assert manifest["saved_dtype"] == "float32"
    gen = json.loads((merged / "generation_config.json").read_text())
    assert gen["eos_token_id"][0] == 2                  # <|im_end|>, the turn's end in chatml
    assert "quantization_config" not in json.loads((merged / "config.json").read_text())
    # The template training rendered travels with the model.
    assert "<|im_start|>" in (merged / "chat_template.jinja").read_text()

    before = folder_hashes(merged)
    assert SCRIPT.main(["--config", str(cfg), "--auto"]) == 2
    assert "already exists: add --force" in capsys.readouterr().err
    # a look first (the agent file's) still shows the plan, and says what the merge needs
    assert SCRIPT.main(["--config", str(cfg), "--auto", "--dry-run"]) == 0
    assert "(already exists: the merge needs --force to replace it)" in capsys.readouterr().out
    assert SCRIPT.main(["--config", str(cfg), "--auto", "--force"]) == 0
    assert folder_hashes(merged) == before
    assert not merged.with_name("merged.partial").exists()


@pytest.mark.parametrize("which", ["llama3", "smollm2"])
def test_the_merged_tokenizer_states_the_bos_it_adds_for_ollamas_importer(tmp_path, which):
    """Llama 3's tokenizer adds BOS in tokenizer.json's post-processor only, and
    transformers saves no add_bos_token; Ollama's importer reads that key alone (before
    2026-05 it took a missing one for false: no BOS at serving). Stage 3 states it, as
    the tokenizer behaves, and transformers reads the same ids from the saved folder."""
    import sys
    from pathlib import Path

    from conftest import SMOL
    from transformers import AutoTokenizer
    source = tmp_path / "source"
    source.mkdir()
    if which == "llama3":
        npm = Path(sys.prefix) / "test-npm" / "node_modules" / "@lenml" / "tokenizer-llama3_1" / "models"
        assert npm.is_dir(), f"{npm} is missing: run `make test-npm`"
        shutil.copy(npm / "tokenizer.json", source)
        (source / "tokenizer_config.json").write_text(json.dumps({
            "tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<|begin_of_text|>",
            "eos_token": "<|eot_id|>"}))
    else:
        for name in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copy(SMOL / name, source)
    tok = AutoTokenizer.from_pretrained(source)
    saved = tmp_path / "merged"
    tok.save_pretrained(saved)
    assert "add_bos_token" not in json.loads((saved / "tokenizer_config.json").read_text())
    merge_output.state_special_tokens_added(tok, saved)
    stated = json.loads((saved / "tokenizer_config.json").read_text())
    assert (stated["add_bos_token"], stated["add_eos_token"]) == ((True, False) if which == "llama3" else (False, False))
    again = AutoTokenizer.from_pretrained(saved)
    for text in ("Haji said,", "\n book/chapter_01.md\nIt was night. ", ""):
        assert again(text).input_ids == tok(text).input_ids
    assert (again("x").input_ids[0] == again.bos_token_id) == stated["add_bos_token"]


def test_merge_into_picks_the_base_the_adapter_is_added_to(make_config, tiny, tmp_path):
    """original: the merged weights are the original ones plus the adapter's delta, as
    PEFT merges into the unquantised base; nf4: the NF4-rounded ones plus it."""
    import torch
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM
    key = "model.layers.0.self_attn.q_proj.weight"
    weights = {}
    for merge_into in ("original", "nf4"):
        cfg = tiny_config(make_config, tiny, tmp_path / merge_into, merge_into=merge_into)
        assert SCRIPT.main(["--config", str(cfg), "--auto"]) == 0
        weights[merge_into] = load_file(tmp_path / merge_into / "merged" / "model.safetensors")[key].float()
    base = AutoModelForCausalLM.from_pretrained(str(tiny / "base"), dtype=torch.float32)
    peft_merged = PeftModel.from_pretrained(base, str(tiny / "adapter")).merge_and_unload()
    expected = peft_merged.state_dict()[key]
    assert torch.allclose(weights["original"], expected, atol=1e-6)
    assert (weights["nf4"] - expected).abs().max() > 1e-3          # NF4's rounding, kept


def test_the_logits_check_fails_for_the_wrong_adapter(make_config, tiny, tmp_path, bnb_cpu_path):
    cfg = load_config(tiny_config(make_config, tiny, tmp_path))
    tok = models.load_tokenizer(cfg, tiny / "adapter")
    probes = models.probe_ids(tok, cfg)
    base = models.load_training_base(cfg, "cpu", "float32", quantized=True)
    base_logits = models.logits_of(base, probes)
    right = models.logits_of(models.attach_adapter(base, tiny / "adapter"), probes)
    base = models.load_training_base(cfg, "cpu", "float32", quantized=True)
    wrong = models.logits_of(models.attach_adapter(base, tiny / "other_adapter"), probes)
    # The noise floor as stage 3 measures it: the dequantised base, saved in bf16.
    dequantised = models.load_training_base(cfg, "cpu", "float32", quantized=True).dequantize()
    with models.weights_as_saved(dequantised, "bfloat16"):
        floor = models.route_noise(base_logits, models.logits_of(dequantised, probes), "float32")
    assert floor > 0
    assert models.compare_logits(right, right, base_logits, floor).passed
    assert not models.compare_logits(wrong, right, base_logits, floor).passed
    # a merge that lost the adapter altogether
    assert not models.compare_logits(base_logits, right, base_logits, floor).passed
    # a merge at the wrong strength (alpha / r misread): half, or half again, the adapter.
    # Half of it stays within the share test's tolerance here; the projection of the
    # merged model's shift on the adapter's gives it away (not in proportion to the
    # strength: this tiny model's logits answer its large adapter far from linearly)
    assert abs(models.compare_logits(right, right, base_logits, floor).scale - 1) < 1e-6
    shares = []
    for strength in (0.5, 1.5):
        base = models.load_training_base(cfg, "cpu", "float32", quantized=True)
        scaled = models.attach_adapter(base, tiny / "adapter")
        for module in scaled.modules():
            if hasattr(module, "scaling") and isinstance(module.scaling, dict):
                module.scaling = {name: strength * s for name, s in module.scaling.items()}
        verdict = models.compare_logits(models.logits_of(scaled, probes), right, base_logits, floor)
        assert not verdict.passed, verdict.line()
        assert abs(verdict.scale - 1) > models.SCALE_TOLERANCE
        shares.append(verdict.mean_abs_diff <= verdict.tolerance)
        if shares[-1]:
            assert f"{verdict.scale:.2f} times the adapter's shift" in verdict.failure("float32")
    assert any(shares)       # the share test alone would have passed a wrongly scaled merge
    # an adapter whose effect is within the noise cannot be checked: refused, and said so
    effect = models.compare_logits(right, right, base_logits, floor).adapter_effect
    tiny_effect = models.compare_logits(right, right, base_logits, effect)
    assert not tiny_effect.passed and not tiny_effect.distinguishable
    assert "merged_dtype: float32" in tiny_effect.failure("bfloat16")


def test_weights_as_saved_rounds_while_running_and_restores_after(tiny):
    import torch
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(str(tiny / "base"), dtype=torch.float32)
    model.eval()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    with torch.no_grad():
        exact = model(torch.arange(5, 25).unsqueeze(0)).logits
        with models.weights_as_saved(model, "float16"):
            rounded = model(torch.arange(5, 25).unsqueeze(0)).logits
        again = model(torch.arange(5, 25).unsqueeze(0)).logits
    assert not torch.equal(exact, rounded) and torch.equal(exact, again)
    assert all(torch.equal(before[n], p) for n, p in model.named_parameters())


def test_adapter_for_another_base_is_refused(make_config, tiny, tmp_path, capsys):
    cfg = tiny_config(make_config, tiny, tmp_path)
    assert SCRIPT.main(["--config", str(cfg), "--adapter", str(FT / "outputs" / "nowhere")]) == 2
    assert "no adapter_config.json" in capsys.readouterr().err
    meta = json.loads((tiny / "adapter" / "adapter_config.json").read_text())
    other = tmp_path / "foreign"
    shutil.copytree(tiny / "adapter", other)
    (other / "adapter_config.json").write_text(json.dumps({**meta, "base_model_name_or_path": "x/Other-7B"}))
    assert SCRIPT.main(["--config", str(cfg), "--adapter", str(other)]) == 2
    assert "was trained on 'x/Other-7B'" in capsys.readouterr().err


def test_dry_run_writes_nothing(make_config, tiny, tmp_path, capsys):
    cfg = tiny_config(make_config, tiny, tmp_path)
    assert SCRIPT.main(["--config", str(cfg), "--auto", "--dry-run"]) == 0
    assert "dry run: nothing loaded or written" in capsys.readouterr().out
    assert not (tmp_path / "merged").exists()
