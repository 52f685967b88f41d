"""Training's checkpoint-N folders, as the Hugging Face Trainer names them. Their
order is the step number N, never the name's sort order or a file time
(checkpoint-10 comes after checkpoint-9)."""
import re
from pathlib import Path

CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def checkpoint_step(path: Path) -> int | None:
    """N for a folder named checkpoint-N, else None."""
    m = CHECKPOINT.match(path.name)
    return int(m.group(1)) if m else None


def checkpoints(output_dir: Path, holding: str | None = None) -> list[tuple[int, Path]]:
    """(step, folder) of each checkpoint-N folder in output_dir, by step; only those
    holding the file `holding` when it is given."""
    found = [(step, p) for p in output_dir.glob("checkpoint-*")
             if p.is_dir() and (step := checkpoint_step(p)) is not None
             and (holding is None or (p / holding).is_file())]
    return sorted(found)


def newest_checkpoint(output_dir: Path, holding: str | None = None) -> Path | None:
    """The checkpoint with the highest step number, or None."""
    found = checkpoints(output_dir, holding)
    return found[-1][1] if found else None
