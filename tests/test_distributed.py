"""Beyond one GPU: the overlays pass Axolotl's own config validation, stage 2 builds
the launch Axolotl's own CLI turns into torchrun, the preflight refuses what cannot
run, the memory plan's figures, and a real two-process run on CPU through Axolotl's
distributed path (DDP over gloo), resumed, then merged by stage 3.

FSDP itself cannot run on a CPU with Axolotl 0.19 and accelerate 1.13:
test_fsdp_is_refused_on_cpu_with_the_reason says why and what to do instead."""
import copy
import json
import math
import os
import re
import subprocess

import pytest
import yaml
from conftest import FT, MAIN_CONFIG, REHEARSAL_CONFIG, load_script
from styletune.config import load_config
from styletune.privacy import TRACKERS_OFF
from styletune.train import gpu_plan, preflight
from styletune.train.model_size import parameter_count
from test_train import MERGE, run_preflight, run_training, stage1

MULTI_GPU = FT / "configs" / "multi_gpu.yaml"
LLAMA_70B = FT / "configs" / "llama31_70b.yaml"
# What Axolotl's own capability probe (cli/config.py gpu_capabilities) reports on
# a machine with two RTX 5090s.
TWO_5090S = {"bf16": True, "fp8": False, "tf32": True, "n_gpu": 2, "compute_capability": "sm_120"}
TORCH = {"torch_version": "2.13.0"}


def axolotl_validated(config_path, capabilities=TWO_5090S, **changes):
    """The merged overlay, less the pipeline's own block, through Axolotl's validate_config
    (on two RTX 5090s unless `capabilities` says otherwise)."""
    from axolotl.utils.config import validate_config
    from axolotl.utils.dict import DictDefault
    data = copy.deepcopy(load_config(config_path).data)
    data.pop("style_pipeline")
    for key, value in changes.items():
        data[key] = {**data[key], **value} if isinstance(value, dict) else value
    return validate_config(DictDefault(data), capabilities=capabilities, env_capabilities=TORCH)


# --- the overlays ------------------------------------------------------------------

@pytest.mark.slow
def test_the_multi_gpu_overlay_passes_axolotls_validation_as_fsdp2_qlora():
    out = axolotl_validated(MULTI_GPU)
    assert out.adapter == "qlora" and out.load_in_4bit is True
    assert str(out.fsdp_version) == "2"
    fsdp = out.fsdp_config
    assert fsdp.auto_wrap_policy == "TRANSFORMER_BASED_WRAP"
    assert fsdp.transformer_layer_cls_to_wrap == "LlamaDecoderLayer"
    assert fsdp.activation_checkpointing is True and out.gradient_checkpointing is False
    assert fsdp.cpu_ram_efficient_loading is False and fsdp.state_dict_type == "FULL_STATE_DICT"
    assert out.optimizer == "adamw_torch_fused"
    # everything else is the main config's
    assert out.base_model == "meta-llama/Llama-3.1-8B-Instruct" and out.lora_r == 16
    assert out.datasets[0]["type"] == "styletune.train.turns"


@pytest.mark.slow
def test_axolotl_refuses_what_the_overlay_comments_say_it_refuses():
    """The comments' reasons are Axolotl's: 4-bit FSDP2 with cpu_ram_efficient_loading,
    and a bitsandbytes 8-bit optimiser under FSDP2."""
    with pytest.raises(ValueError, match="cpu_ram_efficient_loading"):
        axolotl_validated(MULTI_GPU, fsdp_config={"cpu_ram_efficient_loading": True})
    with pytest.raises(ValueError, match="FSDP2 not compatible with adamw_bnb_8bit"):
        axolotl_validated(MULTI_GPU, optimizer="adamw_bnb_8bit")


@pytest.mark.slow
def test_the_70b_overlay_passes_axolotls_validation_with_sharded_4bit_loading():
    out = axolotl_validated(LLAMA_70B)
    assert out.base_model == "meta-llama/Llama-3.1-70B-Instruct"
    assert str(out.fsdp_version) == "1" and out.qlora_sharded_model_loading is True
    fsdp = out.fsdp_config
    assert fsdp.cpu_ram_efficient_loading is True and fsdp.sync_module_states is True
    assert fsdp.offload_params is False and fsdp.state_dict_type == "FULL_STATE_DICT"
    assert out.optimizer == "adamw_torch_fused" and out.lora_r == 16
    cfg = load_config(LLAMA_70B)
    assert cfg.pipeline.merged_dir.name == "merged-70b" and cfg.output_dir.name.endswith("70b")
    assert cfg.train_path == load_config(MULTI_GPU).train_path      # stage 1's data, shared


def test_every_key_the_overlays_set_has_a_comment():
    from test_config import comments_by_key
    for overlay in (MULTI_GPU, LLAMA_70B):
        found = comments_by_key(overlay.read_text())
        bare = [".".join(p) for p, c in found.items() if c is None and p[0] != "extends"]
        assert not bare, f"{overlay.name}: no comment above (or naming) {bare}"


# --- the launch --------------------------------------------------------------------

def test_launch_arguments_for_one_and_several_processes():
    assert gpu_plan.launch_arguments(1) == ["--launcher", "accelerate", "--", "--num_processes", "1"]
    assert gpu_plan.launch_arguments(4) == ["--launcher", "torchrun", "--", "--standalone",
                                            "--nproc_per_node", "4"]


@pytest.mark.parametrize("config", [MAIN_CONFIG, MULTI_GPU, LLAMA_70B, REHEARSAL_CONFIG],
                         ids=lambda p: p.stem)
@pytest.mark.parametrize("processes", [1, 2, 4, 8])
def test_every_config_launches_through_torchrun_where_fsdp_needs_it(config, processes):
    """transformers refuses FSDP outside distributed training, and `accelerate launch
    --num_processes 1` is not distributed: a config with fsdp_config goes through
    torchrun at every process count, one included; others only with several."""
    keys = load_config(config).axolotl
    launch = gpu_plan.launch_arguments(processes, keys)
    torchrun = ["--launcher", "torchrun", "--", "--standalone", "--nproc_per_node", str(processes)]
    if keys.fsdp_config or processes > 1:
        assert launch == torchrun
    else:
        assert launch == ["--launcher", "accelerate", "--", "--num_processes", "1"]
    assert bool(keys.fsdp_config) == (config in (MULTI_GPU, LLAMA_70B))


@pytest.mark.parametrize("processes, command", [
    (1, ["accelerate", "launch", "--num_processes", "1", "-m", "axolotl.cli.train"]),
    (2, ["torchrun", "--standalone", "--nproc_per_node", "2", "-m", "axolotl.cli.train"]),
])
def test_axolotls_cli_turns_the_launch_arguments_into_its_launcher(processes, command, tmp_path,
                                                                   monkeypatch):
    """What `axolotl train CONFIG <overrides> <launch arguments>` executes, captured at
    the exec Axolotl's CLI ends with (the one call replaced: it would start training)."""
    from axolotl.cli.main import cli
    from click.testing import CliRunner
    config = tmp_path / "c.yaml"
    config.write_text("base_model: x\n")
    executed = []

    def capture(file, args, env):
        executed.append(args)
        raise SystemExit(0)

    monkeypatch.setattr(os, "execvpe", capture)
    args = ["train", str(config), "--learning-rate", "0.0001", *gpu_plan.launch_arguments(processes)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert len(executed) == 1
    # then Axolotl's own defaults for its other options (--debug=False, ...)
    assert executed[0][:len(command) + 2] == command + [str(config), "--learning-rate=0.0001"]


def test_accumulation_keeps_the_configs_batch():
    assert [gpu_plan.accumulation_for(4, n) for n in (1, 2, 3, 4, 8)] == [4, 2, 1, 1, 1]
    assert gpu_plan.accumulation_for(5, 2) == 3 and gpu_plan.accumulation_for(6, 4) == 2


def test_the_preflight_writes_the_launch_and_the_scaled_batch(make_config, tmp_path, capsys, monkeypatch):
    cfg = make_config(gradient_accumulation_steps=4)
    stage1(cfg)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    for key in TRACKERS_OFF:                  # as a shell that set none of them has it
        monkeypatch.delenv(key, raising=False)
    assert run_preflight(cfg, tmp_path, "--gpus", "2") == 0
    out = capsys.readouterr().out
    assert "processes: 2 (ddp)" in out
    assert "batch: 1 example(s) x 2 accumulation step(s) x 2 process(es) = 4" in out
    env = (tmp_path / "env").read_text()
    assert "LAUNCH=(--launcher torchrun -- --standalone --nproc_per_node 2)" in env
    assert "ACCELERATE_USE_CPU=true" in env and "PROCESSES=2" in env
    # the cores shared out: the launchers would give each CPU process one thread
    assert f"OMP_NUM_THREADS={max(1, len(os.sched_getaffinity(0)) // 2)}\n" in env
    axolotl_yaml = yaml.safe_load((tmp_path / "out" / "logs" / "config.axolotl.yaml").read_text())
    assert axolotl_yaml["gradient_accumulation_steps"] == 2
    # sourced as 2_train_lora.sh does, in a bare shell: Axolotl's processes get every tracker off
    shell = subprocess.run(["env", "-i", "bash", "-c", f"source {tmp_path / 'env'}; env"],
                           capture_output=True, text=True, check=True).stdout.splitlines()
    assert {f"{k}={v}" for k, v in TRACKERS_OFF.items()} <= set(shell)
    # a tracker the writer turned on in their own shell stays theirs (privacy.disable_telemetry)
    monkeypatch.setenv("WANDB_MODE", "online")
    assert run_preflight(cfg, tmp_path, "--gpus", "2") == 0
    assert "export WANDB_MODE=online\n" in (tmp_path / "env").read_text()
    assert yaml.safe_load(cfg.read_text())["gradient_accumulation_steps"] == 4   # the writer's file untouched


@pytest.mark.parametrize("top, pipeline, args, message", [
    ({}, {}, ["--gpus", "0"], "--gpus 0: give a number of GPUs, 1 or more"),
    pytest.param({}, {"train_device": "cuda"}, ["--gpus", "2"], "no GPU is visible to PyTorch",
                 marks=pytest.mark.skipif(
                     __import__("torch").cuda.is_available(),
                     reason="this machine has a GPU: the no-GPU message cannot happen here")),
    ({"plugins": []}, {}, ["--gpus", "2"], "need the plugin styletune.train.axolotl_plugin.QLoRAOnCPU"),
])
def test_the_preflight_refuses_what_cannot_run(make_config, tmp_path, capsys, top, pipeline, args,
                                                message):
    cfg = make_config(pipeline, **top)
    stage1(cfg)
    assert run_preflight(cfg, tmp_path, *args) == 3
    assert message in capsys.readouterr().err


def test_fsdp_is_refused_on_cpu_with_the_reason(make_config, tmp_path, capsys):
    """Measured with Axolotl 0.19: FSDP2 on CPU dies building its device mesh on
    "cuda" (axolotl/utils/distributed.py build_parallelism_config); FSDP1 trains as
    plain DDP (accelerate's CPU state has no FSDP plugin) and then fails to save
    (axolotl/train.py save_trained_model reads fsdp_plugin). So the preflight says so."""
    fsdp = yaml.safe_load(MULTI_GPU.read_text())
    cfg = make_config(fsdp_version=2, fsdp_config=fsdp["fsdp_config"])
    stage1(cfg)
    assert run_preflight(cfg, tmp_path, "--gpus", "2") == 3
    assert "FSDP needs GPUs" in capsys.readouterr().err


# --- the memory plan ---------------------------------------------------------------

def test_parameter_counts_of_llama_31():
    assert parameter_count(gpu_plan.LLAMA31_8B) == 8_030_261_248      # the 8B's safetensors index
    assert parameter_count(gpu_plan.LLAMA31_70B) == 70_553_706_496     # Meta's model card: 70.6B


@pytest.mark.parametrize("config_name, processes", list(gpu_plan.MEASURED))
def test_each_plan_is_within_15_percent_of_its_gpu_measurement(config_name, processes):
    """bench_gpu_training.py's peaks on an H200 (gpu_plan.MEASURED): the plan for the
    same config, GPU count, model shape and example length stays within 15%."""
    keys = load_config(FT / "configs" / config_name).axolotl
    plan = gpu_plan.memory_plan(gpu_plan.LLAMA31_8B, keys, processes, gpu_plan.MEASURED_TOKENS)
    peak = gpu_plan.MEASURED[(config_name, processes)]["peak_gib"]
    assert abs(plan.per_gpu_gib - peak) <= 0.15 * peak, (plan.per_gpu_gib, peak)
    note = gpu_plan.measured_note(config_name, gpu_plan.LLAMA31_8B, processes, keys)
    assert f"measured {peak:.1f} GiB" in note and "H200, 2026-12-04" in note
    assert gpu_plan.measured_note(config_name, gpu_plan.LLAMA31_70B, processes, keys) == ""


def test_the_plan_counts_liger_keeping_the_logits_out_of_memory():
    """With Liger's fused linear cross-entropy (its plugin on, as the GPU bench's liger
    profiles set it) the plan holds one chunk of logits, not all of them: at four rows
    of 4,096 tokens a micro-batch that is the difference between over and under the
    28 GiB the writer's 32 GB card allows. The key alone, without the plugin, does
    nothing, in Axolotl and in the plan."""
    main = load_config(MAIN_CONFIG).axolotl
    shape, liger = gpu_plan.LLAMA31_8B, BENCH.PROFILES["liger"]
    plan = lambda **keys: gpu_plan.memory_plan(shape, main.model_copy(update=keys), 1, 4096).per_gpu_gib  # noqa: E731
    logits = 4 * 4096 * shape["vocab_size"] * 8 / gpu_plan.GIB
    assert plan(micro_batch_size=4) > BENCH.CARD_GIB > plan(micro_batch_size=4, **liger)
    assert plan(micro_batch_size=4) - plan(micro_batch_size=4, **liger) == pytest.approx(logits, abs=0.5)
    assert plan(micro_batch_size=4, liger_fused_linear_cross_entropy=True) == plan(micro_batch_size=4)
    # Liger's own rule: 16,384 rows, 128,256 / 4,096 -> 32 chunks of 512 rows
    assert gpu_plan.cross_entropy_bytes(16384, 4096, 128256, main.model_copy(update=liger)) == \
        512 * 128256 * 2 + 16384 * 4096 * 2 + 16384 * 4


def test_the_plan_says_when_its_checkpointing_terms_do_not_hold(tmp_path):
    """The plan's activation terms assume gradient checkpointing (transformers', or FSDP's
    in the multi-GPU overlays); a config that turns it off gets its plan with a warning
    that the run will need more, in the preflight as in the GPU bench."""
    assert gpu_plan.checkpointed(load_config(MAIN_CONFIG).axolotl)
    assert gpu_plan.checkpointed(load_config(MULTI_GPU).axolotl)   # FSDP's activation_checkpointing
    path = tmp_path / "off.yaml"
    path.write_text(yaml.safe_dump({"extends": str(MAIN_CONFIG), "gradient_checkpointing": False}))
    off = load_config(path)
    assert not gpu_plan.checkpointed(off.axolotl)
    gpus = [{"index": 0, "name": "NVIDIA GeForce RTX 5090", "free_gib": 31.0}]
    said = preflight.check_memory_for(gpu_plan.LLAMA31_8B, off, gpus, 1, 3000)
    assert said.endswith("31.0 GiB") and "assumes gradient checkpointing" in said
    on = preflight.check_memory_for(gpu_plan.LLAMA31_8B, load_config(MAIN_CONFIG), gpus, 1, 3000)
    assert "checkpointing" not in on


def test_cpu_processes_share_the_cores_so_the_planned_speed_does_not_grow():
    """--gpus 2 on a CPU splits the same cores between two processes (cpu_threads);
    GPUs each bring their own."""
    assert gpu_plan.tokens_per_second("cpu", None, 2) == gpu_plan.tokens_per_second("cpu", None, 1)
    assert gpu_plan.tokens_per_second("cuda", None, 2) == 2 * gpu_plan.tokens_per_second("cuda", None, 1)


def test_memory_plan_for_8b_and_70b():
    main = load_config(FT / "configs" / "qlora_style_transfer.yaml").axolotl
    multi = load_config(MULTI_GPU).axolotl
    big = load_config(LLAMA_70B).axolotl
    one = gpu_plan.memory_plan(gpu_plan.LLAMA31_8B, main, 1, 3000)
    assert one.strategy == "single" and 5.5 < one.weights_gib < 5.8
    assert one.need_per_gpu_gib < 32                                       # one RTX 5090
    fsdp8 = gpu_plan.memory_plan(gpu_plan.LLAMA31_8B, multi, 4, 3000)
    assert fsdp8.strategy == "fsdp2" and fsdp8.per_gpu_gib < one.per_gpu_gib
    assert fsdp8.load_peak_gib == pytest.approx(one.weights_gib + gpu_plan.OVERHEAD_GIB)

    # 70B: the 4-bit model is ~40 GiB. FSDP2 would load all of it on every GPU...
    fsdp2_70b = gpu_plan.memory_plan(gpu_plan.LLAMA31_70B, multi, 2, 3000)
    assert 39 < fsdp2_70b.weights_gib < 41 and fsdp2_70b.need_per_gpu_gib > 32
    # ...the overlay's sharded loading does not: 4 x 32 GB fits, 2 x 32 GB needs offload.
    four = gpu_plan.memory_plan(gpu_plan.LLAMA31_70B, big, 4, 3000)
    two = gpu_plan.memory_plan(gpu_plan.LLAMA31_70B, big, 2, 3000)
    assert four.strategy == "fsdp1" and four.need_per_gpu_gib < 30
    assert two.need_per_gpu_gib > 30
    offloaded = big.model_copy(update={"fsdp_config": {**big.fsdp_config, "offload_params": True}})
    assert gpu_plan.memory_plan(gpu_plan.LLAMA31_70B, offloaded, 2, 3000).need_per_gpu_gib < 20
    assert gpu_plan.memory_plan(gpu_plan.LLAMA31_70B, big, 1, 3000).need_per_gpu_gib < 80
    assert two.cpu_ram_gib > two.weights_gib                              # process 0 builds it in RAM


def test_the_plan_table_script_prints_both_models_as_the_gpu_docs_quote_them():
    script = load_script(FT / "benchmarks" / "plan_gpus.py")
    text = script.table()
    assert "Llama 3.1 8B" in text and "Llama 3.1 70B" in text
    readme = (FT.parent / "docs" / "gpus.md").read_text()
    eight_b = [line for line in text.splitlines() if re.match(r"\| \d \| (single|fsdp2) \|", line)]
    assert len(eight_b) == 5 and all(line in readme for line in eight_b)
    # the docs' 70B table puts the offload column beside the plain one
    plain = [r.split(" | ") for r in text.split("offload_params: true")[0].splitlines() if "| fsdp1 |" in r]
    offload = [r.split(" | ") for r in text.split("offload_params: true")[1].splitlines() if "| fsdp1 |" in r]
    for a, b in zip(plain, offload, strict=True):
        row = " | ".join([a[0], a[2], b[2], *a[3:]])
        assert row in readme, row


# --- the real thing: two CPU processes through Axolotl's distributed path ----------

@pytest.mark.slow
def test_two_cpu_processes_train_resume_and_merge(make_config, tmp_path):
    """Stage 2 with --gpus 2 on the rehearsal config: torchrun starts two Axolotl
    processes (DDP over gloo), each step takes one example per process, and only
    process 0 logs and saves. Then --resume continues the distributed run for one
    more step, and stage 3 merges the adapter."""
    cfg = make_config()
    result = stage1(cfg)
    n_train = len(result.train) + len(result.rows_without_end)   # every training row, join drills too
    proc = run_training(cfg, "--gpus", "2")
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    assert "--launcher torchrun -- --standalone --nproc_per_node 2" in log
    assert '"world_size": 2' in log
    losses = re.findall(r"'loss': '([0-9.]+)'", log)
    assert len(losses) == 3, losses                               # logged once per step, by process 0
    epoch = float(re.findall(r"'train_runtime'.*?'epoch': '([0-9.]+)'", log)[-1])
    # Each process gets half of the epoch (ceil(n/2) rows: the sampler pads), so 3
    # steps are 3 / ceil(n/2) of an epoch; one process alone would be at 3 / n.
    assert epoch == pytest.approx(3 / math.ceil(n_train / 2), abs=0.01)
    adapter = tmp_path / "out" / "adapter"
    assert json.loads((adapter / "styletune_run.json").read_text()) == {"processes": 2}
    assert {p.name for p in (adapter / "checkpoint-3").glob("rng_state_*.pth")} == \
        {"rng_state_0.pth", "rng_state_1.pth"}

    # A resume must keep the process count...
    assert run_preflight(cfg, tmp_path, "--resume", "--gpus", "1") == 3
    # ...and with it, continues the distributed run.
    proc = run_training(cfg, "--resume", "--gpus", "2", "--max-steps", "4", "--save-steps", "4",
                        "--eval-steps", "4")
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    assert f"resuming from {adapter / 'checkpoint-3'}" in log
    state = json.loads((adapter / "checkpoint-4" / "trainer_state.json").read_text())
    assert state["global_step"] == 4 and len(re.findall(r"'loss': '([0-9.]+)'", log)) == 1

    # Stage 3 takes the adapter training ended with: the best of steps 3 and 4 by
    # validation loss (load_best_model_at_end), and the merge reproduces it.
    assert MERGE.main(["--config", str(cfg), "--auto"]) == 0
    manifest = json.loads((tmp_path / "out" / "merged" / "merge_manifest.json").read_text())
    assert manifest["checkpoint_step"] == state["best_global_step"]
    assert manifest["verification"]["passed"]


def test_the_plugin_places_a_distributed_cpu_run_on_the_cpu(monkeypatch):
    import torch
    from axolotl.utils.dict import DictDefault
    from styletune.train.axolotl_plugin import place_on_cpu_when_distributed
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)     # as on the CPU machine
    one = DictDefault({"world_size": 1, "device_map": "auto"})
    assert not place_on_cpu_when_distributed(one) and one.device_map == "auto"
    two = DictDefault({"world_size": 2, "device_map": {"": 1}})          # what Axolotl sets
    assert place_on_cpu_when_distributed(two) and two.device_map == "cpu"
    # and a resumed CPU process can load its optimiser state the way transformers asks
    import io
    saved = io.BytesIO()
    torch.save({"exp_avg": torch.ones(3)}, saved)
    saved.seek(0)
    state = torch.load(saved, map_location=torch.device("cpu", 0), weights_only=True)
    assert state["exp_avg"].tolist() == [1.0, 1.0, 1.0]


def test_preflight_memory_check_names_the_gpu_and_the_fix(make_config):
    """check_memory against GPUs as the preflight lists them (no GPU here: the list
    is what check_gpus returns on a machine with two 32 GB cards, 20 GiB free each)."""
    cfg = load_config(LLAMA_70B)
    gpus = [{"index": i, "name": "NVIDIA GeForce RTX 5090", "arch": "sm_120", "free_gib": 20.0,
             "total_gib": 31.4} for i in range(2)]
    shape = gpu_plan.LLAMA31_70B
    need = gpu_plan.memory_plan(shape, cfg.axolotl, 2, 3000).need_per_gpu_gib
    with pytest.raises(preflight.PreflightError, match="offload_params: true") as err:
        preflight.check_memory_for(shape, cfg, gpus, 2, 3000)
    assert f"GPU 0 (NVIDIA GeForce RTX 5090) has 20.0 GiB free; the plan needs ~{need:.0f} GiB" \
        in str(err.value)


def test_the_plan_knows_llama_31_before_the_download(monkeypatch):
    """Not downloaded yet: the preflight still prices the run from the known shape."""
    from styletune.train import model_size
    monkeypatch.setattr(model_size, "model_shape", lambda cfg: None)   # as before the download
    assert gpu_plan.shape_of(load_config(LLAMA_70B)) == gpu_plan.LLAMA31_70B
    assert gpu_plan.shape_of(load_config(MULTI_GPU)) == gpu_plan.LLAMA31_8B


def test_checkpoint_disk_scales_with_the_adapter():
    """LoRA weights and AdamW state, ~16 bytes a parameter, for save_total_limit + 1."""
    big, eight = load_config(LLAMA_70B), load_config(MULTI_GPU)
    lora_70b = gpu_plan.lora_parameters(gpu_plan.LLAMA31_70B, 16)
    assert lora_70b == 207_093_760
    assert preflight.checkpoint_gib(big) == pytest.approx(lora_70b * 16 * 4 / 2**30)   # ~12.3 GiB
    assert preflight.checkpoint_gib(eight) < 3
    # without save_total_limit Axolotl keeps every save: 3 epochs x saves_per_epoch 2, + the adapter
    eight.axolotl = eight.axolotl.model_copy(update={"save_total_limit": None})
    per_save = gpu_plan.lora_parameters(gpu_plan.LLAMA31_8B, eight.axolotl.lora_r) * 16 / 2**30
    assert (eight.axolotl.num_epochs, eight.data["saves_per_epoch"]) == (3, 2)
    assert preflight.checkpoint_gib(eight) == pytest.approx(per_save * 7)


def test_a_download_that_does_not_fit_is_refused_before_it_starts(monkeypatch, tmp_path):
    import shutil
    from collections import namedtuple

    from styletune.train import model_size
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(model_size, "model_shape", lambda cfg: None)       # not downloaded yet
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(2**40, 0, 100 * 2**30))
    with pytest.raises(preflight.PreflightError, match=r"needs ~134 GiB to download, and .* has 100 GiB"):
        preflight.check_download_room(load_config(LLAMA_70B))


def test_a_cached_config_is_not_a_downloaded_model(monkeypatch, tmp_path):
    """A dry run (Axolotl reads config.json) or a broken-off download caches part of a
    model: the disk check counts the weight files still missing, from the shard index."""
    import shutil
    from collections import namedtuple
    cfg = load_config(LLAMA_70B)
    snapshot = tmp_path / "hub" / f"models--{cfg.base_model.replace('/', '--')}" / "snapshots" / "abc"
    snapshot.mkdir(parents=True)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("abc")
    (snapshot / "config.json").write_text("{}")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub"))
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(2**40, 0, 100 * 2**30))
    with pytest.raises(preflight.PreflightError, match=r"needs ~134 GiB to download"):
        preflight.check_download_room(cfg)                      # config.json alone: all of it
    shards = [f"model-0000{i}-of-00004.safetensors" for i in range(1, 5)]
    (snapshot / "model.safetensors.index.json").write_text(json.dumps(
        {"weight_map": {f"layer{i}": shard for i, shard in enumerate(shards)}}))
    for shard in shards[:3]:
        (snapshot / shard).write_bytes(b"")
    assert preflight.weights_to_download(cfg.base_model) == (1, 4)
    preflight.check_download_room(cfg)                          # a quarter: ~34 GiB fits in 100
    (snapshot / shards[3]).write_bytes(b"")
    assert preflight.weights_to_download(cfg.base_model) == (0, 4)
    assert "(in the Hugging Face cache)" in preflight.check_base_model(cfg)


@pytest.mark.parametrize("error, said", [
    ("GatedRepoError", "may not download meta-llama/Llama-3.1-70B-Instruct yet: accept its licence on "
                       "https://huggingface.co/meta-llama/Llama-3.1-70B-Instruct"),
    ("RepositoryNotFoundError", "is no model this token can see on the Hugging Face hub: check base_model"),
])
def test_a_gated_model_the_token_may_not_download_is_refused_before_the_download(monkeypatch, tmp_path,
                                                                                  error, said):
    """The hub's own answers (huggingface_hub's errors, as auth_check raises them for a
    licence not yet accepted or a misspelt name) turned into the fix; nothing is fetched."""
    import httpx
    import huggingface_hub
    from huggingface_hub import errors
    cfg = load_config(LLAMA_70B)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: "hf_example")
    response = httpx.Response(403, request=httpx.Request("GET", "https://huggingface.co/api/models/x"))

    def refuse(repo_id, **kw):
        raise getattr(errors, error)(f"{repo_id}: refused", response=response)
    monkeypatch.setattr(huggingface_hub, "auth_check", refuse)
    with pytest.raises(preflight.PreflightError, match=re.escape(said)):
        preflight.check_base_model(cfg)
    monkeypatch.setattr(huggingface_hub, "auth_check", lambda repo_id, **kw: None)
    assert "(will download" in preflight.check_base_model(cfg)


def test_the_cpu_ram_check_names_the_need():
    plan = gpu_plan.MemoryPlan("fsdp1", 2, 20.0, 2.0, 10_000.0, 40.0)
    with pytest.raises(preflight.PreflightError, match="needs ~10000 GiB of CPU RAM"):
        preflight.check_cpu_ram(plan)


def test_fsdp_on_cpu_is_refused_with_one_process_too(make_config, tmp_path, capsys):
    fsdp = yaml.safe_load(MULTI_GPU.read_text())
    cfg = make_config(fsdp_version=2, fsdp_config=fsdp["fsdp_config"])
    stage1(cfg)
    assert run_preflight(cfg, tmp_path) == 3
    assert "FSDP needs GPUs" in capsys.readouterr().err


def test_a_damaged_run_record_is_named(make_config, tmp_path, capsys):
    cfg = make_config()
    stage1(cfg)
    adapter = tmp_path / "out" / "adapter"
    (adapter / "checkpoint-3").mkdir(parents=True)
    (adapter / "styletune_run.json").write_text("{")
    assert run_preflight(cfg, tmp_path, "--resume") == 3
    assert "styletune_run.json is damaged" in capsys.readouterr().err


def test_gpus_of_two_architectures_are_refused(monkeypatch):
    """No GPU here: torch.cuda's device queries answer as on a machine with an RTX 5090
    (sm_120) and an RTX 4090 (sm_89); check_gpus's own logic runs unchanged."""
    import torch
    cards = [("NVIDIA GeForce RTX 5090", (12, 0)), ("NVIDIA GeForce RTX 4090", (8, 9))]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda i: cards[i][1])
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i: cards[i][0])
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda i: (20 * 2**30, 32 * 2**30))
    with pytest.raises(preflight.PreflightError, match=r"the GPUs differ in architecture \(GPU 0 "
                       r"NVIDIA GeForce RTX 5090 \(sm_120\), GPU 1 NVIDIA GeForce RTX 4090 \(sm_89\)\)"):
        preflight.check_gpus("cuda", 2)


# --- the GPU benchmark's profiles (run on a GPU; their configs are checked here) ------

BENCH = load_script(FT / "benchmarks" / "bench_gpu_training.py")


def test_bench_set_reads_each_value_as_yaml():
    assert BENCH.parse_sets(["micro_batch_size=2", "plugins=[a, b]", "x=true"]) == \
        {"micro_batch_size": 2, "plugins": ["a", "b"], "x": True}
    with pytest.raises(ValueError, match="KEY=VALUE"):
        BENCH.parse_sets(["micro_batch_size"])


@pytest.mark.parametrize("profile", list(BENCH.PROFILES))
def test_every_speed_profile_learns_what_the_main_config_learns(profile, tmp_path):
    """A profile may change how fast a step runs, not what is learnt: the same global
    batch (micro-batch x accumulation), the same loss (completion and end token only),
    the same data, learning rate and steps; --set applies on top of every profile."""
    from types import SimpleNamespace
    args = SimpleNamespace(config=None, cpu=False, steps=5, overrides={"seed": 7})
    cfg = load_config(BENCH.bench_config(tmp_path, tmp_path / "model", args, profile))
    main = load_config(BENCH.bench_config(tmp_path, tmp_path / "model", args, "main"))
    batch = lambda d: d.get("micro_batch_size", 1) * d.get("gradient_accumulation_steps", 1)  # noqa: E731
    assert batch(cfg.data) == batch(main.data) == batch(load_config(MAIN_CONFIG).data)
    packs = BENCH.CHANGES_ROWS_PER_STEP.get(profile, ())   # rows per step: tests/test_packing.py
    for key in ("learning_rate", "max_steps", "sequence_len", "sample_packing", "pad_to_sequence_len", "lora_r"):
        if key not in packs:
            assert cfg.data.get(key) == main.data.get(key), key
    assert all(cfg.data.get(key) != main.data.get(key) for key in packs)
    # the same stage 1 files (the bench writes them once), format and loss
    assert cfg.data["datasets"] == main.data["datasets"]
    what_stage1_reads = lambda d: {k: v for k, v in d["style_pipeline"].items() if k not in ("report_dir", "log_dir")}  # noqa: E731
    assert what_stage1_reads(cfg.data) == what_stage1_reads(main.data)
    assert cfg.data["output_dir"] != main.data["output_dir"] or profile == "main"   # each its own adapter
    assert cfg.data["datasets"][0]["type"] == "styletune.train.turns"
    assert cfg.data["seed"] == 7 and cfg.data["max_steps"] == 5
    assert cfg.template_family == "chatml-continuation"   # SmolLM2's tokenizer, the main layout
    # and Axolotl takes it on one GPU (no evaluation mid-run: a per-epoch key of the
    # main config beside eval_strategy "no" is refused)
    one_h200 = {**TWO_5090S, "n_gpu": 1, "compute_capability": "sm_90"}
    assert axolotl_validated(cfg.path, capabilities=one_h200)["eval_strategy"] == "no"


def test_bench_compares_loss_curves_only_where_the_steps_hold_the_same_rows():
    """'The loss curve matching today's within noise' (issue 23): step by step where a
    step holds the same rows (one row four times accumulated = four rows at once,
    grouped by length alike; on CPU, with the rehearsal config at four accumulated
    steps: 0.010 over 3 steps, the log's resolution), not where packing or another
    batch changes them."""
    run = lambda mb, acc, losses: {"micro_batch": mb, "accumulation": acc, "losses": losses}  # noqa: E731
    main = run(1, 4, [12.2, 11.5, 10.7])
    assert BENCH.loss_gap(run(4, 1, [12.2, 11.4, 10.75]), "batch4-grouped", main, "main") == pytest.approx(0.1)
    assert BENCH.loss_gap(run(1, 4, [12.2, 11.5, 10.7]), "liger", main, "main") == 0
    assert BENCH.loss_gap(run(4, 4, [12.2, 11.5, 10.7]), "batch4-grouped", main, "main") is None
    assert BENCH.loss_gap(run(1, 4, [12.2, 11.5, 10.7]), "packing", main, "main") is None


def test_bench_finds_a_profiles_missing_package_before_building_a_model(monkeypatch):
    """A GPU image given only gpu-wheels.sh's wheels has no Liger: the bench says so for
    the Liger profiles before an 8B model is built or loaded for them."""
    for profile in BENCH.PROFILES:
        assert BENCH.missing_packages(BENCH.PROFILES[profile]) == []   # installed here
    monkeypatch.setitem(BENCH.PLUGIN_PACKAGES, "axolotl.integrations.liger", "no_such_package_here")
    assert BENCH.missing_packages(BENCH.PROFILES["batch4-liger"]) == ["no_such_package_here"]
    assert BENCH.missing_packages(BENCH.PROFILES["packing"]) == []


def test_bench_reuses_a_random_model_only_of_its_shape(tmp_path):
    """gpu_check.sh builds the 8B-shaped model once: --model reuses a finished model
    of the same shape, builds into a new or empty folder, refuses anything else."""
    import json
    folder = tmp_path / "model"
    assert BENCH.reusable_model(folder, "tiny") is None          # new: build it there
    folder.mkdir()
    assert BENCH.reusable_model(folder, "tiny") is None          # empty: build it there
    (folder / "notes.txt").write_text("mine")
    with pytest.raises(SystemExit, match="not empty and holds no model"):
        BENCH.reusable_model(folder, "tiny")
    (folder / "config.json").write_text(json.dumps(BENCH.SHAPES["tiny"]))
    with pytest.raises(SystemExit, match="unfinished model"):
        BENCH.reusable_model(folder, "tiny")
    (folder / "tokenizer_config.json").write_text("{}")
    assert BENCH.reusable_model(folder, "tiny") == folder
    with pytest.raises(SystemExit, match="another shape"):
        BENCH.reusable_model(folder, "llama-3.1-8b")


@pytest.mark.slow
def test_the_gpu_check_runs_and_the_bench_peaks_at_the_longest_example(tmp_path):
    """gpu_check.sh's smoke run on CPU (the same script and bench a GPU lease runs,
    tiny model): its summary carries each profile's figures and says why FSDP did not
    run. Issue 23 asks each profile's peak memory at the longest example
    sequence_len allows: one chunk's example just fits sequence_len, it trains (not
    held out), and grouping by length puts it in the first step, whose token slots
    the bench reads back from Axolotl's log: one row a step on the rehearsal config,
    four rows padded to it with batch4-grouped."""
    import subprocess
    import sys
    out = tmp_path / "check"
    proc = subprocess.run(["bash", str(FT / "benchmarks" / "gpu_check.sh"), str(out), "--cpu", "--steps", "2",
                           "--profiles", "batch4-grouped", "--only", "profiles multi_gpu"],
                          capture_output=True, text=True, timeout=900, cwd=tmp_path,
                          env={**os.environ, "PYTHON": sys.executable})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    log = (out / "main_and_profiles.log").read_text()
    runs = {r["profile"]: r for r in map(json.loads, re.findall(r"^\{.*\}$", log, re.M))}
    limit = load_config(REHEARSAL_CONFIG).sequence_len - BENCH.FIT_MARGIN
    for profile, rows in (("main", 1), ("batch4-grouped", 4)):
        run = runs[profile]
        assert limit - 100 < run["longest_example"] <= limit, run
        # each row padded to a multiple of a few tokens at most, never a longer row's length
        assert rows * run["longest_example"] <= run["first_step_slots"] < rows * (run["longest_example"] + 64), run
        assert run["tokens_per_s"] > 0 and all(math.isfinite(x) for x in run["losses"]), run
    summary = (out / "summary.md").read_text()
    assert summary.count("the peak covers it") == 2 and "[batch4-grouped] tokens/s" in summary
    # one row a step against four: other rows, so no step-by-step loss comparison
    assert "[batch4-grouped] loss vs main: not comparable step by step" in summary
    assert "not run: --cpu (FSDP needs CUDA)" in summary and "merge" not in summary
    assert not (out / "model").exists()   # the 8B-sized model is not left behind


def test_the_gpu_check_keeps_to_its_time_limit(tmp_path):
    """A device lease stops a command at its limit and keeps only what was written:
    --time-limit runs each step under the time left (the bench prints each profile as
    it ends; a manual run cut at 45 s on CPU left no process behind) and lists a step
    it has no time for as not run, building nothing."""
    import subprocess
    import sys
    script, env = str(FT / "benchmarks" / "gpu_check.sh"), {**os.environ, "PYTHON": sys.executable}
    proc = subprocess.run(["bash", script, str(tmp_path / "check"), "--cpu", "--time-limit", "20"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env)
    summary = (tmp_path / "check" / "summary.md").read_text()
    assert proc.returncode == 1 and summary.count("not run: the --time-limit of 20 s was spent") == 2, summary
    assert "- triton " in summary and "- bitsandbytes " in summary   # what the image brought
    assert not (tmp_path / "check" / "model").exists()
    bad = subprocess.run(["bash", script, str(tmp_path / "x"), "--cpu", "--time-limit", "10m"],
                         capture_output=True, text=True, cwd=tmp_path, env=env)
    assert bad.returncode == 2 and "seconds" in bad.stderr


@pytest.mark.slow
def test_a_step_cut_by_the_time_limit_says_so_and_leaves_nothing_running(tmp_path):
    """The bench under a limit shorter than it needs (on CPU, about a minute of a
    200-step run of several): the step ends with timeout's status, its log says the
    time limit stopped it, the step after it is listed as not run, and no process of
    it is left."""
    import subprocess
    import sys
    out = tmp_path / "check"
    proc = subprocess.run(["bash", str(FT / "benchmarks" / "gpu_check.sh"), str(out), "--cpu", "--steps", "200",
                           "--only", "profiles merge", "--time-limit", "120"],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          env={**os.environ, "PYTHON": sys.executable})
    summary = (out / "summary.md").read_text()
    assert proc.returncode == 1 and "- exit 124," in summary, summary
    assert "stopped by --time-limit" in (out / "main_and_profiles.log").read_text()
    assert "## merge_tests_cpu\n\nnot run: the --time-limit of 120 s was spent" in summary
    left = subprocess.run(["pgrep", "-f", str(out)], capture_output=True, text=True).stdout
    assert not left.strip(), left


def test_axolotl_runs_its_lora_kernels_in_the_main_config_already():
    """Why the GPU bench has no LoRA-kernel profile: Axolotl turns its Triton LoRA
    kernels on by itself for the main config (which leaves them unset, so that the
    70B overlay's FSDP1, which refuses them, inherits nothing), on one GPU or with
    DDP on several."""
    for gpus in (1, 2):
        out = axolotl_validated(MAIN_CONFIG, capabilities={**TWO_5090S, "n_gpu": gpus})
        assert out["lora_mlp_kernel"] and out["lora_qkv_kernel"] and out["lora_o_kernel"], gpus
    assert "lora_mlp_kernel" not in load_config(MAIN_CONFIG).data
