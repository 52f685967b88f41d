"""Stage 0: a whole manuscript -> its structure (front matter, chapters, scenes,
paragraphs) -> chunks: every chapter heading starts one, and inside a chapter
`seams.cut_to_fit` chooses the cuts (marks first, the seam model elsewhere,
lengths near the target).

Nothing of the author's text is changed or lost: every chunk is an exact slice
of the manuscript body, and the text between chunks (headings, scene-break
marks, blank lines, front matter) is kept verbatim in the manifest, so
`rebuild()` gives the body back byte for byte.
"""
import re
import statistics
import unicodedata
from dataclasses import dataclass, field, replace
from pathlib import Path

from styletune.data.seam_model import candidates
from styletune.data.seams import MARGINS, Measure, cut_to_fit
from styletune.errors import InputError
from styletune.fileio import read_text
from styletune.text.docx import read_docx
from styletune.text.gutenberg import gutenberg_body
from styletune.text.paragraphs import (
    dashed_numbers_are_pages,
    indent_before,
    is_hard_wrapped,
    page_number_paragraphs,
    paragraph_spans,
)
from styletune.text.patterns import (
    DASHED_NUMBER,
    ENDS_SENTENCE,
    FOOTNOTE_MARK,
    blank_lines_mark,
    is_page_marker,
    is_prose,
    is_scene_break,
    word_count,
)
from styletune.text.sentences import build_punkt

MANUSCRIPT_SUFFIXES = {".txt", ".md", ".markdown", ".text", ".docx"}
# Text before the first heading with this many words or fewer (and no heading
# before it) is front matter: title page, contents, epigraph. More is an opening
# chapter without a heading, and becomes chunks.
FRONT_MATTER_MAX_WORDS = 400
# Prose between two headings shorter than this is heading matter (a part's
# subtitle or epigraph): kept in the manifest, listed in the report, not a chunk.
HEADING_MATTER_MAX_WORDS = 50
# A chapter's title under its number may be a summary wrapped over lines (Oliver Twist's
# longest has 26 words); longer than this, a capitalised paragraph is text.
TITLE_BLOCK_MAX_WORDS = 40
# A closing "THE END" (or "Finis") in the last tenth of the book with at most this many
# words after it: what follows is back matter (a publisher's list, a transcriber's
# errata), kept in the manifest, not a chunk. More, and it is left as text.
BACK_MATTER_MAX_WORDS = 3000
# Headings of an opening part that is the author's own prose (a transcriber's or an
# editor's note under the book's title is not).
_OPENING_PART = re.compile(r"\b(prologue|preface|prelude|proem|overture)\b", re.IGNORECASE)
_THE_END = re.compile(r"\s*(the\s+end|finis)\s*[.!]?\s*", re.IGNORECASE)
# A heading of matter after the novel that no one writes in the book's voice: a
# transcriber's or editor's notes, footnotes kept at the end, the acknowledgements, the
# author's biography, a list of other books. In the last tenth, with at most
# BACK_MATTER_MAX_WORDS after it, and no closing "THE END" to go by, it starts the back
# matter. (An appendix or a glossary may be in-world, the author's: those stay text.)
_BACK_MATTER_HEADING = re.compile(
    r"\s*(?:original\s+)?(?:(?:transcriber|editor|publisher|producer)[’']?s?[’']?\s+notes?|"
    r"(?:foot|end)?notes|errata|corrigenda|acknowledge?ments|about\s+the\s+author|"
    r"(?:also|other\s+(?:books|titles))\s+by\b.{0,60})\s*[.:]?\s*", re.IGNORECASE)
# The chunks' median may fall this far under the target before plan_to_target aims the
# length cost higher, at most MAX_AIM times the target, in at most AIM_PLANS plans.
MEDIAN_SHORT = 0.93
MAX_AIM = 2.0
AIM_PLANS = 4

_NUMBER_WORDS = ("one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|"
                 "fourteen|fifteen|sixteen|seventeen|eighteen|nineteen|twenty|thirty|forty|fifty|"
                 "sixty|seventy|eighty|ninety")
_ORDINALS = ("first|second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth|eleventh|twelfth|"
             "thirteenth|fourteenth|fifteenth|sixteenth|seventeenth|eighteenth|nineteenth|"
             "twentieth|last|final")
# A heading's word, and the abbreviations that take a full stop (a file name leaves out
# the heading and its number it opens with, _slug).
_HEADING_KEYWORDS = ("chapter", "book", "part", "volume", "act", "canto", "letter", "section", "stave")
_HEADING_ABBREVIATIONS = ("chap", "ch", "vol")
_KEYWORD_HEADING = re.compile(
    rf"^((?:{'|'.join(_HEADING_KEYWORDS)})\b|(?:{'|'.join(_HEADING_ABBREVIATIONS)})\.)[\s.:—–-]*"
    rf"(\d+|[ivxlcdm]+\b|(?:{_NUMBER_WORDS})(?:[-\s](?:{_NUMBER_WORDS}))?\b|the\s+(?:{_ORDINALS})\b|(?:{_ORDINALS})\b)",
    re.IGNORECASE)
_NAMED_HEADING = re.compile(r"^(prologue|epilogue|preface|foreword|afterword|interlude|"
                            r"introduction|coda|postscript|appendix)\b", re.IGNORECASE)
# A chapter's Roman numeral, I to CCCXCIX, well formed: "VIVID", "MIX", "CIVIL" are words.
_ROMAN_CHAPTER = r"(?=[IVXLC])C{0,3}(?:XC|XL|L?X{0,3})(?:IX|IV|V?I{0,4})"     # IIII as on a clock
# A numeral alone ("IV.", "12"). Roman numerals in capitals only: "mix", "vivid".
_NUMBER_HEADING = re.compile(rf"^({_ROMAN_CHAPTER}|\d{{1,3}})\.?$")
# Counted headings, weaker shapes that prose has too, so they count only as a series
# (_counted_series): a number in words with a capital and no full stop ("ONE",
# "Twenty-One"; "Two" may answer a question, "Three." counts down), a numeral between
# dashes ("— 12 —", also a printed page's number), a numeral, a stop and a title
# ("1. The Falling Star", "IV: The Eve of the War"; also a list's item, "1. Eggs").
_NUMBER_WORD = re.compile(rf"^(?=[A-Z])(?i:((?:{_NUMBER_WORDS})(?:[-\s](?:{_NUMBER_WORDS}))?))$")
_NUMBERED_TITLE = re.compile(rf"^({_ROMAN_CHAPTER}|\d{{1,3}})[.:]\s+(\S.*)$")
# Counted headings of one shape must be this many at least, each after this many words
# of prose, their numbers going up: chapters, not a countdown, a list or a stammer.
COUNTED_SERIES_MIN, COUNTED_PROSE_WORDS = 2, 100
# Titles alone with one blank line before them, as before every paragraph ("THE FALLING
# STAR", "The Long Walk"): chapters only in a book with no chapter headings of its own,
# as a series of one style, this many at least followed by this many words of prose
# (_titled_series).
TITLED_SERIES_MIN, TITLED_PROSE_WORDS = 3, 300
_ORDINAL_HEADING = re.compile(rf"^((?:{_ORDINALS})|\d+(?:st|nd|rd|th))\s+\w+", re.IGNORECASE)
_MARKDOWN_HEADING = re.compile(r"^#{1,6}\s+\S")
_TERMINAL = re.compile(r"[.!?,;:…'\"’”)\]—–-]$")
_QUOTE_START = re.compile(r"^['\"‘“(\[_]")


@dataclass
class Manuscript:
    path: Path
    body: str                 # the text chunks are cut from (LF line ends)
    gutenberg_stripped: bool
    first_line: int = 1       # the file's line (of the text read) where the body starts

    def line_of(self, offset: int) -> int:
        """The manuscript file's line number of an offset in the body."""
        return self.first_line + self.body.count("\n", 0, offset)


def read_manuscript(path) -> Manuscript:
    """A .txt/.md/.docx manuscript, with Project Gutenberg's wrapper removed when present."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path} is a folder: stage 0 cuts one manuscript file (.txt, .md or .docx); "
                         "a folder of chunk files you cut yourself goes to stage 1 "
                         "(1_prepare_data.py --book FOLDER)")
    if not path.is_file():
        raise InputError(f"no manuscript at {path}: give the path of your .txt, .md or .docx file")
    suffix = path.suffix.lower()
    if suffix not in MANUSCRIPT_SUFFIXES:
        raise InputError(f"{path}: a {suffix or 'suffix-less'} file; stage 0 reads .txt, .md or "
                         ".docx. Save the manuscript in one of those formats (plain text as UTF-8).")
    if suffix == ".docx":
        text = read_docx(path)
    else:
        text = read_text(path)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    body, stripped = gutenberg_body(text)
    if stripped:  # the line Gutenberg puts just before its END marker
        body = re.sub(r"\n\s*End of (?:the )?Project Gutenberg[^\n]*\s*$", "", body.rstrip(),
                      flags=re.IGNORECASE)
    body = body.strip("\n")
    if not re.search(r"\w", body):
        raise InputError(f"{path}: the manuscript is empty (no words{' between the Project Gutenberg markers' if stripped else ''}). "
                         "Check you gave the right file and that it was saved with its text.")
    return Manuscript(path, body, stripped, text.count("\n", 0, max(0, text.find(body))) + 1)


@dataclass
class Para:
    start: int
    end: int
    gap: int          # blank lines before it
    kind: str = "text"   # text | heading | break | marker
    heading_kind: str = ""


@dataclass
class Section:
    """A run of paragraphs between two boundaries (a scene)."""
    chapter: int               # 0: front matter / no chapter
    chapter_title: str
    paras: list                # [Para] of kind text/marker
    reason: str                # why it starts here

    @property
    def start(self):
        return self.paras[0].start

    @property
    def end(self):
        return self.paras[-1].end


@dataclass
class Structure:
    text: str
    hard_wrapped: bool
    one_per_line: bool
    sections: list             # [Section]
    chapters: list             # [(number, title)]
    front_matter: tuple | None  # (start, end, words) or None
    heading_matter: list = field(default_factory=list)  # [(chapter title, words)]
    notes: list = field(default_factory=list)
    page_numbers: list = field(default_factory=list)  # [offset] of paragraphs only a page number
    back_matter: tuple | None = None  # (start, end, words after "THE END") or None

    @property
    def has_scene_breaks(self):
        return any(s.reason.startswith("scene break") for s in self.sections)


def _is_caps_line(line: str) -> bool:
    letters = [c for c in line if c.isalpha()]
    return (len(letters) >= 2 and all(c.isupper() for c in letters if c.isalpha())
            and not _QUOTE_START.match(line) and not line.endswith(("!", "?")))


def _is_title_case(line: str) -> bool:
    words = re.findall(r"[A-Za-z’']+", line)
    long = [w for w in words if len(w) >= 4]
    return bool(words) and words[0][0].isupper() and \
        (not long or sum(w[0].isupper() for w in long) >= 0.6 * len(long))


def _unemphasised(line: str) -> str:
    """A line without the Markdown emphasis around all of it (**Chapter One**, *One*)."""
    m = re.fullmatch(r"(\*\*|__|\*|_)(\S(?:.*\S)?)\1", line)
    return m.group(2) if m else line


def _heading_words(line: str) -> str:
    """A heading line without Markdown's marks around it ("# Chapter 3", "**ONE**")."""
    return _unemphasised(re.sub(r"^#+\s*", "", line.strip()))


def _is_part(keyword) -> bool:
    """Whether a _KEYWORD_HEADING match names a part of the book (PART TWO, BOOK II),
    not a chapter: parts are not numbered as chapters are."""
    return bool(re.match(r"(book|part|volume|vol|act)\b", keyword.group(1), re.IGNORECASE))


def _numbered_title(line: str) -> bool:
    m = _NUMBERED_TITLE.match(line)
    return bool(m) and word_count(m.group(2)) <= 8 and _is_title_case(m.group(2)) \
        and not _TERMINAL.search(line) and not _QUOTE_START.match(m.group(2))


def counted_number(line: str) -> tuple[str, int] | None:
    """(shape, number) of a counted heading's line ("ONE" -> ("word", 1), "— 12 —" ->
    ("dash", 12), "IV: The Eve" -> ("title", 4)); None for any other line."""
    line = _unemphasised(line)
    for shape, pattern in (("word", _NUMBER_WORD), ("dash", DASHED_NUMBER)):
        if m := pattern.fullmatch(line):
            return shape, _number_value(m.group(1))
    if _numbered_title(line):
        return "title", _number_value(_NUMBERED_TITLE.match(line).group(1))
    return None


def _number_value(token: str) -> int:
    """12, XII or twelve (twenty-one, Twenty One) as a number."""
    if token.isdigit():
        return int(token)
    if re.fullmatch(r"[IVXLCDM]+", token):
        values = [{"I": 1, "V": 5, "X": 10, "L": 50, "C": 100, "D": 500, "M": 1000}[c] for c in token]
        return sum(-v if v < w else v for v, w in zip(values, values[1:] + [0]))
    words = _NUMBER_WORDS.split("|")
    value = {w: i + 1 for i, w in enumerate(words[:19])} | {w: 20 + 10 * i for i, w in enumerate(words[19:])}
    return sum(value[w] for w in re.split(r"[-\s]+", token.lower()))


def _counted_series(text: str, paras) -> None:
    """Counted headings stay headings only as a series: at least COUNTED_SERIES_MIN of
    one shape, each after COUNTED_PROSE_WORDS words of prose, numbers going up (or
    starting again after a part's heading: PART TWO, then ONE); the others are text
    again (a list's items, a countdown, a stammer "—I—", an answer)."""
    counted = {i: counted_number(text[p.start:p.end].strip()) for i, p in enumerate(paras)
               if p.heading_kind == "counted"}
    for shape in ("word", "dash", "title"):
        found = [(i, number) for i, (kind, number) in counted.items() if kind == shape]
        prose = [sum(word_count(text[q.start:q.end]) for q in paras[i + 1:j] if q.kind == "text")
                 for (i, _), (j, _) in zip(found, found[1:] + [(len(paras), 0)])]
        series = (len(found) >= COUNTED_SERIES_MIN and all(w >= COUNTED_PROSE_WORDS for w in prose)
                  and all(b > a or any(q.heading_kind == "keyword" for q in paras[i + 1:j])
                          for (i, a), (j, b) in zip(found, found[1:]))
                  and not (shape == "dash" and dashed_numbers_are_pages(text, [(p.start, p.end) for p in paras])))
        for i, _ in found:
            paras[i].heading_kind = "number" if series else ""
            paras[i].kind = "heading" if series else "text"


def _titled_series(text: str, paras) -> None:
    """A manuscript whose chapters have titles alone, typed with one blank line before
    them as every paragraph is ("THE FALLING STAR", "The Long Walk"): short lines in
    capitals, or else in title case, with no sentence's end, are chapters as a series.
    Lines with nothing between them are one heading (a title and its dateline, the
    book's title, its author and the first chapter's); such a heading is the series'
    when TITLED_PROSE_WORDS words of prose follow it. The series stands when it is
    TITLED_SERIES_MIN of them at least, two in three of the headings of that style,
    more than one text (a sign repeated is no title), and the book starts with it
    (under TITLED_PROSE_WORDS words of prose before, or a prologue's or a part's
    heading): a sign, a shout or a sound in the story stays text, and so does a short
    chapter's title. Not where the book heads its chapters otherwise (two headings that
    are no part's or prologue's, the first line aside: one stray "First Light" may be a
    title of the series)."""
    headed = [p for p in paras[1:] if p.kind == "heading" and not _part_or_named(text[p.start:p.end])]
    if len(headed) >= 2:
        return
    for shape in ("caps", "title"):
        groups = _title_groups(text, paras, shape)
        prose = _prose_after(text, paras, groups)
        members = [g for g, w in zip(groups, prose) if w >= TITLED_PROSE_WORDS]
        lines = {_unemphasised(text[paras[i].start:paras[i].end].strip()).lower() for g in members for i in g}
        if (len(members) < TITLED_SERIES_MIN or 3 * len(members) < 2 * len(groups) or len(lines) < 2
                or not _starts_the_book(text, paras, members[0][0])):
            continue
        for i in (i for g in members for i in g):
            paras[i].kind, paras[i].heading_kind = "heading", "titled"
        return


def _labels_inside_chapters(text: str, paras, usual: int) -> None:
    """In a book whose chapters have headings of their own (Chapter 1, IV., # Title: two
    at least, more than the lines below, a part's, a prologue's or back matter's aside),
    a line in capitals or title case set apart on its own after over
    HEADING_MATTER_MAX_WORDS words of its chapter's prose, the words it labels following
    it as one paragraph follows another ("_Lucy Westenra's Diary_", a letter's or a
    journal's label), heads a stretch of a chapter, not a chapter: it is text again, in
    the chunk with those words, and the blank lines before it may still cut a scene
    there. Taken for a chapter, one such label shifted the number of every chapter after
    it (Dracula's CHAPTER X was named ch11). A line soon after a heading (its title, an
    epigraph's source), "THE END", a back matter's heading and what comes before the
    first chapter (a title page, "THE PREFACE") stay as they were; so does a book whose
    chapters are such lines, with a stray "Letter 1" or "# Acknowledgements" among them.
    What this costs: an unnumbered chapter in capitals with its text right under it
    ("AFTERWARDS") is read as a part of the chapter before."""
    def line(p) -> str:
        return _heading_words(text[p.start:p.end])
    strong = [p for p in paras if p.kind == "heading" and p.heading_kind in ("keyword", "number", "markdown")
              and not _part_or_named(text[p.start:p.end]) and not _BACK_MATTER_HEADING.fullmatch(line(p))]
    weak = [p for p in paras[1:] if p.heading_kind in ("caps", "title")]
    if len(strong) < 2 or len(strong) <= len(weak):
        return
    prose = 0               # words of text since the last heading
    for p, after in zip(paras, paras[1:] + [None]):
        if (p.heading_kind in ("caps", "title") and p.start > strong[0].start and prose > HEADING_MATTER_MAX_WORDS
                and after is not None and after.kind != "heading" and after.gap <= usual
                and not _THE_END.fullmatch(line(p)) and not _BACK_MATTER_HEADING.fullmatch(line(p))):
            p.kind, p.heading_kind = "text", ""
        prose = 0 if p.kind == "heading" else prose + (word_count(text[p.start:p.end]) if p.kind == "text" else 0)


def _title_groups(text: str, paras, shape: str) -> list[list[int]]:
    """The paragraphs that may be chapter titles of this shape ("caps", "title"), those
    with nothing between them as one group: text, or a heading of a weak shape (a
    capitalised line set apart, an ordinal's "First Light"); not "THE END", a back
    matter's heading, a prologue's."""
    def style(p) -> str:
        line = _heading_words(text[p.start:p.end])
        if "\n" in line or word_count(line) > 8 or _TERMINAL.search(line) or _THE_END.fullmatch(line) \
                or _BACK_MATTER_HEADING.fullmatch(line) or _NAMED_HEADING.match(line):
            return ""
        return "caps" if _is_caps_line(line) else "title" if _is_title_case(line) else ""
    groups = []
    for i, p in enumerate(paras):
        if (p.kind == "text" or p.heading_kind in ("caps", "title", "ordinal")) and style(p) == shape:
            if groups and groups[-1][-1] == i - 1:
                groups[-1].append(i)
            else:
                groups.append([i])
    return groups


def _title_lines_not_taken(text: str, paras) -> list[str]:
    """Title-shaped lines (_title_groups' last lines) with TITLED_PROSE_WORDS words of
    prose after them, where _titled_series made no series: said to the writer when the
    book has no chapters, at least TITLED_SERIES_MIN of them."""
    for shape in ("caps", "title"):
        groups = _title_groups(text, paras, shape)
        prose = _prose_after(text, paras, groups)
        lines = [_slug_title(text[paras[g[-1]].start:paras[g[-1]].end]) for g, w in zip(groups, prose)
                 if w >= TITLED_PROSE_WORDS]
        if len(lines) >= TITLED_SERIES_MIN:
            return lines
    return []


def _prose_after(text: str, paras, groups) -> list[int]:
    """The words of prose after each group of lines, up to the next group."""
    return [sum(word_count(text[q.start:q.end]) for q in paras[g[-1] + 1:h[0]] if q.kind == "text")
            for g, h in zip(groups, groups[1:] + [[len(paras)]])]


def _part_or_named(line: str) -> bool:
    """A part's heading (PART ONE, BOOK II) or a named one (Prologue, Interlude): it may
    stand among chapters headed by titles alone."""
    line = _heading_words(line)
    keyword = _KEYWORD_HEADING.match(line)
    return bool(_NAMED_HEADING.match(line)) or bool(keyword) and _is_part(keyword)


def _starts_the_book(text: str, paras, first: int) -> bool:
    """Whether the first chapter title comes where a book's first chapter does: after
    under TITLED_PROSE_WORDS words of prose, or after a prologue's or a part's heading
    (a sign in the story comes after pages of it)."""
    if any(p.kind == "heading" and _part_or_named(text[p.start:p.end]) for p in paras[:first]):
        return True
    return sum(word_count(text[p.start:p.end]) for p in paras[:first] if p.kind == "text") < TITLED_PROSE_WORDS


def heading_kind(line: str, gap: int, first: bool, loose_gap: int) -> str:
    """What makes `line` (one stripped line, alone in its paragraph) a heading, or ''.

    Strong shapes (Chapter 1, CHAPTER IV., BOOK ONE, IV., Prologue, Seventh memory -
    Mother, # Title, any of them in **bold** or *italics*) count wherever they stand
    alone; counted ones (ONE, — 12 —, 1. The Falling Star) are "counted", headings only
    as a series (_counted_series); a short line in capitals or title case only when
    set apart (extra blank lines before it, or the first line): "THE FALLING STAR"
    with one blank line before it, as before every paragraph, may be a sign in the
    story or a shout, and is a chapter only in a series of them (_titled_series)."""
    line = _unemphasised(line)
    if len(line) > 80 or word_count(line) > 12 or _QUOTE_START.match(line):
        return ""
    if _MARKDOWN_HEADING.match(line):
        return "markdown"
    if _KEYWORD_HEADING.match(line) or _NAMED_HEADING.match(line) and word_count(line) <= 8:
        return "keyword"
    if _NUMBER_HEADING.match(line):
        return "number"
    if counted_number(line):
        return "counted"
    # Centring is not a sign: it marks inscriptions and letters' closings too.
    set_apart = gap >= loose_gap or first
    if _ORDINAL_HEADING.match(line) and word_count(line) <= 8 and not line.endswith((".", ",", ";")):
        return "ordinal"
    if _is_caps_line(line) and word_count(line) <= 10 and set_apart:
        return "caps"
    if set_apart and word_count(line) <= 8 and not _TERMINAL.search(line) and _is_title_case(line):
        return "title"
    return ""


def _title_line(line: str) -> bool:
    """A line that may follow a heading line as its title ('THE EVE OF THE WAR.')."""
    return len(line) <= 80 and word_count(line) <= 12 and (_is_caps_line(line) or _is_title_case(line)) \
        and not line.endswith((",", ";"))


def _title_block(block: str) -> bool:
    """A title that may sit under a numbered heading, on one line or wrapped over up
    to four (Dickens: 'TREATS OF THE PLACE WHERE OLIVER TWIST WAS BORN AND OF THE /
    CIRCUMSTANCES ATTENDING HIS BIRTH'): capitalised lines, not prose, at most
    TITLE_BLOCK_MAX_WORDS words, the last not ending mid-clause."""
    lines = [ln.strip() for ln in block.strip().split("\n")]
    return len(lines) <= 4 and word_count(block) <= TITLE_BLOCK_MAX_WORDS \
        and (not is_prose(block) or _title_case_title(lines)) \
        and all(_is_caps_line(ln) or _is_title_case(ln) for ln in lines) \
        and not lines[-1].endswith((",", ";"))


def _title_case_title(lines: list) -> bool:
    """One line in title case that is no sentence: 'A Little Night Music' under 'Chapter
    Three' (its letters mostly lower-case, so is_prose alone would keep it in the text);
    not a line of dialogue ('"Stop Him"'), one that ends as a sentence does, nor a
    contents entry with its page number ("Dr. Seward's Diary 308")."""
    line = lines[0]
    return len(lines) == 1 and word_count(line) <= 8 and _is_title_case(line) \
        and line[0] not in "\"“‘'(—-" and not re.search(r"([.!?…:—–-][\"”’')*]*|\d)$", line)


def _split_heading_lines(text: str, spans):
    """A block whose first line is a chapter-shaped heading and whose next lines are
    prose (`# Chapter 1` straight above its text) is two paragraphs."""
    out = []
    for a, b in spans:
        first_end = text.find("\n", a, b)
        line = _unemphasised(text[a:first_end].strip()) if first_end != -1 else ""
        if first_end != -1 and len(line) <= 80 and (
                _MARKDOWN_HEADING.match(line) or _KEYWORD_HEADING.match(line)
                or _NUMBER_HEADING.match(line)):
            rest = [ln.strip() for ln in text[first_end + 1:b].split("\n")]
            if not all(_title_line(ln) for ln in rest):
                nxt = first_end + 1
                while text[nxt] in " \t":
                    nxt += 1
                out += [(a, a + len(text[a:first_end].rstrip())), (nxt, b)]
                continue
        out.append((a, b))
    return out


def _classify(text: str, spans):
    spans = _split_heading_lines(text, spans)
    paras = []
    prev_end = 0
    for i, (a, b) in enumerate(spans):
        gap = max(0, text.count("\n", prev_end, a) - 1) if i else 0
        paras.append(Para(a, b, gap))
        prev_end = b
    # The usual gap between paragraphs: blank-line style (1) or one per line (0).
    gaps = sorted(p.gap for p in paras[1:]) or [1]
    usual = gaps[len(gaps) // 2]
    loose_gap = usual + 1
    for i, p in enumerate(paras):
        block = text[p.start:p.end]
        lines = [ln.strip() for ln in block.split("\n")]
        first_line = lines[0]
        if is_page_marker(block):
            p.kind = "marker"
            continue
        if len(lines) == 1 and is_scene_break(first_line):
            p.kind = "break"
            continue
        if len(lines) > 4 or not all(_title_line(ln) or ln == first_line for ln in lines[1:]):
            continue
        kind = heading_kind(first_line, p.gap, i == 0, loose_gap)
        if kind and (len(lines) == 1 or kind != "title"):
            p.kind, p.heading_kind = "heading", kind
    _counted_series(text, paras)
    _titled_series(text, paras)
    _labels_inside_chapters(text, paras, usual)
    # A title right under a numbered heading belongs to it: one line (one paragraph per
    # line), or wrapped over a few (a chapter's summary in capitals).
    for prev, p in zip(paras, paras[1:]):
        if (prev.kind == "heading" and prev.heading_kind in ("number", "keyword") and p.kind == "text"
                and p.gap <= usual and _title_block(text[p.start:p.end])):
            p.kind, p.heading_kind = "heading", "title"
    return paras, usual


def _slug_title(text: str) -> str:
    return " ".join(text.split())


# A Markdown file's metadata block at its very top (Pandoc, Jekyll, Obsidian): "---",
# lines of "key: value" (a list's "- item", indented continuation lines, blank lines),
# then "---" or "...". Its "---" would read as scene breaks and its lines as the story.
_METADATA_BLOCK = re.compile(r"---[ \t]*\n((?:(?:[\w-]+[ \t]*:.*|[ \t]*-[ \t].*|[ \t]+\S.*|[ \t]*)\n){1,80}?)"
                             r"(?:---|\.\.\.)[ \t]*(?=\n|$)")


def metadata_block_end(text: str) -> int:
    """Where a metadata block opening the text ends (0 for none): it must hold a
    "key:" line, so a story that opens with a "---" scene break is no metadata."""
    m = _METADATA_BLOCK.match(text)
    return m.end() if m and re.search(r"^[\w-]+[ \t]*:", m.group(1), re.MULTILINE) else 0


def analyse(text: str) -> Structure:
    """Chapters, scenes and paragraphs of a manuscript body."""
    hard = is_hard_wrapped(text)
    paras, usual = _classify(text, paragraph_spans(text))
    metadata = metadata_block_end(text)
    paras = [p for p in paras if p.start >= metadata]     # kept verbatim before the first chunk
    one_per_line = usual == 0
    scene_gap = usual + 1  # one blank line in one-per-line text, two in blank-line text
    # Extra blank lines count as a scene break only where the writer uses them
    # sparingly; where every other gap is wide, they are just layout.
    wide = sum(p.gap >= scene_gap for p in paras[1:] if p.kind == "text")
    gap_breaks = wide <= max(3, 0.2 * len(paras))

    sections, chapters, heading_matter, notes = [], [], [], []
    if metadata:
        notes.append(f"the metadata block at the top ('---' ... '---', {text.count(chr(10), 0, metadata) + 1} "
                     "lines: title, author, ...) is not a chunk; it is kept verbatim in the manifest")
    current, reason = [], "start of the manuscript"
    chapter_no, chapter_title = 0, ""
    strong_chapters = set()
    label_starts = {}          # chapter number: where its heading lines start

    def close(next_reason):
        nonlocal current
        if current:
            sections.append(Section(chapter_no, chapter_title, current, reason))
        current = []
        return next_reason

    i = 0
    while i < len(paras):
        p = paras[i]
        if p.kind == "heading":
            # A run of headings (and short matter between them) is one chapter label.
            group, matter = [], []
            j = i
            while j < len(paras):
                q = paras[j]
                if q.kind == "heading":
                    group.append(q)
                    j += 1
                    continue
                if q.kind in ("marker", "break"):
                    j += 1
                    continue
                # short non-prose or tiny prose between headings: heading matter
                k = j
                while k < len(paras) and paras[k].kind not in ("heading",):
                    k += 1
                stretch = [r for r in paras[j:k] if r.kind == "text"]
                words = sum(word_count(text[r.start:r.end]) for r in stretch)
                prose = any(is_prose(text[r.start:r.end]) for r in stretch)
                if k < len(paras) and (not prose or words <= HEADING_MATTER_MAX_WORDS):
                    if words:                   # a contents list too: no word leaves unsaid
                        matter.append((paras[j].start, words))
                    j = k
                    continue
                break
            close(None)
            # the label: the headings after the last stretch of non-heading matter
            label_paras = []
            for q in reversed(paras[i:j]):
                if q.kind != "heading":
                    if label_paras:
                        break
                    continue
                label_paras.insert(0, q)
            label_paras, entries, listed_at = _without_contents_list(text, label_paras)
            if entries:
                notes.append(f"a contents list ({entries} entries, line {text.count(chr(10), 0, listed_at) + 1}) "
                             "is not a chunk; it is kept verbatim in the manifest")
            label = " / ".join(_slug_title(text[q.start:q.end]) for q in label_paras)
            is_book_title = len(group) == 1 and group[0].heading_kind == "title" and i == 0 \
                and not chapters
            if j >= len(paras):
                notes.append(f"headings at the end with no text after them: {label}")
            if not is_book_title:
                chapter_no += 1
                # a capitalised or title-only heading is a weak sign of a chapter: a short first
                # chapter under one is no front matter; a strong one opening the run counts
                # too ("CHAPTER I", an epigraph, then the title: its prose was front matter)
                if any(q.heading_kind not in ("caps", "title", "titled") for q in label_paras + group[:1]):
                    strong_chapters.add(chapter_no)
                chapter_title = label
                chapters.append((chapter_no, label))
                reason = f"chapter heading: {label}"
            else:
                reason = f"after the title: {label}"
            heading_matter += [(label, w, at) for at, w in matter]
            label_starts[chapter_no] = label_paras[0].start if label_paras else p.start
            i = j
            continue
        if p.kind == "break":
            reason = close(f"scene break: {text[p.start:p.end].strip()}")
            i += 1
            continue
        if p.kind == "text" and gap_breaks and current and p.gap >= scene_gap:
            reason = close(f"scene break: {blank_lines_mark(p.gap)}")
        current.append(p)
        i += 1
    close(None)

    # Front matter: what comes before the first chapter with a chapter-shaped
    # heading (before any heading when there are only capitalised titles), if short.
    front = None
    strong = [n for n, _ in chapters if n in strong_chapters]
    first_real = strong[0] if strong else (1 if chapters else None)
    if first_real is not None:
        before = [s for s in sections if s.chapter < first_real]
        # a prologue or preface under its own heading is the author's prose, not front matter
        before = before[:next((n for n, s in enumerate(before) if _OPENING_PART.search(s.chapter_title)
                               and _prose_words(text, s) >= 50), len(before))]
        words = sum(word_count(text[q.start:q.end]) for s in before for q in s.paras)
        if before and words <= FRONT_MATTER_MAX_WORDS:
            sections = sections[len(before):]
            # all that precedes the first chapter's heading: title page and contents too
            end = max(before[-1].end, label_starts.get(sections[0].chapter, 0)) if sections else before[-1].end
            front = (0, end, word_count(text[:end]))
            chapters = [(n, t) for n, t in chapters if not sections or n >= sections[0].chapter]
    # the words between headings, those in the front matter counted there
    heading_matter = [(label, w) for label, w, at in heading_matter if not (front and at < front[1])]
    sections, back = _without_back_matter(text, paras, sections)
    if back:
        chapters = [(n, t) for n, t in chapters if n <= sections[-1].chapter]
    # Page numbers left from a printed edition ("11)", "[11]", "Page 11"): counted, never
    # removed here ("11." only where it splits a sentence: elsewhere it heads a chapter).
    pages = page_number_paragraphs(text)
    titled = [_slug_title(text[p.start:p.end]) for i, p in enumerate(paras) if p.heading_kind == "titled"
              and not (i + 1 < len(paras) and paras[i + 1].heading_kind == "titled")]
    if titled:
        notes.append(f"{len(titled)} chapter(s) found from their titles alone ('{titled[0]}', ...: short "
                     "lines in capitals or title case, no heading word or number). If one is a line of "
                     "your story (a sign, a date), put '# ' before each real chapter title and rerun: "
                     "then only those are chapters")
    if not chapters and (unsure := _title_lines_not_taken(text, paras)):
        notes.append(f"{len(unsure)} line(s) look like chapter titles but were not taken for them "
                     f"('{unsure[0]}', ...: too few, or too much of the story before the first). If they "
                     "are your chapters' titles, put '# ' before each and rerun")
    return Structure(text, hard, one_per_line, sections, chapters, front, heading_matter, notes, pages,
                     back_matter=back)


def _prose_words(text, section) -> int:
    """Words in the section's paragraphs of running prose (sentences, mostly lower case)."""
    return sum(word_count(text[p.start:p.end]) for p in section.paras
               if is_prose(text[p.start:p.end]) and ENDS_SENTENCE.search(text[p.start:p.end].rstrip()))


def _without_back_matter(text, paras, sections):
    """(sections, back matter): the sections up to the book's closing "THE END" (else
    up to the first back-matter heading, such as "Transcriber's Notes" or
    "Acknowledgements"), and (its offset, the text's end, the words after it) when a
    short stretch follows it; else (sections, None). The author's last words stay text;
    what comes after is no part of the novel."""
    late = [p for p in paras if p.start >= 0.9 * len(text)]
    # "The End" as the title under "Chapter 30" names the last chapter; it closes nothing
    under_a_number = {id(p) for before, p in zip(paras, paras[1:])
                      if before.kind == "heading" and before.heading_kind in ("number", "keyword")}
    ends = [p for p in late if _THE_END.fullmatch(text[p.start:p.end]) and id(p) not in under_a_number]
    ends = ends[-1:] or [p for p in late if _BACK_MATTER_HEADING.fullmatch(text[p.start:p.end])][:1]
    if not ends:
        return sections, None
    at = ends[-1].start
    words = word_count(text[ends[-1].end:])
    if not words or words > BACK_MATTER_MAX_WORDS or not any(s.start < at for s in sections):
        return sections, None
    kept = [Section(s.chapter, s.chapter_title, [p for p in s.paras if p.start < at], s.reason)
            for s in sections if s.start < at]
    return kept, (at, len(text.rstrip()), words)


def rebuild(body_slices, separators) -> str:
    """The body from its chunks and the text between them: sep0 + c1 + sep1 + ... + cN + sepN."""
    out = [separators[0]]
    for chunk, sep in zip(body_slices, separators[1:]):
        out += [chunk, sep]
    return "".join(out)


# --- chunks ---------------------------------------------------------------------

@dataclass
class PlannedChunk:
    start: int
    end: int
    chapter: int
    chapter_title: str
    reason: str           # why it starts where it does
    name: str = ""
    tokens: int = 0       # exact, as stage 1 counts the rendered example
    words: int = 0
    indent: int = 0       # the first paragraph's own indent (a tab, spaces) before `start`

    @property
    def text_start(self) -> int:
        """Where the chunk file's text starts: its first line as typed, indent and all
        (`start`, the first word, is where cuts and decisions are placed)."""
        return self.start - self.indent


_ROMAN = re.compile(r"m{0,4}(cm|cd|d?c{0,3})(xc|xl|l?x{0,3})(ix|iv|v?i{0,3})")


_CONTENTS = re.compile(r"(?:table of )?contents", re.IGNORECASE)
# A contents entry's page number after leader dots ("CHAPTER 1 ...... 19"), and after
# a wide space or a tab too under a "Contents" line ("Chapter  1" alone is a heading).
_ENTRY_PAGE = re.compile(r"\s*[.·…]{2,}\s*\d+$")
_LISTED_PAGE = re.compile(r"(?:\s*[.·…]{2,}\s*|\s{2,}|\t+)\d+$")


def _without_contents_list(text: str, heads: list) -> tuple[list, int, int | None]:
    """A run of headings that holds a contents list ("CONTENTS", its entries, then the
    first chapter's own heading): the chapter's heading alone, the entries' count and
    where the list starts. Entries with page numbers ("CHAPTER 1 ...... 19") are
    entries wherever they stand; after a "Contents" line, the list ends where its first
    entry comes again (as the chapter's heading), or, failing that, before the run's
    last heading."""
    lines = [_heading_words(text[q.start:q.end]).splitlines() for q in heads]
    paged = [bool(ls) and all(_ENTRY_PAGE.search(line.rstrip()) for line in ls) for ls in lines]
    entries = sum(len(ls) for ls, is_entry in zip(lines, paged) if is_entry)
    start = next((q.start for q, is_entry in zip(heads, paged) if is_entry), None)
    if all(paged):             # a label is never emptied
        return heads, 0, None
    heads = [q for q, is_entry in zip(heads, paged) if not is_entry]
    names = [_LISTED_PAGE.sub("", _heading_words(text[q.start:q.end])).strip().lower() for q in heads]
    at = next((i for i, name in enumerate(names) if _CONTENTS.fullmatch(name)), None)
    if at is None or at + 2 >= len(names):
        return heads, entries, start
    again = next((i for i in range(at + 2, len(names)) if names[i] == names[at + 1]), len(names) - 1)
    return heads[again:], entries + again - at - 1, heads[at].start


def _slug(text: str, words: int = 5) -> str:
    """A file name's words: the text's first words without articles, roman numerals, or
    the heading's word and number it opens with ("Chapter Five", "Stave 2: ...": the
    name has the chapter's); prose keeps its words ("the last chapter", "this letter,
    I") and a date its day (Dracula's diaries: dr_sewards_diary_20_september), a letter
    with an accent without it ("Café Renée": cafe_renee; "ø" and "ß" have none to take
    off, and go). '' when no word is left."""
    line = _heading_words(text)
    if heading := _KEYWORD_HEADING.match(line):   # "Chapter Twenty-One: ", "Book the First"
        text = line[heading.end():]
    text = "".join(c for c in unicodedata.normalize("NFD", text) if not unicodedata.combining(c))
    found = re.findall(r"[a-z0-9]+", FOOTNOTE_MARK.sub("", text.lower().replace("’", "").replace("'", "")))
    keep = [w for w in found if w not in {"the", "a", "an"} and not _ROMAN.fullmatch(w)]
    name = ""
    for w in keep[:words]:                      # whole words, up to 40 characters
        if len(name) + 1 + len(w) > 40:
            break
        name = f"{name}_{w}" if name else w
    return name or (keep[0][:40] if keep else "")


def chapters_of(structure: Structure):
    """{chapter number: [Section]} in book order (0: text before any chapter)."""
    out = {}
    for s in structure.sections:
        out.setdefault(s.chapter, []).append(s)
    return out


def _trimmed(text, x, y):
    """[x, y) without the whitespace around it and without a scene-break line at its
    end: the line stays between the chunks, in the manifest's separators."""
    seg = text[x:y]
    x += len(seg) - len(seg.lstrip())
    seg = text[x:y].rstrip()
    while "\n" in seg and is_scene_break(seg.rsplit("\n", 1)[1]):
        seg = seg[:seg.rfind("\n")].rstrip()
    return x, x + len(seg)


def plan_to_target(structure: Structure, counter, lengths, margin=MARGINS[0], **decisions):
    """(chunks, notes, seams, aimed): plan_chunks, its length cost aiming higher than
    lengths.target (up to MAX_AIM times, and lengths.maximum) while the chunks' median
    falls under MEDIAN_SHORT of it, in a book with headings or marks; `aimed` is the
    Lengths the plan used. Chapter headings and
    marks the lengths allow make chunks the cost cannot lengthen, so a cost aimed at
    the target itself also cuts every longer scene down to it: on the held-out
    corpus novels, marked, the median was 0.77 of the target and 72 chunks stood for
    the authors' 52 (bench_segmentation.py). `decisions`: plan_chunks' forced,
    forbidden and extra."""
    measure = Measure(counter, structure.text, margin=margin)
    # Without headings or marks every cut is the cost's own choice: nothing to make up for.
    marked = bool(structure.chapters) or structure.has_scene_breaks
    highest = min(MAX_AIM * lengths.target, lengths.maximum) if marked else lengths.target
    aimed, scored = lengths, {}
    for _ in range(AIM_PLANS):
        chunks, notes, seams = plan_chunks(structure, counter, aimed, margin=margin, scored=scored,
                                           measure=measure, **decisions)
        median = statistics.median(measure.tokens(c.start, c.end) for c in chunks)
        if median >= MEDIAN_SHORT * lengths.target or aimed.target >= highest:
            break
        aimed = replace(lengths, target=round(min(highest, aimed.target * lengths.target / median)))
    return chunks, notes, seams, aimed


def plan_chunks(structure: Structure, counter, lengths, punkt=None, margin=MARGINS[0],
                forced=(), forbidden=(), extra=(), scored=None, measure=None):
    """Chunks for the whole book: every chapter heading starts one; inside a
    chapter, `seams.cut_to_fit` chooses the cuts (scene-break marks first, seam
    model elsewhere, lengths near the target). `forced`, `forbidden` and `extra`
    are the writer's decisions as offsets in the body (`extra`: [Candidate] places
    that are not paragraph starts the model scores); `scored` ({} to fill) keeps
    each chapter's scored places for the next plan, `measure` the text's token
    counts (Measure with this margin). Returns (chunks, notes, seams):
    seams are the (Candidate, places considered, chapter span) of each cut, for the review."""
    text = structure.text
    scored = {} if scored is None else scored
    measure = measure or Measure(counter, text, margin=margin)
    lazy_punkt = punkt or (lambda: build_punkt([text])[0])
    chunks, notes, seams = [], [], []
    for chapter, sections in chapters_of(structure).items():
        a, b = sections[0].start, sections[-1].end
        piece = text[a:b]
        rel = lambda offsets: {o - a for o in offsets if a < o < b}  # noqa: E731
        marks = {s.start - a: s.reason.removeprefix("scene break: ") for s in sections[1:]}
        if chapter not in scored:
            scored[chapter] = candidates(piece, marks)
        cuts, places = cut_to_fit(
            piece, lambda x, y: measure.tokens(a + x, a + y), lengths, lazy_punkt, marks=marks,
            forced=rel(forced), forbidden=rel(forbidden),
            extra=[replace(c, offset=c.offset - a) for c in extra if a < c.offset < b],
            fix="raise sequence_len", where=f"chapter '{sections[0].chapter_title or 'opening'}': ",
            scored=scored[chapter])
        inside = sum(c.inside_paragraph for c in cuts)
        if inside:
            notes.append(f"LAST RESORT: {inside} cut(s) at a sentence end inside a paragraph longer "
                         f"than sequence_len ('{' '.join(piece.split()[:6])}...')")
        bounds = [0] + [c.offset for c in cuts] + [len(piece)]
        for n, (x, y) in enumerate(zip(bounds, bounds[1:])):
            start, end = _trimmed(text, a + x, a + y)
            reason = sections[0].reason if n == 0 else _cut_reason(cuts[n - 1])
            chunks.append(PlannedChunk(start, end, chapter, sections[0].chapter_title, reason,
                                       indent=indent_before(text, start)))
        seams += [(replace(c, offset=c.offset + a), [replace(p, offset=p.offset + a) for p in places],
                   (a, b)) for c in cuts]
        seams += [(replace(p, offset=p.offset + a), [replace(q, offset=q.offset + a) for q in places],
                   (a, b)) for p in places if p.mark and p not in cuts]
    return chunks, notes, seams


# A dateline under a chapter's title ("Dover, 1943", "14 March 1897"): the title names it.
_DATELINE = re.compile(r"(,\s*\d{3,4}|\b\d{1,2}(?:st|nd|rd|th)?\s+[A-Z][a-z]+,?\s+\d{4})\.?$")


def _naming_line(label: str) -> str:
    """The line of a heading label that names its chunk: the last ("BOOK ONE / CHAPTER
    I", the book's title above the first chapter's), or the one above a dateline."""
    lines = label.split(" / ") if label else [""]
    return lines[-2] if len(lines) > 1 and _DATELINE.search(lines[-1]) else lines[-1]


def chapter_numbers(chunks) -> dict:
    """Each chapter's number in the chunks' names: the writer's own ("Chapter 5", "V.",
    "FIVE" -> 5) where every numbered heading goes up through the book, an unnumbered
    chapter the one before's plus one, a prologue (or text before any heading) 0; so a
    short Chapter 4 taken for heading matter leaves Chapter 5 named ch05. Where numbers
    start again in each part, the chapters counted in order: the first chapter kept
    (whatever front matter came before it) ch01, or ch00 when it is a prologue."""
    titles = dict((c.chapter, c.chapter_title) for c in chunks)
    if not titles:
        return {}
    first = min(titles)
    # the text before any heading, or a prologue ("Chapter 1 / The Prelude" is chapter 1): 0
    opening = 0 if first == 0 or (_OPENING_PART.search(titles[first])
                                  and _writers_number(titles[first]) is None) else 1
    counted = {n: n - first + opening for n in titles}
    numbers, before = {}, opening - 1
    for n, title in sorted(titles.items()):
        own = _writers_number(title) if not (n == first and opening == 0) else 0
        numbers[n] = before = before + 1 if own is None else own
    increasing = all(b > a for a, b in zip(list(numbers.values()), list(numbers.values())[1:]))
    return numbers if increasing else counted


def _writers_number(title: str) -> int | None:
    """The chapter number a heading label says ("Book One / Chapter 5" -> 5, "IV. / The
    Eve" -> 4, "— 12 —" -> 12); None when none of its headings after a part's has one
    (a title alone, "Epilogue", "PART TWO": parts are not chapters)."""
    for heading in reversed(title.split(" / ")):   # "CHAPTER IV. / THE EVE OF THE WAR."
        line = _heading_words(heading)
        keyword = _KEYWORD_HEADING.match(line)
        if keyword and _is_part(keyword):
            return None
        if keyword or (keyword := re.match(rf"()({_ROMAN_CHAPTER}|\d{{1,3}})(?:[.:]|$)", line)):
            token = keyword.group(2)
            token = token.upper() if re.fullmatch(r"[ivxlcdm]+", token, re.IGNORECASE) else token
            try:
                return _number_value(token)
            except KeyError:    # "the first", "last": an ordinal names no number to keep
                return None
        if counted := counted_number(line):
            return counted[1]
    return None


def _cut_reason(cut) -> str:
    if cut.mark:
        return f"scene break: {cut.mark}"
    return "seam: " + "; ".join(cut.signals)


def name_chunks(chunks, structure: Structure) -> None:
    """chunk_NNN_<chapter>_<slug>.txt: the chapter's number and, for a chapter's
    first chunk, its title's words; otherwise the chunk's opening words."""
    width = max(3, len(str(len(chunks))))
    seen = set()
    numbers = chapter_numbers(chunks)
    for i, c in enumerate(chunks, 1):
        chapter = f"ch{numbers[c.chapter]:02d}_" if structure.chapters else ""
        title = _naming_line(c.chapter_title)
        first_of_chapter = c.chapter and c.chapter not in seen and title
        seen.add(c.chapter)
        # a title that is only "CHAPTER V" names nothing: the chunk's first words do
        slug = (first_of_chapter and _slug(title)) or _slug(structure.text[c.start:c.end]) or "untitled"
        c.name = f"chunk_{i:0{width}d}_{chapter}{slug}.txt"
