"""Join drills (data/drills.py): windows of the writer's own text stopping where a
writer pauses, on the sample book with the real SmolLM2 tokenizer."""
import json
import re

import pytest
from conftest import write_config
from styletune.config import load_config
from styletune.data import drills as drill_module
from styletune.data.drills import CONTINUATION_WORDS, KINDS, PROMPT_WORDS, Drill, build_drills, stops_of_kind
from styletune.data.openings import OPENING
from styletune.data.prepare import jsonl_bytes, planned_outputs, prepare_data
from styletune.data.tokens import IGNORE_INDEX, training_ids
from styletune.eval.prompts import read_conversations
from styletune.fileio import write_outputs
from styletune.text.sentences import build_punkt


def planned_manifest(result) -> list:
    """The join drills and scene openings of the training manifest stage 1 would write."""
    manifest = next(json.loads(data) for path, data in planned_outputs(result).items()
                    if path.name.endswith(".manifest.json"))
    return manifest["join_drills"] + manifest["scene_openings"]


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    return prepare_data(load_config(write_config(tmp_path_factory.mktemp("drills"))))


# What the prompt's last characters and the continuation's first must be, per kind.
SHAPES = {
    "sentence end, space typed": (r"[.!?…][”’\"')\]]* $", r"^\S"),
    "after a paragraph break": (r"\n[ \t]*$", r"^\S"),   # the sample book has both layouts
    "mid-word": (r"[^\W\d_]{5}$", r"^[^\W\d_]{2}\b"),
    "after a comma, space typed": (r", $", r"^\S"),
    "after a comma": (r",$", r"^ \S"),
}


def test_every_drill_is_the_authors_text_stopping_at_its_kind(result):
    assert set(SHAPES) == set(KINDS)
    training = {c.name for c in {e.chunk.name: e.chunk for e in result.train}.values()}
    assert len(result.drills) == result.config.pipeline.join_drills_per_chunk * len(training)
    for d in result.drills:
        assert d.chunk.name in training                       # never a validation chunk
        assert d.prompt + d.continuation == d.chunk.text[d.start:d.end]
        assert d.start == 0 or d.chunk.text[d.start - 1].isspace()   # a window starts at a word
        assert len(d.continuation.split()) == CONTINUATION_WORDS
        assert PROMPT_WORDS[0] <= len(d.prompt.split()) <= PROMPT_WORDS[1]
        before, after = SHAPES[d.kind]
        assert re.search(before, d.prompt) and re.search(after, d.continuation), (d.kind, d.prompt[-20:],
                                                                                  d.continuation[:20])
    # the kinds rotate: every kind the book has is drilled
    assert {d.kind for d in result.drills} == set(KINDS)


def test_a_drill_is_counted_and_labelled_as_training_tokenises_it(result, hf_tokenizer):
    """Join drills and scene openings (data/openings.py) alike: the continuation alone."""
    from styletune.train.models import training_template
    hf_tokenizer.chat_template = training_template(result.config)
    assert result.openings
    for d in result.rows_without_end:
        ids = training_ids(hf_tokenizer, d.messages(), ends_turn=False)
        assert len(ids["input_ids"]) == d.total_tokens
        labelled = [t for t, lab in zip(ids["input_ids"], ids["labels"]) if lab != IGNORE_INDEX]
        # exactly the continuation's own tokens: no end of turn after them
        assert hf_tokenizer.decode(labelled) == d.continuation
        assert ids["labels"][-1] != IGNORE_INDEX


def test_training_rows_say_which_continuations_end_the_turn(result, tmp_path):
    rows = [json.loads(line) for line in jsonl_bytes(result.train, result.drills).decode().splitlines()]
    assert [row["ends_turn"] for row in rows] == [True] * len(result.train) + [False] * len(result.drills)
    assert all(list(row) == ["messages", "ends_turn"] for row in rows)
    outputs = planned_outputs(result)
    write_outputs(outputs, force=True)
    # stage 4 reads the examples only: drills are windows, not chunks
    assert len(read_conversations(result.config.train_path, "training data")) == len(result.train)
    manifest = json.loads(result.config.train_path.with_suffix(".manifest.json").read_text())
    assert len(manifest["join_drills"]) == len(result.drills)


def test_drills_are_the_same_every_run_and_none_when_asked(result, smol_counter):
    chunks = sorted({d.chunk.name: d.chunk for d in result.drills}.values(), key=lambda c: c.name)
    punkt, _ = build_punkt([c.text for c in result.chunks])
    again = build_drills(chunks, punkt, smol_counter, result.config.pipeline.join_drills_per_chunk,
                         result.config.pipeline.seed)
    assert [(d.chunk.name, d.kind, d.start, d.stop, d.end) for d in again] == \
        [(d.chunk.name, d.kind, d.start, d.stop, d.end) for d in result.drills]
    assert build_drills(chunks, punkt, smol_counter, 0, 42) == []


def test_a_kind_the_chunk_lacks_passes_to_the_next():
    from pathlib import Path

    from styletune.data.chunks import Chunk
    words = " ".join(f"word{i}" for i in range(40))
    text = f"{words}, and then {words}. And so {words}."    # one paragraph, no word to split
    chunk = Chunk(Path("chunk_001.txt"), text, "0")
    punkt, _ = build_punkt([text])
    kinds = [d.kind for d in drill_module.chunk_drills(chunk, KINDS.index("after a paragraph break"), 2,
                                                       42, punkt, set())]
    assert kinds == ["after a comma, space typed", "after a comma"]
    assert stops_of_kind(text, "after a comma", punkt, set()) == [text.index(",") + 1]


def test_stage1_counts_drills_in_its_report(result):
    from styletune.data.prepare_report import markdown_body, report_dict
    rep = report_dict(result)
    assert rep["join_drills"]["rows"] == len(result.drills)
    assert sum(rep["join_drills"]["by_kind"].values()) == len(result.drills)
    assert f"Join drills: {len(result.drills)} training rows" in markdown_body(rep)
    assert isinstance(result.drills[0], Drill)


def test_a_quarter_of_the_drills_open_as_the_chat_route_does(result):
    from styletune import chat
    from styletune.data.drills import CHAT_SHARE
    rules = result.config.pipeline.system_prompt_file.read_text(encoding="utf-8")
    system = [d for d in result.drills if d.system]
    assert len(system) == round(CHAT_SHARE * len(result.drills))
    assert {d.system for d in system} == {chat.chat_system_message(rules)}
    assert [m["role"] for m in system[0].messages()] == ["system", "user", "assistant"]
    # the examples never carry one
    assert all(m["role"] != "system" for e in result.examples for m in e.messages())


def test_a_chat_drill_holds_the_text_as_continues_chat_input_sends_it(result):
    """Continue's chat input makes each line a paragraph, drops the empty ones, trims
    their starts and joins them with one line break: a chat drill's user turn is its
    window so (no blank line, no indent), its continuation the writer's text as typed;
    the autocomplete rows keep the window exactly. Some chat rows of the sample book span
    a paragraph break, so the rule is exercised."""
    from styletune.chat import as_chat_sends
    assert as_chat_sends("  The boat was late.\n\n\tHe waited.\n   \nShe said, ") == \
        "The boat was late.\nHe waited.\nShe said, "
    rows = result.drills + result.openings
    on_chat = [d for d in rows if d.system]
    assert any("\n\n" in d.prompt for d in on_chat)
    for d in on_chat:
        _, user, assistant = d.messages()
        assert user["content"] == as_chat_sends(d.prompt) and "\n\n" not in user["content"]
        assert assistant["content"] == d.continuation
    assert all(d.messages()[0]["content"] == d.header + d.prompt for d in rows if not d.system)


def test_the_other_drills_and_openings_open_as_the_editors_autocomplete_does(result):
    """Autocomplete, where a writer pauses mid-flow most, sends Continue's path line
    before the text: editor_header_share of the rows of each kind without the chat
    route's system message carry it, as the examples do, a Markdown and a .txt file in
    turn, named for the row's chunk (a scene opening's: the chunk before the seam, not the
    one it opens, which stage 0 names after the very words the row teaches). The text
    after it is the author's, and the manifest records it."""
    import support.continue_port as cp
    share = result.config.pipeline.editor_header_share
    manifest = {(e["kind"], e["prompt_char"], e.get("chunk") or " + ".join(e["chunks"])): e["editor_header"]
                for e in planned_manifest(result)}
    for rows in (result.drills, result.openings):
        for kind in {d.kind for d in rows}:
            plain = [d for d in rows if not d.system and d.kind == kind]
            headed = [d for d in plain if d.header]
            assert len(headed) == round(share * len(plain)), kind
            for d, form in zip(headed, ("md", "txt") * len(headed)):
                chunk = d.chunk.before if d.kind == OPENING else d.chunk
                path = f"{chunk.path.parent.name}/{chunk.path.stem}.{form}"
                assert d.messages()[0] == {"role": "user", "content": cp.autocomplete_prefix(d.prompt, path)}
        assert not any(d.header for d in rows if d.system)
        assert all(manifest[(d.kind, d.start, d.chunk.name)] == d.header for d in rows)
    assert sum(bool(d.header) for d in result.drills) >= 10 and any(d.header for d in result.openings)


def test_the_examples_path_line_falls_on_typed_and_untyped_prompts_alike(result):
    """The path line and a prompt ending in typed whitespace are chosen apart (both by
    position at the same share, they fell on the same examples, so stage 4's untyped
    sentence ends, asked after the path line as the editor sends them, met a pairing no
    example trained)."""
    examples = result.train + result.validation
    for typed in (True, False):
        group = [e for e in examples if e.prefix[-1:].isspace() == typed]
        assert any(e.header for e in group) and not all(e.header for e in group), typed


@pytest.mark.parametrize("layout, text", [
    ("a blank line between paragraphs", "One went.\n\nTwo came by\nthe road.\n\n\tThree sat."),
    ("one paragraph per line", "One went.\nTwo came by the road.\n\tThree sat."),
    ("hard-wrapped", "One went down the\nlong road.\n\nTwo came by the\nshort lane.\n\n  Three sat\nby the wall."),
])
def test_a_paragraph_break_stop_is_where_the_layout_starts_a_paragraph(layout, text):
    """Drills and stage 4 stop after a paragraph break where the writer's layout has one,
    the indent typed with it, never after a line break inside a wrapped paragraph."""
    from styletune.text.stops import AFTER_PARAGRAPH_BREAK, stops
    assert stops(text, AFTER_PARAGRAPH_BREAK) == [text.index("Two"), text.index("Three")], layout


@pytest.mark.parametrize("prompt, kind", [
    ("He walked to the sea.", "sentence end"),
    ("He walked to the sea. ", "sentence end, space typed"),
    ("He walked to the sea.\n\n\t", "after a paragraph break"),
    ("He walked to the sea.\nIt was late.\n", "after a paragraph break"),             # one per line
    ("He walked down the long road to\nthe sea. It was late, the tide was out.\n",   # hard-wrapped
     "sentence end, space typed"),
])
def test_stage_4_files_a_typed_join_under_the_kind_its_layout_makes_it(prompt, kind):
    from styletune.eval.prompts import _sentence_end_kind
    assert _sentence_end_kind(prompt) == kind
