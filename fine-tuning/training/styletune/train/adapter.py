"""Which adapter stage 3 merges: the checkpoint with the lowest validation loss in
the config's output_dir (--auto), or a folder given by hand; and a check that it
was trained on the config's base model."""
import json
from dataclasses import dataclass
from pathlib import Path

from styletune import paths
from styletune.errors import MergeError
from styletune.train.checkpoints import checkpoint_step, checkpoints

ADAPTER_FILE = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"      # PEFT's names for a saved adapter


@dataclass
class AdapterChoice:
    path: Path
    reason: str
    step: int | None = None
    eval_loss: float | None = None
    # Evaluations the validation loss picked this adapter among (0: not picked by it).
    # Stage 4 then scores it on that same validation set, which favours it a little.
    picked_among: int = 0


def _trainer_state(folder: Path) -> dict:
    path = folder / "trainer_state.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _eval_loss_at(state: dict, step: int | None):
    losses = [e["eval_loss"] for e in state.get("log_history", [])
              if "eval_loss" in e and e.get("step") == step]
    return losses[-1] if losses else None


def _evaluations(state: dict) -> int:
    """Checkpoints the validation loss compared (an evaluation at step 0, before
    training, has no checkpoint to pick)."""
    return len({e["step"] for e in state.get("log_history", []) if "eval_loss" in e and e.get("step")})


def same_weights(a: Path, b: Path) -> bool:
    """Two adapter files holding the same tensors (the same bytes, as a rule)."""
    if a.read_bytes() == b.read_bytes():
        return True
    from safetensors.torch import load_file
    x, y = load_file(str(a)), load_file(str(b))
    return x.keys() == y.keys() and all(x[k].equal(y[k]) for k in x)


def choose_adapter(output_dir: Path) -> AdapterChoice:
    """The best checkpoint by validation loss, when training recorded one: the final
    adapter where it holds the same weights (load_best_model_at_end reloaded it before
    the final save), else that checkpoint's own folder. Without a best: the final
    adapter, else the newest checkpoint by step number."""
    if not output_dir.is_dir():
        raise MergeError(f"no training output at {paths.shown(output_dir)}: run 2_train_lora.sh "
                         "first, or name an adapter with --adapter PATH")
    steps = checkpoints(output_dir, holding=ADAPTER_FILE)
    state = _trainer_state(steps[-1][1]) if steps else {}
    best = state.get("best_model_checkpoint")
    best_dir = output_dir / Path(best).name if best else None
    best_step = state.get("best_global_step")
    final = output_dir / ADAPTER_FILE
    newest_ckpt_time = (steps[-1][1] / ADAPTER_FILE).stat().st_mtime if steps else 0
    best_file = best_dir / ADAPTER_FILE if best_dir is not None else None
    fresh = final.is_file() and final.stat().st_mtime >= newest_ckpt_time - 1
    if fresh and best_file is not None and best_file.is_file() and same_weights(final, best_file):
        return AdapterChoice(output_dir, "the final adapter training saved in output_dir (the same "
                             f"weights as {best_dir.name}, best by validation loss)", best_step,
                             state.get("best_metric") or _eval_loss_at(state, best_step), _evaluations(state))
    if fresh and (best_file is None or not best_file.is_file()):
        step = state.get("global_step")
        gone = (f" (training recorded {best_dir.name} as best by validation loss, but that folder "
                "is gone)" if best_dir is not None else "")
        return AdapterChoice(output_dir, "the final adapter training saved in output_dir" + gone,
                             step, _eval_loss_at(state, step))
    note = (" (the final adapter in output_dir is older than the newest checkpoint, so it "
            "belongs to an earlier run)" if final.is_file() and not fresh else
            " (the final adapter in output_dir holds other weights: the last step's, since training "
            "did not reload the best checkpoint at the end)" if fresh else "")
    if best_dir is not None and (best_dir / ADAPTER_FILE).is_file():
        return AdapterChoice(best_dir, "the best checkpoint by validation loss" + note,
                             best_step, state.get("best_metric"), _evaluations(state))
    if steps:
        step, path = steps[-1]
        return AdapterChoice(path, "the newest checkpoint by step number (no validation loss "
                             "recorded)" + note, step, _eval_loss_at(state, step))
    raise MergeError(f"no adapter in {paths.shown(output_dir)} (no {ADAPTER_FILE}, no "
                     "checkpoint-N/): run 2_train_lora.sh first, or name one with --adapter PATH")


def adapter_by_hand(path: Path) -> AdapterChoice:
    if not (path / ADAPTER_CONFIG).is_file() or not (path / ADAPTER_FILE).is_file():
        raise MergeError(f"--adapter {paths.shown(path)}: no adapter_config.json and "
                         f"{ADAPTER_FILE} there; name a training output folder or a checkpoint-N in it")
    step = checkpoint_step(path)
    return AdapterChoice(path, "named with --adapter", step,
                         _eval_loss_at(_trainer_state(path), step) if step is not None else None)


def check_adapter_base(cfg, choice: AdapterChoice) -> None:
    """An adapter only fits the base it was trained on."""
    meta = json.loads((choice.path / ADAPTER_CONFIG).read_text(encoding="utf-8"))
    trained_on = str(meta.get("base_model_name_or_path") or "")
    if trained_on and Path(trained_on).name != Path(cfg.base_model).name:
        raise MergeError(f"the adapter in {paths.shown(choice.path)} was trained on {trained_on!r}, "
                         f"but the config's base_model is {cfg.axolotl.base_model!r}: use the "
                         "config that trained it")


# --- resources --------------------------------------------------------------------
