"""Which files in a book folder are chunks, in what order, and read safely."""
import fnmatch
import json
import re
from dataclasses import dataclass
from pathlib import Path

from styletune.errors import InputError
from styletune.fileio import normalise, read_text, sha256_bytes
from styletune.settings import SEGMENT_MANIFEST
from styletune.text.paragraphs import paragraph_spans

DOCUMENT_SUFFIXES = {".docx", ".doc", ".odt", ".rtf", ".pdf", ".pages"}
# What editors leave beside a file they save ("chunk_004.txt~" too).
BACKUP_SUFFIXES = {".bak", ".orig", ".swp", ".tmp"}
# chunk_013b_the_long_walk.txt: (chunk_013)(013)(b)(_the_long_walk.txt); the splitter names parts by it
CHUNK_NAME = re.compile(r"^(chunk_(\d+))([a-z]*)(.*)$", re.IGNORECASE)
# Shared paragraphs shorter than this are ordinary repetition (a refrain, "Yes."),
# not a duplicated file.
_MIN_SHARED_PARAGRAPH_CHARS = 80


@dataclass
class Chunk:
    path: Path
    text: str      # normalised: the exact text the examples are cut from
    sha256: str    # of the file's bytes, for provenance and staleness checks

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def place(self) -> tuple[int, str] | None:
        """(13, "b") for chunk_013b_the_walk.txt: its number and part letters; None for a
        name without a number."""
        m = CHUNK_NAME.match(self.name)
        return (int(m.group(2)), m.group(3).lower()) if m else None

    @property
    def group(self) -> str:
        """Parts of one original (013a, 013b) share a group and a side of the split."""
        return f"chunk_{self.place[0]:03d}" if self.place else self.path.stem


def natural_key(name: str):
    """013a < 013b < 014 < 100, whatever the zero padding."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


LEFT_OUT = "LEFT OUT"   # a skip reason the writer must hear on the terminal


def _skip_reason(path: Path, glob: str) -> str | None:
    """Why a file in the book folder is not a chunk (None: it is one)."""
    name = path.name
    if name.startswith("."):
        return "hidden file"
    if path.is_dir():
        if name == "backup":
            return "folder (backups: chunks replaced by a recut or a split)"
        inside = [p for p in path.rglob(glob) if p.is_file()]
        return (f"{LEFT_OUT}: a folder holding {len(inside)} chunk file(s), which stage 1 does not read "
                "(it reads the book folder's own files): to train on them, move them up beside the "
                "others, numbered in the book's order" if inside else "folder")
    if name.endswith("~") or path.suffix.lower() in BACKUP_SUFFIXES:
        return "an editor's backup copy (not read)"
    if fnmatch.fnmatch(name, glob):
        return None
    if name.lower().startswith("chunk_") and path.suffix.lower() in DOCUMENT_SUFFIXES:
        raise InputError(f"{path}: a chunk saved as a {path.suffix} document, which would be "
                         "left out. Save it as plain UTF-8 text with the same name ending in "
                         ".txt, then move the document out of the folder.")
    if name.lower().startswith("chunk"):
        return (f"{LEFT_OUT}: named like a chunk, but not '{glob}' (lower case, ending .txt); "
                "rename it to train on it")
    return f"not a chunk file (name does not match '{glob}')"


def discover(book_dir: Path, glob: str):
    """Return (chunk paths in natural order, [(name, reason)] for everything skipped)."""
    book_dir = Path(book_dir)
    if book_dir.is_file():
        from styletune import paths
        raise InputError(f"{paths.shown(book_dir)} is a file, and a folder of chunk files is wanted here. "
                         "To cut a whole manuscript into one, run stage 0 on it: python "
                         f"fine-tuning/training/0_segment_manuscript.py {paths.typed(book_dir)} (then give "
                         "the folder it writes, or set style_pipeline.book_dir to it); or run every stage: "
                         f"make book BOOK={paths.typed(book_dir)}")
    if not book_dir.is_dir():
        raise InputError(f"no book folder at {book_dir}: put your chunk files in "
                         "fine-tuning/data/raw/<book>/ and set style_pipeline.book_dir "
                         "(or pass --book)")
    found, skipped = [], []
    for path in sorted(book_dir.iterdir(), key=lambda p: natural_key(p.name)):
        reason = _skip_reason(path, glob)
        if reason:
            skipped.append((path.name + ("/" if path.is_dir() else ""), reason))
        else:
            found.append(path)
    if not found:
        raise InputError(f"no chunk files matching '{glob}' in {book_dir}: name them like "
                         "chunk_001_opening.txt, or change style_pipeline.chunk_glob." + left_out_note(skipped))
    return found, skipped


def stage0_manifest(folder: Path) -> dict | None:
    """The manifest stage 0 last wrote in a book folder (its chunk files, their spans
    of the manuscript, the text between them), None when there is none to read."""
    try:
        record = json.loads((Path(folder) / SEGMENT_MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and isinstance(record.get("chunks"), list) else None


def left_out_note(skipped) -> str:
    """For an error about too few chunks: the files and folders left out that look like chunks."""
    left = [f"{name} ({reason.removeprefix(LEFT_OUT + ': ')})" for name, reason in skipped
            if reason.startswith(LEFT_OUT)]
    return f" Left out: {'; '.join(left)}." if left else ""


def load_chunks(paths, exclude=()):
    """Read and normalise chunk files. Returns (chunks, skipped) with empty files skipped."""
    chunks, skipped, unreadable = [], [], []
    for path in paths:
        if path.name in exclude:
            skipped.append((path.name, "excluded by style_pipeline.exclude_chunks"))
            continue
        data = path.read_bytes()
        try:
            text = normalise(read_text(path))
        except InputError as err:     # every file that cannot be read, in one run
            unreadable.append(str(err))
            continue
        if not text:
            skipped.append((path.name, "EMPTY: no text in this chunk file; delete it or fill it"))
            continue
        chunks.append(Chunk(path=path, text=text, sha256=sha256_bytes(data)))
    if len(unreadable) > 1:
        raise InputError(f"{len(unreadable)} chunk files cannot be read as text:\n  " + "\n  ".join(unreadable))
    if unreadable:
        raise InputError(unreadable[0])
    check_no_duplicates(chunks)
    return chunks, skipped


def _paragraph_set(text: str):
    return {text[a:b] for a, b in paragraph_spans(text) if b - a >= _MIN_SHARED_PARAGRAPH_CHARS}


def check_no_duplicates(chunks) -> None:
    """The same text in two files (an original beside its a/b parts, a copy) is an error."""
    owners = {}
    for chunk in chunks:
        for para in _paragraph_set(chunk.text):
            owners.setdefault(para, []).append(chunk.name)
    for chunk in chunks:
        mine = _paragraph_set(chunk.text)
        shared_chars, others = 0, set()
        for para in mine:
            holders = [name for name in owners[para] if name != chunk.name]
            if holders:
                shared_chars += len(para)
                others.update(holders)
        if mine and shared_chars >= 0.5 * sum(len(p) for p in mine):
            raise InputError(
                f"the same text is in more than one chunk file: {chunk.name} and "
                f"{', '.join(sorted(others, key=natural_key))} (most of {chunk.name} appears in "
                "them too). If one is the original of split parts, move it into backup/; "
                "if one is a copy, delete it.")
