"""Scene openings (data/openings.py): the rows that make each training chunk's opening
a target, after the end of the chunk before it and the text between them, on the
sample book (chunks cut by hand) and on a novel cut by stage 0 (its headings kept)."""
import json
import shutil
from pathlib import Path

import pytest
from conftest import CORPUS, FT, load_script, write_config
from styletune.chat import as_chat_sends
from styletune.config import load_config
from styletune.data.chunks import Chunk
from styletune.data.drills import PROMPT_WORDS
from styletune.data.manuscript import read_manuscript
from styletune.data.openings import OPENING, follows, paragraph_break, repeats, split_separator
from styletune.data.prepare import planned_outputs, prepare_data
from styletune.fileio import write_outputs
from styletune.settings import SEGMENT_MANIFEST

STAGE0 = load_script(FT / "training" / "0_segment_manuscript.py")


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    return prepare_data(load_config(write_config(tmp_path_factory.mktemp("openings"))))


def first_cut(examples, chunk_name):
    return min(e.cut.end for e in examples if e.chunk.name == chunk_name)


def assert_rows_are_the_books_text(result, held_out=False):
    """Each row: the last words of one chunk (a training chunk before a training
    row; any before a held-out one), the text between, and the next chunk's opening up
    to the sentence its first example's prompt stops at."""
    examples, rows = (result.validation, result.validation_openings) if held_out else (result.train, result.openings)
    targets = {e.chunk.name for e in examples}
    context = {c.name for c in result.chunks} if held_out else targets
    for row in rows:
        seam = row.chunk
        assert row.kind == OPENING and seam.before.name in context and seam.after.name in targets
        indent = seam.after.text[:len(seam.after.text) - len(seam.after.text.lstrip())]
        assert row.prompt == seam.before.text[row.start:] + seam.separator + indent
        assert row.continuation == seam.after.text[len(indent):first_cut(examples, seam.after.name)]
        assert not row.continuation[0].isspace()      # the scene's first word
        assert row.start == 0 or seam.before.text[row.start - 1].isspace()   # from a word
        assert PROMPT_WORDS[0] <= len(seam.before.text[row.start:].split()) <= PROMPT_WORDS[1]
        # the path line names the file before the seam, never the one the opening is
        # in (stage 0 names a chunk after its first words: the row's own target)
        assert Path(seam.before.path).stem in row.header or not row.header
        assert Path(seam.after.path).stem not in row.header
        # on the chat route, the text as Continue's chat box sends it (chat.as_chat_sends)
        sent = as_chat_sends(row.prompt) if row.system else row.header + row.prompt
        assert row.messages()[-2:] == [{"role": "user", "content": sent},
                                       {"role": "assistant", "content": row.continuation}]


def test_every_training_chunks_opening_is_learnt_after_the_chunk_before(result):
    assert_rows_are_the_books_text(result)
    # ten chunk files, nine seams; one chunk held out (chunk_003): its two seams are not
    # crossed, the other seven are, the split original's parts (006a -> 006b) among them
    names = [r.chunk.name for r in result.openings]
    assert len(names) == 7 and "chunk_006a_the_last_burn.txt + chunk_006b_into_the_cistern.txt" in names
    assert not any("chunk_003" in n for n in names)
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


def test_the_preview_shows_an_opening_with_its_cut(result, capsys):
    from styletune.data.prepare import preview_opening
    row = result.openings[0]
    preview_opening(row)
    out = capsys.readouterr().out
    assert f"--- scene opening: {row.chunk.name} ({row.total_tokens} tokens" in out
    before, after = out.split("cut: the model writes the next scene's opening from here")
    assert row.prompt.split("\n")[0] in before and row.continuation.split("\n")[0] in after


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
    assert [m["separator_from"] for m in manifest["scene_openings"]].count("split") == 1   # 006a -> 006b
    report = (cfg.pipeline.report_dir / "stage1_report.md").read_text(encoding="utf-8")
    assert "Scene openings: 7 training rows" in report
    assert ("Held out: 1 validation chunk opening(s), "
            f"{result.validation_openings[0].total_tokens} tokens, in validation.jsonl") in report
    assert ("Not crossed (1), a validation chunk or one left out on one side: "
            "chunk_003_the_archive_chapel.txt + chunk_004_the_long_walk.txt.") in report
    again = prepare_data(cfg)
    assert [(o.chunk.name, o.start, o.stop, o.end, o.system) for o in again.openings] == \
        [(o.chunk.name, o.start, o.stop, o.end, o.system) for o in result.openings]
    off = prepare_data(load_config(write_config(tmp_path, {"scene_openings": False})))
    assert off.openings == [] and "Scene openings: none" in \
        planned_outputs(off)[off.config.pipeline.report_dir / "stage1_report.md"].decode()
    # held out either way: runs with and without openings are validated on the same rows
    assert planned_outputs(off)[off.config.validation_path] == cfg.validation_path.read_bytes()


def test_a_validation_chunks_opening_is_held_out_after_the_chunk_before_it(result):
    # chunk_003 is held out: its opening follows chunk_002 (training, context only); the
    # seam after it (003 -> 004) would make held-out text a training row's context
    assert_rows_are_the_books_text(result, held_out=True)
    assert [r.chunk.name for r in result.validation_openings] == \
        ["chunk_002_the_infirmary.txt + chunk_003_the_archive_chapel.txt"]
    write_outputs(planned_outputs(result), force=True)
    rows = [json.loads(line) for line in result.config.validation_path.read_text(encoding="utf-8").splitlines()]
    assert [r["messages"] for r in rows] == [e.messages() for e in result.validation] + \
        [o.messages() for o in result.validation_openings]
    assert [r["ends_turn"] for r in rows] == [True] * len(result.validation) + [False]
    manifest = json.loads(result.config.data_manifest_path.read_text(encoding="utf-8"))
    assert [m["chunks"] for m in manifest["validation_scene_openings"]] == \
        [["chunk_002_the_infirmary.txt", "chunk_003_the_archive_chapel.txt"]]


NOVEL = CORPUS / "doyle_a_study_in_scarlet.txt"


@pytest.fixture(scope="module")
def doyle(tmp_path_factory):
    """A Study in Scarlet cut by stage 0: (its chunk folder, the config, the body)."""
    tmp = tmp_path_factory.mktemp("doyle")
    cfg = write_config(tmp, {"chunk_target_tokens": 700, "segment_min_tokens": 200}, sequence_len=2048)
    out = tmp / "chunks"
    assert STAGE0.main([str(NOVEL), "--config", str(cfg), "--out", str(out)]) == 0
    return out, load_config(cfg), read_manuscript(NOVEL).body


def copy_of(folder, tmp_path):
    shutil.copytree(folder, tmp_path / "book")
    return tmp_path / "book"


def assert_as_typed(result, body):
    """Every row is a stretch of the manuscript itself, byte for byte."""
    assert_rows_are_the_books_text(result)
    for row in result.openings:
        assert row.prompt + row.continuation in body, row.chunk.name


def test_a_book_cut_by_stage_0_opens_each_chapter_after_its_heading_as_typed(doyle):
    """Stage 0 records the text between its chunks (blank lines, a chapter's heading);
    each row carries it byte for byte."""
    out, cfg, body = doyle
    result = prepare_data(cfg, book_dir=out)
    assert_as_typed(result, body)
    from_stage0 = [r for r in result.openings if r.chunk.source == "stage 0"]
    assert len(from_stage0) == len(result.openings) >= 10
    headed = [r for r in from_stage0 if "CHAPTER" in r.chunk.separator]
    assert headed and all(r.prompt.rstrip().endswith(r.chunk.separator.strip()) for r in headed)


def test_a_chunk_split_after_stage_0_keeps_the_text_before_between_and_after_its_parts(doyle, tmp_path):
    """Parts written as the splitter writes them (the original's text up to the next
    part's first line, the original into backup/): the seams into, between and out of
    the parts still carry the manuscript's text."""
    out, cfg, body = doyle
    book = copy_of(out, tmp_path)
    names = sorted(p.name for p in book.glob("chunk_*.txt"))
    original = book / names[4]
    raw = original.read_text(encoding="utf-8")
    cut = raw.index("\n\n", len(raw) // 2) + 2
    stem = names[4][len("chunk_005"):]
    (book / f"chunk_005a{stem}").write_text(raw[:cut], encoding="utf-8")
    (book / f"chunk_005b{stem}").write_text(raw[cut:], encoding="utf-8")
    (book / "backup").mkdir(exist_ok=True)
    original.rename(book / "backup" / original.name)
    result = prepare_data(cfg, book_dir=book)
    assert_as_typed(result, body)
    sources = {r.chunk.name: r.chunk.source for r in result.openings}
    assert sources[f"chunk_005a{stem} + chunk_005b{stem}"] == "split"
    assert sources[f"{names[3]} + chunk_005a{stem}"] == sources[f"chunk_005b{stem} + {names[5]}"] == "stage 0"


def test_where_the_record_no_longer_fits_no_row_crosses_and_the_report_says_why(doyle, tmp_path):
    out, cfg, body = doyle
    book = copy_of(out, tmp_path)
    record = json.loads((book / SEGMENT_MANIFEST).read_text(encoding="utf-8"))
    names = [c["file"] for c in record["chunks"]]
    # front matter between two chunks: more than a heading
    record["separators"][3] = "\n\n" + "A note on the text of this edition. " * 15 + "\n\n"
    (book / SEGMENT_MANIFEST).write_text(json.dumps(record), encoding="utf-8")
    # a heading the writer moved into the chunk after it
    headed = next(i for i, sep in enumerate(record["separators"]) if "CHAPTER" in sep and 6 <= i < len(names) - 2)
    after = book / names[headed]
    after.write_text(record["separators"][headed].strip() + "\n\n" + after.read_text(encoding="utf-8"),
                     encoding="utf-8")
    # chunks renumbered by hand: the record names neither
    renamed = names[-1][:len("chunk_000_")] + "renamed_by_hand.txt"
    (book / names[-1]).rename(book / renamed)
    result = prepare_data(cfg, book_dir=book)
    unknown = {s.name: s.source for s in result.seams if s.separator is None}
    words = len(record["separators"][3].split())
    assert unknown[f"{names[2]} + {names[3]}"] == f"stage 0 found {words} words between them, not a heading"
    assert unknown[f"{names[headed - 1]} + {names[headed]}"] == "the heading stage 0 found between them is in a chunk now"
    assert "renamed or renumbered" in unknown[f"{names[-2]} + {renamed}"]
    assert not {r.chunk.name for r in result.openings} & set(unknown)
    report = planned_outputs(result)[cfg.pipeline.report_dir / "stage1_report.md"].decode()
    assert "Not crossed, the text between unknown: " in report and f"{words} words" in report


def test_an_excluded_chunk_leaves_a_gap_and_an_opening_ends_at_the_first_of_several_cuts(tmp_path):
    cfg = load_config(write_config(tmp_path, {"exclude_chunks": ["chunk_005_the_captains_table.txt"],
                                              "cuts_per_chunk": 2}))
    result = prepare_data(cfg)
    assert len(result.openings) == 5              # 7, less the two seams of chunk_005
    assert_rows_are_the_books_text(result)       # up to the earliest of the chunk's two cuts
    assert all(sum(e.chunk.name == o.chunk.after.name for e in result.train) == 2 for o in result.openings)
    assert not any("chunk_005" in o.chunk.name for o in result.openings)
    report = planned_outputs(result)[cfg.pipeline.report_dir / "stage1_report.md"].decode()
    assert ("do not follow by their numbers (a number skipped; no row crosses): "
            "chunk_004_the_long_walk.txt + chunk_006a_the_last_burn.txt") in report


def test_a_row_longer_than_sequence_len_is_left_out_and_named(tmp_path, capsys):
    """A rules file so long that the chat route's rows (a quarter of them open with it)
    pass sequence_len: they are left out, named on the terminal; the examples, which
    never carry it, all stay."""
    rules = tmp_path / "rules.md"
    rules.write_text("Write in the voice of the book, as the writer does. " * 350, encoding="utf-8")
    cfg = load_config(write_config(tmp_path, {"system_prompt_file": str(rules)}))
    result = prepare_data(cfg)
    long_rows = result.long_rows
    assert long_rows and all(r.system and r.total_tokens > cfg.sequence_len for r in long_rows)
    assert all(r.total_tokens <= cfg.sequence_len for r in result.rows_without_end + result.train)
    assert len(result.train) == 9
    warning = [w for w in result.warnings() if "longer than sequence_len left out" in w]
    assert warning and warning[0].startswith(f"{len(long_rows)} join drill(s) or scene opening(s)")


@pytest.mark.parametrize("part_ends, between", [
    ("It was late.\n\n", "\n\n"),
    ("It was late.\n\n\n\n", "\n\n\n\n"),     # a scene break of blank lines, as typed
    ("It was late. ", " "),                      # cut inside a long paragraph, at a sentence end
    ("It was late.\n", "\n\n"),                 # an editor trimmed the file: the book's break
])
def test_the_text_between_split_parts_is_what_the_splitter_left(tmp_path, part_ends, between):
    part = tmp_path / "chunk_005a_x.txt"
    part.write_text(part_ends, encoding="utf-8")
    assert split_separator(Chunk(part, part_ends.strip(), ""), "\n\n") == between


def test_a_long_chapter_title_is_a_heading_between_chunks_and_a_page_of_notes_is_not():
    from styletune.data.openings import usable
    title = ("IS A VERY SHORT ONE, AND MAY APPEAR OF NO GREAT IMPORTANCE IN ITS\nPLACE, BUT IT SHOULD "
             "BE READ NOTWITHSTANDING, AS A SEQUEL TO THE LAST,\nAND A KEY TO ONE THAT WILL FOLLOW "
             "WHEN ITS TIME ARRIVES")      # Oliver Twist, chapter XXXVI: 41 words with its number
    assert usable("\n\n\n\nCHAPTER XXXVI\n\n" + title + "\n\n\n\n")
    assert not usable("\n\n" + "A note on the text of this edition. " * 15 + "\n\n")
    assert usable("\n\n") and usable(" ") and not usable("and so")


def test_a_heading_counts_as_moved_into_a_chunk_only_as_whole_lines():
    chunk = lambda name, text: Chunk(Path(name), text, "")  # noqa: E731
    plain, next_one = chunk("chunk_001.txt", "He said *nothing*"), chunk("chunk_002.txt", "The next day.")
    assert not repeats("\n\n*\n\n", plain, next_one)        # a scene mark, not the italics' star
    assert repeats("\n\nCHAPTER II.\n\n", plain, chunk("chunk_002.txt", "CHAPTER II.\n\nThe next day."))
    assert repeats("\n\nCHAPTER II.\n\n", chunk("chunk_001.txt", "The end.\n\n  CHAPTER II."), next_one)
    assert not repeats("\n\nCHAPTER II.\n\n", chunk("chunk_001.txt", "as in CHAPTER II."), next_one)
    assert not repeats("\n\n\n", plain, next_one)


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
