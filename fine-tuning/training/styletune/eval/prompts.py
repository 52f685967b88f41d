"""Stage 4's prompts: where in the author's held-out text the models are asked to
go on, and what the author wrote there. Each validation example's own prefix and
later windows ending at sentence ends (the perplexity and style measures), and, for
the Joins table, every kind of place a writer pauses (text/stops.py) and the
writer's own seed prompt on each route. Each is asked as the editor asks it
(in_the_editor): after Continue's path line, or on the chat route after its system
message."""
import json
import re
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

from styletune import chat, paths
from styletune.data import tokens
from styletune.data.examples import EDITOR_FILES, editor_path_line, join_offset, without_path_line
from styletune.errors import EvaluationError
from styletune.eval import joins
from styletune.text import stops
from styletune.text.paragraphs import layout, whitespace_kind
from styletune.text.sentences import boundaries

# The writer's own test of the editor route: typed in the editor, it ends mid-sentence,
# as writers' prompts do, and needs a continuation that starts with a space.
SEED_PROMPT = ("Haji and Alan walked along the street. It was night, Alan was worried about "
               "his future. Haji said,")


@dataclass
class Prompt:
    chunk: str        # which validation example it comes from
    kind: str         # "example" (the training-format prefix) or "window" (a later cut)
    text: str         # the writer's text before the cursor
    truth: str        # the author's own continuation, as long as a generation
    system: str = ""  # a system message before it (the chat route's), or none
    header: str = ""  # Continue's path line before the text (the autocomplete route's), or none

    def messages(self) -> list[dict]:
        """The conversation the model is asked to go on from."""
        return chat.request_turns(self.system, self.header, self.text)


def read_conversations(path: Path, what: str, ending: bool = True) -> list:
    """The examples of a stage 1 file (`ending` False: its join drills and scene
    openings instead, rows that do not end the turn, windows, not chunks)."""
    if not path.is_file():
        raise EvaluationError(f"no {what} at {paths.shown(path)}: run 1_prepare_data.py first")
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [row["messages"] for row in rows if tokens.ends_turn(row) == ending]


def _words_until(text: str, n_words: int) -> str:
    """The start of text holding about n_words words, cut after a whole word."""
    count, inside = 0, False
    for i, ch in enumerate(text):
        if ch.isspace():
            if inside:
                count += 1
                if count >= n_words:
                    return text[:i]
            inside = False
        else:
            inside = True
    return text


def validation_prompts(conversations, punkt, ev: dict, chunk_names) -> list[Prompt]:
    """Each validation example's own prefix, then windows of ~prompt_words words
    ending at later sentence ends of its completion, spread evenly over it."""
    truth_words = max(10, int(ev["generation_tokens"] * 0.75))
    prompts = []
    for conv, name in zip(conversations, chunk_names):
        user, completion = without_path_line(conv[0]["content"]), conv[1]["content"]
        first_truth = _words_until(completion, truth_words)
        prompts.append(Prompt(name, "example", user, first_truth))
        cuts = boundaries(completion, punkt)
        room = [b for b in cuts if len(completion[:b.end].split()) >= ev["prompt_words"]
                and len(completion[b.end:].split()) >= truth_words]
        wanted = int(ev["prompts_per_chunk"]) - 1
        truth_end = len(first_truth)  # the author's continuations must not overlap each other
        for b in [room[int(i * len(room) / wanted)] for i in range(wanted)] if room and wanted else []:
            join = join_offset(b)  # the turns meet where training's untyped cuts do
            if join < truth_end:
                continue
            starts = [c.start for c in cuts if len(completion[c.start:b.end].split()) <= ev["prompt_words"]]
            start = starts[0] if starts and starts[0] < b.end else 0
            truth = _words_until(completion[join:], truth_words)
            prompts.append(Prompt(name, "window", completion[start:join], truth))
            truth_end = join + len(truth)
    return prompts


def stop_prompts(conversations, ev: dict, chunk_names, kind: str, vocabulary=frozenset()) -> list[Prompt]:
    """Prompts that stop where a writer pauses other than at a sentence end (after
    "Haji said,", inside a word, after an opening quote: stops.KINDS): windows of
    ~prompt_words words from each validation completion, spread evenly over it, not
    overlapping; the truth is the author's text from there."""
    truth_words = max(10, int(ev["generation_tokens"] * 0.75))
    wanted = int(ev["prompts_per_chunk"])
    prompts = []
    for conv, name in zip(conversations, chunk_names):
        completion = conv[1]["content"]
        starts = [m.start() for m in re.finditer(r"\S+", completion)]
        room = [p for p in stops.stops(completion, kind, vocabulary)
                if len(completion[:p].split()) > ev["prompt_words"]
                and len(completion[p:].split()) >= truth_words]
        last = 0
        for stop in [room[int(i * len(room) / wanted)] for i in range(wanted)] if room else []:
            if stop < last:
                continue
            first_word = len(completion[:stop].split()) - int(ev["prompt_words"])
            truth = _words_until(completion[stop:], truth_words)
            prompts.append(Prompt(name, kind, completion[starts[first_word]:stop], truth))
            last = stop + len(truth)
    return prompts


def spread(items: list, cap: int | None) -> list:
    """At most `cap` of items, evenly spread (all of them when cap is None)."""
    if cap is None or len(items) <= cap:
        return list(items)
    return [items[int(i * len(items) / cap)] for i in range(cap)]


def _sentence_end_kind(prompt: str) -> str:
    """A validation prompt's row: most stop on the sentence's last character; a
    typed example's (typed_join_share) keeps the space or paragraph break (and indent),
    named as the text's layout has it (a line break inside a hard-wrapped paragraph is
    typed whitespace within the paragraph, as a space is)."""
    typed = whitespace_kind(prompt[len(prompt.rstrip()):], layout(prompt))
    if typed == "a paragraph break":
        return stops.AFTER_PARAGRAPH_BREAK
    return stops.TYPED_SPACE[stops.SENTENCE_END] if typed else stops.SENTENCE_END


def _typed(prompts) -> list[Prompt]:
    """The prompts with the space the writer typed before pausing (stops.TYPED_SPACE)."""
    return [replace(p, kind=stops.TYPED_SPACE[p.kind], text=p.text + " ", truth=p.truth[1:]) for p in prompts]


def join_prompts(prompts, conversations, ev: dict, chunk_names, vocabulary=frozenset(),
                 chat_system: str = chat.BASE_SYSTEM_MESSAGE) -> list[Prompt]:
    """Every kind of place a writer stops, for the Joins table: the sentence-end
    prompts, each kind of stops.KINDS (mid-word stops are never a whole word of
    `vocabulary`, the book's words), the sentence-end and comma prompts with the
    space typed, and the writer's own seed prompt both ways, each twice (in_the_editor
    sends one from a Markdown file, one from a .txt file), and under the chat route's
    system message (`chat_system`), which no example carries (a quarter of the join
    drills do: data/drills.CHAT_SHARE)."""
    ends = [replace(p, kind=_sentence_end_kind(p.text)) for p in prompts]
    out = ends + _typed(p for p in ends if p.kind == stops.SENTENCE_END and p.truth.startswith(" "))
    for kind in stops.KINDS:
        found = spread(stop_prompts(conversations, ev, chunk_names, kind, vocabulary), ev.get("max_prompts"))
        out += found + (_typed(found) if kind in stops.TYPED_SPACE else [])
    seeds = [Prompt("writer", joins.SEED, SEED_PROMPT, " “"), Prompt("writer", joins.SEED_TYPED, SEED_PROMPT + " ", "“")]
    return out + [seed for seed in seeds for _ in EDITOR_FILES] + [
        Prompt("writer", joins.SEED_CHAT, SEED_PROMPT, " “", chat_system)]


def in_the_editor(prompts, folder: str) -> list[Prompt]:
    """Each prompt as the editor sends it. Continue's autocomplete puts the file's path
    line before the text (data/examples.editor_path_line); here the path is the
    prompt's chunk in the book's folder, a Markdown and a .txt file in turn within each
    kind of prompt, so every row of the report holds both. A prompt of the chat route
    (a system message) and one already headed stay as they are. Nothing the editor
    sends is a bare user turn."""
    out, seen = [], Counter()
    for p in prompts:
        if not (p.system or p.header):
            form = EDITOR_FILES[seen[p.kind] % len(EDITOR_FILES)]
            p, seen[p.kind] = replace(p, header=editor_path_line(folder, p.chunk, form)), seen[p.kind] + 1
        out.append(p)
    return out


def example_chunk_names(cfg, split: str, count: int) -> list[str]:
    manifest = cfg.data_manifest_path
    if manifest.is_file():
        names = [e["chunk"] for e in json.loads(manifest.read_text())["examples"] if e["split"] == split]
        if len(names) == count:
            return names
    return [f"{split} example {i + 1}" for i in range(count)]
