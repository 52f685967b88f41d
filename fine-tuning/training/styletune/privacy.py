"""Nothing about the writer's run leaves the machine: every tracker is switched off."""
import os

TRACKERS_OFF = {
    "AXOLOTL_DO_NOT_TRACK": "1",
    "DO_NOT_TRACK": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "WANDB_MODE": "disabled",
    "WANDB_DISABLED": "true",
    "DISABLE_MLFLOW_INTEGRATION": "TRUE",
}

# What keeps a run off every model hub: the demo's, the tests' and the benchmarks' models
# are all local (a writer's stages fetch the one base model they named, and stay online).
HUB_OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
# The environment of a run that reaches nothing: the Makefile's OFFLINE is this (a test
# checks), and the benchmarks run their stages under it.
OFFLINE_AND_UNTRACKED = {**HUB_OFFLINE, **TRACKERS_OFF}


def disable_telemetry() -> None:
    """Set the opt-out variables unless the user set them; called first by every stage."""
    for key, value in TRACKERS_OFF.items():
        os.environ.setdefault(key, value)
