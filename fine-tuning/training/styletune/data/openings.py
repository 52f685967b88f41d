"""Scene openings: training rows that teach how the writer opens a scene.

Every example's prompt is the first 5-10% of its chunk, so a chunk's opening (a
scene's first sentences, where the writer sets time and place) is never a
training target. An opening row crosses the seam between two training chunks that
follow each other in the book: its prompt is the last words of the one before
(PROMPT_WORDS of them, as the join drills' are) and the text between the two as the
writer typed it, and its continuation is the next chunk's opening up to the earliest
cut of its examples, so every sentence of a training chunk is learnt somewhere. Like
a join drill, the row has no end of turn (the text goes on).

The text between two chunks is stage 0's record where the book folder has one
(segment_manifest.json: the manuscript's blank lines, scene-break marks and chapter
headings, byte for byte); between chunk files cut by hand, or the parts of a split
chunk, it is the paragraph break the chunks themselves use most.
"""
import json
import random
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from styletune.data.chunks import CHUNK_NAME, Chunk
from styletune.data.drills import PROMPT_WORDS, Drill
from styletune.settings import SEGMENT_MANIFEST
from styletune.text.paragraphs import paragraph_spans

OPENING = "scene opening"
# A recorded separator of more words than this is not a heading (usable()).
_MOST_SEPARATOR_WORDS = 30


@dataclass
class Seam:
    """Two chunks that follow each other in the book, and the text between them.
    Drill reads `text` and `name` as it would a chunk's."""
    before: Chunk
    after: Chunk
    separator: str
    source: str     # where the separator comes from, for the report

    @property
    def name(self) -> str:
        return f"{self.before.name} + {self.after.name}"

    @property
    def text(self) -> str:
        return self.before.text + self.separator + self.after.text


def _number_and_part(chunk):
    """(13, "b") for chunk_013b_the_walk.txt; None for a name without a number."""
    m = CHUNK_NAME.match(chunk.name)
    return (int(m.group(2)), m.group(3).lower()) if m else None


def follows(before, after) -> bool:
    """Whether `after` comes straight after `before` in the book, by their names: the
    next number (chunk_013 -> chunk_014, or 013b -> 014), or the next part of one
    original (013a -> 013b). A number skipped (a chunk deleted, excluded or empty)
    leaves a gap no row crosses."""
    a, b = _number_and_part(before), _number_and_part(after)
    if not a or not b:
        return False
    if a[0] == b[0]:   # the splitter letters parts a, b, c, ...
        return len(a[1]) == len(b[1]) == 1 and ord(b[1]) == ord(a[1]) + 1
    return b[0] == a[0] + 1 and b[1] in ("", "a")


def paragraph_break(texts) -> str:
    """The whitespace the chunks put between paragraphs most often, up to its last
    line break (an indent goes with the paragraph after it): "\\n\\n" for blank-line
    paragraphs, "\\n" for one per line."""
    runs = Counter()
    for text in texts:
        spans = paragraph_spans(text)
        for (_, end), (start, _) in zip(spans, spans[1:]):
            gap = text[end:start]
            runs[gap[:gap.rfind("\n") + 1]] += 1
    runs.pop("", None)
    return min(runs, key=lambda r: (-runs[r], len(r), r)) if runs else "\n\n"


def stage0_separators(book_dir: Path) -> dict:
    """{(chunk group before, chunk group after): the manuscript's text between them}
    from stage 0's record in the book folder; {} where there is none (chunks cut by
    hand) or it cannot be read. Groups, not file names: the parts of a chunk split
    later (013a, 013b) sit where their original did."""
    try:
        record = json.loads((Path(book_dir) / SEGMENT_MANIFEST).read_text(encoding="utf-8"))
        names, seps = [c["file"] for c in record["chunks"]], record["separators"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    groups = [Chunk(Path(name), "", "").group for name in names]
    return {(a, b): sep for a, b, sep in zip(groups, groups[1:], seps[1:])}


def usable(separator) -> bool:
    """A recorded separator a row may carry: line breaks and at most a heading or two
    (a chapter's title, a part's, a scene-break mark). Anything longer is not what a
    writer types between scenes (front matter stage 0 left out, an illustration's
    caption), and the paragraph break stands in for it."""
    return (separator is not None and "\n" in separator
            and len(separator.split()) <= _MOST_SEPARATOR_WORDS)


def seams(chunks, book_dir: Path) -> list[Seam]:
    """Every pair of `chunks` (the book's, in natural order) where one follows the other."""
    recorded = stage0_separators(book_dir)
    fallback = paragraph_break(c.text for c in chunks)
    out = []
    for before, after in zip(chunks, chunks[1:]):
        if not follows(before, after):
            continue
        sep = recorded.get((before.group, after.group))
        out.append(Seam(before, after, sep, "stage 0") if usable(sep)
                   else Seam(before, after, fallback, "paragraph break"))
    return out


def opening_rows(chunk_seams, train_examples, seed: int) -> list[Drill]:
    """One row per seam whose two chunks both train: the words before the seam, the
    text between (and the next chunk's indent), then the opening of the chunk after it
    up to the end of the sentence its earliest training example's prompt stops at."""
    first_cut = {}
    for e in train_examples:
        first_cut[e.chunk.name] = min(first_cut.get(e.chunk.name, len(e.chunk.text)), e.cut.end)
    rows = []
    for seam in chunk_seams:
        if seam.before.name not in first_cut or seam.after.name not in first_cut:
            continue
        rng = random.Random(f"{seed}:{seam.name}:opening")
        words = [m.start() for m in re.finditer(r"\S+", seam.before.text)]
        start = words[max(0, len(words) - rng.randint(*PROMPT_WORDS))]
        # the first line's indent is typed with the break, as a drill's is: the
        # continuation opens with the scene's first word
        indent = len(seam.after.text) - len(seam.after.text.lstrip())
        opening = len(seam.before.text) + len(seam.separator)
        rows.append(Drill(seam, OPENING, start, opening + indent, opening + first_cut[seam.after.name]))
    return rows
