"""A Word manuscript (.docx) as plain text: one paragraph per line, italics as
`*...*`, Word's heading styles as Markdown `#` headings, empty paragraphs as
blank lines (a writer's scene-break gap)."""
import zipfile
from pathlib import Path

from styletune.errors import InputError


def _heading_level(paragraph) -> int:
    """1-6 for Title / Heading N styles, 0 for body text."""
    name = (paragraph.style.name if paragraph.style is not None else "") or ""
    if name == "Title":
        return 1
    if name.startswith("Heading "):
        try:
            return max(1, min(6, int(name.split()[1])))
        except ValueError:
            return 0
    return 0


def _paragraph_text(paragraph) -> str:
    """The runs' text with italic stretches wrapped in `*...*` (adjacent italic runs
    joined, the marks kept outside surrounding spaces)."""
    out, italic_buf = [], []

    def flush():
        if italic_buf:
            text = "".join(italic_buf)
            core = text.strip()
            if core:
                lead = text[:len(text) - len(text.lstrip())]
                trail = text[len(text.rstrip()):]
                out.append(f"{lead}*{core}*{trail}")
            else:
                out.append(text)
            italic_buf.clear()

    for run in paragraph.runs:
        if run.italic:
            italic_buf.append(run.text)
        else:
            flush()
            out.append(run.text)
    flush()
    return "".join(out).replace("\t", " ").replace("\v", "\n")


def read_docx(path: Path) -> str:
    """The document's body text; a clear error when the file is not a Word document."""
    path = Path(path)
    fix = (f"{path}: not a Word .docx file ({{why}}). Open it in Word or LibreOffice and "
           "'Save As' Word Document (.docx), or save it as plain text (.txt, UTF-8).")
    if not zipfile.is_zipfile(path):
        raise InputError(fix.format(why="it is not the zip package a .docx is; perhaps an old "
                                        ".doc, an RTF or a text file renamed"))
    try:
        import docx
        from docx.opc.exceptions import PackageNotFoundError
    except ImportError:
        raise InputError("reading .docx needs the python-docx package: run `make install` "
                         "(or `pip install -r requirements.txt`)") from None
    try:
        document = docx.Document(str(path))
    except (PackageNotFoundError, KeyError, ValueError, zipfile.BadZipFile) as err:
        raise InputError(fix.format(why=f"no Word document inside: {err}")) from None
    lines = []
    for paragraph in document.paragraphs:
        text = _paragraph_text(paragraph).rstrip()
        level = _heading_level(paragraph)
        if level and text.strip():
            text = "#" * level + " " + text.strip()
        lines.append(text)
    return "\n".join(lines).strip("\n")
