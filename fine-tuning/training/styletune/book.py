"""A writer's book from manuscript to editor: stages 0-5 in order, each run as its
own script (the same commands the README gives), stopping where the writer must
decide, skipping a stage whose outputs are fresh.

Fresh means: the stage ran from here before, and its inputs (the files and settings
it reads, as its module's STAGE declares them: stage.py) and its outputs still hash
as they did then, and its code is at the revision it was then (Stage.revision). The hashes live in one manifest per config,
`<output_dir>/../book_manifest.<config name>.json`; a file whose size and
modification time are unchanged keeps its recorded hash (as make and git do), so a
16 GB merged folder is hashed once. A stage that reruns and writes identical files
leaves the next stage fresh: the chain is by content.

The writer's text wins: chunk files edited after stage 0 wrote them are never recut
over, and a folder of chunks make book did not write is never written into.
An interrupted training run resumes from its newest checkpoint when the data and
settings are the ones it started with.

Where it stops (exit 3, the message says what to do and the command to go on):
- a chunk too long for `sequence_len`: the splitter's dry run is shown;
- before training on a GPU with the sample book's rules file for another book;
- no GPU and a config that trains on one: take the chunk folder to a GPU machine,
  or rehearse with the CPU config;
- a chunk folder that is not make book's own, or edited chunks and a new manuscript.
"""
import hashlib
import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from styletune import paths
from styletune.config import Config, Reads, load_config
from styletune.data import segment
from styletune.data.manuscript import MANUSCRIPT_SUFFIXES
from styletune.data.prepare import OVERLONG_EXIT
from styletune.errors import UserError
from styletune.fileio import write_atomic
from styletune.stage import Book, Files, declarations
from styletune.train.checkpoints import newest_checkpoint

STOPPED_FOR_WRITER = 3
TRAINING = paths.TRAINING_DIR


class BookError(UserError):
    """The book or its config cannot be run as given."""


@dataclass
class BookStage:
    """A stage's declaration (stage.Stage) resolved for this book: the files it reads
    and writes, the settings it reads, and the command make book runs."""
    number: str
    name: str
    inputs: list            # [Files] the stage reads
    settings: dict          # the values of the config keys it reads
    outputs: list           # [Files] it writes
    command: list           # argv
    reads: Reads            # the keys, as the writer reads them


def book_arguments(number: str, book: Path, where: Book, backend: str) -> list:
    """make book's arguments to a stage's script: --force where it replaces only what
    it wrote itself, and stage 3 picks the adapter as a writer would (--auto)."""
    return {"0": [book, "--out", where.chunks], "1": ["--book", where.chunks, "--force"], "2": [],
            "3": ["--auto", "--force"], "4": ["--force"], "5": ["--backend", backend, "--force"]}[number]


def chunk_folder_of(cfg: Config, book: Path) -> Path:
    """Where this book's chunk files are: stage 0's folder for a manuscript, else the folder given."""
    return segment.manuscript_folder(cfg, book) if book.is_file() else book


def stages(cfg: Config, book: Path, backend: str) -> list:
    """The stages to run for this book, in order (no stage 0 for a chunk folder)."""
    where = Book(book if book.is_file() else None, chunk_folder_of(cfg, book))
    found = []
    for declared in declarations():
        if declared.number == "0" and where.manuscript is None:
            continue
        script = TRAINING / declared.script
        command = ([script] if script.suffix == ".sh" else [sys.executable, script])
        command += book_arguments(declared.number, book, where, backend) + ["--config", cfg.path]
        settings = declared.recorded_settings(declared.reads.values(cfg))
        name = declared.does
        if declared.number == "5":
            settings, name = {**settings, "backend": backend}, f"{name} ({backend})"
        found.append(BookStage(declared.number, name, declared.inputs(cfg, where), settings,
                               declared.outputs(cfg, where), command, declared.reads))
    return found


# --- hashes -------------------------------------------------------------------

class Hashes:
    """sha256 of files and folders, reusing a recorded hash while size and mtime match."""

    def __init__(self, known: dict):
        self.known, self.seen = known, {}

    def file(self, path: Path) -> str:
        st = path.stat()
        key, stamp = str(path.resolve()), [st.st_size, st.st_mtime_ns]
        cached = self.known.get(key)
        digest = cached[2] if cached and cached[:2] == stamp else _sha256_file(path)
        self.seen[key] = stamp + [digest]
        return digest

    def files(self, files: Files) -> str | None:
        """A file's hash, or a folder's (its files' names and hashes); None when missing."""
        path = files.path
        if path.is_file():
            return self.file(path)
        if not path.is_dir():
            return None
        found = ({f for pattern in files.patterns for f in path.glob(pattern)} if files.patterns
                 else set(path.rglob("*")))
        h = hashlib.sha256()
        for f in sorted(p for p in found if p.is_file()):
            h.update(f"{f.relative_to(path).as_posix()}\0{self.file(f)}\n".encode())
        return h.hexdigest()

    def state(self, stage: BookStage) -> dict:
        return {"inputs": {f.key(): self.files(f) for f in stage.inputs},
                "settings": hashlib.sha256(json.dumps(stage.settings, sort_keys=True, default=str)
                                           .encode()).hexdigest()}

    def outputs(self, stage: BookStage) -> dict:
        return {f.key(): self.files(f) for f in stage.outputs}


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# --- the record ---------------------------------------------------------------

def manifest_path(cfg: Config) -> Path:
    return cfg.output_dir.parent / f"book_manifest.{cfg.path.stem}.json"


def read_manifest(path: Path) -> dict:
    try:
        record = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        record = {}
    return {"stages": {}, "started": {}, "files": {}, **record}


def write_manifest(path: Path, manifest: dict, hashes: Hashes) -> None:
    files = {k: v for k, v in {**hashes.known, **hashes.seen}.items() if Path(k).exists()}
    record = {"stages": manifest["stages"], "started": manifest["started"], "files": files}
    write_atomic(path, (json.dumps(record, indent=1) + "\n").encode())


def is_fresh(record: dict | None, state: dict, outputs: dict) -> bool:
    return (record is not None and record["inputs"] == state["inputs"]
            and record["settings"] == state["settings"] and record["outputs"] == outputs
            and None not in outputs.values())


# --- where the writer decides -------------------------------------------------

def check_book(book: Path) -> Path:
    book = paths.resolve_cli(book)
    if not book.exists():
        raise BookError(f"{book} does not exist: give a manuscript (.txt, .md, .docx) or a folder of "
                        "chunk files, e.g. make book BOOK=~/novel/manuscript.docx")
    if book.is_file() and book.suffix.lower() not in MANUSCRIPT_SUFFIXES:
        raise BookError(f"{book.name}: a manuscript must be .txt, .md or .docx (save it as one), "
                        "or give the folder of chunk files")
    return book


def gpu_missing(cfg: Config, chunks: Path) -> str | None:
    """Why stage 2 cannot train here, or None. `chunks`: the book's chunk folder, which
    holds the writer's cuts and answers and is not in git."""
    if cfg.pipeline.train_device == "cpu":
        return None
    import torch
    if torch.cuda.is_available():
        return None
    from styletune.train.preflight import no_gpu_reason, nvidia_driver
    if driver := nvidia_driver():   # a card is here, and PyTorch cannot use it: mend this machine
        return no_gpu_reason(torch.__version__, torch.version.cuda, driver)
    return ("no GPU here, and this config trains on one (style_pipeline.train_device: "
            f"{cfg.pipeline.train_device}). On a machine with an NVIDIA GPU (24 GB or more): clone "
            f"the repository, copy {paths.shown(chunks)}/ (your chunks, cuts and review answers; "
            "git leaves it out) and your config and rules file into the same places, and run\n"
            f"  make book BOOK={paths.typed(chunks)}" + _config_argument(cfg) + "\n"
            "there (stage 0 is skipped for a folder of chunks). Or rehearse every stage on this "
            "CPU with the small model first:\n"
            "  make book BOOK=... CONFIG=fine-tuning/configs/cpu_rehearsal.yaml")


def _config_argument(cfg: Config) -> str:
    from styletune.cli import DEFAULT_CONFIG
    return "" if cfg.path.resolve() == DEFAULT_CONFIG.resolve() else f" CONFIG={paths.typed(cfg.path)}"


def not_ready_to_train(cfg: Config, book: Path, chunks: Path) -> str:
    """What to settle before stage 2 trains this book ("" for nothing)."""
    return "\nand: ".join(why for why in (sample_rules_for_another_book(cfg, book),
                                          gpu_missing(cfg, chunks)) if why)


def sample_rules_for_another_book(cfg: Config, book: Path) -> str | None:
    """Why not to train yet: the rules file still describes the sample book and this
    book is another (its description would train, in the chat drills). A config that
    trains on the CPU is a rehearsal, and goes on (stage 1 warns)."""
    from styletune.chat import sample_rules_warning
    if cfg.pipeline.train_device == "cpu":
        return None
    return sample_rules_warning(cfg, book, then="then run the same command again")


def stage0_plan(manifest: dict, stage: BookStage, state: dict, outputs: dict, glob: str) -> str:
    """What to do about stage 0 when it is not fresh: "run", "force" (recut our own
    unedited chunks), "keep" (the writer edited them since) or a message to stop on."""
    folder = stage.outputs[0].path
    if not any(folder.glob(glob)):
        return "run"
    if stage0_wrote(folder, glob):
        return "force"      # stage 0's own files as it wrote them (a --decide recut included)
    record = manifest["stages"].get("0")
    ours = record is not None and record["outputs"].keys() == outputs.keys()
    if not ours:
        return (f"{paths.shown(folder)} already holds chunk files that make book did not write. "
                f"To use them as they are: make book BOOK={paths.typed(folder)}. To cut this manuscript "
                "afresh: move that folder away (or rename the manuscript), then run the same command again.")
    if outputs == record["outputs"]:
        return "force"
    if state == {k: record[k] for k in ("inputs", "settings")}:
        return "keep"
    return (f"the manuscript (or the config) changed, and so did the chunk files in {paths.shown(folder)} "
            "since stage 0 wrote them; recutting would replace those edits.\n"
            f"  To keep the edits: make book BOOK={paths.typed(folder)}\n"
            "  To cut the new manuscript afresh: move that folder away, then run the same command again.")


def stage0_wrote(folder: Path, glob: str) -> bool:
    """Every chunk file in `folder` is one stage 0 wrote there, unedited (its manifest's hashes)."""
    return any(folder.glob(glob)) and segment.edited_since_written(folder, glob) == []


def review_waiting(folder: Path) -> int:
    """How many seams stage 0's last review lists for the writer."""
    try:
        return len(json.loads((folder / segment.REVIEW_JSON).read_text(encoding="utf-8"))["seams"])
    except (FileNotFoundError, ValueError, KeyError):
        return 0


def show_splitter(cfg: Config, chunks: Path) -> None:
    """The oversized-chunk splitter's dry run, and the commands that go on from there."""
    split = [sys.executable, str(TRAINING / "split_oversized_chunks.py"),
             "--config", str(cfg.path), "--book", str(chunks)]
    print("\n=== the splitter's proposal (nothing written yet)", flush=True)
    proposed = subprocess.run(split + ["--dry-run"], cwd=paths.REPO_DIR).returncode == 0
    shown = f"python fine-tuning/training/split_oversized_chunks.py --config {paths.typed(cfg.path)} " \
            f"--book {paths.typed(chunks)}"
    if proposed:
        print(f"\nstopped: a chunk is too long for one example, and where to cut it is yours to decide.\n"
              f"Read the proposal above, then apply it:\n  {shown}\n"
              f"or choose your own cut:\n  {shown} --cut-before \"first words of a paragraph\"")
    else:
        print(f"\nstopped: a chunk is too long for one example, and the splitter found no cut that fits "
              f"(its message above says why). Choose the cut yourself:\n  {shown} --cut-before "
              "\"first words of a paragraph\"\nor add a paragraph break or scene-break line in the chunk.")
    print("Then run the same `make book` again: the stages already done are skipped.")


def prepare_training(cfg: Config, stage: BookStage, manifest: dict, state: dict) -> None:
    """Resume an interrupted run of the same data and settings; otherwise keep an
    adapter trained on something else aside (stage 2 refuses to mix two runs)."""
    out = cfg.output_dir
    if manifest["started"].get("2") == state and out.is_dir() and newest_checkpoint(out):
        stage.command.append("--resume")
        print(f"note: resuming the interrupted training in {paths.shown(out)} (same data and settings)")
    elif out.exists() and any(out.iterdir()):
        aside = out.with_name(f"{out.name}.stale-{time.strftime('%Y%m%d-%H%M%S')}")
        out.rename(aside)
        print(f"note: the adapter in {paths.shown(out)} is not recorded as trained on this data "
              f"with these settings (or was trained outside make book); kept as {paths.shown(aside)}")
    manifest["started"]["2"] = state


# --- the run ------------------------------------------------------------------

def shown_command(argv: list) -> str:
    """The command as a writer would type it from the repository root."""
    return " ".join("python" if a == sys.executable else paths.typed(a) if isinstance(a, Path)
                    else shlex.quote(str(a)) for a in argv)


def shown_files(files: list) -> str:
    """Declared files as the writer finds them: each path, with the patterns of a folder's files."""
    return ", ".join(paths.shown(f.path) + (f"/{{{','.join(f.patterns)}}}" if f.patterns else "") for f in files)


def run_stage(stage: BookStage) -> int:
    print(f"\n=== stage {stage.number}: {stage.name}\n$ {shown_command(stage.command)}", flush=True)
    return subprocess.run([str(a) for a in stage.command], cwd=paths.REPO_DIR, env=stage_environment()).returncode


def stage_environment() -> dict:
    """The stages' environment: 2_train_lora.sh trains in the virtual environment the
    Python stages run in (make book VENV=..., or another venv's python), not its default."""
    env = dict(os.environ)
    if "VENV" not in env and all((Path(sys.prefix) / "bin" / name).exists() for name in ("python", "axolotl")):
        env["VENV"] = sys.prefix
    return env


def run(args) -> int:
    cfg = load_config(args.config)
    book = check_book(Path(args.book))
    record_file = manifest_path(cfg)
    manifest = read_manifest(record_file)
    hashes = Hashes(manifest["files"])
    print(f"book: {paths.shown(book)}\nconfig: {paths.shown(cfg.path)}\nrecord: {paths.shown(record_file)}")
    for stage in stages(cfg, book, args.backend):
        state, outputs = hashes.state(stage), hashes.outputs(stage)
        title = f"\n=== stage {stage.number}: {stage.name}"
        if is_fresh(manifest["stages"].get(stage.number), state, outputs):
            print(f"{title}: fresh (inputs and outputs unchanged), skipped")
            continue
        if stage.number == "0":
            plan = stage0_plan(manifest, stage, state, outputs, cfg.pipeline.chunk_glob)
            if plan == "keep":
                print(f"{title}: the chunk files were edited after stage 0 wrote them: used as they "
                      "are (stage 0 is not rerun, so the edits stay)")
                continue
            if plan not in ("run", "force"):
                print(f"{title}: stopped: {plan}")
                return STOPPED_FOR_WRITER
            if plan == "force":
                stage.command.append("--force")     # our own unedited chunks
        if stage.number == "2" and (why := not_ready_to_train(cfg, book, chunk_folder_of(cfg, book))):
            print(f"{title}: {'would stop' if args.dry_run else 'stopped'} before training: {why}")
            if not args.dry_run:
                return STOPPED_FOR_WRITER
            continue        # the dry run lists what comes after, as it would run once settled
        if args.dry_run:
            print(f"{title}: would run\n  {shown_command(stage.command)}\n  reads: {stage.reads}\n"
                  f"  files: {shown_files(stage.inputs)}\n  writes: {shown_files(stage.outputs)}")
            continue
        if stage.number == "2":
            prepare_training(cfg, stage, manifest, state)
            write_manifest(record_file, manifest, hashes)
        code = run_stage(stage)
        if code == OVERLONG_EXIT:
            show_splitter(cfg, stage.inputs[0].path)
            return STOPPED_FOR_WRITER
        if code != 0:
            print(f"\nstopped: stage {stage.number} failed (exit {code}); its message above says why. "
                  "Fix it and run the same command again.", file=sys.stderr)
            return code
        manifest["stages"][stage.number] = {**hashes.state(stage), "outputs": hashes.outputs(stage)}
        manifest["started"].pop(stage.number, None)
        write_manifest(record_file, manifest, hashes)
        if stage.number == "0" and (waiting := review_waiting(stage.outputs[0].path)):
            folder = paths.shown(stage.outputs[0].path)
            print(f"\nreview: {waiting} seam(s) in {folder}/{segment.REVIEW_MD} are the tool's guesses "
                  "(cuts with no mark or at blank lines alone, marks left uncut). Going on with them; to decide yourself, "
                  "answer each with stage 0's --decide (the review shows the command), then run "
                  "the same `make book` again.")
            if getattr(args, "stop_for_review", False):
                print("stopped for the review (--stop-for-review)")
                return STOPPED_FOR_WRITER
    print("\nbook done" + (" (dry run: nothing run)" if args.dry_run else "") +
          f". In your editor: {paths.shown(cfg.pipeline.serve_dir / 'SERVE.md')}")
    return 0
