#!/usr/bin/env python3
"""The memory plan for Llama 3.1 8B and 70B per GPU count: docs/gpus.md's table in
"Bigger models and more GPUs". Estimates from the models' shapes (styletune/train/
gpu_plan.py), with the measured figure beside them where a GPU run measured one
(gpu_plan.MEASURED); stage 2's preflight prints the same figures for the writer's
own config and checks them against each GPU's free memory.

    python fine-tuning/benchmarks/plan_gpus.py
"""
from pathlib import Path

from styletune.config import load_config
from styletune.train import gpu_plan

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
ROWS = [("Llama 3.1 8B, configs/qlora_style_transfer.yaml (1 GPU) and multi_gpu.yaml",
         gpu_plan.LLAMA31_8B, ["qlora_style_transfer.yaml", "multi_gpu.yaml"]),
        ("Llama 3.1 70B, configs/llama31_70b.yaml", gpu_plan.LLAMA31_70B, ["llama31_70b.yaml"]),
        ("Llama 3.1 70B, configs/llama31_70b.yaml with fsdp_config.offload_params: true",
         gpu_plan.LLAMA31_70B, ["llama31_70b.yaml", "offload"])]


def config_keys(names: list[str]):
    """The config's Axolotl keys (cfg.axolotl), with FSDP's offload where `names` asks for it."""
    keys = load_config(CONFIGS / names[0]).axolotl
    if "offload" in names:
        keys = keys.model_copy(update={"fsdp_config": {**keys.fsdp_config, "offload_params": True}})
    return keys, gpu_plan.TABLE_EXAMPLE_TOKENS


def table() -> str:
    out = []
    for title, shape, names in ROWS:
        out.append(f"{title}; {gpu_plan.TABLE_EXAMPLE_TOKENS:,}-token examples, micro-batch 1:\n")
        if len(names) == 2 and "offload" not in names:
            single, seq = config_keys(names[:1])
            multi, _ = config_keys(names[1:])
            rows = gpu_plan.plan_table(shape, single, seq, counts=(1,), config_name=names[0])
            # multi_gpu.yaml from one process up: FSDP on one GPU trains, slower (measured)
            rows += gpu_plan.plan_table(shape, multi, seq, counts=(1, 2, 4, 8), config_name=names[1])[2:]
        else:
            keys, seq = config_keys(names)
            rows = gpu_plan.plan_table(shape, keys, seq, config_name=names[0])
        out.append("\n".join(rows) + "\n")
    return "\n".join(out)


if __name__ == "__main__":
    print(table())
