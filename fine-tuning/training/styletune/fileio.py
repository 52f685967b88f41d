"""Reading the author's files without changing a word, and writing outputs atomically."""
import hashlib
import os
import re
import tempfile
from pathlib import Path

from styletune import paths
from styletune.errors import InputError, UserError

_BLANK_RUNS = re.compile(r"\n{3,}")
_TRAILING_SPACE = re.compile(r"[ \t]+\n")


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_text(path: Path) -> str:
    """Decode a text file as UTF-8 (with or without BOM); a clear error otherwise."""
    data = Path(path).read_bytes()
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        raise InputError(f"{path}: saved as UTF-16 (Notepad's 'Unicode'). Re-save it as UTF-8 "
                         f"(e.g. `iconv -f utf-16 -t utf-8 '{path}' > fixed.txt`, then replace the file).")
    if data[:4] == b"PK\x03\x04" and b"word/document.xml" in data:
        raise InputError(f"{path}: a Word document (.docx) under another name. Save it as plain "
                         "UTF-8 text (.txt); for a whole manuscript, stage 0 also reads it named .docx.")
    if b"\x00" in data:
        raise InputError(f"{path}: looks like a binary file (it contains NUL bytes). "
                         "Save it as plain UTF-8 text (.txt) or move it out of the folder.")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[:err.start].count(b"\n") + 1
        raise InputError(
            f"{path}: not valid UTF-8 at byte {err.start}, line {line} (byte 0x{data[err.start]:02x}; "
            "probably saved as Windows-1252). Re-save it as UTF-8: your editor's 'Save with "
            f"encoding: UTF-8', or `iconv -f cp1252 -t utf-8 '{path}' > fixed.txt`, then "
            "replace the file."
        ) from None


def normalise(text: str) -> str:
    """Unify line endings, drop trailing spaces, collapse runs of blank lines.

    Only whitespace changes: every word, quote mark, dash, asterisk and
    paragraph break stays as the author wrote it.
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _TRAILING_SPACE.sub("\n", text + "\n")
    return _BLANK_RUNS.sub("\n\n", text).strip()


def write_atomic(path: Path, data: bytes) -> None:
    """Write via a temporary file and rename, so a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes it private; give it normal permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_outputs(outputs: dict, force: bool, retire=(), regenerated=()) -> list:
    """Write every output or none: refuse first if any would overwrite different
    content, unless `force`. The files in `retire` (stage 0's replaced chunks, the
    splitter's original) are copied into their folder's backup/ first, numbered,
    never overwriting an older copy, except those in `regenerated` (an earlier run's
    outputs, unedited) that this run writes again word for word under another name
    (a chunk renumbered); they go only once the outputs are written, so no version
    of the text is lost at any point.
    Returns the outputs written."""
    changed = [p for p, data in outputs.items() if not p.exists() or p.read_bytes() != data]
    clobber = [p for p in changed if p.exists() and p not in retire]
    if clobber and not force:
        raise UserError("these outputs exist and would change: "
                        + ", ".join(paths.shown(p) for p in clobber)
                        + ". Rerun with --force to replace them.")
    for p in backed_up(outputs, retire, regenerated):
        write_atomic(free_backup_path(p.parent / "backup", p.name), p.read_bytes())
    for path in changed:
        write_atomic(path, outputs[path])
    for p in retire:
        if p not in outputs:
            p.unlink()
    return changed


def backed_up(outputs: dict, retire, regenerated=()) -> list:
    """The files of `retire` to copy into backup/: all but those of `regenerated` whose
    text this run writes again, word for word."""
    written = set(outputs.values())
    return [p for p in retire if p not in regenerated or p.read_bytes() not in written]


def free_backup_path(backup: Path, name: str) -> Path:
    """backup/<name>, or backup/<stem>.2<suffix>, .3, ... when an older backup holds
    that name: each recut of a revised manuscript keeps every earlier version."""
    backup.mkdir(exist_ok=True)
    stem, suffix = Path(name).stem, Path(name).suffix
    candidates = (backup / (name if n == 1 else f"{stem}.{n}{suffix}") for n in range(1, 10_000))
    return next(c for c in candidates if not c.exists())
