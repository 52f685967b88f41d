"""Stage 2: preflight failures name the fix; a real Axolotl QLoRA run on CPU
(SmolLM2-135M, the rehearsal config) trains, saves, and can learn. Training runs
with every connection out refused and recorded (tests/support/netguard), and inside a
network namespace with no connection out when the machine allows it."""
import json
import math
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import FT, REHEARSAL_CONFIG, SAMPLE_BOOK, SMOL, load_script
from styletune.config import load_config
from styletune.data.prepare import planned_outputs, prepare_data
from styletune.fileio import write_outputs
from styletune.train import gpu_plan, preflight
from support.network_guard import attempts, guarded_env

SCRIPT = FT / "training" / "2_train_lora.sh"
MERGE = load_script(FT / "training" / "3_merge_adapter.py")
PREFLIGHT = load_script(FT / "training" / "train_preflight.py")


def stage1(cfg_path, **kw):
    result = prepare_data(load_config(cfg_path), **kw)
    write_outputs(planned_outputs(result), force=True)
    return result


def run_preflight(cfg_path, tmp_path, *extra):
    return PREFLIGHT.main(["--config", str(cfg_path), "--env-out", str(tmp_path / "env"), *extra])


def a_torch_other_than_the_pin(monkeypatch):
    """The installed torch reported as another version (a GPU image's own build)."""
    real = preflight.metadata.version
    monkeypatch.setattr(preflight.metadata, "version",
                        lambda name: "2.11.0+cu130" if name == "torch" else real(name))


def test_a_torch_other_than_the_pin_is_refused_and_the_override_is_named(make_config, tmp_path,
                                                                          capsys, monkeypatch):
    a_torch_other_than_the_pin(monkeypatch)
    monkeypatch.delenv(preflight.PIN_EXCEPTIONS_VAR, raising=False)
    cfg = make_config()
    stage1(cfg)
    assert run_preflight(cfg, tmp_path) == 3
    err = capsys.readouterr().err
    assert "torch 2.11.0+cu130 is installed but requirements.txt pins" in err
    assert "STYLETUNE_PIN_EXCEPTIONS=torch" in err


def test_styletune_pin_exceptions_prints_the_difference_and_records_it(make_config, tmp_path,
                                                                      capsys, monkeypatch):
    a_torch_other_than_the_pin(monkeypatch)
    monkeypatch.setenv(preflight.PIN_EXCEPTIONS_VAR, "torch, bitsandbytes")
    cfg = make_config()
    stage1(cfg)
    assert run_preflight(cfg, tmp_path) == 0
    out = capsys.readouterr().out
    assert "torch 2.11.0+cu130 (NOT the pinned" in out and "allowed by STYLETUNE_PIN_EXCEPTIONS" in out
    record = json.loads((load_config(cfg).output_dir / preflight.RUN_RECORD).read_text())
    pinned = re.search(r"^torch==(\S+)", (FT.parent / "requirements.txt").read_text(), re.M).group(1)
    assert record["pin_exceptions"] == {"torch": {"pinned": pinned, "installed": "2.11.0+cu130"}}


def test_a_config_whose_plugins_drop_token_mean_loss_is_told_what_it_costs(make_config, tmp_path, capsys):
    """A config's own `plugins:` replaces the list it extends: without TokenMeanLoss a
    batch of several rows weighs each alike, and the preflight says so."""
    cfg = make_config(plugins=[preflight.CPU_PLUGIN], gradient_accumulation_steps=2)
    stage1(cfg)
    assert run_preflight(cfg, tmp_path) == 0
    assert f"lacks {preflight.TOKEN_MEAN_PLUGIN}: each row of a step weighs the same" in capsys.readouterr().out
    assert run_preflight(make_config(gradient_accumulation_steps=2), tmp_path) == 0
    assert "lacks" not in capsys.readouterr().out


def test_missing_data_says_run_stage_1(make_config, tmp_path, capsys):
    assert run_preflight(make_config(), tmp_path) == 3
    assert "run 1_prepare_data.py" in capsys.readouterr().err


def test_stale_data_is_refused(make_config, book_copy, tmp_path, capsys):
    cfg = make_config({"book_dir": str(book_copy)})
    stage1(cfg)
    chunk = book_copy / "chunk_003_the_archive_chapel.txt"
    chunk.write_text(chunk.read_text() + "\nA sentence added later.\n")
    assert run_preflight(cfg, tmp_path) == 3
    err = capsys.readouterr().err
    assert "stale data: chunk_003_the_archive_chapel.txt changed" in err
    # the command remakes this book's data, not the config's default book's
    from styletune import paths
    assert f"1_prepare_data.py --config {paths.typed(cfg)} --book {paths.typed(book_copy)} --force" in err


def test_over_long_example_is_refused(make_config, tmp_path, capsys):
    stage1(make_config())
    data = yaml.safe_load((tmp_path / "config.yaml").read_text())
    data["sequence_len"] = 2000
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(data))
    assert run_preflight(tmp_path / "config.yaml", tmp_path) == 3
    assert "over sequence_len 2000" in capsys.readouterr().err


@pytest.mark.parametrize("torch_version, cuda, driver, said", [
    ("2.13.0+cpu", None, None, "this torch (2.13.0+cpu) is a CPU-only build"),
    ("2.13.0", "13.0", "575.64.03", "the NVIDIA driver is 575.64.03, but torch 2.13.0 is built with "
                                    "CUDA 13.0, which needs driver 580 or newer"),
    ("2.13.0", "13.0", None, "`nvidia-smi` does not answer: install the NVIDIA driver (580 or newer for CUDA 13.0)"),
    ("2.13.0", "13.0", "580.95.05", "driver 580.95.05): check that `nvidia-smi` lists the card"),
])
def test_no_gpu_names_its_likely_cause(torch_version, cuda, driver, said):
    reason = preflight.no_gpu_reason(torch_version, cuda, driver)
    assert reason.startswith("no GPU is visible to PyTorch") and said in reason


def test_triton_needs_a_c_compiler_and_python_headers(tmp_path):
    """Axolotl's LoRA kernels are Triton, which compiles a launcher with the C compiler
    against Python.h at the first step: said by the preflight, not minutes into training."""
    assert "no C compiler" in preflight.triton_build_problem(None, str(tmp_path))
    assert f"no Python.h in {tmp_path}" in preflight.triton_build_problem("/usr/bin/gcc", str(tmp_path))
    (tmp_path / "Python.h").write_text("/* */")
    assert preflight.triton_build_problem("/usr/bin/gcc", str(tmp_path)) is None
    main = load_config(FT / "configs" / "qlora_style_transfer.yaml").data
    rehearsal = load_config(FT / "configs" / "cpu_rehearsal.yaml").data
    assert preflight.uses_triton(main) and not preflight.uses_triton(rehearsal)
    assert preflight.uses_triton({**rehearsal, "plugins": ["axolotl.integrations.liger.LigerPlugin"]})


def test_main_config_needs_a_gpu(make_config, tmp_path, capsys):
    import torch
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: the no-GPU message cannot be shown here")
    stage1(make_config())
    assert run_preflight(make_config({"train_device": "cuda"}), tmp_path) == 3
    err = capsys.readouterr().err
    assert "no GPU is visible to PyTorch" in err and "cpu_rehearsal.yaml" in err


def test_resume_needs_a_checkpoint_and_picks_the_highest_step(make_config, tmp_path, capsys):
    stage1(make_config())
    assert run_preflight(make_config(), tmp_path, "--resume") == 3
    assert "no checkpoint-N folder" in capsys.readouterr().err
    out = tmp_path / "out" / "adapter"
    for step in (9, 10, 2):
        (out / f"checkpoint-{step}").mkdir(parents=True)
    assert preflight.newest_checkpoint(out).name == "checkpoint-10"
    assert run_preflight(make_config(), tmp_path) == 3           # would mix two runs
    assert "add --resume" in capsys.readouterr().err
    assert run_preflight(make_config(), tmp_path, "--resume") == 0
    assert "checkpoint-10" in (tmp_path / "env").read_text()


def test_plan_counts_steps(make_config):
    stage1(make_config())
    cfg = load_config(make_config())
    manifest = preflight.check_data(cfg)
    plan = preflight.plan(cfg, manifest)
    assert plan["training examples"] == 9 and plan["optimizer steps"] == 3   # max_steps
    assert plan["join drills"] == 63                                        # 7 per training chunk
    # chunk_001 -> 002 -> 003: the validation chunk between breaks two seams of nine
    assert plan["scene openings"] == 7
    assert plan["validation scene openings"] == 1   # chunk_002's, after chunk_001
    # the demo's one pass: its max_steps, set by hand, is every training row once
    rehearsal = load_config(REHEARSAL_CONFIG).data
    assert rehearsal["max_steps"] == rehearsal["eval_steps"] == rehearsal["save_steps"] == \
        plan["training examples"] + plan["join drills"] + plan["scene openings"]
    assert plan["epochs"] == "3 (max_steps 3 ends the run after 0.038 epoch(s))"   # 3 of 79 rows
    main = load_config(make_config(max_steps=None, gradient_accumulation_steps=4))
    # every training row is a step's share: ceil((9 + 63 + 7) / 4) x 3 epochs
    assert preflight.plan(main, manifest)["optimizer steps"] == 20 * 3
    tokens = sum(e["total_tokens"] for e in manifest["examples"] if e["split"] == "train")
    tokens += sum(d["total_tokens"] for d in manifest["join_drills"] + manifest["scene_openings"])
    assert preflight.plan(main, manifest)["training tokens"] == tokens * 3
    # 63 drills and 7 openings among 79 rows, 4 to a step: C(70, 4) / C(79, 4) of the steps
    # hold no example
    assert preflight.plan(main, manifest)["steps without an example"].startswith("~61% expected")
    # a 35-chunk book: 31 examples, 124 drills, 26 openings
    assert preflight.short_rows_only_share(31, 124 + 26, 4) == pytest.approx(0.468, abs=0.001)
    assert preflight.short_rows_only_share(31, 0, 4) == 0
    # sample packing: steps count packed sequences, memory is planned for a full one
    packing = load_config(make_config(max_steps=None, gradient_accumulation_steps=4, sample_packing=True))
    packed = preflight.plan(packing, manifest)
    rows = [e["total_tokens"] for e in manifest["examples"] if e["split"] == "train"]
    sequences = gpu_plan.sequences(rows + [d["total_tokens"] for d in manifest["join_drills"] + manifest["scene_openings"]],
                                   packing.axolotl)
    assert len(sequences) < 9 + 63 + 7 and max(sequences) <= packing.sequence_len
    assert packed["optimizer steps"] == math.ceil(len(sequences) / 4) * 3 and "packed sequence" in packed["batch"]
    assert packed["training tokens"] == tokens * 3
    assert "steps without an example" not in packed   # packed sequences ride drills beside examples
    assert preflight.longest_sequence(packing, manifest) == packing.sequence_len
    assert preflight.longest_sequence(main, manifest) == preflight.longest_example(manifest) < main.sequence_len


def _netless():
    """`unshare --net` (root only): nothing, Python or not, can reach a network, so a
    component that needs one fails the run. The namespace's own loopback is brought
    up, as a machine's always is: several training processes meet on it."""
    if (shutil.which("unshare") and shutil.which("ip")
            and subprocess.run(["unshare", "--net", "true"]).returncode == 0):
        return ["unshare", "--net", "sh", "-c", 'ip link set lo up && exec "$@"', "sh"]
    return []


def run_training(cfg_path, *args):
    """Stage 2 under the network guard; fails the test if any process of the run
    tried to connect out (the guard records each attempt with its stack)."""
    log = Path(cfg_path).parent / "network_attempts.log"
    env = guarded_env(log, {**os.environ, "HF_HUB_OFFLINE": "1"})
    proc = subprocess.run([*_netless(), "bash", str(SCRIPT), "--config", str(cfg_path), *args],
                          capture_output=True, text=True, env=env, timeout=1500)
    assert attempts(log) == "", "the training run tried to reach the network:\n" + attempts(log)
    return proc


def lora_b_norm(folder: Path) -> float:
    from safetensors.torch import load_file
    weights = load_file(str(folder / "adapter_model.safetensors"))
    return sum(float(t.float().norm()) for k, t in weights.items() if "lora_B" in k)


@pytest.mark.slow
def test_rehearsal_trains_saves_and_changes_the_adapter(make_config, tmp_path, bnb_cpu_path):
    """Three steps, evaluated and saved as the main config says (evals_per_epoch and
    saves_per_epoch: here every step): the Trainer gets load_best_model_at_end, so the
    final adapter is the best checkpoint's, and stage 3 merges it under its step."""
    main = load_config(FT / "configs" / "qlora_style_transfer.yaml").data
    cfg = make_config(**{key: None for key in ("eval_strategy", "save_strategy", "eval_steps", "save_steps")},
                      **{key: main[key] for key in ("evals_per_epoch", "saves_per_epoch")})
    stage1(cfg)
    proc = run_training(cfg)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    adapter = tmp_path / "out" / "adapter"
    assert f"adapter: {adapter}" in proc.stdout
    assert "styletune: each step's loss averages over all its labelled tokens" in log   # TokenMeanLoss ran
    # LoRA's B matrices start at zero: any norm means training moved them.
    assert lora_b_norm(adapter) > 0
    state = json.loads((adapter / "checkpoint-3" / "trainer_state.json").read_text())
    losses = {e["step"]: e["eval_loss"] for e in state["log_history"] if "eval_loss" in e and e["step"] > 0}
    best = min(losses, key=losses.get)
    assert sorted(losses) == [1, 2, 3] and state["best_model_checkpoint"].endswith(f"checkpoint-{best}")
    import torch
    args = torch.load(adapter / "checkpoint-3" / "training_args.bin", weights_only=False)
    assert args.load_best_model_at_end and args.metric_for_best_model == "eval_loss"
    from styletune.train.adapter import ADAPTER_FILE, same_weights
    assert same_weights(adapter / ADAPTER_FILE, adapter / f"checkpoint-{best}" / ADAPTER_FILE)

    # Stage 3 on the rehearsal adapter: --auto finds it, the merge reproduces it.
    assert MERGE.main(["--config", str(cfg), "--auto"]) == 0
    manifest = json.loads((tmp_path / "out" / "merged" / "merge_manifest.json").read_text())
    assert manifest["checkpoint_step"] == best and manifest["validation_loss"] == state["best_metric"]
    evaluated = {e["step"] for e in state["log_history"] if "eval_loss" in e and e["step"] > 0}
    assert manifest["picked_among_evaluations"] == len(evaluated) >= 1
    assert manifest["verification"]["passed"]


@pytest.mark.slow
def test_loss_falls_on_a_handful_of_examples_repeated(make_config, tmp_path, bnb_cpu_path):
    """The pipeline can learn: 4 short passages seen again and again (an evaluation
    at the start, as Axolotl runs one, must not stop it: see styletune/train/bnb_cpu.py)."""
    paras = [p for p in (SAMPLE_BOOK / "chunk_001_prologue_the_silence.txt").read_text().split("\n\n")
             if 250 < len(p) < 700][:5]
    book = tmp_path / "tiny_book"
    book.mkdir()
    for i, para in enumerate(paras, 1):
        (book / f"chunk_{i:03d}_p.txt").write_text(para + "\n")
    # the examples alone, seen again and again (join drills would be most of the rows)
    cfg = make_config({"book_dir": str(book), "validation_chunks": ["chunk_005_p.txt"],
                       "join_drills_per_chunk": 0, "scene_openings": False})
    stage1(cfg)
    proc = run_training(cfg, "--max-steps", "16", "--num-epochs", "4", "--learning-rate", "0.002",
                        "--eval-steps", "16", "--save-steps", "16")
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    losses = [float(x) for x in re.findall(r"'loss': '([0-9.]+)'", log)]
    print("training losses:", losses)
    assert len(losses) >= 12, losses
    first, last = sum(losses[:4]) / 4, sum(losses[-4:]) / 4
    assert last < 0.6 * first, losses

    # Merged in bf16 (as for the 8B model), the model keeps what it learned.
    merged_cfg = make_config({"book_dir": str(book), "validation_chunks": ["chunk_005_p.txt"],
                              "join_drills_per_chunk": 0, "scene_openings": False,
                              "merged_dtype": "bfloat16"})
    assert MERGE.main(["--config", str(merged_cfg), "--auto"]) == 0
    merged = tmp_path / "out" / "merged"
    assert json.loads((merged / "merge_manifest.json").read_text())["verification"]["passed"]
    base_loss, merged_loss = (passage_loss(m, paras[0]) for m in (SMOL, merged))
    print(f"loss on a training passage: base {base_loss:.2f}, merged {merged_loss:.2f}")
    assert merged_loss < 0.7 * base_loss


def passage_loss(model_dir, text):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    tok = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    ids = tok(text, return_tensors="pt").input_ids
    with torch.no_grad():
        return model(ids, labels=ids).loss.item()


def test_a_steps_loss_is_the_mean_over_its_tokens_not_its_rows(tmp_path):
    """Axolotl 0.19 weighs each row of a step alike (its trainer turns transformers'
    token count off for Llama: axolotl PR #3982), so a 3-token drill beside a 40-token
    example would be half the step. TokenMeanLoss (every config's plugins) gives the
    step transformers' mean over every labelled token. Two real trainer steps of
    gradient accumulation, against the cross-entropy computed here."""
    import torch
    from axolotl.core.trainers.base import AxolotlTrainer
    from axolotl.core.training_args import AxolotlTrainingArguments
    from peft import LoraConfig, get_peft_model
    from styletune.config import load_config
    from styletune.train.axolotl_plugin import TokenMeanLoss
    from styletune.train.preflight import TOKEN_MEAN_PLUGIN
    from transformers import LlamaConfig, LlamaForCausalLM

    def trainer(name):
        torch.manual_seed(0)
        model = get_peft_model(LlamaForCausalLM(LlamaConfig(
            vocab_size=256, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
            num_attention_heads=2, num_key_value_heads=2)), LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
        built = AxolotlTrainer(model=model, args=AxolotlTrainingArguments(
            output_dir=str(tmp_path / name), per_device_train_batch_size=1, gradient_accumulation_steps=2,
            report_to=[], use_cpu=True))
        built.current_gradient_accumulation_steps = 2   # the training loop sets it
        return built

    def row(prompt, labelled, seed):
        ids = torch.randint(0, 256, (1, prompt + labelled), generator=torch.Generator().manual_seed(seed))
        labels = ids.clone()
        labels[:, :prompt] = -100
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}

    rows = [row(5, 40, 1), row(20, 3, 2)]                 # an example's completion, a drill's
    tokens = sum(int((r["labels"][:, 1:] != -100).sum()) for r in rows)

    def step_loss(t):
        return sum(float(t.training_step(t.model, dict(r), torch.tensor(tokens))) for r in rows)

    def token_losses(t):
        with torch.no_grad():
            return [torch.nn.functional.cross_entropy(
                t.model(input_ids=r["input_ids"]).logits[0, :-1], r["labels"][0, 1:], reduction="none",
                ignore_index=-100)[r["labels"][0, 1:] != -100] for r in rows]

    as_axolotl = trainer("axolotl")
    losses = token_losses(as_axolotl)
    token_mean, row_mean = float(torch.cat(losses).mean()), float(sum(x.mean() for x in losses) / 2)
    assert abs(token_mean - row_mean) > 1e-3
    assert step_loss(as_axolotl) == pytest.approx(row_mean, abs=1e-5)
    fixed = trainer("plugin")
    TokenMeanLoss().post_trainer_create(None, fixed)
    assert step_loss(fixed) == pytest.approx(token_mean, abs=1e-5)
    # and the validation loss is the mean over its tokens too (rows evaluated one by one)
    import datasets
    import transformers
    fixed.eval_dataset = datasets.Dataset.from_list([{k: v[0].tolist() for k, v in r.items()} for r in rows])
    fixed.args.per_device_eval_batch_size = 1
    fixed.eval_data_collator = transformers.default_data_collator
    assert fixed.evaluate()["eval_loss"] == pytest.approx(row_mean, abs=1e-5)     # Axolotl's as it was
    TokenMeanLoss().post_trainer_create(None, fixed)
    assert fixed.evaluate()["eval_loss"] == pytest.approx(token_mean, abs=1e-5)
    # and every shipped config trains with it
    for name in ("qlora_style_transfer", "cpu_rehearsal", "multi_gpu", "llama31_70b"):
        assert TOKEN_MEAN_PLUGIN in load_config(FT / "configs" / f"{name}.yaml").axolotl.plugins, name
