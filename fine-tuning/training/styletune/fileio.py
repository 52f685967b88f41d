"""Reading the author's files without changing a word, and writing outputs atomically."""
import hashlib
import os
import re
import tempfile
from pathlib import Path

from styletune import paths
from styletune.errors import InputError, UserError

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
                         f"(e.g. `iconv -f utf-16 -t utf-8 {paths.typed(path)} > fixed.txt`, then replace the file).")
    if data[:4] == b"PK\x03\x04" and b"word/document.xml" in data:
        raise InputError(f"{path}: a Word document (.docx) under another name. Save it as plain "
                         "UTF-8 text (.txt); for a whole manuscript, stage 0 also reads it named .docx.")
    if data[:4] == b"PK\x03\x04":
        raise InputError(f"{path}: a zipped document (an .odt, .pages or .epub?) under another name. "
                         "Export it from the program that wrote it as plain UTF-8 text (.txt).")
    document = _document_format(data)
    if document:
        raise InputError(f"{path}: {document} under a text file's name, so its markup would train as "
                         "your prose. Save it as plain UTF-8 text (.txt): TextEdit's Format > Make Plain "
                         "Text, Word's Save As 'Plain Text (.txt)' with UTF-8, or export it from the "
                         "program that wrote it.")
    if b"\x00" in data:
        raise InputError(_nul_bytes(path, data))
    body = data[3:] if data.startswith(b"\xef\xbb\xbf") else data
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(not_utf8(path, data)) from None


def _document_format(data: bytes) -> str | None:
    """A rich-text or PDF file saved or renamed .txt: its first bytes say so."""
    head = data.lstrip(b"\xef\xbb\xbf \t\r\n")[:8]
    if head.startswith(b"{\\rtf"):
        return "an RTF document (rich text: TextEdit's or WordPad's)"
    if head.startswith(b"%PDF-"):
        return "a PDF"
    return None


def _utf16_without_bom(data: bytes) -> str | None:
    """'utf-16le' or 'utf-16be' for text saved so with no byte-order mark: the NULs of
    its Latin letters fall on every odd byte (little-endian) or every even one."""
    odd, even = data[1::2].count(0), data[0::2].count(0)
    half = len(data) // 2
    if half and odd >= 0.6 * half and even <= 0.05 * half and _decodes(data[:len(data) // 2 * 2], "utf-16-le"):
        return "utf-16le"
    if half and even >= 0.6 * half and odd <= 0.05 * half and _decodes(data[:len(data) // 2 * 2], "utf-16-be"):
        return "utf-16be"
    return None


def _nul_bytes(path: Path, data: bytes) -> str:
    """What NUL bytes in a file mean, and the fix: nothing but NULs is a crash's blank;
    every other byte NUL is UTF-16 with no byte-order mark (converted, not stripped:
    stripping garbles each curly quote); a few in text (a crashed save, a bad copy) are
    removed into a copy; among bytes that are no text (a picture, a program) the file
    is not one."""
    count, first = data.count(b"\x00"), data.index(b"\x00")
    if count == len(data):
        return (f"{path}: every one of its {count} bytes is NUL: a crash while saving left it blank, "
                "and its text is not in it. Restore it from a backup or your editor's history; a chunk "
                "stage 0 cut holds text of your manuscript, which is still there.")
    if utf16 := _utf16_without_bom(data):
        return (f"{path}: saved as UTF-16 without a byte-order mark (every other byte is NUL). Re-save "
                f"it as UTF-8, or convert a copy: `iconv -f {utf16} -t utf-8 {paths.typed(path)} > fixed.txt`, "
                "then put fixed.txt in the original's place.")
    rest = data.replace(b"\x00", b"").decode("utf-8", errors="replace")
    if not rest.strip() or sum(c.isprintable() or c.isspace() for c in rest) < 0.99 * len(rest):
        return (f"{path}: not a text file ({count} NUL bytes: a picture, a program or a document "
                "format?). Save your text as plain UTF-8 text (.txt), or move this file out of the folder.")
    line = data.count(b"\n", 0, first) + 1
    return (f"{path}: {count} NUL byte(s), invisible in an editor (a crashed save or a bad copy leaves "
            f"them), the first on line {line}, byte {first}; the rest is text. Remove them into a copy: "
            f"`tr -d '\\000' < {paths.typed(path)} > fixed.txt`, check fixed.txt, then put it in the "
            "original's place.")


def not_utf8(path: Path, data: bytes) -> str:
    """Where a file stops being UTF-8, and the fix that fits: a few stray bytes in a UTF-8
    file (a paste) are fixed by hand on their lines, since converting the whole file would
    garble every correct accent and quote; a whole file in Windows-1252 or Latin-1 is
    converted into a copy, the original kept."""
    text = data.decode("utf-8", errors="surrogateescape")
    bad = [i for i, ch in enumerate(text) if "\udc80" <= ch <= "\udcff"]
    first = bad[0]
    line_no = text.count("\n", 0, first) + 1
    start, end = text.rfind("\n", 0, first) + 1, text.find("\n", first)
    shown = text[max(start, first - 40):end if end >= 0 else None][:80]
    shown = shown.encode("utf-8", errors="surrogateescape").decode("utf-8", errors="replace")
    lines = sorted({text.count("\n", 0, i) + 1 for i in bad})
    offset = len(text[:first].encode("utf-8", errors="surrogateescape"))
    where = (f"not valid UTF-8 at byte {offset}, line {line_no} (0x{ord(text[first]) - 0xdc00:02x} in "
             f"\"{shown.strip()}\"); {len(bad)} such byte(s) in all, on line(s) "
             f"{', '.join(map(str, lines[:8]))}{' ...' if len(lines) > 8 else ''}")
    if any(ord(ch) > 127 and not "\udc80" <= ch <= "\udcff" for ch in text):
        return (f"{path}: {where}. The rest of the file is UTF-8 (its accents and quotes decode), so "
                "do not convert the whole file: open it in your editor, retype the character(s) "
                "shown as \ufffd on those lines, and save as UTF-8.")
    encoding = "cp1252" if _decodes(data, "cp1252") else "latin1"
    return (f"{path}: {where}; it looks saved as {'Windows-1252' if encoding == 'cp1252' else 'Latin-1'}. "
            "Re-save it as UTF-8 (your editor's 'Save with encoding: UTF-8'), or convert a copy: "
            f"`iconv -f {encoding} -t utf-8 {paths.typed(path)} > fixed.txt`; read fixed.txt's accents and "
            "quotes, then put it in the original's place (keep the original elsewhere).")


def _decodes(data: bytes, encoding: str) -> bool:
    try:
        data.decode(encoding)
        return True
    except UnicodeDecodeError:
        return False


def normalise(text: str) -> str:
    """Unify line endings, drop spaces at line ends and blank lines at either end.

    Only invisible whitespace changes: every word, quote mark, dash, asterisk,
    indent (the first line's too) and blank line between paragraphs stays as the
    author typed it, so a scene break of extra blank lines is learnt as one.
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return _TRAILING_SPACE.sub("\n", text + "\n").lstrip("\n").rstrip()


def write_atomic(path: Path, data: bytes) -> None:
    """Write via a temporary file and rename, so a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    except OSError as err:      # named by the file the writer asked for, not the temporary one
        raise OSError(err.errno, err.strerror, str(path)) from err
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
