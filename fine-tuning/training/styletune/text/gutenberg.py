"""Project Gutenberg's header and licence, taken off a public-domain book (stage 0
does it for a manuscript downloaded from Gutenberg)."""
import re

_START = re.compile(r"^\*\*\* ?START OF (THE|THIS) PROJECT GUTENBERG.*$", re.MULTILINE)
_END = re.compile(r"^\*\*\* ?END OF (THE|THIS) PROJECT GUTENBERG.*$", re.MULTILINE)


def gutenberg_body(text: str) -> tuple[str, bool]:
    """The book without Project Gutenberg's header and licence; (text, whether stripped)."""
    start, end = _START.search(text), _END.search(text)
    if not start or not end:
        return text, False
    return text[start.end():end.start()], True
