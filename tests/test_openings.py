"""Scene openings (data/openings.py): the rows that make each training chunk's opening
a target, after the end of the chunk before it and the text between them, on the
sample book (chunks cut by hand) and on a novel cut by stage 0 (its headings kept)."""
import json
from pathlib import Path

import pytest
from conftest import CORPUS, FT, load_script, write_config
from styletune.config import load_config
from styletune.data.chunks import Chunk
from styletune.data.drills import PROMPT_WORDS
from styletune.data.manuscript import read_manuscript
from styletune.data.openings import OPENING, follows, paragraph_break
from styletune.data.prepare import planned_outputs, prepare_data
from styletune.data.tokens import IGNORE_INDEX, training_ids
from styletune.fileio import write_outputs

STAGE0 = load_script(FT / "training" / "0_segment_manuscript.py")


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    return prepare_data(load_config(write_config(tmp_path_factory.mktemp("openings"))))


def first_cut(result, chunk_name):
    return min(e.cut.end for e in result.train if e.chunk.name == chunk_name)


def assert_rows_are_the_books_text(result):
    """Each row: the last words of one training chunk, the text between, and the next
    chunk's opening up to the sentence its first example's prompt stops at."""
    training = {e.chunk.name for e in result.train}
    for row in result.openings:
        seam = row.chunk
        assert row.kind == OPENING and seam.before.name in training and seam.after.name in training
        indent = seam.after.text[:len(seam.after.text) - len(seam.after.text.lstrip())]
        assert row.prompt == seam.before.text[row.start:] + seam.separator + indent
        assert row.continuation == seam.after.text[len(indent):first_cut(result, seam.after.name)]
        assert not row.continuation[0].isspace()      # the scene's first word
        assert row.start == 0 or seam.before.text[row.start - 1].isspace()   # from a word
        assert PROMPT_WORDS[0] <= len(seam.before.text[row.start:].split()) <= PROMPT_WORDS[1]
        assert row.messages()[-2:] == [{"role": "user", "content": row.prompt},
                                       {"role": "assistant", "content": row.continuation}]


def test_every_training_chunks_opening_is_learnt_after_the_chunk_before(result):
    assert_rows_are_the_books_text(result)
    # nine chunks, one held out (chunk_002): its two seams are not crossed, the other six are,
    # and the split original's parts (006a -> 006b) follow each other too
    names = [r.chunk.name for r in result.openings]
    assert len(names) == 7 and "chunk_006a_the_last_burn.txt + chunk_006b_into_the_cistern.txt" in names
    assert not any("chunk_002" in n for n in names)
    # chunks cut by hand: the text between them is the paragraph break the book uses
    assert {r.chunk.separator for r in result.openings} == {"\n\n"}
    # every character of a training chunk after a seam is a target somewhere: its
    # opening here, the rest in its examples' completions
    for row in result.openings:
        after = row.chunk.after
        first_join = min(e.join for e in result.train if e.chunk.name == after.name)
        assert after.text.lstrip().startswith(row.continuation)
        assert after.text.lstrip()[len(row.continuation):].strip() and \
            after.text[after.text.index(row.continuation) + len(row.continuation):first_join].strip() == ""


def test_rows_are_labelled_on_the_opening_alone_with_no_end_of_turn(result, hf_tokenizer):
    from styletune.train.models import training_template
    hf_tokenizer.chat_template = training_template(result.config)
    for row in result.openings:
        ids = training_ids(hf_tokenizer, row.messages(), ends_turn=False)
        assert len(ids["input_ids"]) == row.total_tokens
        labelled = [t for t, lab in zip(ids["input_ids"], ids["labels"]) if lab != IGNORE_INDEX]
        assert hf_tokenizer.decode(labelled) == row.continuation
        assert ids["labels"][-1] != IGNORE_INDEX     # no end of turn after the opening


def test_openings_are_written_recorded_reported_and_the_same_every_run(result, tmp_path):
    cfg = result.config
    write_outputs(planned_outputs(result), force=True)
    rows = [json.loads(line) for line in cfg.train_path.read_text(encoding="utf-8").splitlines()]
    tail = rows[-len(result.openings):]
    assert [r["messages"] for r in tail] == [o.messages() for o in result.openings]
    assert all(r["ends_turn"] is False for r in tail)
    manifest = json.loads(cfg.data_manifest_path.read_text(encoding="utf-8"))
    assert [m["chunks"] for m in manifest["scene_openings"]] == \
        [[o.chunk.before.name, o.chunk.after.name] for o in result.openings]
    assert {m["separator_from"] for m in manifest["scene_openings"]} == {"paragraph break"}
    report = (cfg.pipeline.report_dir / "stage1_report.md").read_text(encoding="utf-8")
    assert "Scene openings: 7 training rows" in report and "chunk_002_the_infirmary.txt" in report
    again = prepare_data(cfg)
    assert [(o.chunk.name, o.start, o.stop, o.end, o.system) for o in again.openings] == \
        [(o.chunk.name, o.start, o.stop, o.end, o.system) for o in result.openings]
    off = prepare_data(load_config(write_config(tmp_path, {"scene_openings": False})))
    assert off.openings == [] and "Scene openings: none" in \
        planned_outputs(off)[off.config.pipeline.report_dir / "stage1_report.md"].decode()


def test_a_book_cut_by_stage_0_opens_each_chapter_after_its_heading_as_typed(tmp_path, make_config):
    """Stage 0 records the text between its chunks (blank lines, a chapter's heading);
    each row carries it byte for byte: prompt + continuation is a stretch of the
    manuscript itself."""
    novel = CORPUS / "doyle_a_study_in_scarlet.txt"
    out = tmp_path / "chunks"
    cfg = make_config({"chunk_target_tokens": 700, "segment_min_tokens": 200}, sequence_len=2048)
    assert STAGE0.main([str(novel), "--config", str(cfg), "--out", str(out)]) == 0
    result = prepare_data(load_config(cfg), book_dir=out)
    assert_rows_are_the_books_text(result)
    body = read_manuscript(novel).body
    for row in result.openings:
        assert row.prompt + row.continuation in body
    from_stage0 = [r for r in result.openings if r.chunk.source == "stage 0"]
    assert len(from_stage0) == len(result.openings) >= 10
    headed = [r for r in from_stage0 if "CHAPTER" in r.chunk.separator]
    assert headed and all(r.prompt.rstrip().endswith(r.chunk.separator.strip()) for r in headed)


@pytest.mark.parametrize("before, after, answer", [
    ("chunk_001_a.txt", "chunk_002_b.txt", True),
    ("chunk_009.txt", "chunk_010.txt", True),
    ("chunk_013a_x.txt", "chunk_013b_y.txt", True),
    ("chunk_013b_y.txt", "chunk_014_z.txt", True),
    ("chunk_013_x.txt", "chunk_014a_y.txt", True),
    ("chunk_004_a.txt", "chunk_006_b.txt", False),      # chunk_005 deleted, excluded or empty
    ("chunk_013a_x.txt", "chunk_014b_y.txt", False),    # 014a missing
    ("chunk_013a_x.txt", "chunk_013c_y.txt", False),    # 013b deleted, excluded or empty
    ("notes.txt", "chunk_001.txt", False),
])
def test_which_chunks_follow_each_other_by_their_names(before, after, answer):
    assert follows(Chunk(Path(before), "", ""), Chunk(Path(after), "", "")) is answer


def test_the_paragraph_break_is_the_layouts_own():
    assert paragraph_break(["One.\n\nTwo.\n\n    Three.", "Four.\n\nFive."]) == "\n\n"
    assert paragraph_break(["One.\nTwo.\nThree.\n\nFour."]) == "\n"          # one per line
    assert paragraph_break(["A single paragraph."]) == "\n\n"
