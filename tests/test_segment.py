"""Stage 0 (manuscript -> chunks) and the oversized-chunk splitter: structure found
in real and generated books, every word conserved, budgets kept, reruns safe, bad
input refused with one line."""
import json
import random
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import CORPUS, FT, SAMPLE_BOOK, load_script
from styletune.data.manuscript import analyse, chapter_numbers, read_manuscript, rebuild
from styletune.data.seam_model import candidates, units
from styletune.data.seams import Lengths, plan
from styletune.text.patterns import word_count

STAGE0 = load_script(FT / "training" / "0_segment_manuscript.py")
SPLIT = load_script(FT / "training" / "split_oversized_chunks.py")
MANUSCRIPT = SAMPLE_BOOK / "the_quiet_orbit_full_manuscript.txt"


def every_file(folder):
    return {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def chunk_files(folder):
    return sorted(folder.glob("chunk_*.txt"))


def assert_conserved(out_dir, body):
    """The chunk files and the manifest's separators give the manuscript body back."""
    manifest = json.loads((out_dir / "segment_manifest.json").read_text(encoding="utf-8"))
    texts = [(out_dir / c["file"]).read_text(encoding="utf-8")[:-1] for c in manifest["chunks"]]
    assert rebuild(texts, manifest["separators"]) == body
    return manifest


# --- structure -------------------------------------------------------------------

@pytest.mark.parametrize("novel, chapters, first, last", [
    ("wells_the_war_of_the_worlds.txt", 27, "I. THE EVE OF THE WAR.", "X. THE EPILOGUE."),
    ("stevenson_jekyll_and_hyde.txt", 10, "STORY OF THE DOOR", "HENRY JEKYLL'S FULL STATEMENT"),
    ("doyle_a_study_in_scarlet.txt", 14, "CHAPTER I. MR. SHERLOCK HOLMES.", "CHAPTER VII. THE CONCLUSION."),
    # every chapter's summary under its number is its title, wrapped over lines or not
    ("dickens_oliver_twist.txt", 53, "CHAPTER I / TREATS OF THE PLACE WHERE OLIVER TWIST WAS BORN AND OF "
     "THE CIRCUMSTANCES ATTENDING HIS BIRTH", "CHAPTER LIII / AND LAST"),
])
def test_chapter_headings_of_real_novels(novel, chapters, first, last):
    ms = read_manuscript(CORPUS / novel)
    assert ms.gutenberg_stripped and "PROJECT GUTENBERG" not in ms.body.upper()[-3000:]
    structure = analyse(ms.body)
    titles = [t for _, t in structure.chapters]
    real = [t for t in titles if "CHAPTER" in t or novel.startswith(("wells", "stevenson"))]
    assert len(real) == chapters, titles
    assert real[0].endswith(first) and real[-1].startswith(last)
    if novel.startswith("dickens"):
        assert all(" / " in t for t in real)
        openings = [ms.body[s.paras[0].start:s.paras[0].end] for s in structure.sections if s.paras]
        assert not [o for o in openings if o.isupper()]      # no title left as the text's first paragraph
        # the front matter's count is every word before CHAPTER I: title page and contents
        assert structure.front_matter[2] == word_count(ms.body[:ms.body.index("CHAPTER I\n\nTREATS")])


def test_heading_styles_and_scene_breaks_in_one_paragraph_per_line_text():
    filler = " ".join(["The nets hung drying on the wall while the gulls argued overhead."] * 6)
    text = "\n".join([
        "# The Salt Road", "",
        "Prologue",
        "'Where are you going?' she asked.",
        "'Out,' said Tom. 'Don't wait up.'",
        filler,
        "CHAPTER IV.",
        "The harbour was empty that morning. " + filler,
        "* * *",
        "Later, the boats came back. " + filler,
        "Seventh memory - Mother",
        "My mother kept bees. " + filler,
        "§",
        filler,
        "Chapter 1",
        "It rained for a week. " + filler,
    ])
    st = analyse(text)
    assert st.one_per_line
    assert [t for _, t in st.chapters] == ["# The Salt Road / Prologue", "CHAPTER IV.",
                                           "Seventh memory - Mother", "Chapter 1"]
    reasons = [s.reason for s in st.sections]
    assert reasons == ["chapter heading: # The Salt Road / Prologue", "chapter heading: CHAPTER IV.",
                       "scene break: * * *", "chapter heading: Seventh memory - Mother",
                       "scene break: §", "chapter heading: Chapter 1"]


def test_book_one_then_numeral_and_title_line():
    prose = "No one would have believed in the last years of the\nnineteenth century that this world was being watched\nkeenly and closely. " * 8
    text = ("BOOK ONE\nTHE COMING\n\n\n\nI.\nTHE EVE.\n\n\n" + prose
            + "\n\nIt was so.\n\n\n\n\nII.\nTHE STAR.\n\n\nThen came the\nnight. " + prose)
    st = analyse(text)
    assert [t for _, t in st.chapters] == ["BOOK ONE THE COMING / I. THE EVE.", "II. THE STAR."]


# --- stage 0 end to end -------------------------------------------------------------

def test_sample_manuscript_into_a_scratch_folder(tmp_path, make_config, capsys):
    cfg = make_config()
    out = tmp_path / "segmented"
    assert STAGE0.main([str(MANUSCRIPT), "--config", str(cfg), "--out", str(out)]) == 0
    files = chunk_files(out)
    assert 6 <= len(files) <= 14
    manifest = assert_conserved(out, read_manuscript(MANUSCRIPT).body)
    assert all(500 <= c["tokens"] <= 4096 for c in manifest["chunks"])
    assert (out / "segment_report.md").read_text().count("| chunk_") == len(files)
    review = json.loads((out / "segment_review.json").read_text(encoding="utf-8"))["seams"]
    assert all(e["id"] in (out / "segment_review.md").read_text() for e in review)
    # a rerun gives identical files and needs no --force
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert STAGE0.main([str(MANUSCRIPT), "--config", str(cfg), "--out", str(out)]) == 0
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    # stage 1 takes the folder as it is
    stage1 = load_script(FT / "training" / "1_prepare_data.py")
    assert stage1.main(["--config", str(cfg), "--book", str(out), "--dry-run"]) == 0


def test_refuses_a_folder_of_hand_curated_chunks(book_copy, make_config, capsys):
    before = every_file(book_copy)
    code = STAGE0.main([str(MANUSCRIPT), "--config", str(make_config()), "--out", str(book_copy)])
    err = capsys.readouterr().err
    assert code == 2 and "already holds chunk files" in err and "--force" in err
    assert "Traceback" not in err
    assert every_file(book_copy) == before


def test_without_out_stage_0_writes_where_stage_1_will_read(tmp_path, make_config):
    """Without --out: the book_dir the writer set; while book_dir is still the sample
    book's (tracked by git), data/raw/<manuscript name>/ beside it, as make book uses,
    and never the sample's folder, unless the manuscript is the sample's own."""
    from styletune.config import load_config
    from styletune.data.segment import chunk_folder
    draft = tmp_path / "My Novel (draft 3).txt"
    draft.write_bytes(MANUSCRIPT.read_bytes())
    sample = load_config(make_config())
    assert chunk_folder(sample, draft) == SAMPLE_BOOK.parent / "my_novel_draft_3"
    assert chunk_folder(sample, MANUSCRIPT) == SAMPLE_BOOK
    mine = tmp_path / "raw" / "my_novel"
    assert STAGE0.main([str(draft), "--config", str(make_config({"book_dir": str(mine)}))]) == 0
    assert chunk_files(mine) and not (tmp_path / "raw" / "my_novel_draft_3").exists()


def test_a_file_where_the_folder_goes_is_one_line_not_a_traceback(tmp_path, make_config, capsys):
    taken = tmp_path / "chunks"
    taken.write_text("a note")
    code = STAGE0.main([str(MANUSCRIPT), "--config", str(make_config()), "--out", str(taken)])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert f"{taken}: that path is a file: give a folder" in err and taken.read_text() == "a note"


def test_force_moves_old_chunks_into_backup(book_copy, make_config):
    old = {p.name for p in chunk_files(book_copy)}
    assert STAGE0.main([str(MANUSCRIPT), "--config", str(make_config()), "--out", str(book_copy),
                        "--force"]) == 0
    assert old <= {p.name for p in (book_copy / "backup").iterdir()}


def test_a_recut_backs_up_every_chunk_it_replaces_and_keeps_each_earlier_version(tmp_path, make_config):
    out, config = tmp_path / "chunks", make_config()
    revised = tmp_path / "revised.txt"
    assert STAGE0.main([str(MANUSCRIPT), "--config", str(config), "--out", str(out)]) == 0
    earlier = []
    for name in ("Hadji", "Haaji"):                    # two revisions, each recut over the last
        earlier.append({p.read_bytes() for p in chunk_files(out)})
        revised.write_text(MANUSCRIPT.read_text().replace("Haji", name))
        assert STAGE0.main([str(revised), "--config", str(config), "--out", str(out), "--force"]) == 0
        assert any(name in p.read_text() for p in chunk_files(out))
    now = {p.read_bytes() for p in chunk_files(out)}
    kept = {p.read_bytes() for p in (out / "backup").iterdir()}
    for version in earlier:                           # every replaced chunk, as it was
        assert version - now and version - now <= kept
    assert any(".2." in p.name for p in (out / "backup").iterdir())   # a name backed up twice


def test_a_recut_never_puts_a_chunk_the_writer_edited_into_backup(tmp_path, make_config, capsys):
    """--force is in the review's own command: it must not stand for 'replace my edits'."""
    out, config = tmp_path / "chunks", make_config()
    assert STAGE0.main([str(MANUSCRIPT), "--config", str(config), "--out", str(out)]) == 0
    edited = chunk_files(out)[2]
    edited.write_text(edited.read_text() + "A line the writer added.\n")
    before = every_file(out)
    capsys.readouterr()
    assert STAGE0.main([str(MANUSCRIPT), "--config", str(config), "--out", str(out), "--force"]) == 2
    err = capsys.readouterr().err
    assert f"changed since stage 0 wrote them ({edited.name})" in err and "into the manuscript" in err
    assert "Traceback" not in err
    assert every_file(out) == before
    # an answer said back before the refusal is said not to be recorded, and is not
    assert STAGE0.main([str(MANUSCRIPT), "--config", str(config), "--out", str(out), "--force",
                        "--decide", "cut:It should be explained, for those"]) == 2
    assert "answer(s) above were not recorded" in capsys.readouterr().err
    assert every_file(out) == before
    # a chunk emptied by mistake: stage 1 says how many words stage 0 wrote there, and how to get them back
    edited.write_text("")
    stage1 = load_script(FT / "training" / "1_prepare_data.py")
    assert stage1.main(["--config", str(config), "--book", str(out), "--dry-run"]) == 0
    record = json.loads((out / "segment_manifest.json").read_text())
    words = next(c["words"] for c in record["chunks"] if c["file"] == edited.name)
    assert Path(record["manuscript"]).resolve() == MANUSCRIPT.resolve()
    start, end = (next(c[k] for c in record["chunks"] if c["file"] == edited.name) for k in ("start", "end"))
    body = read_manuscript(MANUSCRIPT)
    lines = f"lines {body.line_of(start)}-{body.line_of(end - 1)}"
    assert (f"{edited.name}: EMPTY, though stage 0 wrote {words:,} words here from {lines} of "
            f"{record['manuscript']}: if they went by mistake, copy them back from there") in capsys.readouterr().err
    # those lines hold the chunk's words
    written = before[edited.relative_to(out)].decode().replace("A line the writer added.\n", "")
    assert " ".join(written.split()) in " ".join(
        "".join(MANUSCRIPT.read_text().splitlines(keepends=True)[body.line_of(start) - 1:body.line_of(end - 1)]).split())
    # an edit undone (or a recut that writes the file as it now is) recuts as before
    edited.write_bytes(before[edited.relative_to(out)].replace(b"A line the writer added.\n", b""))
    assert STAGE0.main([str(MANUSCRIPT), "--config", str(config), "--out", str(out), "--force"]) == 0


def random_prose(seed):
    """prose(n): n paragraphs of 40 random words of a small vocabulary, blank-line separated."""
    rng = random.Random(seed)
    words = "the sea wind house road lamp bread salt rope night morning boat".split()
    return lambda n: "\n\n".join(" ".join(rng.choices(words, k=40)).capitalize() + "." for _ in range(n))


def cut_generated_novel(text, tmp_path, make_config, capsys):
    """Stage 0 on `text`, every word conserved: (what it printed, the chunks' texts, their names)."""
    src = tmp_path / "novel.txt"
    src.write_text(text, encoding="utf-8")
    out = tmp_path / "out"
    cfg = make_config({"chunk_target_tokens": 900, "segment_min_tokens": 100}, sequence_len=2048)
    assert STAGE0.main([str(src), "--config", str(cfg), "--out", str(out)]) == 0
    manifest = assert_conserved(out, read_manuscript(src).body)
    names = [c["file"] for c in manifest["chunks"]]
    return capsys.readouterr().out, [(out / n).read_text(encoding="utf-8") for n in names], names


def test_chunk_names_carry_the_writers_chapter_numbers(tmp_path, make_config, capsys):
    """A Chapter 4 of one short paragraph is heading matter, not a chunk: Chapter 5's file
    still says ch05 (it said ch04, counting the chapters that have chunks), and an
    Epilogue after it ch06. Where the numbers start again in each part, the chapters are
    counted in order, so no two chapters share a name."""
    prose = random_prose(6)
    text = "".join(f"Chapter {n}\n\n{prose(1 if n == 4 else 25)}\n\n" for n in range(1, 6)) \
        + f"Epilogue\n\n{prose(25)}\n"
    printed, _, names = cut_generated_novel(text, tmp_path, make_config, capsys)
    chapters = sorted({n.split("_")[2] for n in names})
    assert chapters == ["ch01", "ch02", "ch03", "ch05", "ch06"], names
    assert "before 'Chapter 5'" in printed        # the short chapter's words, said
    parts = "".join(f"PART {p}\n\n" + "".join(f"CHAPTER {r}\n\n{prose(25)}\n\n" for r in ("I", "II"))
                    for p in ("ONE", "TWO"))
    (tmp_path / "parts").mkdir()
    _, _, names = cut_generated_novel(parts, tmp_path / "parts", make_config, capsys)
    assert sorted({n.split("_")[2] for n in names}) == ["ch01", "ch02", "ch03", "ch04"], names
    (tmp_path / "untitled").mkdir()       # text before the first heading: ch00, as a prologue
    _, _, names = cut_generated_novel(prose(25) + "\n\nChapter 1\n\n" + prose(25) + "\n",
                                      tmp_path / "untitled", make_config, capsys)
    assert sorted({n.split("_")[2] for n in names}) == ["ch00", "ch01"], names


def test_a_journals_label_inside_a_chapter_is_its_text_not_a_chapter(tmp_path, make_config, capsys):
    """In a book whose chapters have numbered headings, a label set apart on its own
    line ("_Lucy's Diary_", two blank lines before it, its entry right under it) stays
    in the chunk with the entry, and the chapters after it keep their own numbers (taken
    for a chapter, it named Dracula's CHAPTER X ch11). A title under a chapter's
    number is still that chapter's title."""
    prose = random_prose(7)
    text = (f"CHAPTER I\n\n_Jonathan's Journal_\n\n{prose(25)}\n\n\n_Lucy's Diary_\n\n{prose(25)}\n\n"
            f"CHAPTER II\n\n{prose(25)}\n\nCHAPTER III\n\n{prose(25)}\n")
    structure = analyse(text)
    assert [t for _, t in structure.chapters] == ["CHAPTER I / _Jonathan's Journal_", "CHAPTER II", "CHAPTER III"]
    _, texts, names = cut_generated_novel(text, tmp_path, make_config, capsys)
    assert sorted({n.split("_")[2] for n in names}) == ["ch01", "ch02", "ch03"], names
    holding = [n for n, t in zip(names, texts) if "_Lucy's Diary_" in t]
    assert len(holding) == 1 and holding[0].split("_")[2] == "ch01"
    # a label soon after a chapter's heading (after its epigraph) is still that chapter's title
    epigraph = (f"CHAPTER I\n\n“The sea is not for the likes of us.”\n\n— A Sailor\n\n\nThe Storm Comes\n\n"
                f"{prose(5)}\n\nCHAPTER II\n\n{prose(5)}\n\nCHAPTER III\n\n{prose(5)}\n")
    titles = [t for _, t in analyse(epigraph).chapters]
    assert len(titles) == 3 and titles[0].endswith("The Storm Comes"), titles
    # a book whose chapters are titles in capitals keeps them, a stray "Letter 1" or two among them
    days = ["THE FIRST DAY", "THE SECOND DAY", "THE THIRD DAY", "THE FOURTH DAY", "THE FIFTH DAY"]
    caps_book = (f"{days[0]}\n\n{prose(3)}\n\nLetter 1\n\n{prose(2)}\n\nLetter 2\n\n{prose(2)}\n\n\n"
                 + "\n\n\n".join(f"{day}\n\n{prose(5)}" for day in days[1:]) + "\n")
    titles = [t for _, t in analyse(caps_book).chapters]
    assert [t for t in titles if "DAY" in t] == days[1:], titles     # the first, 120 words, front matter as before
    # Dracula: 27 chapters and the closing NOTE; its journals' labels are no chapters
    titles = [t for _, t in analyse(read_manuscript(CORPUS / "stoker_dracula.txt").body).chapters]
    assert len(titles) == 28 and titles[-1] == "NOTE" and titles[9] == "CHAPTER X"


@pytest.mark.parametrize("label, line", [
    ("BOOK ONE / CHAPTER I.", "CHAPTER I."), ("The Glass Harbour / The Crossing", "The Crossing"),
    ("The Crossing / Dover, 1943", "The Crossing"), ("Salt and Iron / 14 March 1897", "Salt and Iron"),
    ("Chapter 3 / A Little Night Music", "A Little Night Music"), ("", "")])
def test_a_chunk_is_named_for_the_title_not_the_dateline_under_it(label, line):
    from styletune.data.manuscript import _naming_line
    assert _naming_line(label) == line


@pytest.mark.parametrize("titles, numbers", [
    (["Chapter 1 / The Prelude to War", "Chapter 2", "Chapter 3"], [1, 2, 3]),   # a title, no prologue
    (["Chapter Nineteen", "Chapter Twenty-One", "Chapter Twenty Two"], [19, 21, 22]),
    (["Prologue", "Chapter 1", "Epilogue"], [0, 1, 2]),
    (["BOOK ONE / CHAPTER I. / THE EVE", "CHAPTER II.", "PART TWO", "CHAPTER IV."], [1, 2, 3, 4]),
    (["Chapter 3", "Chapter 2"], [1, 2]),                          # going down: counted in order
])
def test_chapter_numbers_read_the_writers_own(titles, numbers):
    chunks = [SimpleNamespace(chapter=n, chapter_title=t) for n, t in enumerate(titles, 1)]
    assert list(chapter_numbers(chunks).values()) == numbers


@pytest.mark.parametrize("contents, titles, line", [
    ("CONTENTS\n\nTHE SALT ROAD\n\nTHE LAMP\n\nTHE BOAT", ("THE SALT ROAD", "THE LAMP", "THE BOAT"), 3),
    ("CONTENTS\n\nCHAPTER I ........ 1\nCHAPTER II ........ 9\nCHAPTER III ........ 20",   # page numbers
     ("CHAPTER I", "CHAPTER II", "CHAPTER III"), 5),
])
def test_a_contents_list_is_named_and_kept_out_of_the_first_chapters_heading(contents, titles, line, tmp_path,
                                                                                make_config, capsys):
    """A contents list runs straight into the first chapter's heading (nothing but
    headings between them): the chapter is headed by its own, and the list is one
    note with its count, kept out of the chunks (every word in the manifest)."""
    prose = random_prose(5)
    text = f"THE TIDE BOOK\n\n{contents}\n\n" + "".join(f"{title}\n\n{prose(30)}\n\n" for title in titles)
    printed, texts, names = cut_generated_novel(text, tmp_path, make_config, capsys)
    assert f"a contents list (3 entries, line {line}) is not a chunk" in printed
    assert f"chapter heading: {titles[0]} |" in printed and "CONTENTS /" not in printed.upper()
    assert [name.split("_ch")[1][:2] for name in names] == ["01", "02", "03"]
    assert not any("........" in t or "CONTENTS" in t.upper() for t in texts)


def test_a_heading_with_a_wide_space_before_its_number_is_no_contents_entry(tmp_path, make_config, capsys):
    """'Chapter  1' (two spaces, or a tab) reads as an entry and its page only under
    a Contents line; alone it heads its chapter."""
    prose = random_prose(6)
    text = "".join(f"Chapter{gap}{n}\n\n{prose(30)}\n\n" for n, gap in ((1, "  "), (2, "\t"), (3, "  ")))
    printed, texts, names = cut_generated_novel(text, tmp_path, make_config, capsys)
    assert "contents list" not in printed and "chapter heading:  |" not in printed
    assert [name.split("_ch")[1][:2] for name in names] == ["01", "02", "03"]


def test_a_prologue_is_text_a_contents_list_one_note_and_what_follows_the_end_back_matter(
        tmp_path, make_config, capsys):
    """Around the novel: a table of contents is one note, not one per entry; a short
    prologue under its own heading is the author's (it was front matter, a Dorian Gray
    preface dropped); a publisher's list after THE END is kept out of the chunks."""
    prose = random_prose(4)
    contents = "\n\n".join(f"CHAPTER {r}\n\nThe {w} at night    {p}"
                           for r, w, p in zip(("I", "II", "III"), ("sea", "road", "boat"), (1, 9, 20)))
    prologue = "The harbour was older than the town. " + prose(2)
    text = (f"THE TIDE BOOK\n\nCONTENTS\n\n{contents}\n\nPROLOGUE\n\n{prologue}\n\n"
            + "".join(f"CHAPTER {r}\n\n{prose(30)}\n\n" for r in ("I", "II", "III"))
            + "THE END\n\nMORE BOOKS FROM OUR LIST\n\nTHE SALT ROAD\n\nThe Lamp and the Boat\n")
    printed, texts, names = cut_generated_novel(text, tmp_path, make_config, capsys)
    assert texts[0].startswith("The harbour was older than the town.")
    assert names[0].endswith("_ch00_prologue.txt") and "_ch01_" in names[1]   # the prologue: chapter 0
    assert not any("THE END" in t or "MORE BOOKS" in t or "Lamp and the Boat" in t for t in texts)
    assert "back matter from 'THE END' (line" in printed and "move it before that line" in printed
    assert "structure: 4 chapter(s)" in printed
    # the word CONTENTS and the three entries: every word out of the chunks is counted
    assert printed.count("between the headings before") == 1 and "16 word(s)" in printed
    assert "4 short stretches" in printed


def test_the_end_as_the_last_chapters_title_is_no_closing_the_end(tmp_path, make_config, capsys):
    """'The End' under 'Chapter 4' names the last chapter: its text stays in the chunks.
    A closing THE END with the story's words after it is read as back matter, and the
    note quotes those words, so the writer sees what was set aside."""
    prose = random_prose(10)
    body = "".join(f"Chapter {n}\n\n{prose(30)}\n\n" for n in (1, 2, 3))
    text = body + f"Chapter 4\n\nThe End\n\n{prose(4)}\n"
    printed, texts, _ = cut_generated_novel(text, tmp_path, make_config, capsys)
    assert "back matter from" not in printed and " ".join(texts).split()[-12:] == text.split()[-12:]
    # set apart by extra blank lines, in either layout, a closing "The End" still closes
    assert analyse(body + "\n\nThe End\n\nReading Group Guide\n\n" + prose(1) + "\n").back_matter
    assert analyse(body.replace("\n\n", "\n") + "\nThe End\nReading Group Guide\n" + prose(1) + "\n").back_matter
    closing = tmp_path / "closing"
    closing.mkdir()
    printed, texts, _ = cut_generated_novel(body + "THE END\n\n“Is that what the sign says?” she asked.\n",
                                            closing, make_config, capsys)
    assert "back matter from 'THE END' (line" in printed and "(8 words, from ““Is that what the sign" in printed


def test_a_markdown_comment_is_a_note_to_self_and_stage_0_says_so(tmp_path, make_config, capsys):
    """<!-- TODO: ... --> in a Markdown manuscript: no reader sees it, the model would
    learn it. Stage 0 keeps every character (it never edits the text) and warns with
    the line and a command that removes comments."""
    prose = random_prose(11)
    text = f"Chapter 1\n\n{prose(20)}\n\n<!-- TODO: Baptiste needs a backstory -->\n\n{prose(20)}\n"
    printed, texts, _ = cut_generated_novel(text, tmp_path, make_config, capsys)
    line = text.split("\n").index("<!-- TODO: Baptiste needs a backstory -->") + 1
    assert f"WARNING: 1 comment(s) <!-- ... --> in the text (line {line})" in printed and "perl -0777" in printed
    assert any("Baptiste" in t for t in texts)
    # the warning's own command: every comment gone, no paragraphs joined, no blank line
    # left over to read as a scene break, one paragraph a line or blank-line separated
    for text in ("Para one.\n\n<!-- a\nnote -->\n\nPara two. <!-- inline --> end.\n",
                 "She left. <!-- x -->\nHe stayed.\n<!-- own line -->\nThey ate.\n"):
        cleaned = run_printed_command(printed, text.encode("utf-8")).decode("utf-8")
        assert cleaned in ("Para one.\n\nPara two. end.\n", "She left.\nHe stayed.\nThey ate.\n"), cleaned


def test_bracketed_notes_are_an_editions_or_a_writers_and_stage_0_lists_them(tmp_path, make_config, capsys):
    """'[Footnote: ...]' left by an edition (Oliver Twist has one inline) and '[TK: ...]' a
    writer left to fill are not the story: stage 0 keeps every character and warns with
    the lines and a command that lists the lines they open on, which the writer decides
    (no command can write the passage a TK stands for). Brackets that open with another
    word are prose, and so is a sign's '[Check one box]' (no colon after the word)."""
    import re
    import shlex
    import subprocess
    prose = random_prose(12)
    text = (f"Chapter 1\n\n{prose(20)} The press.[Footnote:  Or were\nvirtually, then.] Mr. Fang sat.\n\n"
            f"{prose(20)} She sailed in [TK: year] at dawn, and [Tkachenko] waved.\n\n"
            f"{prose(20)} The form said [Check one box] in red.\n")
    printed, texts, _ = cut_generated_novel(text, tmp_path, make_config, capsys)
    lines = text.split("\n")
    first = next(i for i, line in enumerate(lines) if "[Footnote" in line) + 1
    second = next(i for i, line in enumerate(lines) if "[TK" in line) + 1
    assert f"WARNING: 2 bracketed note(s) such as '[Footnote: ...]' or '[TK: ...]' in the text (line {first}, line {second})" in printed
    assert "".join(texts).count("[Footnote:  Or were") == 1 and "[TK: year]" in "".join(texts)
    lister = re.search(r"list them: (perl .*?) IN\)", printed).group(1)
    listed = subprocess.run(shlex.split(lister), input=text.encode("utf-8"), capture_output=True).stdout.decode()
    assert [int(row.split(":")[0]) for row in listed.splitlines()] == [first, second]


NOTES = {  # text: bracketed notes that open in it
    "[TK: year": 1, "[TODO: see [ref] page]": 1, "[**TODO**: x]": 1, "[*TK*]": 1, "[Notes: a]": 1,
    "[Ed.: x]": 1, "[Author's note: x]": 1, "[Author’s note: x]": 1, "[Translator's note]": 1,
    "press.[Footnote:  Or were": 1, "[Footnote 1: Front": 1, "[Illustration]": 1, "[check: 1910?]": 1,
    "[note]": 1, "[Cut]": 1, "the harbour.[^1] She": 1, "[^1]: Built in 1843.": 1,
    # the story's own brackets
    "[Check one box]": 0, "[Add to cart]": 0, "[Cut to: the ship]": 0, "[TK-421 saluted]": 0,
    "[Notebook]": 0, "[Tkachenko]": 0, "[1]": 0, "[^ x]": 0,
}


def test_the_bracketed_notes_count_and_the_listing_command_agree():
    """Each opening of an edition's note, a writer's note to self or a Markdown footnote
    is counted once, and the perl command the warning prints lists exactly those lines;
    the story's own brackets are neither."""
    import re
    import shlex
    import subprocess

    from styletune.text.patterns import BRACKETED_NOTES_COMMAND, bracketed_notes
    assert {text: len(bracketed_notes(text)) for text in NOTES} == NOTES
    lister = re.search(r"(perl .*?) IN$", BRACKETED_NOTES_COMMAND).group(1)
    listed = subprocess.run(shlex.split(lister), input="\n".join(NOTES).encode("utf-8"),
                            capture_output=True, check=True).stdout.decode("utf-8")
    assert [int(row.split(":")[0]) for row in listed.splitlines()] == \
        [n for n, found in enumerate(NOTES.values(), 1) if found]


def test_a_markdown_metadata_block_is_no_chunk_and_a_story_opening_on_a_break_is_no_metadata(
        tmp_path, make_config, capsys):
    """A Markdown manuscript that opens with its metadata ('---', 'title: ...', '---', as
    Pandoc, Jekyll and Obsidian write it) and has no chapter headings: the block is kept
    verbatim before the first chunk, said so, and no chunk holds 'title:'; its '---' is
    no scene break. A story that opens on a '---' break with prose after it, no 'key:'
    line, keeps its text in the chunks."""
    from styletune.data.manuscript import metadata_block_end
    prose = random_prose(13)
    meta = "---\ntitle: The Salt Road\nauthor: A. Writer\ntags:\n  - draft\n---\n\n"
    opening = prose(25)
    text = meta + f"{opening}\n\n---\n\n{prose(25)}\n"
    printed, texts, _ = cut_generated_novel(text, tmp_path, make_config, capsys)
    assert "the metadata block at the top ('---' ... '---', 6 lines" in printed
    assert not any("title:" in t or "A. Writer" in t for t in texts)
    assert texts[0].startswith(opening[:40])
    assert metadata_block_end(text) == len(meta.rstrip("\n"))
    assert metadata_block_end(f"---\n\n{prose(3)}\n\n---\n\n{prose(3)}\n") == 0
    assert metadata_block_end("---\nShe said: no.\n---\n") == 0      # a line of the story, not a key


def test_generated_novel_one_paragraph_per_line_never_crosses_a_chapter(tmp_path, make_config):
    rng = random.Random(3)
    words = "the sea wind house road lamp bread salt rope night morning boat".split()
    lines = []
    for ch in range(1, 5):
        lines.append(f"Chapter {ch}")
        for scene in range(3):
            if scene:
                lines.append("***")
            for _ in range(rng.randint(4, 30)):
                if rng.random() < 0.4:
                    lines.append(f"'{' '.join(rng.choices(words, k=8)).capitalize()},' said Ann. "
                                 f"'Don't you {rng.choice(words)}?'")
                else:
                    lines.append(" ".join(rng.choices(words, k=60)).capitalize() + ".")
    src = tmp_path / "novel.md"
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    cfg = make_config({"chunk_target_tokens": 900, "segment_min_tokens": 300}, sequence_len=2048)
    assert STAGE0.main([str(src), "--config", str(cfg), "--out", str(out)]) == 0
    manifest = assert_conserved(out, read_manuscript(src).body)
    chapters = {}
    for c in manifest["chunks"]:
        text = (out / c["file"]).read_text(encoding="utf-8")
        assert "Chapter " not in text and not text.rstrip().endswith("***")
        assert c["tokens"] <= 2048
        assert c["file"].startswith("chunk_") and "_ch0" in c["file"]
        chapters.setdefault(c["file"].split("_")[2], []).append(c)
    assert len(chapters) == 4
    for chunks in chapters.values():       # every heading starts a chunk; none shorter than the
        assert chunks[0]["starts_here_because"].startswith("chapter heading")   # minimum but a
        assert len(chunks) == 1 or all(c["tokens"] >= 300 for c in chunks)   # chapter that short


# --- bad input ----------------------------------------------------------------------

def test_empty_manuscript(tmp_path, make_config, capsys):
    src = tmp_path / "empty.txt"
    src.write_text("\n\n  \n", encoding="utf-8")
    assert STAGE0.main([str(src), "--config", str(make_config()), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "empty" in err and str(src) in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_a_folder_or_a_one_chunk_manuscript_says_what_to_do(tmp_path, make_config, capsys):
    assert STAGE0.main([str(tmp_path), "--config", str(make_config()), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "is a folder: stage 0 cuts one manuscript file" in err and "--book" in err
    src = tmp_path / "tiny.txt"
    src.write_text("The tide came in. Nobody saw it.\n\nThe boats went out. Nobody cared.\n", encoding="utf-8")
    assert STAGE0.main([str(src), "--config", str(make_config()), "--out", str(tmp_path / "o"),
                        "--dry-run"]) == 0
    assert "WARNING: 1 chunk: stage 1 holds chunks out for validation" in capsys.readouterr().out


def test_docx_that_is_not_a_word_file(tmp_path, make_config, capsys):
    src = tmp_path / "novel.docx"
    src.write_text("just text, renamed", encoding="utf-8")
    assert STAGE0.main([str(src), "--config", str(make_config()), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "not a Word .docx file" in err and "Save As" in err and "Traceback" not in err


def test_a_chapter_with_no_sentence_end_is_named_by_its_line_in_the_manuscript(tmp_path, make_config, capsys):
    """A poem for a chapter: no example can be cut from it. Stage 0 names the manuscript's
    line and the heading, and fixes it can act on; no chunk file that was never written."""
    prose = random_prose(9)
    poem = "\n\n".join("the rain comes down on the square\nand the lamps go out one by one" for _ in range(6))
    src = tmp_path / "novel.txt"
    src.write_text(f"Chapter 1\n\n{prose(8)}\n\nChapter 2\n\n{poem}\n\nChapter 3\n\n{prose(8)}\n", encoding="utf-8")
    assert STAGE0.main([str(src), "--config", str(make_config()), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    line = src.read_text(encoding="utf-8").split("\n").index("the rain comes down on the square") + 1
    assert f"novel.txt, line {line}: the stretch that starts “the rain comes" in err and "Chapter 2" in err
    assert "remove the heading or scene break before it" in err and "chunk_" not in err and "Traceback" not in err
    assert not (tmp_path / "o").exists() or not list((tmp_path / "o").glob("chunk_*"))


def docx_body(doc, tmp_path) -> str:
    """The manuscript text stage 0 reads from `doc`, saved as a .docx."""
    src = tmp_path / "novel.docx"
    doc.save(src)
    return read_manuscript(src).body


def test_docx_keeps_italics_and_headings(tmp_path):
    import docx
    doc = docx.Document()
    doc.add_heading("Chapter 1", level=1)
    p = doc.add_paragraph("She read ")
    p.add_run("The Odyssey").italic = True
    p.add_run(" twice.")
    doc.add_paragraph("It took all winter.")
    doc.add_paragraph("Nobody asked her why.")
    doc.add_paragraph("")
    doc.add_paragraph("Morning came.")
    body = docx_body(doc, tmp_path)
    assert body == ("# Chapter 1\nShe read *The Odyssey* twice.\nIt took all winter.\n"
                    "Nobody asked her why.\n\nMorning came.")
    st = analyse(body)
    assert [t for _, t in st.chapters] == ["# Chapter 1"]
    assert [s.reason for s in st.sections][1] == "scene break: 1 blank line(s)"


def test_docx_line_and_page_breaks_inside_a_paragraph_keep_the_words_apart(tmp_path):
    """python-docx reads a page break as nothing: "blue." and "Next" would be one word."""
    import docx
    from docx.enum.text import WD_BREAK
    doc = docx.Document()
    p = doc.add_paragraph("Roses are red,")
    p.add_run().add_break()
    p.add_run("violets are blue.")
    p.add_run().add_break(WD_BREAK.PAGE)
    p.add_run("Next came the ")
    p.add_run("column").add_break(WD_BREAK.COLUMN)
    p.add_run("break.")
    assert docx_body(doc, tmp_path) == "Roses are red,\nviolets are blue.\nNext came the column\nbreak."


def test_docx_a_tab_that_indents_a_paragraph_is_no_space_before_its_first_word(tmp_path):
    import docx
    doc = docx.Document()
    doc.add_paragraph("\tShe said nothing.")
    doc.add_paragraph("He waited.\tThen he went.")
    assert docx_body(doc, tmp_path) == "She said nothing.\nHe waited. Then he went."


def test_docx_breaks_at_a_paragraphs_edge_italics_and_headings_across_a_break(tmp_path):
    """A page break that opens a paragraph (as LibreOffice writes one) is no scene gap;
    an italic stretch across a line break is marked on each line; a heading stays one."""
    import docx
    from docx.enum.text import WD_BREAK
    doc = docx.Document()
    doc.add_paragraph("The first scene ends.")
    p = doc.add_paragraph()
    p.add_run().add_break(WD_BREAK.PAGE)
    p.add_run("It goes on, ")
    poem = p.add_run("roses are red,")
    poem.italic = True
    poem.add_break()
    p.add_run("violets blue").italic = True
    p.add_run(".")
    p.add_run().add_break(WD_BREAK.PAGE)
    heading = doc.add_heading("Chapter One", level=1)
    heading.runs[0].add_break()
    heading.add_run("The Silence")
    body = docx_body(doc, tmp_path)
    assert body == ("The first scene ends.\nIt goes on, *roses are red,*\n*violets blue*.\n"
                    "# Chapter One The Silence")
    assert "\n\n" not in body        # the page break opening a paragraph left no blank line


W_NS = 'xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"'


def wrapped_run(paragraph, wrapper: str, text: str) -> None:
    """Append a run of `text` inside Word's `wrapper` element (a hyperlink, a content
    control, a field, a tracked insertion), as Word itself nests them."""
    from docx.oxml import parse_xml
    inner = f'<w:r><w:t xml:space="preserve">{text}</w:t></w:r>'
    xml = {"hyperlink": f'<w:hyperlink {W_NS}>{inner}</w:hyperlink>',
           "sdt": f'<w:sdt {W_NS}><w:sdtContent>{inner}</w:sdtContent></w:sdt>',
           "fldSimple": f'<w:fldSimple {W_NS} w:instr="TITLE">{inner}</w:fldSimple>',
           "ins": f'<w:ins {W_NS} w:id="1" w:author="Ed Itor" w:date="2026-01-01T00:00:00Z">{inner}</w:ins>',
           "del": (f'<w:del {W_NS} w:id="2" w:author="Ed Itor" w:date="2026-01-01T00:00:00Z"><w:r>'
                   f'<w:delText xml:space="preserve">{text}</w:delText></w:r></w:del>')}[wrapper]
    paragraph._p.append(parse_xml(xml))


def test_docx_keeps_words_word_nests_in_links_controls_fields_and_tables(tmp_path):
    import docx
    doc = docx.Document()
    p = doc.add_paragraph("He said ")
    wrapped_run(p, "hyperlink", "hello there")
    p.add_run(" and ")
    wrapped_run(p, "sdt", "went")
    p.add_run(" on to ")
    wrapped_run(p, "fldSimple", "Lyme")
    p.add_run(".")
    table = doc.add_table(rows=1, cols=2)
    table.cell(0, 0).text, table.cell(0, 1).text = "Left cell.", "Right cell."
    doc.add_paragraph("After the table.")
    assert docx_body(doc, tmp_path) == ("He said hello there and went on to Lyme.\nLeft cell.\n"
                                         "Right cell.\nAfter the table.")


def test_docx_reads_a_text_box_once_and_leaves_out_a_template_placeholder(tmp_path):
    """Word saves a text box twice (mc:Choice for itself, mc:Fallback for older readers):
    its words are read once; an unfilled content control's placeholder is not prose."""
    import docx
    from docx.oxml import parse_xml
    mc = 'xmlns:mc="http://schemas.openxmlformats.org/markup-compatibility/2006"'
    wps = 'xmlns:wps="http://schemas.microsoft.com/office/word/2010/wordprocessingShape"'
    box = '<w:txbxContent><w:p><w:r><w:t>Boxed words.</w:t></w:r></w:p></w:txbxContent>'
    doc = docx.Document()
    doc.add_paragraph("Before.")
    host = doc.add_paragraph("Host text.")
    host._p.append(parse_xml(
        f'<w:r {W_NS} {mc} {wps}><mc:AlternateContent><mc:Choice Requires="wps"><w:drawing><wps:txbx>{box}'
        f'</wps:txbx></w:drawing></mc:Choice><mc:Fallback><w:pict>{box}</w:pict></mc:Fallback>'
        '</mc:AlternateContent></w:r>'))
    title = doc.add_paragraph("Title: ")
    title._p.append(parse_xml(
        f'<w:sdt {W_NS}><w:sdtPr><w:showingPlcHdr/></w:sdtPr><w:sdtContent><w:r><w:t>Click or tap here '
        'to enter text.</w:t></w:r></w:sdtContent></w:sdt>'))
    doc.add_paragraph("After.")
    assert docx_body(doc, tmp_path) == "Before.\nHost text.\nBoxed words.\nTitle:\nAfter."


def test_docx_with_a_tracked_paragraph_split_is_refused(tmp_path, make_config, capsys):
    import docx
    from docx.oxml import parse_xml
    doc = docx.Document()
    p = doc.add_paragraph("She left at once.")
    p._p.get_or_add_pPr().append(parse_xml(
        f'<w:rPr {W_NS}><w:ins w:id="3" w:author="Ed Itor" w:date="2026-01-01T00:00:00Z"/></w:rPr>'))
    doc.add_paragraph("He stayed.")
    src = tmp_path / "novel.docx"
    doc.save(src)
    assert STAGE0.main([str(src), "--config", str(make_config()), "--out", str(tmp_path / "o")]) == 2
    assert "1 tracked change(s) not yet accepted or rejected (1 by Ed Itor)" in capsys.readouterr().err


@pytest.mark.parametrize("change", ["ins", "del"])
def test_docx_with_open_tracked_changes_is_refused_with_the_fix(tmp_path, make_config, capsys, change):
    import docx
    doc = docx.Document()
    wrapped_run(doc.add_paragraph("She left "), change, "at once")
    src = tmp_path / "novel.docx"
    doc.save(src)
    assert STAGE0.main([str(src), "--config", str(make_config()), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "1 tracked change(s) not yet accepted or rejected (1 by Ed Itor)" in err
    assert "Accept (or Reject) All Changes" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def cut_paragraphs(tmp_path, make_config, capsys, paragraphs):
    """Stage 0 on a manuscript of these paragraphs, with short chunks aimed at:
    (the manuscript, the chunk folder, what it printed)."""
    src = tmp_path / "book.txt"
    src.write_text("\n\n".join(paragraphs) + "\n", encoding="utf-8")
    cfg = make_config({"chunk_target_tokens": 1000, "segment_min_tokens": 200}, sequence_len=2048)
    out = tmp_path / "o"
    assert STAGE0.main([str(src), "--config", str(cfg), "--out", str(out)]) == 0
    return src, out, capsys.readouterr().out


def review_ids(out) -> dict:
    return {e["id"]: e for e in json.loads((out / "segment_review.json").read_text(encoding="utf-8"))["seams"]}


def test_review_ids_name_their_seam_for_good(tmp_path, make_config, capsys):
    """An answer read off an older review still means the seam the writer read: an id
    does not move when other answers recut the book; each answer is said back in
    words, and the cuts a recut moved are listed."""
    rng = random.Random(5)
    words = "harbour lamp bread salt rope gull tide net mast oar cabin deck".split()
    paras = [" ".join(rng.choices(words, k=70)).capitalize() + "." for _ in range(120)]
    src, out, _ = cut_paragraphs(tmp_path, make_config, capsys, paras)
    cfg = json.loads((out / "segment_manifest.json").read_text())["config"]
    args = [str(src), "--config", cfg, "--out", str(out), "--force"]
    first = review_ids(out)
    assert len(first) >= 3 and list(first) == [f"s{n:02d}" for n in range(1, len(first) + 1)]
    dropped = first["s01"]
    assert STAGE0.main(args + ["--decide", "s01=drop"]) == 0
    printed = capsys.readouterr().out
    opening = " ".join(dropped["seam"]["after"].split()[:8])
    assert f"your answer s01=drop: no cut before “{opening}…”" in printed
    assert f"no longer a cut before “{opening}…”" in printed
    second = review_ids(out)
    assert "s01" not in second
    # an id shows the same entry in every review: its place, cut or not, its alternatives
    from styletune.data.review import id_key
    assert all(id_key(second[i]) == id_key(first[i]) for i in second if i in first)
    assert all(int(i[1:]) > len(first) for i in second if i not in first)   # new seams, new numbers
    # the last id of the first review, answered after the recut: still that seam
    last = f"s{len(first):02d}"
    assert STAGE0.main(args + ["--decide", f"{last}=keep"]) == 0
    decisions = json.loads((out / "segment_decisions.json").read_text())["decisions"]
    assert {d["id"]: d["seam"] for d in decisions}[last] == first[last]["seam"]
    # a decided seam answered again by its id: the new answer replaces the old
    assert STAGE0.main(args + ["--decide", "s01=keep"]) == 0
    decisions = json.loads((out / "segment_decisions.json").read_text())["decisions"]
    assert [d["action"] for d in decisions if d["id"] == "s01"] == ["keep"]
    assert any(o.startswith(opening) for o in
               (p.read_text() for p in chunk_files(out)))
    # and its alternatives, as the first review listed them, still answer it
    alt = " ".join(dropped["alternatives"][0]["seam"]["after"].split()[:8])
    assert STAGE0.main(args + ["--decide", "s01=alt1"]) == 0
    assert f"your answer s01=alt1: no cut before “{opening}…”; a cut before “{alt}…” instead" in capsys.readouterr().out
    assert any(p.read_text().startswith(alt) for p in chunk_files(out))


def test_the_review_puts_cuts_inside_a_conversation_first_and_uncut_marks_last(tmp_path, make_config, capsys):
    """A cut with no mark splits what the writer wrote as one beat most harmfully where
    a question meets its answer: those lead the review; a mark left uncut (two scenes
    in one chunk) comes after every guessed cut."""
    rng = random.Random(11)
    words = "harbour lamp bread salt rope gull tide net mast oar cabin deck".split()
    line = lambda: " ".join(rng.choices(words, k=40)).capitalize()  # noqa: E731
    paras = [f'"{line()}?" asked Anna.' if n % 2 == 0 else f'"{line()}," said Tom.' for n in range(120)]
    paras[60:60] = ["* * *", line() + ".", "* * *"]          # a scene too short to stand alone
    src, out, printed = cut_paragraphs(tmp_path, make_config, capsys, paras)
    review = list(review_ids(out).values())
    cuts = [e for e in review if e["was_cut"]]
    assert cuts and review[:len(cuts)] == cuts                # every guessed cut before any uncut mark
    assert any(not e["was_cut"] and e["kind"].startswith("scene-break mark * * *") for e in review)
    talk = [e for e in cuts if e["dialogue_runs_on"]]
    assert talk and cuts[:len(talk)] == talk
    assert any("the dialogue runs on across it" in s for s in talk[0]["signals"])
    assert "where the dialogue runs on across the cut" in printed
    md = (out / "segment_review.md").read_text(encoding="utf-8")
    assert md.index(f"## {cuts[-1]['id']}:") < md.index("# Scene-break marks left uncut")


def test_the_review_puts_the_planners_unmarked_cuts_before_cuts_at_blank_lines(tmp_path, make_config, capsys):
    """A cut at a run of blank lines the writer typed has a sign behind it; one where
    the text has no mark at all is the planner's alone, and is read first (their
    margins are on different scales: the blank-line cut is scored as if its lines
    were not there)."""
    rng = random.Random(5)
    words = "harbour lamp bread salt rope gull tide net mast oar cabin deck".split()
    paras = [" ".join(rng.choices(words, k=40)).capitalize() + "." for _ in range(120)]
    paras[40] = "\n" + paras[40]                    # two blank lines before it, once in the book
    _, out, _ = cut_paragraphs(tmp_path, make_config, capsys, paras)
    cuts = [e for e in review_ids(out).values() if e["was_cut"] and not e["dialogue_runs_on"]]
    kinds = ["blank" if e.get("blank_lines") else "unmarked" for e in cuts]
    assert "blank" in kinds and "unmarked" in kinds, kinds
    assert kinds == sorted(kinds, key=lambda k: k == "blank"), kinds
    md = " ".join((out / "segment_review.md").read_text(encoding="utf-8").split())
    assert (f"the {kinds.count('unmarked')} with no mark at all before the {kinds.count('blank')} at a run "
            "of blank lines alone") in md


def test_stage_0_cuts_where_the_talk_pauses_not_between_a_question_and_its_answer(tmp_path, make_config, capsys):
    """A chapter of conversation with a paragraph of narration every so often: every cut
    goes where narration takes over, none between a question and its answer
    (seam_model's talk_penalty; without it this book had cuts inside the talk)."""
    rng = random.Random(12)
    words = "harbour lamp bread salt rope gull tide net mast oar cabin deck".split()
    line = lambda: " ".join(rng.choices(words, k=40)).capitalize()  # noqa: E731
    paras = []
    for n in range(120):
        paras.append(f'"{line()}?" asked Anna.' if n % 2 == 0 else f'"{line()}," said Tom.')
        if n % 24 == 23:
            paras.append(f"The {rng.choice(words)} creaked. {line()}.")
    src, out, printed = cut_paragraphs(tmp_path, make_config, capsys, paras)
    manifest = assert_conserved(out, read_manuscript(src).body)
    starts = [(out / c["file"]).read_text(encoding="utf-8") for c in manifest["chunks"][1:]]
    assert len(starts) >= 3 and all(t.startswith(("The ", '"')) for t in starts)
    talk = [e for e in review_ids(out).values() if e.get("dialogue_runs_on")]
    assert not talk, [e["seam"]["after"][:40] for e in talk]


def test_answers_that_clash_or_no_longer_match_are_named(tmp_path, make_config, capsys):
    """A cut inside a stretch another answer keeps whole: the cut is made, and the clash
    named; an answer whose words were edited away is not counted as applied. Words
    are matched as typed: no quotation marks, a dash as two hyphens."""
    out = tmp_path / "cut"
    args = [str(MANUSCRIPT), "--config", str(make_config()), "--out", str(out), "--force"]
    assert STAGE0.main(args + ["--decide", "whole:There was a small pause|Fenn told you about the orbit",
                               "--decide", "cut:Haji, said Fenn, with enormous restraint"]) == 0
    printed = capsys.readouterr().out
    assert "1 of your answers clash" in printed and "“Haji,” said Fenn" in printed
    assert "your answer cut:Haji, said Fenn, with enormous restraint: a cut before" in printed
    assert any(p.read_text().startswith("“Haji,” said Fenn") for p in chunk_files(out))
    edited = tmp_path / "edited.txt"
    edited.write_text(MANUSCRIPT.read_text().replace("There was a small pause", "There was a pause"))
    assert STAGE0.main([str(edited)] + args[1:]) == 0
    printed = capsys.readouterr().out
    assert "1 decision(s) no longer match" in printed and "; 1 decision(s) of yours applied" in printed


def test_a_cut_that_leaves_a_scrap_is_named_and_a_later_answer_replaces_it(tmp_path, make_config, capsys):
    """Oliver Twist: a writer's cut left a 116-token chunk unsaid, and a later drop: of
    the same words was recorded beside the cut:, as a clash, the cut kept."""
    out = tmp_path / "cut"
    args = [str(MANUSCRIPT), "--config", str(make_config()), "--out", str(out), "--force"]
    assert STAGE0.main(args + ["--decide", "cut:It should be explained, for those"]) == 0
    printed = capsys.readouterr().out
    first = chunk_files(out)[0]
    assert first.read_text().startswith("Afterwards, when the Consortium") and "It should be" not in first.read_text()
    assert f"your cut before “It should be explained, for those who have…” leaves {first.name}" in printed
    assert "too short to train on well" in printed
    # the same place answered again, in more words: the later answer stands alone
    assert STAGE0.main(args + ["--decide", "drop:It should be explained, for those who have never"]) == 0
    printed = capsys.readouterr().out
    decisions = json.loads((out / "segment_decisions.json").read_text())["decisions"]
    assert [d["action"] for d in decisions] == ["drop"] and "clash" not in printed
    assert not any(p.read_text().startswith("It should be explained") for p in chunk_files(out))


def test_no_headings_no_breaks_falls_back_to_paragraph_scoring(tmp_path, make_config, capsys):
    rng = random.Random(5)
    words = "harbour lamp bread salt rope gull tide net mast oar cabin deck".split()
    paras = [" ".join(rng.choices(words, k=70)).capitalize() + "." for _ in range(40)]
    paras[20] = "That night the storm came in from the north. " + paras[20]
    src, out, printed = cut_paragraphs(tmp_path, make_config, capsys, paras)
    assert "no chapter headings and no scene breaks" in printed
    manifest = assert_conserved(out, read_manuscript(src).body)
    assert len(manifest["chunks"]) >= 2 and all(c["tokens"] <= 2048 for c in manifest["chunks"])
    # every cut is a guess: each one is in the review, with its command
    review = json.loads((out / "segment_review.json").read_text(encoding="utf-8"))["seams"]
    assert len(review) == len(manifest["chunks"]) - 1
    assert "--decide s01=keep\n(keep, drop, cut or altN" in printed and "s01: cut at an unmarked seam" in (out / "segment_review.md").read_text()


def test_single_huge_paragraph_is_cut_at_sentence_ends_as_a_last_resort(tmp_path, make_config, capsys):
    rng = random.Random(9)
    words = "stone river bell window orchard candle letter winter field".split()
    sentences = [" ".join(rng.choices(words, k=19)).capitalize() + "." for _ in range(1050)]
    src = tmp_path / "one.txt"
    src.write_text(" ".join(sentences) + "\n", encoding="utf-8")  # ~20,000 words, one paragraph
    out = tmp_path / "o"
    assert STAGE0.main([str(src), "--config", str(make_config()), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "LAST RESORT" in printed and "inside a paragraph" in printed
    manifest = assert_conserved(out, read_manuscript(src).body)
    for c in manifest["chunks"]:
        assert c["tokens"] <= 4096
        assert (out / c["file"]).read_text().rstrip().endswith(".")


# --- the splitter -------------------------------------------------------------------

def test_split_dry_run_then_apply_then_rerun(book_copy, make_config, capsys):
    cfg = str(make_config())
    original = (book_copy / "chunk_004_the_long_walk.txt").read_bytes()
    before = every_file(book_copy)
    args = ["--config", cfg, "--book", str(book_copy), "--limit", "3000"]
    assert SPLIT.main(args + ["--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "scene break '* * *'" in out and "✂" in out and "| original chunk |" in out
    assert every_file(book_copy) == before
    assert SPLIT.main(args) == 0
    parts = sorted(book_copy.glob("chunk_004?_*.txt"))
    # parts aim at the book's own chunk length (~1,650 tokens): cut at both scene breaks
    assert [p.name for p in parts] == ["chunk_004a_the_long_walk.txt", "chunk_004b_the_long_walk.txt",
                                       "chunk_004c_the_long_walk.txt"]
    assert parts[1].read_text().startswith("The suits smelled") and parts[2].read_text().startswith("In the airlock")
    assert b"".join(p.read_bytes() for p in parts) == original
    assert (book_copy / "backup" / "chunk_004_the_long_walk.txt").read_bytes() == original
    assert not (book_copy / "chunk_004_the_long_walk.txt").exists()
    after = every_file(book_copy)
    assert SPLIT.main(args) == 0  # already split: nothing to do
    assert "nothing to split" in capsys.readouterr().out
    assert every_file(book_copy) == after


def test_split_lists_other_places_and_takes_the_writers_choice(book_copy, make_config, capsys):
    cfg = str(make_config())
    original = (book_copy / "chunk_004_the_long_walk.txt").read_bytes()
    args = ["--config", cfg, "--book", str(book_copy), "--limit", "3000"]
    assert SPLIT.main(args + ["--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "cut at character" in out and "or instead: --cut-before '" in out
    # the writer cuts once, at the first scene break, instead of at both
    assert SPLIT.main(args + ["--cut-before", "The suits   smelled\nof other"]) == 0
    out = capsys.readouterr().out
    assert "your choice (--cut-before)" in out
    a, b = (book_copy / "chunk_004a_the_long_walk.txt"), (book_copy / "chunk_004b_the_long_walk.txt")
    assert b.read_text().startswith("The suits smelled of other people.")
    assert a.read_bytes() + b.read_bytes() == original
    assert (book_copy / "backup" / "chunk_004_the_long_walk.txt").read_bytes() == original


@pytest.mark.parametrize("opening, message", [
    ("the horn", "inside a paragraph of chunk_004_the_long_walk.txt"),
    ("Ilse", "2 paragraphs begin with it"),
    ("words in no chunk at all", "no chunk over the limit contains it"),
    ("They met in the captain", "is the first paragraph of chunk_004_the_long_walk.txt"),
    (["The suits smelled", "The suits smelled of other"], "another --cut-before already names"),
])
def test_split_refuses_a_cut_it_cannot_make_and_changes_nothing(book_copy, make_config, capsys,
                                                                opening, message):
    before = every_file(book_copy)
    openings = opening if isinstance(opening, list) else [opening]
    code = SPLIT.main(["--config", str(make_config()), "--book", str(book_copy), "--limit", "3000"]
                      + [x for o in openings for x in ("--cut-before", o)])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err
    assert every_file(book_copy) == before


def test_suggested_cut_text_names_one_paragraph_only():
    from styletune.data.seams import cut_before_text, paragraphs_starting
    raw = ("The ship was quiet that night and it was cold.\n\nIt drifted.\n\n"
           "The ship was quiet that night and it was warm. Nobody slept.\n\nEnd.")
    second = raw.index("The ship was quiet that night and it was warm.")
    assert cut_before_text(raw, second) == "The ship was quiet that night and it was warm."
    assert cut_before_text(raw, raw.index("It drifted.")) == "It drifted."  # its own words only
    assert cut_before_text(raw, raw.index("End.")) == "End."
    # a paragraph repeated word for word is named with the next one's first words
    talk = "“Yes.”\n\nShe left.\n\n“Yes.”\n\nHe stayed on, alone.\n\n“Yes.”"
    second = talk.index("“Yes.”", 1)
    assert cut_before_text(talk, second) == "“Yes.” He"
    assert paragraphs_starting(talk, cut_before_text(talk, second)) == [second]
    assert cut_before_text(talk, talk.rindex("“Yes.”")) == "“Yes.”"   # the last: nothing follows


def test_split_with_nothing_over_the_limit_says_cut_before_was_not_used(book_copy, make_config,
                                                                        capsys):
    assert SPLIT.main(["--config", str(make_config()), "--book", str(book_copy), "--limit", "4096",
                       "--cut-before", "The suits smelled"]) == 0
    assert "--cut-before only splits chunks over the limit" in capsys.readouterr().out


def test_split_says_when_the_writers_parts_are_still_too_long(book_copy, make_config, capsys):
    code = SPLIT.main(["--config", str(make_config()), "--book", str(book_copy), "--limit", "1500",
                       "--cut-before", "The suits smelled", "--dry-run"])
    err = capsys.readouterr().err
    assert code == 2 and "chunk_004b_the_long_walk.txt is still" in err and "over the 1500 limit" in err


def test_split_never_overwrites_a_backup(book_copy, make_config, capsys):
    """One backup rule for stage 0 and the splitter: numbered copies, never overwritten."""
    older = book_copy / "backup" / "chunk_004_the_long_walk.txt"
    older.write_text("an older copy")
    original = (book_copy / "chunk_004_the_long_walk.txt").read_bytes()
    assert SPLIT.main(["--config", str(make_config()), "--book", str(book_copy), "--limit", "3000"]) == 0
    assert older.read_text() == "an older copy"
    assert (book_copy / "backup" / "chunk_004_the_long_walk.2.txt").read_bytes() == original


def test_stage1_names_the_split_command(book_copy, make_config, capsys):
    from styletune.data.prepare import OVERLONG_EXIT
    stage1 = load_script(FT / "training" / "1_prepare_data.py")
    assert stage1.main(["--config", str(make_config(sequence_len=3000)), "--book", str(book_copy),
                        "--dry-run"]) == OVERLONG_EXIT
    err = capsys.readouterr().err
    assert "split_oversized_chunks.py" in err and "--dry-run" in err and str(book_copy.name) in err


def halves(text):
    """(tokens, lengths) under which the best plan is two parts of about half the text
    each: where the cut falls is then the seam scores' choice."""
    tokens = lambda a, b: (b - a) // 4  # noqa: E731
    return tokens, Lengths(len(text) // 8, 0, len(text) // 4 * 3 // 4, weight=40.0)


def test_splitter_finds_a_removed_chapter_heading():
    """Two chapters of A Study in Scarlet joined without their heading: one cut, on the seam."""
    ms = read_manuscript(CORPUS / "doyle_a_study_in_scarlet.txt")
    st = analyse(ms.body)
    spans = {}
    for s in st.sections:
        a, b = spans.get(s.chapter, (s.start, s.end))
        spans[s.chapter] = (min(a, s.start), max(b, s.end))
    n = [k for k, t in st.chapters if t.endswith("THE SCIENCE OF DEDUCTION.")][0]
    first, second = ms.body[slice(*spans[n - 1])], ms.body[slice(*spans[n])]
    text = first + "\n\n" + second
    cut = plan(len(text), candidates(text), *halves(text))
    assert len(cut) == 1 and cut[0].offset == len(first) + 2
    assert len(units(text)) > 50


def test_textiling_depth_finds_a_change_of_subject_without_other_cues():
    """Two subjects, no time phrase, no capitals, no dialogue: the lexical signals alone
    put the cut where the vocabulary changes."""
    sea = ["The fishermen mended nets on the harbour wall while gulls circled the boats.",
           "Tides pulled the boats against the harbour ropes, and the nets dried in salt wind.",
           "Old fishermen counted the catch beside the boats and cursed the gulls and tides."]
    farm = ["Wheat stood high in the valley fields, and the farmer walked the furrows with his dog.",
            "Barley and wheat ripened under the orchard hill; the farmer's plough rusted in the barn.",
            "The dog chased crows across the wheat fields until the farmer whistled from the barn."]
    paras = [sea[i % 3] + " " + sea[(i + 1) % 3] for i in range(6)] + \
            [farm[i % 3] + " " + farm[(i + 1) % 3] for i in range(6)]
    text = "\n\n".join(paras)
    cut = plan(len(text), candidates(text), *halves(text))
    assert len(cut) == 1 and cut[0].offset == text.index(paras[6])
    assert any("vocabulary" in s for s in cut[0].signals)


def test_opening_cues_continuation_dialogue_and_headings():
    """A paragraph opening with 'He' or with a line of dialogue continues the scene; a
    paragraph in capitals only is a title left in the text."""
    filler = "The road ran on between the hedges and the light failed slowly over the hills."
    text = "\n\n".join([filler, "He stopped at the gate. " + filler, "“Who is there?” " + filler,
                        "OLIVER WALKS TO LONDON.", "The town was quiet. " + filler])
    feats = {text[c.offset:c.offset + 6]: c.features for c in candidates(text)}
    assert feats["He sto"]["anaphoric_opening"] == 1.0
    assert feats["“Who i"]["opens_dialogue"] == 1.0
    assert feats["OLIVER"]["heading_like"] == 1.0 and feats["The to"]["heading_like"] == 0.0
    scores = {text[c.offset:c.offset + 6]: c.score for c in candidates(text)}
    assert scores["OLIVER"] > max(scores["He sto"], scores["“Who i"])


def test_an_italic_dateline_after_a_quotation_is_not_talk_running_on():
    """Dracula, chapter 13: Seward's diary ends “"FINIS."” and the Westminster Gazette's
    cutting follows under an italic dateline that opens with a quotation mark: a new
    document, not a reply. An italic line of speech is still speech."""
    from styletune.data.seam_model import boundary_features, units
    diary = "So I can finish this diary, and say sadly and without hope,\n\n\"FINIS.\""
    for line, runs_on in [('_"The Westminster Gazette," 25 September._', 0.0), ('_"Go away!"_', 1.0),
                          ('"Go away," she said.', 1.0)]:
        text = f"{diary}\n\n{line}\n\nThe neighbourhood of Hampstead is just at present exercised."
        index = next(i for i, (a, _, _) in enumerate(units(text)) if text[a:].startswith(line))
        features = boundary_features(text)[index]
        assert features["opens_dialogue"] == 1.0          # the seam model's feature is unchanged
        assert features["dialogue_runs_on"] == runs_on, line


def test_a_hard_wrapped_manuscript_is_named_with_a_command_that_joins_its_lines(tmp_path):
    """Gutenberg's line breaks every ~70 characters would be learnt as the writer's; the
    advice's own command (run here as printed) joins each paragraph's lines, keeps every
    word and the blank lines, and then nothing is said (a wrapped contents list alone
    is no reason)."""
    from styletune.text.paragraphs import hard_wrap_advice, wrapped_by_hand
    text = (CORPUS / "dickens_oliver_twist.txt").read_bytes()[:60000]
    assert wrapped_by_hand(text.decode("utf-8", "ignore"))
    joined = run_printed_command(hard_wrap_advice("x"), text)
    assert joined.split() == text.split() and joined.count(b"\r\n\r\n") == text.count(b"\r\n\r\n")
    assert not wrapped_by_hand(joined.decode("utf-8", "ignore"))
    assert not wrapped_by_hand(MANUSCRIPT.read_text(encoding="utf-8"))      # one paragraph a line


def test_stage_1_tells_a_writer_of_stage_0_chunks_to_join_the_manuscripts_lines_once(tmp_path, make_config,
                                                                                      capsys):
    """Chunks stage 0 cut from a hard-wrapped manuscript: stage 1's advice names that
    manuscript, to join once and cut again, rather than a command for each chunk file."""
    import textwrap
    prose = random_prose(12)
    text = "".join(f"Chapter {n}\n\n" + "\n\n".join(textwrap.fill(p, 70) for p in prose(20).split("\n\n")) + "\n\n"
                   for n in (1, 2, 3))
    src, out = tmp_path / "novel.txt", tmp_path / "out"
    src.write_text(text, encoding="utf-8")
    cfg = make_config({"chunk_target_tokens": 900, "segment_min_tokens": 100}, sequence_len=2048)
    assert STAGE0.main([str(src), "--config", str(cfg), "--out", str(out)]) == 0
    capsys.readouterr()
    stage1 = load_script(FT / "training" / "1_prepare_data.py")
    assert stage1.main(["--config", str(cfg), "--book", str(out), "--dry-run"]) == 0
    said = " ".join(capsys.readouterr().err.split())
    assert (f"these chunks are stage 0's cut of {src}: join that file's lines once (it is IN) and cut the "
            "joined copy again with 0_segment_manuscript.py --force, then rerun") in said
    # cut from a .docx (a line break inside a Word paragraph), no text command is aimed at the document
    record = json.loads((out / "segment_manifest.json").read_text(encoding="utf-8"))
    (out / "segment_manifest.json").write_text(json.dumps({**record, "manuscript": str(tmp_path / "novel.docx")}))
    assert stage1.main(["--config", str(cfg), "--book", str(out), "--dry-run"]) == 0
    said = " ".join(capsys.readouterr().err.split())
    assert "wrapped by hand" in said and "stage 0's cut of" not in said


def test_print_layout_indents_open_paragraphs_with_no_blank_line_between(tmp_path):
    """Copied from a PDF: lines wrapped at ~70 characters, each paragraph opening with an
    indent, no blank line between paragraphs. Each paragraph is one (not the whole
    chapter), and the joining command keeps the line break before each indent."""
    import textwrap

    from styletune.text.paragraphs import hard_wrap_advice, paragraph_spans, wrapped_by_hand
    paragraphs = [p for p in (CORPUS / "wells_the_war_of_the_worlds.txt").read_text(encoding="utf-8-sig")
                  .replace("\r\n", "\n").split("\n\n") if len(p.split()) > 60][:12]
    paragraphs = [" ".join(p.split()) for p in paragraphs]
    text = "Chapter One\n\n" + "\n".join(textwrap.fill(p, 70, initial_indent="    ") for p in paragraphs) + "\n"
    spans = paragraph_spans(text)
    assert [" ".join(text[a:b].split()) for a, b in spans] == ["Chapter One"] + paragraphs
    assert wrapped_by_hand(text)
    from styletune.data.segment import paragraphs_shown
    assert paragraphs_shown(analyse(text)) == "opening with an indent, no blank line between (print's layout)"
    joined = run_printed_command(hard_wrap_advice("x"), text.encode("utf-8")).decode("utf-8")
    assert joined.split() == text.split() and joined.count("\n    ") == len(paragraphs)
    assert not wrapped_by_hand(joined)
    # the same after two blank lines; with short lines of dialogue between (most lines then
    # end a sentence); and a centred scene break, the paragraph after it not indented
    text = text.replace("Chapter One\n\n", "Chapter One\n\n\n")
    assert [" ".join(text[a:b].split()) for a, b in paragraph_spans(text)] == ["Chapter One"] + paragraphs
    talk = ["“Come in,” she said.", "“No.”", "“Why not?”"]
    chatty = "Chapter One\n\n" + "\n".join(textwrap.fill(p, 70, initial_indent="    ") + "\n    " + talk[i % 3]
                                           for i, p in enumerate(paragraphs)) + "\n"
    assert len(paragraph_spans(chatty)) == 1 + 2 * len(paragraphs)
    broken = ("Chapter One\n\n" + "\n".join(textwrap.fill(p, 70, initial_indent="    ") for p in paragraphs[:6])
              + "\n                    * * *\n" + textwrap.fill(paragraphs[6], 70) + "\n"
              + "\n".join(textwrap.fill(p, 70, initial_indent="    ") for p in paragraphs[7:]) + "\n")
    shown = [" ".join(broken[a:b].split()) for a, b in paragraph_spans(broken)]
    assert shown == ["Chapter One"] + paragraphs[:6] + ["* * *"] + paragraphs[6:]
    assert [s.reason for s in analyse(broken).sections][1:] == ["scene break: * * *"]


def test_a_study_in_scarlet_its_transcriber_notes_footnote_marks_and_first_chapter(tmp_path):
    """Gutenberg's *A Study in Scarlet*: the transcriber's notes after the last chapter
    are back matter, not a chapter; the 22 footnote marks ("manoeuvres [9] of") inside
    its chapters are counted, and the advice's own command (run as printed) removes
    them and nothing else; the title page's "chapter" is front matter."""
    import re

    from styletune.text.patterns import footnote_marks, footnote_marks_advice
    ms = read_manuscript(CORPUS / "doyle_a_study_in_scarlet.txt")
    structure = analyse(ms.body)
    at = structure.back_matter[0]
    assert ms.body[at:].startswith("ORIGINAL TRANSCRIBER’S NOTES:")
    assert structure.sections[-1].end < at and "[Footnote 1:" in ms.body[at:]
    assert structure.chapters[0][1] == "CHAPTER I. MR. SHERLOCK HOLMES."
    assert structure.chapters[-1][1] == "CHAPTER VII. THE CONCLUSION."
    marks = [a for sec in structure.sections for a in footnote_marks(ms.body, sec.start, sec.end)]
    assert len(marks) == 22 and ms.body[marks[0] - 11:marks[0] + 3] == "lodgings.” [3]"
    text = ms.body.encode("utf-8")
    cleaned = run_printed_command(footnote_marks_advice(22, ["x"]), text)
    assert not re.search(rb"\[\d+\]", cleaned)
    assert re.sub(rb"\[\d+\]", b"", text).split() == cleaned.split()
    # no space doubled or left at a line's start where a mark was
    assert b"manoeuvres of their" in cleaned and b"\nBaker Street" in cleaned
    assert cleaned.count(b"  ") == text.count(b"  ")


def run_printed_command(printed: str, text: bytes) -> bytes:
    """The command a stage's warning prints ('perl ... IN > OUT'), run as printed on `text`."""
    import re
    import shlex
    import subprocess
    command = re.search(r"(perl .*?) IN > OUT", printed).group(1)
    return subprocess.run(shlex.split(command), input=text, capture_output=True, check=True).stdout


def test_the_copy_without_page_numbers_says_how_to_cut_it_with_the_same_config(tmp_path, capsys):
    src = tmp_path / "novel.txt"
    src.write_text("Chapter 1\n\nThe boat was\n\n12)\n\nlate again.\n", encoding="utf-8")
    rehearsal = FT / "configs" / "cpu_rehearsal.yaml"
    assert STAGE0.main([str(src), "--without-page-numbers", str(tmp_path / "a.txt"), "--config", str(rehearsal)]) == 0
    assert "a.txt --dry-run --config fine-tuning/configs/cpu_rehearsal.yaml" in capsys.readouterr().out
    assert STAGE0.main([str(src), "--without-page-numbers", str(tmp_path / "b.txt")]) == 0
    assert capsys.readouterr().out.rstrip().endswith("b.txt --dry-run")
    assert (tmp_path / "b.txt").read_text(encoding="utf-8") == "Chapter 1\n\nThe boat was late again.\n"


def run_page_numbers_command(printed: str, text: bytes, tmp_path) -> bytes:
    """The page-number warning's own command ('python .../0_segment_manuscript.py IN
    --without-page-numbers OUT'), run as printed on a file holding `text`."""
    import shlex

    from styletune.text.patterns import PAGE_NUMBERS_COMMAND
    assert PAGE_NUMBERS_COMMAND in printed
    source, out = tmp_path / "with_numbers.txt", tmp_path / "without_numbers.txt"
    source.write_bytes(text)
    out.unlink(missing_ok=True)
    argv = [str(source) if a == "IN" else str(out) if a == "OUT" else a
            for a in shlex.split(PAGE_NUMBERS_COMMAND)[2:]]
    assert STAGE0.main(argv) == 0
    return out.read_bytes()


def test_jekyll_and_hyde_its_page_numbers_go_and_the_sentences_they_split_join(tmp_path, capsys):
    """Gutenberg's *Jekyll and Hyde* keeps its print edition's page numbers: 108 lines
    "1)" to "108)", most in the middle of a sentence (and Windows line ends). Stage 0's warning counts them, and
    its command (run as printed) removes each one, joins the sentences they split, and
    keeps every word, every chapter heading and every other paragraph break, byte-order
    mark and Windows line ends included."""
    import re

    from styletune.data.segment import page_numbers
    novel = CORPUS / "stevenson_jekyll_and_hyde.txt"
    raw, ms = novel.read_bytes(), read_manuscript(novel)
    structure = analyse(ms.body)
    warning = page_numbers(ms, structure)["warning"]
    assert warning.startswith("WARNING: 108 paragraphs are only a number")
    cleaned = tmp_path / "jekyll.txt"
    cleaned.write_bytes(run_page_numbers_command(warning, raw, tmp_path))
    assert cleaned.read_bytes()[:3] == raw[:3] == b"\xef\xbb\xbf"          # its byte-order mark kept
    number = rb"\d{1,3}\)"
    assert len(re.findall(rb"\n\s*" + number + rb"\s*\n", raw)) == 108
    # every word kept, in order; "Utter- / son", hyphenated over a page, stays one word as
    # printed, hyphen and all, and is named for the writer to look at
    over_a_page = rb"-\s*\n\s*" + number + rb"\s*\n\s*"
    hyphenated = re.findall(rb"\S+" + over_a_page + rb"\S+", raw)
    words = [w for w in re.sub(over_a_page, b"-", raw).split() if not re.fullmatch(number, w)]
    assert cleaned.read_bytes().split() == words and len(hyphenated) == 7
    assert ("7 word(s) hyphenated across a page are kept as printed, hyphen and all: Utter-son, "
            "some-thing, under-stand,") in capsys.readouterr().out
    # a sentence a number split is one again: a lower-case word after the number, or a
    # comma before it; elsewhere the paragraph break stays
    split = re.findall(rb"(?:[,;]\s*\n\s*" + number + rb"\s*\n\s*\S|\S\s*\n\s*" + number + rb"\s*\n\s*[a-z])",
                       raw)
    paragraphs = lambda text: len(re.findall(rb"\S\s*?\n\s*\n\s*(?=\S)", text))  # noqa: E731
    # and "in case of / Dr. Jekyll's": the line before stops short, though a capital follows
    assert len(split) == 80 and paragraphs(cleaned.read_bytes()) == paragraphs(raw) - 108 - 81
    assert b"resisted the calls of business, that" in cleaned.read_bytes()
    assert b"to reprove.\r\n\r\n\"I incline" in cleaned.read_bytes()      # Windows line ends kept
    assert b"in case of Dr. Jekyll's" in cleaned.read_bytes()
    # a letter's signature in capitals, then the next chapter: a break, not a sentence
    assert re.search(rb"HASTIE LANYON\r\n\r\n\r\n\r\n +HENRY JEKYLL'S FULL STATEMENT", cleaned.read_bytes())
    again = analyse(read_manuscript(cleaned).body)
    assert again.page_numbers == []
    assert [t for _, t in again.chapters] == [t for _, t in structure.chapters] and len(again.chapters) == 10


def test_the_copy_without_page_numbers_never_replaces_a_file_and_asks_for_text_not_docx(tmp_path, capsys):
    src, copy = tmp_path / "novel.txt", tmp_path / "copy.txt"
    src.write_text("It was cold and\n\n14)\n\nwet.\n", encoding="utf-8")
    for existing in (src, copy):
        existing.touch()
        assert STAGE0.main([str(src), "--without-page-numbers", str(existing)]) == 2
        assert "that file exists; name a new one" in capsys.readouterr().err
    assert STAGE0.main([str(src), "--without-page-numbers", str(tmp_path)]) == 2
    assert "that is a folder; name a new file" in capsys.readouterr().err
    assert src.read_text(encoding="utf-8") == "It was cold and\n\n14)\n\nwet.\n"
    copy.unlink()
    assert STAGE0.main([str(src), "--without-page-numbers", str(copy)]) == 0
    assert copy.read_text(encoding="utf-8") == "It was cold and wet.\n"
    docx = tmp_path / "novel.docx"
    docx.write_bytes(b"PK\x03\x04 word/document.xml")
    assert STAGE0.main([str(docx), "--without-page-numbers", str(tmp_path / "d.txt")]) == 2
    err = capsys.readouterr().err
    assert "save it as plain text (.txt, UTF-8)" in err and "Traceback" not in err


def test_acknowledgements_and_about_the_author_are_back_matter_and_chapters_count_from_one(
        tmp_path, make_config, capsys):
    """A writer's own manuscript: a title page with a subtitle, chapters, then the
    acknowledgements and the author's biography, no THE END. Those are back matter (kept
    in the manifest, named in a note); the first chapter's files say ch01; a chapter
    called "Notes" in the middle of the book is the author's (its title under "Chapter 2")."""
    prose = random_prose(5)
    chapters = [f"Chapter {n}\n\n" + ("Notes\n\n" if n == 2 else "") + prose(30) for n in range(1, 5)]
    text = ("THE TIDE BOOK\n\nA NOVEL\n\nby Ann Example\n\n" + "\n\n".join(chapters)
            + "\n\nAcknowledgements\n\nMy thanks to the harbour master.\n\n"
            "About the Author\n\nAnn Example lives by the sea.\n")
    printed, texts, names = cut_generated_novel(text, tmp_path, make_config, capsys)
    assert not any("thanks to the harbour" in t or "lives by the sea" in t for t in texts)
    assert "back matter from 'Acknowledgements' (line" in printed
    assert "_ch01_" in names[0]
    assert "back matter from 'Notes'" not in printed and any("_ch02_" in n for n in names)


def test_a_title_case_title_under_a_chapter_number_is_part_of_its_heading():
    """'A Little Night Music' under 'Chapter Three' is the chapter's title, not the first
    line of its prose (a training prompt would start with it); a line of dialogue, a
    sentence or a contents entry with its page number under a heading stays text."""
    prose = random_prose(6)
    for under, title in (("A Little Night Music", True), ('"Stop Him Now"', False),
                         ("Mary Was Late.", False), ("Dr. Seward's Diary 308", False)):
        text = "\n\n".join(f"Chapter {n}\n\n{under}\n\n{prose(8)}" for n in ("One", "Two"))
        labels = [label for _, label in analyse(text).chapters]
        assert labels == [f"Chapter {n} / {under}" if title else f"Chapter {n}" for n in ("One", "Two")], under


@pytest.mark.parametrize("style", [
    "ONE", "One", "**Chapter One**", "**ONE**", "*One*", "__Chapter One__", "Ch. 1", "1. The Falling Star",
    "IV: The Falling Star", "— 1 —"])
def test_common_heading_styles_are_chapters_with_one_blank_line_like_every_paragraph(style):
    """The headings writers type, set apart by nothing more than a paragraph is (one blank
    line): each starts a chapter and leaves the prose, so no prompt starts "TWO"."""
    numbers = {"ONE": "TWO", "One": "Two", "1": "2", "IV": "V"}
    second = style
    for a, b in numbers.items():
        second = second.replace(a, b, 1) if a in style and second == style else second
    prose = random_prose(7)
    text = f"{style}\n\n{prose(20)}\n\n{second}\n\n{prose(20)}\n"     # chapters of 800 words
    st = analyse(text)
    assert [label for _, label in st.chapters] == [style, second]
    assert all(style not in text[p.start:p.end] and second not in text[p.start:p.end]
               for s in st.sections for p in s.paras)


@pytest.mark.parametrize("titles", [
    ("THE FALLING STAR", "THE LONG WALK", "INTO THE CISTERN", "WHAT WAS KEPT"),
    ("The Falling Star", "The Long Walk", "Into the Cistern"),
    ("**The Falling Star**", "**The Long Walk**", "**Into the Cistern**")])
def test_titles_alone_with_one_blank_line_are_chapters_as_a_series(titles):
    """Chapters headed by a title alone, typed as every paragraph is (one blank line
    before): with no other heading in the book, three or more of one style, each with
    chapter-length prose after it, are chapters, and leave the prose."""
    prose = random_prose(9)
    text = "".join(f"{t}\n\n{prose(10)}\n\n" for t in titles)       # chapters of 400 words
    st = analyse(text)
    assert [label for _, label in st.chapters] == list(titles)
    assert not any(t in text[p.start:p.end] for t in titles for s in st.sections for p in s.paras)


def test_a_novel_whose_chapters_have_titles_alone_is_cut_at_them():
    """The War of the Worlds as a writer's file might hold it: each chapter headed by its
    title alone ("THE FALLING STAR"), one blank line between all paragraphs, the book's
    title first. 25 of its 27 titles head chapters; the two left in the text are a title
    of ten words and one that ends in a quotation mark, as a line of dialogue does."""
    text = (CORPUS / "wells_the_war_of_the_worlds.txt").read_text(encoding="utf-8-sig").replace("\r\n", "\n")
    body = text[text.index("THE COMING OF THE MARTIANS\n\n\n\n\nI.\n"):text.index("*** END OF")]
    body = re.sub(r"^(BOOK (ONE|TWO)\.?\n.*|THE COMING OF THE MARTIANS|THE EARTH UNDER THE MARTIANS)\n", "",
                  body, flags=re.M)
    titles = re.findall(r"\n[IVXL]+\.\n([A-Z][^\n]+)\n", "\n" + body)
    body = re.sub(r"\n[IVXL]+\.\n([A-Z][^\n]+)\n", lambda m: "\n\n" + m.group(1).rstrip(".") + "\n\n", "\n" + body)
    st = analyse("The War of the Worlds\n\n" + re.sub(r"\n{3,}", "\n\n", body).strip() + "\n")
    labels = [label.split(" / ")[-1] for _, label in st.chapters]
    assert len(titles) == 27 and len(labels) == 25
    assert [t.rstrip(".") for t in titles if t.rstrip(".") not in labels] == [
        "WHAT I SAW OF THE DESTRUCTION OF WEYBRIDGE AND SHEPPERTON", "THE “THUNDER CHILD”"]


def _titled_book(prose, titles, under=None, before="", after=""):
    """Chapters headed by titles alone, 400 words each; `under`: a line under each title."""
    return before + "".join(f"{t}\n\n" + (f"{under}\n\n" if under else "") + f"{prose(10)}\n\n"
                            for t in titles) + after


@pytest.mark.parametrize("case", ["byline", "the end", "prologue", "dateline", "sign", "vivid"])
def test_a_series_of_titles_stands_with_what_books_put_around_it(case):
    """Title-only chapters with what writers put beside them: the book's title and a
    byline above the first, a closing The End, a prologue's heading, a dateline under
    each title, a sign in the story, a title that spells a Roman numeral's letters."""
    prose = random_prose(14)
    titles = ["The Crossing", "A Room Above the Harbour", "Salt and Iron", "What Remains"]
    text = {"byline": lambda: _titled_book(prose, titles, before="The Glass Harbour\n\nBy Anna Kerr\n\n"),
            "the end": lambda: _titled_book(prose, titles, after="The End\n"),
            "prologue": lambda: _titled_book(prose, titles, before=f"Prologue\n\n{prose(10)}\n\n"),
            "dateline": lambda: _titled_book(prose, titles, under="Dover, 1943"),
            "sign": lambda: _titled_book(prose, titles).replace(
                "Salt and Iron\n\n", f"Salt and Iron\n\n{prose(2)}\n\nCLOSED FOR THE SEASON\n\n"),
            "vivid": lambda: _titled_book(prose, ["THE CROSSING", "VIVID", "SALT AND IRON"])}[case]()
    st = analyse(text)
    labels = [label.split(" / ")[0 if case == "dateline" else -1] for _, label in st.chapters]
    expected = {"prologue": ["Prologue"] + titles, "vivid": ["THE CROSSING", "VIVID", "SALT AND IRON"]}
    assert labels == expected.get(case, titles)
    if case == "sign":                                   # the sign stays the story's text
        assert any("CLOSED FOR THE SEASON" in text[q.start:q.end] for s_ in st.sections for q in s_.paras)
    if case == "vivid":
        assert chapter_numbers([SimpleNamespace(chapter=n, chapter_title=t) for n, t in st.chapters]) == \
            {1: 1, 2: 2, 3: 3}                           # not ch508


def test_chapters_from_titles_alone_are_said_and_the_writers_marks_settle_them():
    """Stage 0 says the chapters came from titles alone and how to mend one that is a
    line of the story; the mend it names, '# ' before each real title, works: a sign
    that passed for a title (three chapters' worth of prose after it) is text again."""
    prose = random_prose(15)
    titles = ["THE CROSSING", "SALT AND IRON", "WHAT REMAINS"]
    text = _titled_book(prose, titles).replace("SALT AND IRON\n\n", f"SALT AND IRON\n\n{prose(10)}\n\n"
                                                                     "THE CROWN AND ANCHOR\n\n")
    st = analyse(text)
    assert "THE CROWN AND ANCHOR" in [label for _, label in st.chapters]      # taken for a title
    assert any("4 chapter(s) found from their titles alone" in n and "put '# ' before each" in n
               for n in st.notes)
    marked = re.sub(rf"^({'|'.join(titles)})$", r"# \1", text, flags=re.M)
    assert [label for _, label in analyse(marked).chapters] == [f"# {t}" for t in titles]


@pytest.mark.parametrize("lines", [
    ("NO ENTRY", "THE LONG WALK"),                       # two: a sign, a shout, not a series
    ("NO VACANCIES", "NO VACANCIES", "NO VACANCIES"),    # a sign repeated through the story
    ("BANG", "THUD", "CRACK", "CRASH"),                  # sounds, after pages of prose
])
def test_lines_in_the_story_stay_text(lines):
    """A book with no headings: capitalised lines that come after pages of prose, or
    repeat one text, are the story's (a sign, a shout, a sound), not chapter titles."""
    prose = random_prose(10)
    text = "".join(f"{prose(10)}\n\n{t}\n\n" for t in lines) + prose(10) + "\n"
    st = analyse(text)
    assert st.chapters == []
    assert all(any(t in text[p.start:p.end] for s in st.sections for p in s.paras) for t in lines)


def test_a_sign_repeated_from_the_start_is_no_series_of_titles():
    """NO VACANCIES three times, the first near the book's start: one text, no titles."""
    prose = random_prose(16)
    text = prose(1) + "\n\n" + "".join(f"NO VACANCIES\n\n{prose(10)}\n\n" for _ in range(3))
    assert analyse(text).chapters == []


def test_lines_in_a_book_with_its_own_headings_stay_text():
    """Chapters headed with extra blank lines before them (capitals set apart), and two
    signs in capitals, each with pages after it: the signs stay the story's."""
    prose = random_prose(17)
    titles = ["THE CROSSING", "SALT AND IRON", "WHAT REMAINS"]
    text = "".join(f"\n\n\n{t}\n\n{prose(8)}\n\n" + ("NO ENTRY\n\n" if t != "WHAT REMAINS" else "")
                   + f"{prose(8)}\n\n" for t in titles).lstrip()
    assert [label for _, label in analyse(text).chapters] == titles


def test_a_short_first_chapter_under_a_title_alone_is_a_chapter_not_front_matter():
    prose = random_prose(18)
    text = f"THE CROSSING\n\n{prose(5)}\n\n" + _titled_book(prose, ["SALT AND IRON", "WHAT REMAINS", "THE LONG WALK"])
    st = analyse(text)
    assert st.front_matter is None
    assert [label for _, label in st.chapters] == ["THE CROSSING", "SALT AND IRON", "WHAT REMAINS", "THE LONG WALK"]


def test_titles_not_taken_for_chapters_are_said_with_the_mend():
    """The first chapter's title ends in a question mark: the rest would start pages
    into the story, so none is taken; stage 0 names them and the mark that settles it."""
    prose = random_prose(19)
    st = analyse(_titled_book(prose, ["Who Killed the Harbourmaster?", "Salt and Iron", "What Remains",
                                      "The Long Walk"]))
    assert st.chapters == []
    assert any("3 line(s) look like chapter titles" in n and "put '# ' before each" in n for n in st.notes)


def test_titles_in_a_book_with_numbered_chapters_stay_text():
    prose = random_prose(11)
    text = "".join(f"Chapter {n}\n\n{prose(12)}\n\n{t}\n\n{prose(10)}\n\n"
                   for n, t in enumerate(("The Falling Star", "The Long Walk", "Into the Cistern"), 1))
    assert [label for _, label in analyse(text).chapters] == ["Chapter 1", "Chapter 2", "Chapter 3"]


def test_counted_chapters_start_again_in_each_part():
    prose = random_prose(12)
    text = "".join(f"PART {part}\n\n" + "".join(f"{n}\n\n{prose(5)}\n\n" for n in ("ONE", "TWO"))
                   for part in ("ONE", "TWO"))
    assert [label for _, label in analyse(text).chapters] == ["PART ONE / ONE", "TWO", "PART TWO / ONE", "TWO"]


def test_short_lines_of_prose_stay_prose():
    """What a heading shape must not take: a one-word line of dialogue, a count in the
    text ("Three."), a shout with its mark, a sentence in capitals, a numbered list's
    sentence."""
    prose = random_prose(8)
    for line in ("“One.”", "Three.", "STOP!", "NOBODY MOVED.", "1. Take the road north.", "One more night",
                 "Two", "one", "C. Dickens", "—I—", "_Three_", "1. Eggs\n\n2. Flour\n\n3. Salt",
                 "Three\n\nTwo\n\nOne", "— 4 —"):
        st = analyse(f"Chapter 1\n\n{prose(3)}\n\n{line}\n\n{prose(3)}\n\n{line}\n\n{prose(3)}\n")
        assert [label for _, label in st.chapters] == ["Chapter 1"], line


def test_dashed_page_numbers_of_a_pdf_copy_are_page_numbers_not_chapters():
    """'— 12 —' every ~350 words, at sentence ends and inside sentences: a printed
    edition's pages (a number splits a sentence; and chapters run longer). None starts a
    chapter; all are counted as page numbers."""
    from styletune.text.paragraphs import page_number_paragraphs
    words = (CORPUS / "wells_the_war_of_the_worlds.txt").read_text(encoding="utf-8-sig").split()[2000:9000]
    pages = [" ".join(words[i:i + 350]) for i in range(0, len(words), 350)]
    text = "Chapter 1\n\n" + "".join(f"{p}\n\n— {n} —\n\n" for n, p in enumerate(pages[:-1], 2)) + pages[-1] + "\n"
    assert any(p[0].islower() for p in pages[1:])        # some page starts inside a sentence
    assert [label for _, label in analyse(text).chapters] == ["Chapter 1"]
    assert len(page_number_paragraphs(text)) == len(pages) - 1


def test_stemming_strips_common_suffixes():
    from styletune.data.seam_model import _stem
    assert _stem("watched") == _stem("watching") == _stem("watches") == "watch"
    assert _stem("sea") == "sea"


def test_a_one_paragraph_scene_after_a_full_one_joins_it_within_sequence_len(tmp_path, make_config):
    """Oliver Twist, chapter 15: a full scene, a scene break, then one sentence. Alone
    that sentence cannot even be cut into a prompt and a completion, so it joins the
    scene before it, using the room between the budget and sequence_len."""
    long_scene = "\n\n".join(" ".join(["The rain fell on the roofs of the town."] * 12) for _ in range(12))
    src = tmp_path / "book.txt"
    src.write_text(f"Chapter 1\n\n{long_scene}\n\n* * *\n\nThe gas-lamps were lighted; Mrs. Bedwin "
                   "was waiting at the open door, and still the two old gentlemen sat in the dark.\n\n"
                   f"Chapter 2\n\n{long_scene}\n", encoding="utf-8")
    out = tmp_path / "out"
    cfg = make_config({"chunk_target_tokens": 1300, "segment_min_tokens": 300}, sequence_len=2048)
    assert STAGE0.main([str(src), "--config", str(cfg), "--out", str(out)]) == 0
    manifest = assert_conserved(out, read_manuscript(src).body)
    first = manifest["chunks"][0]
    assert "gas-lamps were lighted" in (out / first["file"]).read_text(encoding="utf-8")
    assert 1300 < first["tokens"] <= 2048 and len(manifest["chunks"]) == 2



def _one_long_paragraph(novel, words=18_600):
    """`words` words of a novel's running text (dialogue included) as one paragraph:
    ordinary sentences, no blank line, a few quotations that seem to run on."""
    text = (CORPUS / novel).read_text(encoding="utf-8")
    paragraph = " ".join(text[len(text) // 3:].split()[:words])
    return paragraph[:paragraph.rindex(". ") + 1] + "\n"  # ends on a sentence end


def test_split_cuts_one_huge_paragraph_at_sentence_ends(book_copy, make_config, capsys):
    """An 18,600-word chunk that is one paragraph of ordinary sentences: cut at
    sentence ends (a quotation that seems to run on, rather than a false 'a single
    sentence is longer'), every part within the limit, the parts the file exactly."""
    from styletune.text.patterns import ENDS_SENTENCE
    chunk = book_copy / "chunk_010_one_paragraph.txt"
    chunk.write_text(_one_long_paragraph("dickens_oliver_twist.txt"), encoding="utf-8")
    original = chunk.read_bytes()
    args = ["--config", str(make_config()), "--book", str(book_copy)]
    assert SPLIT.main(args) == 0
    captured = capsys.readouterr()
    assert "single sentence" not in captured.out + captured.err
    assert "sentence end inside a quotation that seems to run on" in captured.out
    parts = sorted(book_copy.glob("chunk_010?_one_paragraph.txt"))
    assert len(parts) >= 5 and b"".join(p.read_bytes() for p in parts) == original
    for part in parts:
        assert ENDS_SENTENCE.search(part.read_text(encoding="utf-8").rstrip()), part.name
    assert SPLIT.main(args) == 0  # every part now fits the limit
    assert "nothing to split" in capsys.readouterr().out


def test_a_passage_no_cut_can_shorten_is_named_truthfully():
    """A run-on sentence over the limit inside a long paragraph: the message names
    that passage, not the paragraph's ordinary sentences."""
    from styletune.data.seams import cut_to_fit
    from styletune.errors import InputError
    from styletune.text.sentences import build_punkt
    ordinary = "The boat came in at dusk. " * 40
    run_on = "and then the tide " * 300
    text = ordinary + "Then it went on " + run_on + "until it stopped. " + ordinary
    punkt, _ = build_punkt([text])
    with pytest.raises(InputError) as err:
        cut_to_fit(text, lambda a, b: (b - a) // 4, Lengths(500, 0, 1000), punkt, where="chunk_x.txt: ")
    message = str(err.value)
    assert message.startswith("chunk_x.txt: cannot be cut into parts of at most 1000 tokens: "
                              "the passage starting 'Then it went on and then the tide...'")
    assert "no paragraph break or sentence end where a cut may fall" in message
    assert "single sentence" not in message


def test_page_numbers_left_from_a_printed_edition_are_counted_not_removed(tmp_path, make_config, capsys):
    """Paragraphs that are only a number ('11)', '[12]', '- 13 -', 'Page 14', '15.'):
    stage 0 warns with the count, the lines and a command that removes them, records
    the count in the manifest, and keeps every word (it never deletes the author's text
    itself)."""
    rng = random.Random(3)
    words = "harbour lamp bread salt rope gull tide net mast oar cabin deck".split()

    def para():
        return " ".join(" ".join(rng.choices(words, k=12)).capitalize() + "." for _ in range(5))
    pages = ["11)", "[12]", "- 13 -", "Page 14", "15."]
    blocks = ["Chapter 1"]
    for n in range(30):
        blocks.append(("rope was cold. " if n == 18 else "") + para())
        if n % 6 == 5:    # "- 13 -" and "15.", headings' shapes too, where they split a sentence
            blocks[-1] = blocks[-1].rstrip(".") + " and the" if n in (17, 29) else blocks[-1]
            blocks.append(pages[n // 6])
    blocks.append("rope was cold. " + para())
    src, out, printed = cut_paragraphs(tmp_path, make_config, capsys, blocks)
    assert "WARNING: 5 paragraphs are only a number" in printed
    line = src.read_text(encoding="utf-8").split("\n").index("11)") + 1
    assert f"line {line}: '11)'" in printed and "Write a copy without them (the sentences they split joined again): python " in printed
    manifest = assert_conserved(out, read_manuscript(src).body)
    assert manifest["page_number_paragraphs"] == 5
    assert "WARNING: 5 paragraphs" in (out / "segment_report.md").read_text(encoding="utf-8")
    # the warning's own command, on a copy with Windows line ends: every number gone, "15."
    # joining the sentence it split, every other word and paragraph kept
    crlf = src.read_bytes().replace(b"\n", b"\r\n")
    cleaned = run_page_numbers_command(printed, crlf, tmp_path).decode("utf-8")
    assert cleaned.split() == [w for w in crlf.decode("utf-8").split() if w not in pages + ["-", "13", "Page", "14"]]
    assert "and the rope was cold." in cleaned and "\r\n\r\n" in cleaned and "\n\n" not in cleaned
    # each number had a break either side: one stays, but none where a number split the sentence
    assert cleaned.count("\r\n\r\n") == crlf.count(b"\r\n\r\n") - 2 * len(pages) + len(pages) - 2

    # numbered chapter headings ("1.") are headings, not page numbers; two stray numbers are not a warning
    numbered = tmp_path / "numbered.txt"
    numbered.write_text("\n\n".join(f"{n}.\n\n{para()}\n\n{para()}" for n in range(1, 5)) + "\n\n7)\n\n"
                        + para() + "\n\n8)\n\n" + para() + "\n", encoding="utf-8")
    cfg = make_config({"chunk_target_tokens": 1000, "segment_min_tokens": 200}, sequence_len=2048)
    assert STAGE0.main([str(numbered), "--config", str(cfg), "--out", str(tmp_path / "n"), "--dry-run"]) == 0
    assert "are only a number" not in capsys.readouterr().out


def test_the_target_length_comes_from_the_writers_own_hand_cut_chunks(make_config, tmp_path):
    """book_dir's chunks set the target only when they are this book's: the sample book's
    (book_dir's default) say nothing of another manuscript, so its default target holds."""
    from styletune.config import load_config
    from styletune.data.segment import hand_cut_folders, lengths_for
    from styletune.data.tokens import load_counter
    from styletune.settings import DEFAULT_TARGET_SHARE
    cfg, out, novel = load_config(make_config()), tmp_path / "out", tmp_path / "novel.txt"
    assert hand_cut_folders(cfg, out, novel) == [out]
    assert hand_cut_folders(cfg, out, SAMPLE_BOOK / "the_quiet_orbit_full_manuscript.txt") == \
        [out, SAMPLE_BOOK.resolve()]
    mine = tmp_path / "mine"
    assert hand_cut_folders(load_config(make_config({"book_dir": str(mine)})), out, novel) == \
        [out, mine.resolve()]
    said = []
    counter = load_counter(cfg)
    assert lengths_for(cfg, counter, [out], said.append).target == round(DEFAULT_TARGET_SHARE * cfg.sequence_len)
    assert not said
    hand = lengths_for(cfg, counter, [out, SAMPLE_BOOK], said.append)
    assert hand.target != round(DEFAULT_TARGET_SHARE * cfg.sequence_len)
    assert said and f"the median of the chunks you cut by hand in {SAMPLE_BOOK.relative_to(FT.parent)}" in said[0]


@pytest.mark.parametrize("text, slug", [
    ("Dr. Seward's Diary. 20 September.--The case", "dr_sewards_diary_20_september"),   # a day stays
    ("CHAPTER XII. The Mild Man", "mild_man"),           # heading words and numerals go, not "mild"
    ("Chapter 5", ""),                                    # nothing left: the chunk's words name it
    ("Letter, Lucy Westenra to Mina Murray", "letter_lucy_westenra_to_mina"),
    ("STAVE ONE", ""), ("Act II", ""), ("Letter 4", ""),   # every heading word _KEYWORD_HEADING knows
    ("Chapter Twenty-One", ""), ("Book the First: The Eve", "eve"),
    ("Chapter 1: First Light", "first_light"), ("Chapter 3: The Last Stand", "last_stand"),   # the title's own
    ("Upon the reading of this letter, I made", "upon_reading_of_this_letter"),   # prose keeps its words
    ("the events narrated in the last chapter", "events_narrated_in_last_chapter"),
    ("Café naïve, Renée", "cafe_naive_renee"), ("Chapitre 3 : L’Été à Montréal", "chapitre_3_lete_montreal"),
])
def test_a_chunk_file_is_named_by_its_words(text, slug):
    from styletune.data.manuscript import _slug
    assert _slug(text) == slug


@pytest.mark.parametrize("indent", ["\t", "\u00a0\u00a0\u00a0", "\u3000"], ids=["tab", "no-break spaces",
                                                                            "ideographic space"])
def test_an_indented_manuscript_keeps_each_chunks_first_indent(tmp_path, make_config, capsys, indent):
    """A writer who starts every paragraph with a tab (or no-break spaces, as a word
    processor's export may, or a full-width space, as Japanese prose does): each chunk
    file opens with its first paragraph's indent, as the others keep theirs, and the
    body still rebuilds."""
    indented = tmp_path / "indented.txt"
    body = read_manuscript(MANUSCRIPT).body
    indented.write_text(re.sub(r"(?m)^(?=[^\s*#~])(?=.{60})", indent, body), encoding="utf-8")
    out = tmp_path / "segmented"
    assert STAGE0.main([str(indented), "--config", str(make_config()), "--out", str(out)]) == 0
    body = read_manuscript(indented).body
    manifest = assert_conserved(out, body)
    for chunk in manifest["chunks"]:                      # each from its line's first character
        assert body[chunk["start"] - 1] == "\n", chunk["file"]
    assert sum((out / c["file"]).read_text(encoding="utf-8").startswith(indent) for c in manifest["chunks"]) >= 5
    # a rerun, and one over a manifest of before indents were kept (starts at first words), moves no cut
    for c in manifest["chunks"]:
        c["start"] += len(body[c["start"]:]) - len(body[c["start"]:].lstrip(indent))
    (out / "segment_manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    capsys.readouterr()
    assert STAGE0.main([str(indented), "--config", str(make_config()), "--out", str(out), "--force"]) == 0
    assert "new cut before" not in capsys.readouterr().out


def test_split_gives_each_part_its_first_paragraphs_indent(book_copy, make_config, capsys):
    chunk = book_copy / "chunk_004_the_long_walk.txt"
    chunk.write_text(re.sub(r"(?m)^(?=[^\s*#~])", "\t", chunk.read_text(encoding="utf-8")), encoding="utf-8")
    original = chunk.read_bytes()
    assert SPLIT.main(["--config", str(make_config()), "--book", str(book_copy), "--limit", "3000"]) == 0
    parts = sorted(book_copy.glob("chunk_004?_*.txt"))
    assert len(parts) > 1 and b"".join(p.read_bytes() for p in parts) == original
    assert all(p.read_text(encoding="utf-8").startswith("\t") for p in parts)


@pytest.mark.parametrize("paragraph, shown", [
    ('He shook his head. "To-night she is Imogen," he answered.', "time phrase ('night')"),
    ("She did not answer for some time.", "time phrase ('some time')"),
    ("The next day, came the news from the coast.", "time phrase ('The next day')"),
    ("Meanwhile the others waited in the hall.", "time phrase ('Meanwhile')"),
])
def test_a_time_phrase_reason_quotes_the_words_that_made_it(paragraph, shown):
    """The review and the report say which words read as a time change (helper-38:
    'He shook his head....' was shown, and looked a wrong reason)."""
    from styletune.data.seam_model import model
    features = {k: model().mean[k] for k in model().features}
    features["time"] = 1.0
    assert shown in model().signals(features, paragraph)


def test_a_reply_that_opens_with_a_gesture_runs_the_dialogue_on():
    """A question, or speech answered within a few words, before the seam: a cut there
    splits a conversation even when the reply opens with narration."""
    from styletune.data.seam_model import boundary_features, units
    text = ('"With an actress," said Dorian Gray, blushing.\n\n'
            'Lord Henry shrugged his shoulders. "That is a rather commonplace debut."\n\n'
            '"Are you very much in love with him?" he asked.\n\n'
            'She did not answer for some time. The fire had burned low.\n\n'
            'The carriage came at nine. They drove through the dark streets in silence.\n\n'
            'Nobody spoke of the play again.')
    feats = boundary_features(text, units(text))
    runs_on = [bool(feats[i]["dialogue_runs_on"]) for i in sorted(feats)]
    assert runs_on == [True, True, True, False, False]


def candidates_at_blank_lines(text):
    """The seam candidates of `text`, each run of two blank lines a mark as stage 0 finds
    it, by their first 12 characters."""
    runs = {m.end() for m in re.finditer("\n\n\n", text)}
    return {text[c.offset:c.offset + 12]: c for c in candidates(text, {at: "2 blank line(s)" for at in runs})}


def test_blank_lines_where_the_text_plainly_goes_on_are_layout_not_a_scene_break():
    """A run of blank lines after 'the letter which I read to him----', or across a
    question and its answer, scores as any paragraph start (the review lists it as a
    mark left uncut, with the reason); a run between two scenes keeps a mark's score."""
    from styletune.data.seam_model import model
    para = "It was a long day and the rain came down over the moor without a pause. " * 3
    text = (para + "\n\n" + "This is the letter which I read to him----\n\n\n"
            "“MY DEAR MR. HOLMES,--There has been a bad business during the night.”\n\n\n"
            "“Are you coming?” he asked.\n\n\n"
            "He shook his head. “Not to-night,” he said.\n\n" + para + "\n\n\n"
            "The next morning the village was quiet again, and the snow lay deep.\n\n" + para)
    found = candidates_at_blank_lines(text)
    mark = model().data["mark_score"]
    letter, question, morning = found["“MY DEAR MR."], found["He shook his"], found["The next mor"]
    assert letter.mark and letter.score < mark and "announces what follows" in letter.signals[-1]
    assert question.mark and question.score < mark and "question asked before" in question.signals[-1]
    assert morning.mark and morning.score == mark


def test_blank_lines_after_a_block_set_in_from_the_margin_are_layout_unless_a_title_follows():
    """A Study in Scarlet sets "RACHE." (and Holmes's list) in from the margin, then two
    blank lines, then the scene goes on: layout, scored as any paragraph start and
    listed as a mark left uncut. The same run before a title line of its own (Dracula's
    "_Dr. Seward's Diary._" after a telegram) is a new document, and one after a
    paragraph at the margin keeps a mark's score. A clause looking back after the block
    ("When I had got so far in my list", Holmes's list) goes on too; after a paragraph at
    the margin, or where it names a time ("When I had slept that night"), the break stands."""
    from styletune.data.seam_model import model
    para = "It was a long day and the rain came down over the moor without a pause. " * 3
    listed = "  1. Knowledge of Literature.--Nil.\n  2.     Philosophy.--Nil.\n\n\n"
    text = (para + "\n\nAcross the bare plaster there was scrawled a single word.\n\n"
            "                         RACHE.\n\n\n"
            "The detective stood back from the wall, pleased with himself and his find.\n\n" + para + "\n\n"
            "    _Czarina Catherine_ reported entering Galatz at one o'clock\n    to-day.\n\n\n"
            "_Dr. Seward's Diary._\n\n" + para + "\n\n"
            "He left the room without another word.\n\n\n"
            "The others sat on by the fire and talked of the weather.\n\n" + para + "\n\n" + listed +
            "When I had got so far in my list I threw it into the fire in despair.\n\n" + para + "\n\n" +
            listed.replace("Nil", "Feeble") + "When I had slept that night I went out early.\n\n" + para +
            "\n\nHe left the house at once.\n\n\nWhen we had gone a mile the road turned.\n\n" + para +
            "\n\n" + listed.replace("Nil", "Poor") + "When they had reached Whitby the storm broke.\n\n" + para +
            "\n\n" + listed.replace("Nil", "Fair") + "When he had read it through he laughed.\n\n" + para)
    found = candidates_at_blank_lines(text)
    mark = model().data["mark_score"]
    rache, diary, margin = found["The detectiv"], found["_Dr. Seward'"], found["The others s"]
    assert rache.mark and rache.score < mark and "set in from the margin" in rache.signals[-1]
    assert diary.mark and diary.score == mark
    assert margin.mark and margin.score == mark
    so_far, night, mile = found["When I had g"], found["When I had s"], found["When we had "]
    whitby, read = found["When they ha"], found["When he had "]
    assert so_far.mark and so_far.score < mark and "looks back at it ('When I had')" in so_far.signals[-1]
    assert read.mark and read.score < mark and "looks back at it" in read.signals[-1]
    assert night.mark and night.score == mark
    assert mile.mark and mile.score == mark
    assert whitby.mark and whitby.score == mark     # a journey's end after the block: a new scene


def test_blank_lines_before_a_new_scene_stay_a_break_after_a_closing_question():
    """A scene that ends on a spoken question, then blank lines, then 'The next morning':
    the writer's break stands (a time or place opening is a new scene's sign); a
    question inside a speech that goes on is no question ending it."""
    from styletune.data.seam_model import model
    para = "It was a long day and the rain came down over the moor without a pause. " * 3
    text = (para + "\n\n" + "“Will you come with me tomorrow?” she asked him.\n\n\n"
            "The next morning the village was quiet again, and the snow lay deep.\n\n" + para + "\n\n"
            "“Who knows? I shall go to London in the spring,” he said.\n\n\n"
            "She shook her head. “Not I,” she said.\n\n" + para)
    found = candidates_at_blank_lines(text)
    assert found["The next mor"].score == model().data["mark_score"]
    reply = found["She shook he"]
    assert reply.score < model().data["mark_score"] and "a reply after" in reply.signals[-1]


def test_a_new_place_reason_quotes_the_words_that_made_it():
    """The words the place feature fired on, as the time phrase's are (the shipped
    model's place weight is too small for the reason to show on its own)."""
    from styletune.data.seam_model import _place_phrase
    assert _place_phrase("At the house of Mr. Brownlow the lamps were lit.") == "At the house"
    assert _place_phrase("He sat down.") == "He sat down...."


def test_a_seams_key_words_are_the_words_beside_it_in_the_whole_book():
    """seam_key reads a window beside the seam (a review asks for hundreds of keys), and
    gives what splitting the whole book would: the 12 words either side, never a word
    the window cut, however long the words or the gaps between them."""
    from styletune.data.review import KEY_WORDS, seam_key
    rng = random.Random(7)
    pieces = ["a", "bb", "dddd-dddd", "e" * 70, "f\n\n", "g  ", "“Quite,”", "\t"]
    for _ in range(500):
        body = " ".join(rng.choice(pieces) for _ in range(rng.randint(0, 60)))
        offset = rng.randint(0, len(body))
        assert seam_key(body, offset) == {"before": " ".join(body[:offset].split()[-KEY_WORDS:]),
                                          "after": " ".join(body[offset:].split()[:KEY_WORDS])}


def test_an_answer_to_a_review_that_lists_no_seam_says_so(tmp_path):
    """--decide s01=keep after a review with no seam to answer: the writer hears that
    nothing is listed, and how to cut by hand, not to run stage 0 again."""
    from styletune.data.segment import REVIEW_JSON, record_decisions
    from styletune.errors import InputError
    with pytest.raises(InputError, match="needs the last review"):
        record_decisions(tmp_path, ["s01=keep"])
    (tmp_path / REVIEW_JSON).write_text(json.dumps({"seams": []}), encoding="utf-8")
    with pytest.raises(InputError, match=r"lists no seam to answer.*'cut:First words of a paragraph'"):
        record_decisions(tmp_path, ["s01=keep"])
