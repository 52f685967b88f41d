"""The shapes of a manuscript's text that every stage reads the same way: what may
close a sentence, a page-number line, a scene-break line. Stage 0 (data/manuscript),
the seam scorer and splitter (data/seams), stage 1's cuts (text/sentences) and the
style metrics (eval/stylometry) all take them from here, so they cannot drift apart."""
import re

# What may follow a sentence's final . ! ? …: closing quotes and brackets, and the
# * or _ that close an italic or bold span in Markdown.
CLOSERS = r"['\"’”)\]*_]"
# Text (stripped) that ends on a sentence end: "cold." / "Stop!”" / "_Finis._"
ENDS_SENTENCE = re.compile(rf"[.!?…]{CLOSERS}*$")
# The same end with its whole run of marks captured ("?!", "..."), for the guards
# that ask whether the word before it is a title or an abbreviation.
FINAL_PUNCTUATION = re.compile(rf"([.!?…]+){CLOSERS}*$")
# A word, for the word counts the reports show: letters and digits with inner
# apostrophes ("didn’t" is one word; "time—and" is two).
WORD = re.compile(r"[\w’']+")
# A line that is only a page number: "12)", "[12]".
PAGE_MARKER = re.compile(r"^\[?\d{1,4}[)\]]$")
# A paragraph that is only a number, as a printed edition's page numbers are left in
# a text copied from it: "11)", "[11]", "(11)", "- 11 -", "Page 11", and "11.", which is
# also a numbered chapter heading's shape. Wider than PAGE_MARKER (which the chunker
# treats as part of the next paragraph): stage 0 only counts these and warns, with a
# command that removes them (PAGE_NUMBERS_COMMAND); it never removes the author's text.
_PAGE_NUMBER = r"\[\d{1,4}\]|\(\d{1,4}\)|\d{1,4}\)|[-–—][ \t]*\d{1,4}[ \t]*[-–—]|(?:page|p\.)[ \t]*\d{1,4}"
_PAGE_OR_CHAPTER_NUMBER = r"\d{1,4}\."
PAGE_NUMBER_PARAGRAPH = re.compile(rf"^(?:{_PAGE_NUMBER}|{_PAGE_OR_CHAPTER_NUMBER})$", re.IGNORECASE)
# A footnote mark in running text: "manoeuvres [9] of", "brought. [7]" (a transcriber's
# or an edition's; on a line of its own it is a page number, counted above).
FOOTNOTE_MARK = re.compile(r"\[\d{1,3}\]")
# What removes them, with the space before (or after, at a line's start) that goes too.
FOOTNOTE_MARKS_COMMAND = r"perl -pe 's/(?<=\S) \[\d{1,3}\]|\[\d{1,3}\] ?//g' IN > OUT"
# This many marks, or paragraphs only a page number, make a stage warn.
FOOTNOTE_MARKS_WARN = 3
PAGE_NUMBERS_WARN = 3


def _page_numbers_command() -> str:
    """A command that removes the page-number lines from a copy of the manuscript. Where
    one splits a sentence (a lower-case word goes on after it, or a comma or semicolon
    stops before it) the two halves join with a space; elsewhere the number's line goes
    and the longer of the blank runs around it stays (a scene break of blank lines
    survives). "11." goes only where it splits a sentence: elsewhere it may be a chapter."""
    script = "; ".join([
        r"$g = qr/[ \t]*\r?\n(?:[ \t]*\r?\n)*[ \t]*/",     # a line's end, blank lines, the next indent
        rf"$n = qr/(?i:{_PAGE_NUMBER})/",
        rf"$m = qr/$n|{_PAGE_OR_CHAPTER_NUMBER}/",
        r"s/(?<=\S)$g$m$g(?=\p{Ll})/ /g",
        r"s/(?<=[,;])$g$m$g(?=\S)/ /g",
        r's/\n((?:[ \t]*\r?\n)*)[ \t]*$n[ \t]*\r?\n((?:[ \t]*\r?\n)*)/"\n" . (length $1 < length $2 ? $2 : $1)/ge'])
    return f"perl -CSD -Mutf8 -0777 -pe '{script}' IN > OUT"


PAGE_NUMBERS_COMMAND = _page_numbers_command()
# A scene-break line: one to seven groups of up to three marks, no letters or
# digits ("* * *", "#", "~", "§", "***", "— — —").
SCENE_GLYPHS = re.compile(r"^[^\w\s]{1,3}(\s*[^\w\s]{1,3}){0,6}$")
# The name of a scene break that is only a run of extra blank lines, no visible mark:
# "2 blank line(s)". Stage 0 cuts there, but lists the cut in its review (a guess).
_BLANK_LINES_MARK = re.compile(r"^\d+ blank line")


def word_count(text: str) -> int:
    return len(WORD.findall(text))


def is_prose(text: str) -> bool:
    """Mostly lower-case letters: running text, not a heading or a title in capitals."""
    letters = [c for c in text if c.isalpha()]
    return bool(letters) and sum(c.islower() for c in letters) >= 0.5 * len(letters)


def is_page_marker(line: str) -> bool:
    return bool(PAGE_MARKER.match(line.strip()))


def is_page_number(paragraph: str, before: str | None) -> bool:
    """A paragraph that is only a page number (PAGE_NUMBER_PARAGRAPH), given the prose
    paragraph before it (None where there is none). "11." is also a numbered chapter's
    heading: a page number only where it splits a sentence, the one before stopping short."""
    shown = " ".join(paragraph.split())
    if not PAGE_NUMBER_PARAGRAPH.match(shown):
        return False
    return not re.fullmatch(_PAGE_OR_CHAPTER_NUMBER, shown) or (
        before is not None and not ENDS_SENTENCE.search(before.rstrip()))


def page_numbers_advice(count: int, places: list[str]) -> str:
    """What to tell a writer whose text holds page numbers: the model learns them."""
    return (f"WARNING: {count} paragraphs are only a number, page numbers left from a printed "
            f"edition ({some_of(places)}); they stay in the chunks, often in the middle of a sentence, "
            "and the model would learn them. Remove them from the manuscript (or chunk file), e.g. "
            f"with {PAGE_NUMBERS_COMMAND} (it joins the halves of a sentence a number split; compare "
            "OUT with IN), then rerun on OUT")


def is_scene_break(line: str) -> bool:
    return bool(SCENE_GLYPHS.match(line.strip()))


def blank_lines_mark(n: int) -> str:
    """A scene break made of `n` extra blank lines alone, as stage 0 names it."""
    return f"{n} blank line(s)"


def is_blank_lines_mark(mark: str) -> bool:
    """True for a scene break that is only blank lines (blank_lines_mark), no visible mark."""
    return bool(_BLANK_LINES_MARK.match(mark))


def footnote_marks(text: str, start: int = 0, end: int | None = None) -> list[int]:
    """Offsets of the footnote marks in text[start:end] that sit inside a line of text."""
    found = []
    for m in FOOTNOTE_MARK.finditer(text, start, len(text) if end is None else end):
        line_start = text.rfind("\n", 0, m.start()) + 1
        line_end = text.find("\n", m.end()) % (len(text) + 1)
        if text[line_start:line_end].strip() != m.group():
            found.append(m.start())
    return found


def some_of(places: list[str], shown: int = 3) -> str:
    """The first few of a list for a message: "a, b, c, ..."."""
    return ", ".join(places[:shown]) + (", ..." if len(places) > shown else "")


def footnote_marks_advice(count: int, places: list[str]) -> str:
    """What to tell a writer whose text holds footnote marks: the model learns them."""
    return (f"WARNING: {count} footnote mark(s) such as '[12]' in the text ({some_of(places)}): the model "
            "would learn to write them. If they are not part of your prose, remove them, e.g. "
            f"{FOOTNOTE_MARKS_COMMAND}, then rerun")
