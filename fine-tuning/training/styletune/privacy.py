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


def disable_telemetry() -> None:
    """Set the opt-out variables unless the user set them; called first by every stage."""
    for key, value in TRACKERS_OFF.items():
        os.environ.setdefault(key, value)
