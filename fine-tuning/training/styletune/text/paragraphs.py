"""Paragraphs of a manuscript or chunk, in the two layouts writers use: one
paragraph per line, or blocks between blank lines (hard-wrapped by hand, as in
Project Gutenberg files, or not)."""
import re

from styletune.text.patterns import is_page_number, is_prose

_LINE_ENDS_SENTENCE = re.compile(r"[.!?…:;\-—–'\"’”)\]*_]\s*$")


def is_hard_wrapped(text: str) -> bool:
    """True when blank-line blocks are paragraphs whose lines were wrapped by hand
    (Project Gutenberg, typewriter-era files): most lines inside a block then stop
    mid-sentence, while in one-paragraph-per-line text they end a paragraph."""
    inner = [line for block in text.split("\n\n") for line in block.strip().split("\n")[:-1]]
    if not inner:
        return False
    ended = sum(bool(_LINE_ENDS_SENTENCE.search(line)) for line in inner)
    return ended < 0.5 * len(inner)


def wrapped_by_hand(text: str) -> bool:
    """Hard-wrapped, and most of its prose paragraphs (20 words or more, mostly lower
    case) run over several lines: a warning's test. is_hard_wrapped alone is also true
    of text whose paragraphs are single lines but whose contents list is wrapped."""
    if not is_hard_wrapped(text):
        return False
    prose = [b for b in re.split(r"\n[ \t\r]*\n", text.strip()) if len(b.split()) >= 20 and is_prose(b)]
    return bool(prose) and sum("\n" in b.strip() for b in prose) >= 0.5 * len(prose)


def hard_wrap_advice(what: str) -> str:
    """What to tell a writer whose text breaks lines inside its paragraphs: every
    character is kept as typed, so the model learns those breaks too."""
    return (f"{what} wrapped by hand (line breaks inside paragraphs, as in Project Gutenberg "
            "files): the training text keeps every break as typed, so the model "
            "will learn to break lines mid-paragraph. If you do not write so in your editor, join "
            "each paragraph's lines into one, e.g. perl -0777 -pe 's/(?<=\\S)\\r?\\n(?=\\S)/ /g' "
            "IN > OUT (blank lines stay), then rerun")


def paragraph_spans(text: str):
    """(start, end) of each paragraph: every non-blank line, unless the text is
    hard-wrapped, when a paragraph is a block between blank lines. A blank line in
    one-paragraph-per-line text (a scene break) is just an empty line."""
    sep = "\n\n" if is_hard_wrapped(text) else "\n"
    spans, pos = [], 0
    for part in text.split(sep):
        if part.strip():
            lead = len(part) - len(part.lstrip())
            spans.append((pos + lead, pos + len(part.rstrip())))
        pos += len(part) + len(sep)
    return spans


def page_number_paragraphs(text: str) -> list[int]:
    """Starts of the paragraphs that are only a page number ("11)", "[11]"; "11." where
    it splits a sentence), as a chunk file keeps them from a printed edition."""
    spans = paragraph_spans(text)
    return [a for prev, (a, b) in zip([None] + spans, spans)
            if is_page_number(text[a:b], text[prev[0]:prev[1]] if prev and is_prose(text[prev[0]:prev[1]]) else None)]
