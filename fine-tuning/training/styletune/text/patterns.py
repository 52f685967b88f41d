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
# a text copied from it: "11)", "[11]", "(11)", "Page 11", and "11." or "— 11 —", which
# are also numbered chapter headings' shapes (is_page_number says which). Wider than
# PAGE_MARKER (which the chunker treats as part of the next paragraph): stages 0 and 1
# count these and warn; the chunks keep them, and PAGE_NUMBERS_COMMAND writes a copy of
# the manuscript without them.
_PAGE_NUMBER = r"\[\d{1,4}\]|\(\d{1,4}\)|\d{1,4}\)|(?:page|p\.)[ \t]*\d{1,4}"
_PAGE_OR_CHAPTER_NUMBER = r"\d{1,4}\."
PAGE_NUMBER_PARAGRAPH = re.compile(rf"^(?:{_PAGE_NUMBER}|{_PAGE_OR_CHAPTER_NUMBER})$", re.IGNORECASE)
# A number between dashes, a page's or a chapter's ("— 12 —", "— IV —"; the number as
# group 1, Roman numerals in capitals only).
DASHED_NUMBER = re.compile(r"[-–—][ \t]*([IVXLCDM]+|\d{1,4})[ \t]*[-–—]")
# A footnote mark in running text: "manoeuvres [9] of", "brought. [7]" (a transcriber's
# or an edition's; on a line of its own it is a page number, counted above).
FOOTNOTE_MARK = re.compile(r"\[\d{1,3}\]")
# What removes them, with the space before (or after, at a line's start) that goes too.
FOOTNOTE_MARKS_COMMAND = r"perl -pe 's/(?<=\S) \[\d{1,3}\]|\[\d{1,3}\] ?//g' IN > OUT"
# This many marks, or paragraphs only a page number, make a stage warn.
FOOTNOTE_MARKS_WARN = 3
PAGE_NUMBERS_WARN = 3
# UTF-8 read as Windows-1252 and saved again ("mojibake"): "â€”" for "—", "Ã©" for "é",
# "Â " for a no-break space. Two such marks make a stage warn.
DOUBLE_ENCODED = re.compile(r"â€|Ã[\u0080-\u00bf]|Â[\u00a0-\u00bf]")
DOUBLE_ENCODED_WARN = 2
# What undoes it: each character back to its Windows-1252 byte (the five bytes that
# code page leaves undefined were read as the control characters of their numbers, and
# go back as themselves: "”" holds one), read again as UTF-8. A byte-order mark the
# second save added goes; line ends stay as they are.
DOUBLE_ENCODED_COMMAND = ("python3 -c \"import sys; t = open(sys.argv[1], encoding='utf-8-sig', newline='').read(); "
                          "b = b''.join(bytes([ord(c)]) if ord(c) < 256 else c.encode('cp1252') for c in t); "
                          "b.decode('utf-8'); sys.stdout.buffer.write(b)\" IN > OUT")


# What writes a copy of a manuscript without its page numbers (text/paragraphs.py's
# without_page_numbers, which joins the sentences they split).
PAGE_NUMBERS_COMMAND = "python fine-tuning/training/0_segment_manuscript.py IN --without-page-numbers OUT"
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


def splits_a_sentence(before: str | None, after: str | None) -> bool:
    """A page number between these paragraphs (None: none) cuts a sentence in two: the
    last line before is prose (not a signature or a heading in capitals) and stops short
    (its last mark, closing quotes aside, a letter, a digit, a comma or a semicolon; not
    . ! ? … nor a dash or colon, which may end a paragraph), or a lower-case word goes on."""
    last = before.rstrip().rsplit("\n", 1)[-1] if before else ""
    end = re.sub(rf"{CLOSERS}+$", "", last)
    stops_short = bool(end) and (end[-1].isalnum() or end[-1] in ",;")
    return bool(after and is_prose(last) and (stops_short or after.lstrip()[:1].islower()))


def is_page_number(paragraph: str, before: str | None, after: str | None, dashed_pages: bool = False) -> bool:
    """A paragraph that is only a page number (PAGE_NUMBER_PARAGRAPH), given the
    paragraphs around it. "11." is also a numbered chapter's heading: a page number only
    where it splits a sentence with a lower-case word after it. "— 11 —" is one or the
    other through the whole text: `dashed_pages` (paragraphs.dashed_numbers_are_pages)."""
    shown = " ".join(paragraph.split())
    if DASHED_NUMBER.fullmatch(shown):
        return dashed_pages
    if not PAGE_NUMBER_PARAGRAPH.match(shown):
        return False
    return not re.fullmatch(_PAGE_OR_CHAPTER_NUMBER, shown) or sentence_goes_on(before, after)


def sentence_goes_on(before: str | None, after: str | None) -> bool:
    """Whether a number between these paragraphs can only be a page's: it splits a
    sentence, and a lower-case word goes on after it (a chapter starts with a capital)."""
    return splits_a_sentence(before, after) and after.lstrip()[:1].islower()


def page_numbers_advice(count: int, places: list[str]) -> str:
    """What to tell a writer whose text holds page numbers: the model learns them."""
    return (f"WARNING: {count} paragraphs are only a number, page numbers left from a printed "
            f"edition ({some_of(places)}); they stay in the chunks, often in the middle of a sentence, "
            "and the model would learn them. Write a copy without them (the sentences they split "
            f"joined again): {PAGE_NUMBERS_COMMAND}; compare OUT with IN (e.g. diff), then use OUT")


def is_scene_break(line: str) -> bool:
    return bool(SCENE_GLYPHS.match(line.strip()))


def blank_lines_mark(n: int) -> str:
    """A scene break made of `n` extra blank lines alone, as stage 0 names it."""
    return f"{n} blank line(s)"


def is_blank_lines_mark(mark: str) -> bool:
    """True for a scene break that is only blank lines (blank_lines_mark), no visible mark."""
    return bool(_BLANK_LINES_MARK.match(mark))


def double_encoded(text: str, start: int = 0, end: int | None = None) -> list[int]:
    """Offsets of the characters in text[start:end] garbled by a second encoding."""
    return [m.start() for m in DOUBLE_ENCODED.finditer(text, start, len(text) if end is None else end)]


def double_encoded_advice(count: int, places: list[str], word_file: bool = False) -> str:
    """What to tell a writer whose accents and quotes were garbled by a second encoding;
    for a .docx (a zip the command cannot read), by way of a plain-text copy."""
    how = (f"save the manuscript as plain text (.txt, UTF-8), restore that into a copy with "
           f"{DOUBLE_ENCODED_COMMAND}, and give stage 0 the copy" if word_file else
           f"restore them into a copy, e.g. {DOUBLE_ENCODED_COMMAND}, then rerun")
    return (f"WARNING: {count} garbled character(s) such as 'â€”' or 'Ã©' in the text ({some_of(places)}): "
            "UTF-8 text that was read as Windows-1252 and saved again, so the model would learn the "
            f"garble for your dashes, quotes and accents. To train on them as you typed them, {how} (the "
            "command stops with an error, at a position in the file, where some of the text was "
            "right: mend the garbled lines by hand there)")


def footnote_marks(text: str, start: int = 0, end: int | None = None) -> list[int]:
    """Offsets of the footnote marks in text[start:end] that sit inside a line of text."""
    found = []
    for m in FOOTNOTE_MARK.finditer(text, start, len(text) if end is None else end):
        line_start = text.rfind("\n", 0, m.start()) + 1
        line_end = text.find("\n", m.end()) % (len(text) + 1)
        if text[line_start:line_end].strip() != m.group():
            found.append(m.start())
    return found


# A comment in a Markdown file, <!-- ... -->: a note to oneself no reader sees.
COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
# What removes them: a comment that is a paragraph of its own goes with the break before
# it (no blank line left over to read as a scene break), one at a line's end with the
# space before it, the line break kept (no two paragraphs joined).
COMMENTS_COMMAND = (r"perl -0777 -pe 's/\n\n[ \t]*<!--.*?-->[ \t]*(?=\n)//gs; "
                    r"s/\n[ \t]*<!--.*?-->[ \t]*(?=\n)//gs; s/(?<=\S)[ \t]*<!--.*?-->|<!--.*?-->[ \t]*//gs' IN > OUT")


def comments(text: str, start: int = 0, end: int | None = None) -> list[int]:
    """Offsets of the <!-- ... --> comments within text[start:end]."""
    return [m.start() for m in COMMENT.finditer(text, start, len(text) if end is None else end)]


def comments_advice(count: int, places: list[str]) -> str:
    """What to tell a writer whose text holds Markdown comments: the model learns them."""
    return (f"WARNING: {count} comment(s) <!-- ... --> in the text ({some_of(places)}): notes to yourself, "
            "which no reader sees, but the model would learn to write them. Remove them, e.g. "
            f"{COMMENTS_COMMAND}, then rerun")


def some_of(places: list[str], shown: int = 3) -> str:
    """The first few of a list for a message: "a, b, c, ..."."""
    return ", ".join(places[:shown]) + (", ..." if len(places) > shown else "")


# Characters that print as nothing (or as a page break) and come from conversions, not
# from the writer's typing: the model would learn them as text. A no-break space is a
# typographer's choice and stays unremarked.
INVISIBLE = {"\f": "form feed (a PDF's page break)", "\u00ad": "soft hyphen",
             "\u200b": "zero-width space", "\ufeff": "byte-order mark inside the text",
             "\u2060": "word joiner"}
INVISIBLE_COMMAND = r"perl -CSD -pe 's/[\x{AD}\x{200B}\x{FEFF}\x{2060}\f]//g' IN > OUT"


def invisible_characters(text: str, start: int = 0, end: int | None = None) -> list[int]:
    """Offsets of INVISIBLE characters in text[start:end]."""
    return [i for i in range(start, len(text) if end is None else end) if text[i] in INVISIBLE]


def invisible_characters_advice(text_of: dict, word_file: bool = False) -> str | None:
    """A warning naming each kind found in {place: text} and the places, or None; for a
    .docx (a zip the command cannot edit), by way of a plain-text copy."""
    from collections import Counter
    found = {place: [INVISIBLE[text[i]] for i in invisible_characters(text)] for place, text in text_of.items()}
    kinds = Counter(kind for place in found.values() for kind in place)
    if not kinds:
        return None
    places = [place for place, kinds_there in found.items() if kinds_there]
    listing = ", ".join(f"{n} × {kind}" for kind, n in kinds.most_common())
    how = (f"save the manuscript as plain text (.txt, UTF-8), remove them from that with {INVISIBLE_COMMAND} "
           "(the words stay as they are), and give stage 0 the .txt" if word_file else
           f"remove them, e.g. {INVISIBLE_COMMAND} (the words stay as they are), then rerun")
    return (f"WARNING: invisible characters in the text ({listing}; {some_of(places)}), left by a "
            f"conversion (PDF, web page, word processor): the model would learn to write them. To "
            f"train on your words alone, {how}")


# A note in square brackets that is not the story, known by the word that opens it
# (Markdown's * or _ around it allowed): an edition's ("[Footnote: Or were virtually,
# then.]", "[Illustration: ...]", "[Ed.: ...]") or a writer's to self ("[TK]", "[TODO:
# the ferry's name]", "[check: 1910?]"). Words a story's brackets also open with (a
# sign's "[Check one box]", "[Cut to: the ship]") count only with a colon or the
# closing bracket straight after. A Markdown footnote counts too, its mark "[^1]" and
# its text "[^1]: ..." alike. The opening alone is matched, so a note left
# unclosed, or holding brackets, is found too. The seven novels' prose has none; their
# editions' notes are all found. (\x27 is the apostrophe: the perl command below is
# in single quotes.)
_NOTE_WORDS = ("foot-?notes?", "side-?notes?", "illustrations?", "transcriber", "editor", "translator",
               "author(?:\\x27|’)s note", "todo", "to do", "fixme", "xxx", "tbd", "tk(?:tk)?")
_NOTE_VERBS = ("notes?", "check", "fix", "research", "insert", "add", "cut")
_NOTE_OPENING = (rf"\[(?:\^[\w-]+\]|[ \t*_]*(?:(?:{'|'.join(_NOTE_WORDS)})(?![\w-])|ed\."
                 rf"|(?:{'|'.join(_NOTE_VERBS)})[ \t*_]*[:\]]))")
BRACKETED_NOTE = re.compile(_NOTE_OPENING, re.IGNORECASE)
# What lists the lines they open on, numbered (perl: on Linux and macOS alike).
BRACKETED_NOTES_COMMAND = f"perl -ne 'print \"$.: $_\" if /{_NOTE_OPENING}/i' IN"


def bracketed_notes(text: str, start: int = 0, end: int | None = None) -> list[int]:
    """Offsets of the bracketed notes' openings within text[start:end]."""
    return [m.start() for m in BRACKETED_NOTE.finditer(text, start, len(text) if end is None else end)]


def bracketed_notes_advice(count: int, places: list[str], word_file: bool = False) -> str:
    """What to tell a writer whose text holds bracketed notes: the model learns them.
    No command can write the passage a note stands for; for a .docx, Word's own search
    finds them."""
    how = ("find them with Word's search for '['" if word_file else
           f"list them: {BRACKETED_NOTES_COMMAND}")
    return (f"WARNING: {count} bracketed note(s) such as '[Footnote: ...]' or '[TK: ...]' in the text "
            f"({some_of(places)}): an edition's notes or notes to yourself, not the story, and the model "
            f"would learn to write them. Delete each, or write the passage it stands for ({how}), then rerun")


def footnote_marks_advice(count: int, places: list[str]) -> str:
    """What to tell a writer whose text holds footnote marks: the model learns them."""
    return (f"WARNING: {count} footnote mark(s) such as '[12]' in the text ({some_of(places)}): the model "
            "would learn to write them. If they are not part of your prose, remove them, e.g. "
            f"{FOOTNOTE_MARKS_COMMAND}, then rerun")
