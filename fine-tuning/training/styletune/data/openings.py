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
headings, byte for byte); between the parts of a split chunk, the whitespace the
splitter left at the end of the earlier part's file; between chunk files cut by hand,
the paragraph break the chunks themselves use most. Where the record no longer fits
the folder (chunks renamed, a heading moved into a chunk, more than a heading between
two chunks) no row crosses, and the report says why.
"""
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from styletune.data.chunks import Chunk, stage0_manifest
from styletune.data.drills import PROMPT_WORDS, Drill, words_back
from styletune.fileio import read_text
from styletune.text.paragraphs import paragraph_spans

OPENING = "scene opening"
# A recorded separator of more words than this is not a heading (usable()): room for a
# chapter's heading lines (Oliver Twist's longest title, with its number, is 41 words)
# and the short matter stage 0 keeps under them (HEADING_MATTER_MAX_WORDS, an epigraph).
_MOST_SEPARATOR_WORDS = 100


@dataclass
class Seam:
    """Two chunks that follow each other in the book, and the text between them.
    Drill reads `text` and `name` as it would a chunk's."""
    before: Chunk
    after: Chunk
    separator: str | None   # None: not known, and no row crosses the seam
    source: str             # where the separator comes from, or why it is not known

    @property
    def name(self) -> str:
        return f"{self.before.name} + {self.after.name}"

    @property
    def text(self) -> str:
        return self.before.text + self.separator + self.after.text

    @property
    def path(self):
        """The file its path line names: the one before the seam, where the writer is
        typing when a scene ends and the next begins. Not the next chunk's: stage 0
        names a chunk after its first words, the very words the row teaches."""
        return self.before.path


def follows(before, after) -> bool:
    """Whether `after` comes straight after `before` in the book, by their names: the
    next number (chunk_013 -> chunk_014, or 013b -> 014), or the next part of one
    original (013a -> 013b). A number skipped (a chunk deleted, excluded or empty)
    leaves a gap no row crosses."""
    a, b = before.place, after.place
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


@dataclass
class Record:
    """Stage 0's record of a book folder (segment_manifest.json): its chunk files in
    order and the manuscript's text between each two."""
    between: dict       # {(file before, file after): the text between them}
    by_group: dict      # {chunk group: its file in the record}, for parts split later

    def name_of(self, chunk) -> str | None:
        """The record's name for `chunk`: its own, or its original's if it is a part
        of a chunk split after stage 0 (013a of chunk_013)."""
        if any(chunk.name in pair for pair in self.between):
            return chunk.name
        return self.by_group.get(chunk.group) if chunk.place and chunk.place[1] else None


def stage0_record(book_dir: Path) -> Record | None:
    """Stage 0's record in the book folder; None where there is none (chunks cut by
    hand) or it cannot be read."""
    try:
        record = stage0_manifest(book_dir)
        names, seps = [c["file"] for c in record["chunks"]], record["separators"]
    except (KeyError, TypeError):
        return None
    return Record({(a, b): sep for a, b, sep in zip(names, names[1:], seps[1:])},
                  {Chunk(Path(name), "", "").group: name for name in names})


def usable(separator: str) -> bool:
    """A recorded separator a row may carry: whitespace (a cut inside a long paragraph
    leaves a space), or line breaks around at most a heading or two (a chapter's title,
    a part's, a scene-break mark). Anything longer is not what a writer types between
    scenes (front matter stage 0 left out, an illustration's caption)."""
    return not separator.strip() or ("\n" in separator and len(separator.split()) <= _MOST_SEPARATOR_WORDS)


def repeats(separator: str, before, after) -> bool:
    """The recorded heading is also in a chunk's text, as whole lines (moved into it
    after stage 0): carried between them too, it would be there twice."""
    words = separator.strip()
    if not words:
        return False
    end, start = before.text.rstrip(), after.text.lstrip()
    return ((end.endswith(words) and not end[:len(end) - len(words)].split("\n")[-1].strip())
            or (start.startswith(words) and not start[len(words):].split("\n")[0].strip()))


def split_separator(part, fallback: str) -> str:
    """The text between two parts of one split chunk: the splitter writes each part as
    the original's text up to the next part's first line, so the whitespace at the end
    of the earlier part's file is what stood between them (an editor that trimmed it
    to less than a paragraph break leaves `fallback`)."""
    raw = read_text(part.path)
    tail = raw[len(raw.rstrip()):].replace("\r\n", "\n").replace("\r", "\n")
    if tail and "\n" not in tail:     # a cut inside a long paragraph, at a sentence end
        return tail
    return tail if tail.count("\n") >= fallback.count("\n") else fallback


def seam_between(before, after, record: Record | None, fallback: str) -> Seam:
    """The seam from `before` to `after` (which follows it), with the text between them,
    or with separator None and the reason where that text cannot be known."""
    if before.group == after.group:
        return Seam(before, after, split_separator(before, fallback), "split")
    if record is None:
        return Seam(before, after, fallback, "paragraph break")
    sep = record.between.get((record.name_of(before), record.name_of(after)))
    if sep is None:
        return Seam(before, after, None, "not next to each other in stage 0's record (renamed or renumbered since?)")
    if not usable(sep):
        return Seam(before, after, None, f"stage 0 found {len(sep.split())} words between them"
                                         + (", not a heading" if "\n" in sep else " on one line"))
    if repeats(sep, before, after):
        return Seam(before, after, None, "the heading stage 0 found between them is in a chunk now")
    return Seam(before, after, sep, "stage 0")


def seams(chunks, book_dir: Path) -> list[Seam]:
    """Every pair of `chunks` (the book's, in natural order) where one follows the other."""
    record = stage0_record(book_dir)
    fallback = paragraph_break(c.text for c in chunks)
    return [seam_between(before, after, record, fallback)
            for before, after in zip(chunks, chunks[1:]) if follows(before, after)]


def opening_rows(chunk_seams, examples, seed: int, context=None) -> list[Drill]:
    """One row per seam whose chunk after it has `examples` (a split's): the words
    before the seam, the text between (and the next chunk's indent), then the opening
    of the chunk after it up to the end of the sentence its earliest example's prompt
    stops at. The chunk before gives context only; it must be one of `context` (chunk
    names; default: the chunks of `examples`, as training rows need)."""
    first_cut = {}
    for e in examples:
        first_cut[e.chunk.name] = min(first_cut.get(e.chunk.name, len(e.chunk.text)), e.cut.end)
    context = set(first_cut) if context is None else set(context)
    rows = []
    for seam in chunk_seams:
        if seam.separator is None or seam.before.name not in context or seam.after.name not in first_cut:
            continue
        rng = random.Random(f"{seed}:{seam.name}:opening")
        start = words_back(seam.before.text, len(seam.before.text), rng.randint(*PROMPT_WORDS))
        # the first line's indent is typed with the break, as a drill's is: the
        # continuation opens with the scene's first word
        indent = len(seam.after.text) - len(seam.after.text.lstrip())
        opening = len(seam.before.text) + len(seam.separator)
        rows.append(Drill(seam, OPENING, start, opening + indent, opening + first_cut[seam.after.name]))
    return rows
