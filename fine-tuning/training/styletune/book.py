"""A writer's book from manuscript to editor: stages 0-5 in order, each run as its
own script (the same commands the README gives), stopping where the writer must
decide, skipping a stage whose outputs are fresh.

Fresh means: the stage ran from here before, and its inputs (files and the part of
the config it reads) and its outputs still hash as they did then. The hashes live
in one manifest per config, `<output_dir>/../book_manifest.json`; a file whose size
and modification time are unchanged keeps its recorded hash (as make and git do),
so a 16 GB merged folder is hashed once. A stage that reruns and writes identical
files leaves the next stage fresh: the chain is by content, not by time.

Where it stops (exit 3, the message says what to do and the command to go on):
- a chunk too long for `sequence_len`: the splitter's dry run is shown;
- no GPU and a config that trains on one: rehearse with the CPU config instead.
"""
import hashlib
import json
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from styletune import paths
from styletune.config import Config, load_config
from styletune.data.prepare import OVERLONG_EXIT
from styletune.errors import UserError
from styletune.fileio import write_atomic

STOPPED_FOR_WRITER = 3
MANUSCRIPT_SUFFIXES = (".txt", ".md", ".docx")
TRAINING = paths.TRAINING_DIR


class BookError(UserError):
    """The book or its config cannot be run as given."""


@dataclass
class Stage:
    number: str
    name: str
    inputs: list            # paths the stage reads
    settings: dict          # the part of the config it reads
    outputs: list           # paths it writes
    command: list           # argv


def chunk_folder(cfg: Config, manuscript: Path) -> Path:
    """Where stage 0 puts a manuscript's chunk files: beside the configured book folder,
    named after the manuscript (data/raw/<name>/)."""
    slug = re.sub(r"[^a-z0-9]+", "_", manuscript.stem.lower()).strip("_") or "book"
    return cfg.pipeline.book_dir.parent / slug


def stages(cfg: Config, book: Path, backend: str) -> list:
    """The stages to run for this book, in order (no stage 0 for a chunk folder)."""
    py, config = sys.executable, ["--config", str(cfg.path)]
    axolotl_keys = {k: v for k, v in cfg.data.items() if k != "style_pipeline"}
    pipeline = cfg.data.get("style_pipeline", {})
    text_settings = {"pipeline": {k: v for k, v in pipeline.items() if k != "evaluation"},
                     **{k: cfg.data.get(k) for k in ("base_model", "sequence_len", "chat_template",
                                                     "chat_template_jinja")}}
    chunks = chunk_folder(cfg, book) if book.is_file() else book
    data = [cfg.train_path, cfg.validation_path]
    found = []
    if book.is_file():
        found.append(Stage("0", "cut the manuscript into chunk files", [book], text_settings, [chunks],
                           [py, TRAINING / "0_segment_manuscript.py", book, "--out", chunks, *config]))
    found += [
        Stage("1", "make the training examples", [chunks], text_settings,
              data + [cfg.train_path.with_suffix(".manifest.json")],
              [py, TRAINING / "1_prepare_data.py", "--book", chunks, "--force", *config]),
        Stage("2", "train the LoRA adapter", data,
              {"axolotl": axolotl_keys, "train_device": pipeline.get("train_device")}, [cfg.output_dir],
              [TRAINING / "2_train_lora.sh", *config]),
        Stage("3", "merge the adapter into the base model", [cfg.output_dir],
              {"axolotl": axolotl_keys, "merged": {k: v for k, v in pipeline.items() if k.startswith("merged")}},
              [cfg.pipeline.merged_dir],
              [py, TRAINING / "3_merge_adapter.py", "--auto", "--force", *config]),
        Stage("4", "measure the style transfer", [cfg.pipeline.merged_dir, *data],
              {"base_model": cfg.data.get("base_model"), "evaluation": pipeline.get("evaluation")},
              [cfg.pipeline.evaluation["report_dir"]],
              [py, TRAINING / "4_evaluate_style.py", "--force", *config]),
        Stage("5", f"set up Continue ({backend})", [cfg.pipeline.merged_dir, cfg.pipeline.system_prompt_file],
              {"pipeline": pipeline, "template": cfg.data.get("chat_template_jinja"), "backend": backend},
              [cfg.pipeline.serve_dir],
              [py, TRAINING / "5_configure_continue.py", "--force", "--backend", backend, *config]),
    ]
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

    def path(self, path: Path) -> str | None:
        """A file's hash, a folder's (its files' names and hashes), None when missing."""
        if path.is_file():
            return self.file(path)
        if not path.is_dir():
            return None
        h = hashlib.sha256()
        for f in sorted(p for p in path.rglob("*") if p.is_file()):
            h.update(f"{f.relative_to(path).as_posix()}\0{self.file(f)}\n".encode())
        return h.hexdigest()

    def state(self, stage: Stage) -> dict:
        return {"inputs": {str(p): self.path(Path(p)) for p in stage.inputs},
                "settings": hashlib.sha256(json.dumps(stage.settings, sort_keys=True, default=str)
                                           .encode()).hexdigest()}

    def outputs(self, stage: Stage) -> dict:
        return {str(p): self.path(Path(p)) for p in stage.outputs}


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# --- the run ------------------------------------------------------------------

def manifest_path(cfg: Config) -> Path:
    return cfg.output_dir.parent / "book_manifest.json"


def read_manifest(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {"stages": {}, "files": {}}


def write_manifest(path: Path, stage_records: dict, hashes: Hashes) -> None:
    files = {k: v for k, v in {**hashes.known, **hashes.seen}.items() if Path(k).exists()}
    write_atomic(path, (json.dumps({"stages": stage_records, "files": files}, indent=1) + "\n").encode())


def is_fresh(record: dict | None, state: dict, outputs: dict) -> bool:
    return (record is not None and record["inputs"] == state["inputs"]
            and record["settings"] == state["settings"] and record["outputs"] == outputs
            and None not in outputs.values())


def check_book(book: Path) -> Path:
    book = paths.resolve_cli(book)
    if not book.exists():
        raise BookError(f"{book} does not exist: give a manuscript (.txt, .md, .docx) or a folder of "
                        "chunk files, e.g. make book BOOK=~/novel/manuscript.docx")
    if book.is_file() and book.suffix.lower() not in MANUSCRIPT_SUFFIXES:
        raise BookError(f"{book.name}: a manuscript must be .txt, .md or .docx (save it as one), "
                        "or give the folder of chunk files")
    return book


def gpu_missing(cfg: Config) -> str | None:
    """Why stage 2 cannot train here, or None."""
    if cfg.pipeline.train_device == "cpu":
        return None
    import torch
    if torch.cuda.is_available():
        return None
    return ("no GPU here, and this config trains on one (style_pipeline.train_device: "
            f"{cfg.pipeline.train_device}). Copy the repository and {paths.shown(cfg.train_path.parent)} "
            "to a machine with an NVIDIA GPU (24 GB or more) and run the same command there, or "
            "rehearse every stage on this CPU with the small model first:\n"
            "  make book BOOK=... CONFIG=fine-tuning/configs/cpu_rehearsal.yaml")


def shown_command(argv: list) -> str:
    """The command as a writer would type it from the repository root."""
    return " ".join("python" if a == sys.executable else paths.shown(a) if isinstance(a, Path) else a
                    for a in argv)


def chunks_edited(manifest: dict, stage: Stage, state: dict, hashes: Hashes) -> str | None:
    """The writer's text wins: chunk files edited since stage 0 wrote them are never
    recut over. Returns what to say (skipped, or stopped) or None when they are as written."""
    record = manifest["stages"].get("0")
    if record is None or hashes.outputs(stage) == record["outputs"]:
        return None
    folder = paths.shown(stage.outputs[0])
    if state == {k: record[k] for k in ("inputs", "settings")}:
        return (f"the chunk files in {folder} were edited after stage 0 wrote them: used as they "
                "are (stage 0 is not rerun, so the edits stay)")
    return (f"stopped: the manuscript (or the config) changed, and so did the chunk files in {folder} "
            "since stage 0 wrote them. Recutting would replace those edits. Either give the chunk "
            f"folder as BOOK (make book BOOK={folder}) to keep the edits, or move that folder away "
            "to cut the new manuscript afresh.")


def run_stage(stage: Stage) -> int:
    print(f"\n=== stage {stage.number}: {stage.name}\n$ {shown_command(stage.command)}", flush=True)
    return subprocess.run([str(a) for a in stage.command], cwd=paths.REPO_DIR).returncode


def show_splitter(cfg: Config, chunks: Path) -> None:
    """The oversized-chunk splitter's dry run, and the commands that go on from there."""
    split = [sys.executable, str(TRAINING / "split_oversized_chunks.py"),
             "--config", str(cfg.path), "--book", str(chunks)]
    print("\n=== the splitter's proposal (nothing written yet)", flush=True)
    subprocess.run(split + ["--dry-run"], cwd=paths.REPO_DIR)
    shown = f"python fine-tuning/training/split_oversized_chunks.py --config {paths.shown(cfg.path)} " \
            f"--book {paths.shown(chunks)}"
    print(f"\nstopped: a chunk is too long for one example, and where to cut it is yours to decide.\n"
          f"Read the proposal above, then apply it:\n  {shown}\n"
          f"or choose your own cut:\n  {shown} --cut-before \"first words of a paragraph\"\n"
          "then run the same `make book` again: the stages already done are skipped.")


def move_stale_adapter(cfg: Config) -> None:
    """Stage 2 refuses to mix two runs in output_dir; an adapter trained on other data
    is kept, renamed, rather than deleted (it cost hours)."""
    out = cfg.output_dir
    if out.exists() and any(out.iterdir()):
        aside = out.with_name(f"{out.name}.stale-{time.strftime('%Y%m%d-%H%M%S')}")
        out.rename(aside)
        print(f"note: the adapter in {paths.shown(out)} is not recorded as trained on this data "
              f"with these settings (or was trained outside make book); kept as {paths.shown(aside)}")


def run(args) -> int:
    cfg = load_config(paths.resolve_cli(args.config))
    book = check_book(Path(args.book))
    record_file = manifest_path(cfg)
    manifest = read_manifest(record_file)
    hashes = Hashes(manifest.get("files", {}))
    print(f"book: {paths.shown(book)}\nconfig: {paths.shown(cfg.path)}\nrecord: {paths.shown(record_file)}")
    for stage in stages(cfg, book, args.backend):
        key = stage.number
        state = hashes.state(stage)
        if is_fresh(manifest["stages"].get(key), state, hashes.outputs(stage)):
            print(f"\n=== stage {stage.number}: {stage.name}: fresh (inputs and outputs unchanged), skipped")
            continue
        if stage.number == "0" and (edited := chunks_edited(manifest, stage, state, hashes)):
            print(f"\n=== stage {stage.number}: {stage.name}: {edited}")
            if "stopped" in edited:
                return STOPPED_FOR_WRITER
            continue
        if args.dry_run:
            print(f"\n=== stage {stage.number}: {stage.name}: would run\n  {shown_command(stage.command)}")
            continue
        if stage.number == "2":
            if (why := gpu_missing(cfg)):
                print(f"\nstopped before stage 2: {why}")
                return STOPPED_FOR_WRITER
            move_stale_adapter(cfg)
        if stage.number == "0" and "0" in manifest["stages"]:
            stage.command.append("--force")    # our own unedited chunks (chunks_edited said so)
        code = run_stage(stage)
        if code == OVERLONG_EXIT:
            show_splitter(cfg, stage.inputs[0])
            return STOPPED_FOR_WRITER
        if code != 0:
            print(f"\nstopped: stage {stage.number} failed (exit {code}); its message above says why. "
                  "Fix it and run the same command again.", file=sys.stderr)
            return code
        manifest["stages"][key] = {**hashes.state(stage), "outputs": hashes.outputs(stage)}
        write_manifest(record_file, manifest["stages"], hashes)
    print("\nbook done" + (" (dry run: nothing run)" if args.dry_run else "") +
          f". In your editor: {paths.shown(cfg.pipeline.serve_dir / 'SERVE.md')}")
    return 0
