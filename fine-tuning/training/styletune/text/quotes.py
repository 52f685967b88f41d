"""Quotation marks: which text is inside a quotation.

Two readings, for two uses, both here so that they are kept side by side:
- `quote_depths` / `depth_at` (stage 1's and the splitter's cuts): how many
  quotations are open at an offset. Deliberately suspicious: every style is tracked
  at once and a stray apostrophe can only forbid a cut, never allow one inside a
  speech (a cut inside a speech teaches the model to stop mid-speech).
- `quoted_spans` (the stylometry's dialogue share, quote-mark rate and quotation
  style, `opening_styles`): the spans
  inside quotation marks, single quotes told apart from apostrophes by context
  (elisions such as 'tis, a plural possessive such as the Smiths’), since a
  share of words must not count every apostrophe as a quotation.
Both start every paragraph with no quotation open.
"""
import bisect
import re

from styletune.text.paragraphs import paragraph_spans

_QUOTE_EVENTS = (
    re.compile(r"(“)|(”)"),
    # single quotes: an opening mark starts the paragraph or follows a space or
    # dash; a closing mark ends a word and is followed by a space, punctuation, a
    # dash (Gutenberg's "--": 'upon liking'--a phrase; not one hyphen, as in
    # jack-o'-lantern) or a double quote (so the apostrophe in "don’t" is neither)
    re.compile(r"((?:^|(?<=[\s(—–-]))[‘'](?=\S))|((?<=\S)[’'](?=$|[\s,.;:!?—–)\"”]|--))"),
)


def quote_depths(paragraph: str):
    """(positions, depths): how many quotations are open after each quote mark.

    Every style is tracked at once (curly, straight and single quotes), since a
    book may nest one in another; a stray apostrophe can only forbid a cut, never
    allow one inside a speech. Each paragraph starts with none open.
    """
    events = [(m.end(), "straight", 1) for m in re.finditer('"', paragraph)]
    for name, pattern in zip(("curly", "single"), _QUOTE_EVENTS):
        events += [(m.end(), name, 1 if m.group(1) else -1) for m in pattern.finditer(paragraph)]
    levels = {"straight": 0, "curly": 0, "single": 0}
    positions, depths = [], []
    for pos, name, delta in sorted(events):
        if name == "straight":
            levels[name] ^= 1
        else:
            levels[name] = max(0, levels[name] + delta)
        positions.append(pos)
        depths.append(sum(levels.values()))
    return positions, depths


def depth_at(quotes, offset: int) -> int:
    positions, depths = quotes
    i = bisect.bisect_right(positions, offset)
    return depths[i - 1] if i else 0


# Words that begin with an elision apostrophe in fiction ('tis, 'em): such a mark
# is not an opening quote.
ELISIONS = {"tis", "twas", "twere", "twill", "twould", "em", "un", "cause", "ere", "ave", "im",
            "er", "ow", "appen", "arf", "bout", "n", "round", "til", "till", "nough", "pon", "s"}
_DEFINITE_CLOSER_BEFORE = set(".,!?;:—–-…")
_OPENER_BEFORE = set("([{—–-\"“”")


def _double_quote_spans(paragraph: str) -> tuple[list[tuple[int, int]], int]:
    """Spans inside “ ” or straight " (alternating); one left open runs to the paragraph
    end (a speech continued in the next paragraph). Returns (spans, marks used)."""
    spans, marks, open_at = [], 0, None
    for i, ch in enumerate(paragraph):
        if ch == "“" or (ch == '"' and open_at is None):
            if open_at is None:
                open_at, marks = i, marks + 1
        elif ch in '”"' and open_at is not None:
            spans.append((open_at, i + 1))
            open_at, marks = None, marks + 1
    if open_at is not None:
        spans.append((open_at, len(paragraph)))
    return spans, marks


def _single_quote_marks(paragraph: str) -> list[tuple[int, str]]:
    """(position, 'open' | 'close' | 'close?') for single quote marks that may be quotes.

    Between two letters (don’t, o’clock) is an apostrophe. An opener follows a space
    or dash and precedes a non-space, and does not start an elision ('tis). A closer
    follows a non-space and precedes a space or punctuation: after punctuation it is
    certain ('close'), after a letter it may be a plural possessive ('close?': the
    Smiths’ dog)."""
    marks = []
    for i, ch in enumerate(paragraph):
        if ch not in "‘’'":
            continue
        before = paragraph[i - 1] if i else " "
        after = paragraph[i + 1] if i + 1 < len(paragraph) else " "
        if before.isalnum() and after.isalnum():
            continue
        if (before.isspace() or before in _OPENER_BEFORE) and not after.isspace():
            following = re.match(r"[^\W_]+", paragraph[i + 1:])
            if ch != "’" and not (following and following.group().lower() in ELISIONS):
                marks.append((i, "open"))
        elif not before.isspace() and (after.isspace() or not after.isalnum()) and ch != "‘":
            marks.append((i, "close" if before in _DEFINITE_CLOSER_BEFORE else "close?"))
    return marks


def _single_quote_spans(paragraph: str) -> tuple[list[tuple[int, int]], int]:
    """Pair single-quote openers with closers. An uncertain closer ('close?') closes
    only when no certain closer follows before the next opener; otherwise it is an
    apostrophe (‘the Smiths’ dog,’ she said)."""
    marks = _single_quote_marks(paragraph)
    spans, used, open_at = [], 0, None
    for k, (pos, kind) in enumerate(marks):
        if kind == "open":
            if open_at is None:
                open_at, used = pos, used + 1
            continue
        if open_at is None:
            continue
        if kind == "close?" and _certain_closer_follows(marks, k):
            continue
        spans.append((open_at, pos + 1))
        open_at, used = None, used + 1
    if open_at is not None:
        spans.append((open_at, len(paragraph)))
    return spans, used


def _certain_closer_follows(marks, k: int) -> bool:
    for _, kind in marks[k + 1:]:
        if kind == "open":
            return False
        if kind == "close":
            return True
    return False


def quoted_spans(text: str) -> tuple[list[tuple[int, int]], int]:
    """(spans of text inside quotation marks, number of quote marks used), paragraph by
    paragraph: double quotes (curly or straight) and single quotes told apart from
    apostrophes (see _single_quote_marks); a quotation left open ends with its paragraph."""
    spans, marks = [], 0
    for a, b in paragraph_spans(text):
        for finder in (_double_quote_spans, _single_quote_spans):
            found, used = finder(text[a:b])
            spans += [(a + s, a + e) for s, e in found]
            marks += used
    return sorted(spans), marks


def merged_spans(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The union of spans (a single-quoted span inside a double-quoted one) as disjoint spans."""
    merged = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


# The mark a quotation opens with, named as a writer would.
QUOTATION_STYLES = {"“": "curly double", '"': "straight double", "‘": "curly single", "'": "straight single"}


def opening_styles(text: str, outermost: bool = False) -> dict:
    """How many quotations open with each style of mark (QUOTATION_STYLES), found as
    quoted_spans finds them (a single quote told apart from an apostrophe); with
    `outermost`, a quotation inside another is not counted."""
    counts = dict.fromkeys(QUOTATION_STYLES.values(), 0)
    for a, b in paragraph_spans(text):
        double, single = _double_quote_spans(text[a:b])[0], _single_quote_spans(text[a:b])[0]
        if outermost:
            single = [(s, e) for s, e in single if not any(ds < s < de for ds, de in double)]
            double = [(s, e) for s, e in double if not any(ss < s < se for ss, se in single)]
        for start, _ in double + single:
            counts[QUOTATION_STYLES[text[a + start]]] += 1
    return counts


# A chunk's own style counts against the book's from this many quotations in it, where
# it opens this share of them (a dialect's elisions, 'ead and 'arf, pass for straight
# single quotations now and then: Dracula's Cockney chapter reads 38 of 74).
MIXED_STYLE_MIN_QUOTATIONS = 3
MIXED_STYLE_SHARE = 0.75


def mixed_styles_advice(text_of: dict) -> str | None:
    """A warning naming the places ({place: text}) whose quotations mostly open with
    another mark than the book's (a chapter typed with straight quotes in a book of
    curly ones), or None: the model would learn both marks."""
    from collections import Counter
    counts = {place: Counter(opening_styles(text, outermost=True)) for place, text in text_of.items()}
    book = sum(counts.values(), Counter())
    if not book:
        return None
    style, n = book.most_common(1)[0]
    mark = {name: m for m, name in QUOTATION_STYLES.items()}
    odd = []
    for place, here in counts.items():
        own, k = here.most_common(1)[0] if here else (style, 0)
        if sum(here.values()) >= MIXED_STYLE_MIN_QUOTATIONS and own != style and k >= MIXED_STYLE_SHARE * sum(here.values()):
            odd.append(f"{place} ({mark[own]} {own}, {k} of {sum(here.values())})")
    if not odd:
        return None
    return (f"WARNING: quotation marks differ from place to place: most of the book's quotations open "
            f"with {mark[style]} ({style}, {n} of {sum(book.values())}), but {len(odd)} place(s) mostly "
            f"with another: {', '.join(odd[:4])}{', ...' if len(odd) > 4 else ''}. The model would learn "
            "both and open some quotations with the mark you do not use. Unless a place is meant to "
            "read differently (a letter, another voice), make them one style (your editor's smart "
            "quotes, or find and replace), then rerun")
