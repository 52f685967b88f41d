"""Python runs this at start-up in every process whose PYTHONPATH holds this
folder. 2_train_lora.sh puts it there for Axolotl, so that its launcher and its
trainer start as the stage scripts do (styletune/startup.py): trackers off, no
hub code, known-harmless warnings hidden, STYLETUNE_BNB_CPU_PATH honoured.

Python runs only the first sitecustomize.py on sys.path, and the script puts this
folder first: so one that stood later on the path (the environment's own, or the
tests' network guard) is run after this one, and putting this folder first hides
nothing."""
import importlib.util
import sys
from pathlib import Path

from styletune.startup import setup_process


def run_the_next_sitecustomize() -> None:
    here = Path(__file__).resolve().parent
    folders = [Path(entry).resolve() for entry in sys.path if entry]
    later = folders[folders.index(here) + 1:] if here in folders else []
    for folder in later:
        candidate = folder / "sitecustomize.py"
        if candidate.is_file():
            spec = importlib.util.spec_from_file_location("_next_sitecustomize", candidate)
            spec.loader.exec_module(importlib.util.module_from_spec(spec))
            return


setup_process()
run_the_next_sitecustomize()
