"""What a stage declares once, beside its code: the script that runs it, what it
does, the settings it reads (config.Reads), and the files it reads and writes as
functions of the config and the book.

Each stage module exports one `STAGE`. make book's freshness check hashes exactly
the declared files and settings (book.py), its dry run prints them, and the README's
pipeline table is written from them (`python -m styletune.stage`, checked current
by tests/test_docs.py). tests/test_stage_reads.py fails when a stage reads a setting
or writes a file it did not declare."""
import importlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from styletune import paths
from styletune.config import Reads

# The stage modules, in the order the stages run.
MODULES = ("styletune.data.segment", "styletune.data.prepare", "styletune.train.preflight",
           "styletune.train.merge", "styletune.eval.evaluate", "styletune.deploy.serve")
TABLE_START = "<!-- the pipeline table: python -m styletune.stage -->"
TABLE_END = "<!-- end of the pipeline table -->"


@dataclass(frozen=True)
class Files:
    """What a stage reads or writes: a file, a whole folder, or a folder's files
    matching `patterns` (not below it: a backup/ or the manuscript beside the chunks
    are not the chunks). `what` names them for the writer."""
    path: Path
    patterns: tuple = ()
    what: str = field(default="", compare=False)

    def key(self) -> str:
        return str(self.path) + ("" if not self.patterns else " [" + ", ".join(self.patterns) + "]")

    def holds(self, path: Path) -> bool:
        """Whether `path` is one of these files."""
        path, root = Path(path).resolve(), Path(self.path).resolve()
        if not self.patterns:
            return path == root or root in path.parents
        return path.parent == root and any(path.match(p) for p in self.patterns)


@dataclass(frozen=True)
class Book:
    """Where the book is: the manuscript stage 0 cuts (None when the writer gives a
    folder of chunk files), and the chunk folder stage 1 reads."""
    manuscript: Path | None
    chunks: Path


@dataclass(frozen=True)
class Stage:
    number: str
    script: str         # in fine-tuning/training/
    does: str           # what it does, as the writer reads it
    reads: Reads        # the settings
    inputs: Callable    # (Config, Book) -> [Files]
    outputs: Callable   # (Config, Book) -> [Files]
    # Raised when the stage writes something new from the same inputs (stage 3's
    # tokenizer_config.json stating BOS: revision 2), so make book reruns an older run's
    # stage. Revision 1 is not recorded: raising one stage reruns that stage, and the
    # stages after it only where its outputs change.
    revision: int = 1

    def recorded_settings(self, values: dict) -> dict:
        """The settings make book records for this stage: the values it reads, and its revision."""
        return values if self.revision == 1 else {**values, "stage revision": self.revision}


def training_data(cfg) -> list[Files]:
    """Stage 1's training and validation files, which stages 2 and 4 read."""
    return [Files(cfg.train_path, what="training JSONL"), Files(cfg.validation_path, what="validation JSONL")]


def rules_file(cfg) -> Files:
    """The writer's rules file: Continue's chat sends it, so the chat drills (stage 1)
    and the chat row of stage 4 read it too."""
    return Files(cfg.pipeline.system_prompt_file, what="your rules file")


def trained_book(cfg) -> Path:
    """The book stage 1 made the training data from (its manifest), else the config's:
    stage 4 names its path line after it, stage 5 checks the rules file against it."""
    try:
        return paths.REPO_DIR / json.loads(cfg.data_manifest_path.read_text(encoding="utf-8"))["book_dir"]
    except (OSError, ValueError, KeyError):
        return cfg.pipeline.book_dir


def merged_model(cfg) -> Files:
    return Files(cfg.pipeline.merged_dir, what="the merged model")


def declarations() -> list[Stage]:
    """Every stage's declaration, in order (each module imported only when asked)."""
    return [importlib.import_module(name).STAGE for name in MODULES]


def markdown_table(cfg, book: Book) -> str:
    """The README's pipeline table: each stage's script, what it does, and what it reads
    and writes, by the names its declaration gives them."""
    names = lambda files: ", ".join(f.what for f in files)  # noqa: E731
    rows = ["| stage | script (in `fine-tuning/training/`) | what it does | reads | writes |",
            "|---|---|---|---|---|"]
    for s in declarations():
        rows.append(f"| {s.number} | `{s.script}` | {s.does} | {names(s.inputs(cfg, book))} | "
                    f"{names(s.outputs(cfg, book))} |")
    return "\n".join([TABLE_START, *rows, TABLE_END]) + "\n"


def readme_table() -> str:
    """The table as the README holds it, written for the main config and the sample book."""
    from styletune.cli import DEFAULT_CONFIG
    from styletune.config import load_config
    cfg = load_config(DEFAULT_CONFIG)
    return markdown_table(cfg, Book(cfg.pipeline.book_dir / "manuscript.txt", cfg.pipeline.book_dir))


if __name__ == "__main__":
    print(readme_table(), end="")
