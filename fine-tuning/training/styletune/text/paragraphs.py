"""Paragraphs of a manuscript or chunk, in the layouts writers use: one paragraph
per line, blocks between blank lines (hard-wrapped by hand, as in Project Gutenberg
files, or not), or hard-wrapped lines with no blank line between paragraphs, each
opening with an indent (print's layout, as a copy from a PDF keeps it)."""
import re

from styletune.text.patterns import (
    DASHED_NUMBER,
    is_page_number,
    is_prose,
    is_scene_break,
    sentence_goes_on,
    splits_a_sentence,
    word_count,
)

_LINE_ENDS_SENTENCE = re.compile(r"[.!?…:;\-—–'\"’”)\]*_]\s*$")
# Where a paragraph ends, by layout (layout()): a line break; a blank line; a blank
# line or a line break before an indented line.
_SEPARATORS = {"lines": "\n", "blocks": "\n\n", "indented": r"\n\n|\n(?=[ \t]+\S)"}


def layout(text: str) -> str:
    """How the text marks its paragraphs: "indented" (print's layout: hard-wrapped lines,
    each paragraph opening with an indent, no blank line between: indents_open_paragraphs),
    "blocks" (blank lines between paragraphs whose lines were wrapped by hand: Project
    Gutenberg, typewriter-era files; most lines inside a block stop mid-sentence), or
    "lines" (one paragraph a line, with or without blank lines between)."""
    if indents_open_paragraphs(text):
        return "indented"
    inner = [line for block in text.split("\n\n") for line in block.strip().split("\n")[:-1]]
    ended = sum(bool(_LINE_ENDS_SENTENCE.search(line)) for line in inner)
    return "blocks" if inner and ended < 0.5 * len(inner) else "lines"


def is_hard_wrapped(text: str) -> bool:
    """True when line breaks fall inside paragraphs (layout "blocks" or "indented")."""
    return layout(text) != "lines"


def indents_open_paragraphs(text: str) -> bool:
    """Whether an indent, not a blank line, tells the paragraphs apart: inside the
    blank-line blocks, the lines that open with an indent (three at least, one in 50 of
    the inner lines) follow a line that ends a sentence, as a paragraph's last line does
    (four in five of them; an indented line of verse follows any line), and the lines
    that open without one mostly follow a line that stops mid-sentence (the wrap)."""
    indented, plain = [], []
    for block in text.split("\n\n"):
        lines = block.strip("\n").split("\n")
        for before, line in zip(lines, lines[1:]):
            if line.strip():
                (indented if line[:1] in " \t" else plain).append(bool(_LINE_ENDS_SENTENCE.search(before)))
    inner = len(indented) + len(plain)
    return (len(indented) >= 3 and len(indented) >= inner / 50 and sum(indented) >= 0.8 * len(indented)
            and len(plain) >= 3 and sum(plain) < 0.5 * len(plain))


def wrapped_by_hand(text: str) -> bool:
    """Hard-wrapped, and most of its prose paragraphs (20 words or more, mostly lower
    case) run over several lines: a warning's test. is_hard_wrapped alone is also true
    of text whose paragraphs are single lines but whose contents list is wrapped."""
    if not is_hard_wrapped(text):
        return False
    prose = [b for b in re.split(r"\n[ \t\r]*\n", text.strip()) if len(b.split()) >= 20 and is_prose(b)]
    return bool(prose) and sum("\n" in b.strip() for b in prose) >= 0.5 * len(prose)


def hard_wrap_advice(what: str, manuscript: str = "") -> str:
    """What to tell a writer whose text breaks lines inside its paragraphs: every
    character is kept as typed, so the model learns those breaks too. `manuscript`:
    the file stage 0 cut the chunks from, joined once instead of every chunk."""
    once = (f"; these chunks are stage 0's cut of {manuscript}: join that file's lines once (it is IN) "
            "and cut the joined copy again with 0_segment_manuscript.py --force" if manuscript else "")
    return (f"{what} wrapped by hand (line breaks inside paragraphs, as in Project Gutenberg "
            "files): the training text keeps every break as typed, so the model "
            "will learn to break lines mid-paragraph. If you do not write so in your editor, join "
            "each paragraph's lines into one, e.g. perl -0777 -pe 's/(?<=\\S)[ \\t]*\\r?\\n(?=\\S)/ /g' "
            f"IN > OUT (blank lines stay, and so does a line break before an indented line){once}, then rerun")


def whitespace_kind(space: str, text_layout: str) -> str:
    """What a run of whitespace between two words is to the writer, in text of this
    layout(): "a paragraph break" (a blank line; any line break where a paragraph is a
    line; one before an indent in print's layout; an indent after it included), "a line
    break" (inside a paragraph of wrapped text), "a space" (spaces or tabs alone); ""
    for none."""
    if "\n\n" in space or ("\n" in space and (text_layout == "lines" or (
            text_layout == "indented" and not space.endswith("\n")))):
        return "a paragraph break"
    return "a line break" if "\n" in space else "a space" if space else ""


def indent_before(text: str, at: int) -> int:
    """How many whitespace characters stand between the start of `at`'s line and `at`
    (0 where a word comes first): a paragraph's own indent, which goes with it when it
    opens a chunk or a part, as typed. Spaces and tabs, and the no-break spaces a word
    processor's export may indent with or the full-width space of Japanese prose."""
    line = text.rfind("\n", 0, at) + 1
    return at - line if not text[line:at].strip() else 0


def paragraph_spans(text: str):
    """(start, end) of each paragraph, by the text's layout(): every non-blank line; a
    block between blank lines; or, in print's layout, also a run of lines up to the next
    indented one. A blank line in one-paragraph-per-line text (a scene break) is just an
    empty line."""
    kind = layout(text)
    spans, pos = [], 0
    for m in [*re.finditer(_SEPARATORS[kind], text), None]:
        part = text[pos:m.start() if m else len(text)]
        if part.strip():
            lead = len(part) - len(part.lstrip())
            spans += _scene_break_apart(text, pos + lead, pos + len(part.rstrip()), kind)
        pos = m.end() if m else len(text)
    return spans


def _scene_break_apart(text: str, a: int, b: int, kind: str) -> list:
    """In print's layout the paragraph after a centred "* * *" opens with no indent, so
    the mark and that paragraph come as one block: two paragraphs."""
    nl = text.find("\n", a, b)
    if kind != "indented" or nl == -1 or not is_scene_break(text[a:nl]):
        return [(a, b)]
    rest = text[nl + 1:b]
    return [(a, a + len(text[a:nl].rstrip())), (nl + 1 + len(rest) - len(rest.lstrip()), b)]


# Chapters run longer than this many words a number; a printed page holds fewer.
PAGE_WORDS = 450


def dashed_numbers_are_pages(text: str, spans) -> bool:
    """Whether the text's "— 12 —" paragraphs number printed pages (not chapters): one
    splits a sentence, a lower-case word going on after it, or there is one for fewer
    than PAGE_WORDS words of text."""
    at = [i for i, (a, b) in enumerate(spans) if DASHED_NUMBER.fullmatch(" ".join(text[a:b].split()))]
    splits = any(0 < i < len(spans) - 1 and sentence_goes_on(text[slice(*spans[i - 1])], text[slice(*spans[i + 1])])
                 for i in at)
    return bool(at) and (splits or word_count(text) < PAGE_WORDS * len(at))


def _page_number_runs(text: str, spans) -> list[tuple[int, int]]:
    """(first, last + 1) indices into spans of each run of page-number paragraphs, judged
    with the paragraphs around the run (a run of several numbers is one break)."""
    runs, i, dashed = [], 0, dashed_numbers_are_pages(text, spans)
    while i < len(spans):
        j = i
        before = text[slice(*spans[i - 1])] if i else None
        while j < len(spans) and is_page_number(text[slice(*spans[j])], before,
                                                text[slice(*spans[j + 1])] if j + 1 < len(spans) else None,
                                                dashed):
            j += 1
        if j > i:
            runs.append((i, j))
        i = max(j, i + 1)
    return runs


def page_number_paragraphs(text: str) -> list[int]:
    """Starts of the paragraphs that are only a page number ("11)", "[11]"; "11." where
    it splits a sentence), as a text copied from a printed edition keeps them."""
    spans = paragraph_spans(text)
    return [spans[k][0] for i, j in _page_number_runs(text, spans) for k in range(i, j)]


def without_page_numbers(text: str) -> tuple[str, int, int, list[str]]:
    """`text` ("\n" line ends) less its page-number paragraphs, every other character as
    it was. Where a run of them splits a sentence (patterns.splits_a_sentence) the halves
    join with a space (none after a hyphen); elsewhere the longer of the breaks around
    the run stays (a scene break of blank lines survives), before the next paragraph's
    own indent. Returns
    (text, numbers removed, sentences joined, the words joined at a hyphen: "some-thing",
    most often a printer's, for the writer to look at)."""
    spans = paragraph_spans(text)
    out, pos, removed, joined, hyphenated = [], 0, 0, 0, []
    for i, j in _page_number_runs(text, spans):
        before_end = spans[i - 1][1] if i else 0
        after_start = spans[j][0] if j < len(spans) else len(text)
        gap_before, gap_after = text[before_end:spans[i][0]], text[spans[j - 1][1]:after_start]
        if i and j < len(spans) and splits_a_sentence(text[slice(*spans[i - 1])], text[slice(*spans[j])]):
            # a word hyphenated over the page stays as printed, hyphen and all: "some-thing"
            gap, joined = "" if text[spans[i - 1][1] - 1] == "-" else " ", joined + 1
            if not gap:
                hyphenated.append(text[spans[i - 1][0]:spans[i - 1][1]].split()[-1]
                                  + text[slice(*spans[j])].split()[0])
        elif not i:                      # at the start: nothing before the first paragraph
            gap = gap_after[gap_after.rfind("\n") + 1:]
        elif j == len(spans):            # at the end: the line end of the last paragraph
            gap = "\n" if gap_after.endswith("\n") or gap_before.endswith("\n") else ""
        else:
            breaks = max(gap_before, gap_after, key=lambda g: g.count("\n"))
            gap = breaks[:breaks.rfind("\n") + 1] + gap_after[gap_after.rfind("\n") + 1:]
        out += [text[pos:before_end], gap]
        pos, removed = after_start, removed + j - i
    return "".join(out) + text[pos:], removed, joined, hyphenated
