"""A Word manuscript (.docx) as plain text: one paragraph per line, italics as
`*...*`, Word's heading styles as Markdown `#` headings, empty paragraphs as
blank lines (a writer's scene-break gap). A line break (Shift+Enter) or a page or
column break inside a paragraph starts a new line, so the words either side stay
apart (the line after it reads as a paragraph of its own; an italic stretch is
marked on each line, a heading's lines are joined); at either end of a paragraph
one adds nothing, the paragraph's own end already parts it. Every paragraph of
the body in reading order, table cells and text boxes included, and every run of
it: those inside a hyperlink, a content control, a field or a smart tag too. A
document with tracked changes still open is refused: an editor's insertions are
not the writer's words until the writer accepts them."""
import zipfile
from collections import Counter
from pathlib import Path

from styletune.errors import InputError

W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
MC = "{http://schemas.openxmlformats.org/markup-compatibility/2006}"
# runs that are not the text as it stands: tracked deletions, the old place of a move,
# a text box's (its own paragraphs follow as lines), and the copy Word saves of a shape
# for older readers (mc:Fallback repeats mc:Choice's text)
NOT_IN_THE_TEXT = {W + "del", W + "moveFrom", W + "txbxContent", MC + "Fallback"}
TRACKED = (W + "ins", W + "del", W + "moveFrom", W + "moveTo")
# a run's text, in order: python-docx's own list (Run.text), whose page and column
# breaks read as nothing, which would glue "blue." to "Next" across a page break
RUN_TEXT = "w:br | w:cr | w:noBreakHyphen | w:ptab | w:t | w:tab"


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


def _runs(paragraph):
    """Every run of the paragraph as it reads, however deep Word nested it."""
    from docx.text.run import Run

    for r in paragraph._p.iter(W + "r"):
        parent = r.getparent()
        while parent is not paragraph._p and parent.tag not in NOT_IN_THE_TEXT and not _placeholder(parent):
            parent = parent.getparent()
        if parent is paragraph._p:
            yield Run(r, paragraph)


def _placeholder(element) -> bool:
    """A content control still showing its placeholder ("Click or tap here to enter
    text."): the template's words, not the writer's."""
    return element.tag == W + "sdt" and element.find(f"{W}sdtPr/{W}showingPlcHdr") is not None


def _run_text(run) -> str:
    """The run's text, every break in it (line, page, column) a line break."""
    return "".join("\n" if e.tag == W + "br" else str(e) for e in run._r.xpath(RUN_TEXT))


def _italic(text: str) -> str:
    """`*text*`, the marks inside the surrounding spaces; whitespace alone unmarked."""
    core = text.strip()
    if not core:
        return text
    return f"{text[:len(text) - len(text.lstrip())]}*{core}*{text[len(text.rstrip()):]}"


def _paragraph_text(paragraph) -> str:
    """The runs' text with italic stretches wrapped in `*...*` (adjacent italic runs
    joined, the marks kept outside surrounding spaces)."""
    out, italic_buf = [], []

    def flush():
        if italic_buf:
            # each line marked apart: a line reads as a paragraph, so a mark may not span two
            out.append("\n".join(_italic(line) for line in "".join(italic_buf).split("\n")))
            italic_buf.clear()

    for run in _runs(paragraph):
        if run.italic:
            italic_buf.append(_run_text(run))
        else:
            flush()
            out.append(_run_text(run))
    flush()
    # A Tab that opens a line is the paragraph's indent, as Word's first-line indent is
    # (which never reaches the text): not a space before the first word. Inside a line,
    # a Tab parts two words.
    lines = "".join(out).replace("\v", "\n").split("\n")
    return "\n".join(line.lstrip("\t").replace("\t", " ") for line in lines)


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
    refuse_open_tracked_changes(path, document)
    lines = []
    for paragraph in _paragraphs(document):
        text = _paragraph_text(paragraph).strip("\n").rstrip()
        level = _heading_level(paragraph)
        if level and text.strip():
            text = "#" * level + " " + " ".join(line.strip() for line in text.split("\n") if line.strip())
        lines.append(text)
    return "\n".join(lines).strip("\n")


def _paragraphs(document):
    """The body's paragraphs in reading order: table cells' and text boxes' too."""
    from docx.text.paragraph import Paragraph

    body = document.element.body
    return [Paragraph(p, document._body) for p in body.iter(W + "p") if not _left_out(p, body)]


def _left_out(element, body) -> bool:
    """Inside a shape's fallback copy or a content control's placeholder."""
    parent = element.getparent()
    while parent is not None and parent is not body:
        if parent.tag == MC + "Fallback" or _placeholder(parent):
            return True
        parent = parent.getparent()
    return False


def refuse_open_tracked_changes(path: Path, document) -> None:
    """Text inserted or deleted, moved, or a paragraph split or joined (a change on the
    paragraph mark), not yet accepted or rejected; each change counted once."""
    body = document.element.body
    changes = [e for e in body.iter(*TRACKED)
               if (e.find(f".//{W}r") is not None or e.getparent().tag == W + "rPr")
               and not _left_out(e, body) and not any(a.tag in TRACKED for a in e.iterancestors())]
    if changes:
        authors = Counter(e.get(W + "author") or "someone" for e in changes)
        who = ", ".join(f"{n} by {a}" for a, n in authors.most_common(3))
        raise InputError(f"{path}: {len(changes)} tracked change(s) not yet accepted or rejected "
                         f"({who}). Only the text you accept is yours to train on: in Word, Review > "
                         "Accept (or Reject) All Changes; in LibreOffice, Edit > Track Changes > "
                         "Manage; save, and rerun. Nothing was written.")
