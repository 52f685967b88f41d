"""Prefix-completion examples: where each chunk is cut, and the exact counts."""
import bisect
import functools
import random
import re
from dataclasses import dataclass, replace
from pathlib import Path

from styletune.config import Reads
from styletune.data.chunks import Chunk
from styletune.data.holdout import choose_validation_groups
from styletune.errors import InputError
from styletune.fileio import normalise
from styletune.text.paragraphs import layout, whitespace_kind
from styletune.text.sentences import Boundary, Tier, boundaries, build_punkt

# What decides the examples (stage 1 builds them; stage 0 and the splitter size chunks with them).
READS = Reads(pipeline=("prefix_ratio", "seed", "cuts_per_chunk", "validation_share", "validation_chunks",
                        "editor_header_share", "typed_join_share", "exclude_chunks", "chunk_glob"))

# Candidates beyond this multiple of the upper ratio (in characters) cannot be in
# range; skipping them keeps counting cheap on long chunks.
_SEARCH_SPAN = 2.0


@dataclass
class Example:
    chunk: object       # chunks.Chunk
    cut: Boundary
    prefix_tokens: int
    completion_tokens: int
    in_range: bool
    join: int = 0          # where the user turn ends in chunk.text (join_offset)
    total_tokens: int = 0  # the rendered conversation, special tokens included
    header: str = ""       # Continue's file-path line, on the examples that teach autocomplete

    @property
    def prefix(self) -> str:
        return self.chunk.text[:self.join]

    @property
    def completion(self) -> str:
        return self.chunk.text[self.join:]

    @property
    def ratio(self) -> float:
        return self.prefix_tokens / (self.prefix_tokens + self.completion_tokens)

    def messages(self):
        """The author's text only, no system message (the design: a system prompt is
        set in the editor at inference, and the serving template must render the
        same turns). prefix + completion is the chunk, every character; the user
        turn may start with Continue's header line (see editor_header)."""
        return [{"role": "user", "content": self.header + self.prefix},
                {"role": "assistant", "content": self.completion}]


# The files a writer types in: Markdown, and .txt, which Continue takes for TypeScript
# (its path line behind "//"). Headed rows take them in turn.
EDITOR_FILES = ("md", "txt")


def continue_path_line(path: str) -> str:
    """What Continue's autocomplete puts before the text of the file being written
    (core/autocomplete/templating/formatting.ts, formatSnippets, with no snippets):
    a blank line, the file's last two path parts behind the language's comment
    mark, a newline. Markdown's mark is empty; a .txt file is taken for TypeScript."""
    mark = "" if path.endswith(".md") else "//"
    return f"\n{mark} {'/'.join(path.split('/')[-2:])}\n"


# continue_path_line's shape, at the start of a user turn (a chunk's own text never
# starts with a line break: chunks are normalised).
_PATH_LINE = re.compile(r"\n(?://)? [^\n]*\.(?:%s)\n" % "|".join(EDITOR_FILES))


def without_path_line(user: str) -> str:
    """A user turn's text without the Continue path line stage 1 may have put first:
    the chunk's prompt, so that prompt + completion is the chunk again."""
    found = _PATH_LINE.match(user)
    return user[found.end():] if found else user


def editor_path_line(folder: str, name: str, form: str) -> str:
    """Continue's path line for the file `name` of `folder` (a chunk's; its stem) as
    a file of `form` (EDITOR_FILES). Stage 1 heads its rows with it, and stage 4
    sends every prompt after it."""
    return continue_path_line(f"{folder}/{Path(name).stem}.{form}")


def editor_header(row, form: str) -> str:
    """The path line for the row's chunk (an example's, a drill's)."""
    return editor_path_line(row.chunk.path.parent.name, row.chunk.path.name, form)


def add_editor_headers(rows, share: float, kind=lambda row: None) -> None:
    """Give `share` of the rows of each `kind` (in a fixed order) Continue's
    autocomplete header, so the model learns to continue the text after it, as the
    editor sends it, as well as text alone. Chosen by position within each kind, so
    the header stands for no kind of pause (an example's prompt ending in typed
    whitespace or not, a drill's kind), alternating Markdown and .txt forms within it:
    the same rows every run."""
    groups = {}
    for row in rows:
        groups.setdefault(kind(row), []).append(row)
    for group in groups.values():
        headed = [row for row, chosen in zip(group, every_share(group, share)) if chosen]
        for i, row in enumerate(headed):
            row.header = editor_header(row, EDITOR_FILES[i % len(EDITOR_FILES)])


def join_offset(cut: Boundary, typed: bool = False) -> int:
    """Where the user turn ends and the assistant turn begins. The prompt stops on the
    sentence's last character and the completion opens with the whitespace that
    followed it in the manuscript (" “Alan…", "\n\nThe…"), so the model learns to
    supply the join itself, as it must after a writer who stopped at "Haji said,".
    A typed example keeps that whitespace in the prompt, as a writer who typed the
    space or pressed Enter twice before pausing leaves it, and the completion opens
    with the next word. prefix + completion is the chunk, exactly; training tokenises
    the two apart (tokens.turn_texts), as a server does."""
    return cut.start if typed else cut.end


def every_share(items, share: float) -> list[bool]:
    """Which of `items` (in a fixed order) are the `share` of them chosen, spread evenly:
    the same ones every run."""
    chosen, taken = [], 0
    for i in range(len(items)):
        chosen.append(taken < round(share * (i + 1)))
        taken += chosen[-1]
    return chosen


def _targets(rng, k, lo, hi):
    """k target ratios, one from each equal slice of [lo, hi], so several cuts spread out."""
    return [lo + (j + rng.random()) / k * (hi - lo) for j in range(k)]


def _distance(ratio, lo, hi):
    return max(lo - ratio, ratio - hi, 0.0)


class NoSentenceEnd(InputError):
    """A chunk with no sentence end where a prompt could stop (`chunk`: its name)."""
    def __init__(self, message, chunk):
        super().__init__(message)
        self.chunk = chunk


def _boundaries_or_error(chunk, punkt, until):
    found = boundaries(chunk.text, punkt, until)
    if not found:
        raise NoSentenceEnd(f"{chunk.path}: no sentence end where a prompt could stop (a '.', '!' "
                            "or '?' with more of the text after it: one sentence alone has nothing "
                            "to continue). Add the missing punctuation, or merge this chunk with its "
                            "neighbour.", chunk.path.name)
    return found


def quoted_paragraph_end(text, cut) -> bool:
    """A cut inside a quotation at a paragraph's end: the quotation runs on into the
    next paragraph, as a letter or a long speech does. In lines wrapped by hand a
    line break is no paragraph's end (the text's layout says which is)."""
    return (cut.tier == Tier.IN_QUOTATION
            and whitespace_kind(text[cut.end:cut.start], _layout(text)) == "a paragraph break")


_layout = functools.lru_cache(maxsize=8)(layout)    # asked once per candidate cut of a chunk


def _pick(chunk, cands, total, lo, hi, seed, k):
    """Choose up to k (boundary, prefix_tokens) from one chunk's candidates.

    Preference, in range: a clean boundary, then a speech/tag boundary, then inside a
    quotation that runs on (a letter, a long speech, whose paragraphs each open with
    a quotation mark), at one of its paragraph ends first. With none in range, the
    nearest boundary outside any quotation, else the nearest inside one. Ratios here
    use the chunk's whole token count; the exact ratio is computed once the
    completion is counted.
    """
    ratio = lambda c: c[1] / total  # noqa: E731
    in_range = [c for c in cands if lo <= ratio(c) <= hi]
    if not in_range:  # the nearest boundary, reported as an exception
        outside = [c for c in cands if c[0].tier < Tier.IN_QUOTATION]
        return [min(outside or cands, key=lambda c: (_distance(ratio(c), lo, hi), c[0].end))]
    rank = lambda c: (c[0].tier, not quoted_paragraph_end(chunk.text, c[0]))  # noqa: E731
    best = min(rank(c) for c in in_range)
    pool = [c for c in in_range if rank(c) == best]
    rng = random.Random(f"{seed}:{chunk.name}")
    chosen = []
    for target in _targets(rng, min(k, len(pool)), lo, hi):
        left = [c for c in pool if c not in chosen]
        chosen.append(min(left, key=lambda c: (abs(ratio(c) - target), c[0].end)))
    return sorted(chosen, key=lambda c: c[0].end)


def cut_chunks(chunks, punkt, counter, ratio_range, seed, cuts_for, typed_share=0.0):
    """Cut every chunk; `cuts_for(chunk)` says how many cuts it gets, and `typed_share`
    of the cuts that have whitespace after them keep it in the prompt (join_offset).
    Same inputs and seed, same cuts. Cut points are ranked from one tokenisation of each
    chunk, then the chosen prefixes and completions are counted exactly; every
    call is batched over all chunks (the tokenizer spreads a batch over the cores)."""
    lo, hi = ratio_range
    all_ends = counter.token_ends([c.text for c in chunks])
    picks = []
    for chunk, ends in zip(chunks, all_ends):
        # Only boundaries in the first stretch of a chunk can give a prefix in range.
        found = _boundaries_or_error(chunk, punkt, until=int(hi * _SEARCH_SPAN * len(chunk.text)))
        cands = [(b, bisect.bisect_right(ends, b.end)) for b in found]
        picks += [(chunk, b) for b, _ in _pick(chunk, cands, len(ends), lo, hi, seed, cuts_for(chunk))]
    spaced = [(chunk, b) for chunk, b in picks if b.start > b.end]
    typed = {(chunk.name, b.end) for (chunk, b), t in zip(spaced, every_share(spaced, typed_share)) if t}
    joins = [join_offset(b, (chunk.name, b.end) in typed) for chunk, b in picks]
    prefixes = counter.count_texts([chunk.text[:j] for (chunk, _), j in zip(picks, joins)])
    completions = counter.count_texts([chunk.text[j:] for (chunk, _), j in zip(picks, joins)])
    return [Example(chunk, b, p, c, lo <= p / (p + c) <= hi, j)
            for (chunk, b), j, p, c in zip(picks, joins, prefixes, completions)]


def count_rendered(examples, counter) -> None:
    """Fill in each example's full length as the trainer will see it."""
    for example, n in zip(examples, counter.count_conversations([e.messages() for e in examples])):
        example.total_tokens = n


def build_examples(chunks, punkt, counter, settings):
    """Stage 1's examples of `chunks`, cut, given their editor headers and counted
    as the trainer sees them. The one builder: stage 1 trains on what it returns,
    and stage 0 and the splitter size chunks with it (`longest_example`).
    Returns (examples, the chunk groups held out for validation)."""
    s = settings
    held_out = choose_validation_groups(chunks, s.validation_share, s.seed, s.validation_chunks)
    # Validation keeps one fixed cut per chunk, so its loss is comparable across runs.
    examples = cut_chunks(chunks, punkt, counter, s.prefix_ratio, s.seed,
                          lambda c: 1 if c.group in held_out else s.cuts_per_chunk, s.typed_join_share)
    add_editor_headers(sorted(examples, key=lambda e: (e.chunk.name, e.cut.end)), s.editor_header_share,
                       kind=lambda e: e.prefix[-1:].isspace())   # typed whitespace at the cut or not
    count_rendered(examples, counter)
    return examples, held_out


def longest_example(chunks, punkt, counter, settings) -> dict:
    """{chunk name: the most tokens any example of it can have in stage 1}: the
    examples `build_examples` makes, each counted as built and, when the book
    gives some examples Continue's path line, with the longer of its two forms
    too. Which example gets a header depends on every chunk's name and order, so
    a chunk not yet named or a recut book may get one: this bound holds for any
    of them, and stage 1's own count never exceeds it."""
    names = {c.name for c in chunks}
    if not set(settings.validation_chunks) <= names:  # stage 0's new names: the share decides
        settings = settings.model_copy(update={"validation_chunks": []})
    examples, _ = build_examples(chunks, punkt, counter, settings)
    out = {}
    for e in examples:
        out[e.chunk.name] = max(out.get(e.chunk.name, 0), e.total_tokens)
    if settings.editor_header_share > 0:
        headed = [replace(e, header=editor_header(e, form)) for e in examples for form in EDITOR_FILES]
        count_rendered(headed, counter)
        for e in headed:
            out[e.chunk.name] = max(out[e.chunk.name], e.total_tokens)
    return out


def example_sizes(named_texts, punkt, counter, settings) -> dict:
    """longest_example for texts not yet saved as chunk files ((name, text) pairs:
    stage 0's planned chunks, the splitter's parts beside the book's other chunks)."""
    chunks = [c for c in (Chunk(Path(name), normalise(text), "") for name, text in named_texts) if c.text]
    if not chunks:
        return {}
    return longest_example(chunks, punkt or build_punkt([c.text for c in chunks])[0], counter, settings)
