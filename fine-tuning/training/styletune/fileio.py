"""Reading the author's files without changing a word, and writing outputs atomically."""
import hashlib
import os
import re
import tempfile
from pathlib import Path

from .errors import InputError

_BLANK_RUNS = re.compile(r"\n{3,}")
_TRAILING_SPACE = re.compile(r"[ \t]+\n")


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_text(path: Path) -> str:
    """Decode a text file as UTF-8 (with or without BOM); a clear error otherwise."""
    data = Path(path).read_bytes()
    if b"\x00" in data:
        raise InputError(f"{path}: looks like a binary file (it contains NUL bytes). "
                         "Save it as plain UTF-8 text (.txt) or move it out of the folder.")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise InputError(
            f"{path}: not valid UTF-8 at byte {err.start} (byte 0x{data[err.start]:02x}). "
            "Re-save it as UTF-8 (e.g. `iconv -f cp1252 -t utf-8 IN > OUT`, or your "
            "editor's 'Save with encoding: UTF-8')."
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
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
