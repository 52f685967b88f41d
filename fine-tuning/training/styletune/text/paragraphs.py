"""Paragraphs of a manuscript or chunk, in the two layouts writers use: one
paragraph per line, or blocks between blank lines (hard-wrapped by hand, as in
Project Gutenberg files, or not)."""
import re

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
