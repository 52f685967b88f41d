"""Join drills: short training rows that stop where a writer pauses mid-flow.

Every example of stage 1 stops at a sentence end and carries one join token among
a chunk's worth of continuation, so the joins a writer meets most in the editor
(after "Haji said,", inside a word, after a space or a paragraph break typed
before pausing) are rare in training, and the instruct model's prior wins there.
A drill is a window of the writer's own text (10-60 words) stopping at one
kind of pause (text/stops.py, the kinds stage 4's Joins table measures) and the
next CONTINUATION_WORDS words as its continuation, trained without an end-of-turn
token (the row says `"ends_turn": false`): the text goes on, so a drill teaches the
join and nothing about where a turn ends. Drills come from training chunks only,
their windows are the author's text exactly, and the same seed gives the same drills.
"""
import random
import re
from dataclasses import dataclass

from styletune import chat
from styletune.data.examples import add_editor_headers, every_share
from styletune.text import stops
from styletune.text.sentences import Tier, boundaries

# The kinds drilled, in turn: the pauses stage 4 measures that no example's cut
# teaches (every cut is at a sentence end) and the instruct model's prior gets wrong
# (a lone typed space or paragraph break reads as a line's end to it; a word split
# by the cursor is tokenised as running text never is), and the comma the writer
# stops at most ("Haji said,"). After an opening quote or a dash the base model
# already joins right (99.8% on the sample book), as running text teaches it. The
# typed paragraph break comes twice: a tokenizer that splits "\n\n" before a word
# (SmolLM2's) has never seen its fused token followed by text (the demo: 58% right
# with one turn in the rotation, 98% with two).
KINDS = (stops.TYPED_SPACE[stops.SENTENCE_END], stops.AFTER_PARAGRAPH_BREAK, "mid-word",
         stops.TYPED_SPACE["after a comma"], stops.AFTER_PARAGRAPH_BREAK, "after a comma")
# A window's words before the stop, drawn between these (a writer's request may hold a
# whole file or a line), and the words continued after it.
PROMPT_WORDS = (10, 60)
CONTINUATION_WORDS = 24
# The share of drills rendered as Continue's chat sends the text: after its system
# message and the writer's rules (chat.py). The examples never carry one (the design:
# the system prompt is the editor's); without these the chat route's joins are
# whatever the instruct prior makes of a system turn it never saw in training.
CHAT_SHARE = 0.25


@dataclass
class Drill:
    chunk: object   # chunks.Chunk
    kind: str
    start: int      # the prompt is chunk.text[start:stop]
    stop: int
    end: int        # the continuation is chunk.text[stop:end]
    total_tokens: int = 0
    system: str = ""  # the chat route's system message, on CHAT_SHARE of the drills
    header: str = ""  # Continue's path line (autocomplete's), on editor_header_share of the others

    @property
    def prompt(self) -> str:
        return self.chunk.text[self.start:self.stop]

    @property
    def continuation(self) -> str:
        return self.chunk.text[self.stop:self.end]

    def messages(self):
        """The conversation trained: the request as its route sends it (chat.request_turns),
        then the continuation as typed."""
        return chat.request_turns(self.system, self.header, self.prompt) + [
            {"role": "assistant", "content": self.continuation}]


def stops_of_kind(text: str, kind: str, punkt, vocabulary) -> list[int]:
    """Where in `text` a prompt of this kind ends: the whitespace the writer typed
    stays in the prompt, so the continuation opens with the next word."""
    if kind == stops.TYPED_SPACE[stops.SENTENCE_END]:
        return [b.start for b in boundaries(text, punkt)
                if b.tier < Tier.IN_QUOTATION and text[b.end:b.start] == " "]
    if kind == stops.TYPED_SPACE["after a comma"]:
        return [p + 1 for p in stops.stops(text, "after a comma")]
    return stops.stops(text, kind, vocabulary)


def window(text: str, stop: int, words: int) -> tuple[int, int] | None:
    """(start, end) of a drill stopping at `stop`: `words` words before it (or all
    there are, PROMPT_WORDS[0] at least), CONTINUATION_WORDS whole words after; None
    where the chunk has too few words on either side."""
    after = re.match(r"(?:\s*\S+(?!\S)){%d}" % CONTINUATION_WORDS, text[stop:])
    if len(re.findall(r"\S+", text[:stop])) < PROMPT_WORDS[0] or not after:
        return None
    return words_back(text, stop, words), stop + after.end()


def words_back(text: str, stop: int, words: int) -> int:
    """Where a prompt of `words` words ending at `stop` starts (at a word; the whole
    text before `stop` where it has fewer)."""
    starts = [m.start() for m in re.finditer(r"\S+", text[:stop])]
    return starts[max(0, len(starts) - words)] if starts else 0


def chunk_drills(chunk, first_kind: int, count: int, seed: int, punkt, vocabulary) -> list[Drill]:
    """`count` drills of one chunk, kinds taken in turn from KINDS[first_kind]; a kind
    the chunk lacks passes to the next. Windows do not share a stop."""
    rng = random.Random(f"{seed}:{chunk.name}:drills")
    found = {kind: [s for s in stops_of_kind(chunk.text, kind, punkt, vocabulary)
                    if window(chunk.text, s, PROMPT_WORDS[0])] for kind in KINDS}
    drills, used = [], set()
    for i in range(len(KINDS) * count):
        if len(drills) == count:
            break
        kind = KINDS[(first_kind + i) % len(KINDS)]
        free = [s for s in found[kind] if s not in used]
        if free:
            stop = rng.choice(free)
            used.add(stop)
            start, end = window(chunk.text, stop, rng.randint(*PROMPT_WORDS))
            drills.append(Drill(chunk, kind, start, stop, end))
    return drills


def build_drills(chunks, punkt, counter, count: int, seed: int, chat_system: str = "",
                 header_share: float = 0.0) -> list[Drill]:
    """`count` drills per chunk of `chunks` (the training chunks), counted as training
    tokenises them; kinds rotate across chunks so the mix is even; the routes as
    finish_rows gives them."""
    vocabulary = stops.words_of(c.text for c in chunks)
    drills = []
    for i, chunk in enumerate(sorted(chunks, key=lambda c: c.name)):
        drills += chunk_drills(chunk, i * count, count, seed, punkt, vocabulary)
    return finish_rows(drills, counter, chat_system, header_share)


def finish_rows(rows, counter, chat_system: str = "", header_share: float = 0.0) -> list[Drill]:
    """`rows` (drills, or data/openings.py's rows) as the editor sends text, each
    counted as training tokenises it: CHAT_SHARE of them, spread evenly, open with
    `chat_system` (the chat route's system message), and `header_share` of the others
    of each kind (editor_header_share, as the examples) with the path line Continue's
    autocomplete puts before the text, the route where a writer pauses mid-flow most."""
    for row, on_chat in zip(rows, every_share(rows, CHAT_SHARE if chat_system else 0.0)):
        row.system = chat_system if on_chat else ""
    add_editor_headers([row for row in rows if not row.system], header_share, kind=lambda row: row.kind)
    for row, n in zip(rows, counter.count_conversations([r.messages() for r in rows], ends_turn=False)):
        row.total_tokens = n
    return rows
