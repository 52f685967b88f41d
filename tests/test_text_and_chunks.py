"""Reading chunk files: encodings, line endings, which files count, order, duplicates."""
import pytest
from styletune.data.chunks import LEFT_OUT, discover, load_chunks, natural_key
from styletune.errors import InputError
from styletune.fileio import normalise, read_text, write_atomic

PROSE = ("“Where is it?” she asked — and then, *quietly*, ‘nowhere.’\n\n* * *\n\n"
         "He said, \"It's late.\" Dr. Marrow nodded.")


def test_bom_and_crlf_decode_to_the_same_text(tmp_path):
    plain, bommed = tmp_path / "a.txt", tmp_path / "b.txt"
    plain.write_bytes(PROSE.encode())
    bommed.write_bytes(b"\xef\xbb\xbf" + PROSE.replace("\n", "\r\n").encode())
    assert normalise(read_text(plain)) == normalise(read_text(bommed)) == PROSE


def test_normalise_changes_only_whitespace():
    """Line endings unified, spaces at line ends and blank lines around the text gone;
    the first line's indent and the blank lines of a scene break stay as typed."""
    messy = " \r\n\r\n\t First line.   \r\n\r\n\r\n\r\nSecond — *kept*.\t\r\n“Quote,” ‘single’.\n\n\n"
    out = normalise(messy)
    assert out == "\t First line.\n\n\n\nSecond — *kept*.\n“Quote,” ‘single’."
    assert out.split() == messy.split()


def test_undecodable_bytes_name_file_and_offset(tmp_path):
    bad = tmp_path / "chunk_001_x.txt"
    bad.write_bytes(b"Good text. Then \x93smart quotes\x94 from Windows.")
    with pytest.raises(InputError, match=r"chunk_001_x.txt: not valid UTF-8 at byte 16, line 1 .*"
                                         r"2 such byte.*Windows-1252.*iconv -f cp1252 .*> fixed.txt"):
        read_text(bad)


def test_a_stray_byte_in_a_utf8_file_is_fixed_by_hand_not_by_converting_the_file(tmp_path):
    """Converting a UTF-8 file as Windows-1252 garbles every accent and quote (iconv even
    stops part-way): one pasted byte is named with its line, and no conversion offered.
    The byte-order mark does not shift the offset."""
    pasted = tmp_path / "manuscript.txt"
    pasted.write_bytes(b"\xef\xbb\xbf\xe2\x80\x9cMy dear,\xe2\x80\x9d she said.\nIt\x92s late.\n")
    with pytest.raises(InputError) as caught:
        read_text(pasted)
    said = str(caught.value)
    assert "not valid UTF-8 at byte 30, line 2 (0x92 in \"It\ufffds late.\")" in said
    assert "do not convert the whole file" in said and "iconv" not in said
    assert pasted.read_bytes()[30] == 0x92


def test_utf16_is_named_as_such(tmp_path):
    notepad = tmp_path / "chunk_003_x.txt"
    notepad.write_bytes("It was late.".encode("utf-16"))
    with pytest.raises(InputError, match="chunk_003_x.txt: saved as UTF-16"):
        read_text(notepad)


def test_outputs_get_ordinary_permissions(tmp_path):
    import os
    target = tmp_path / "out.jsonl"
    write_atomic(target, b"x\n")
    mask = os.umask(0)
    os.umask(mask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~mask


def test_binary_file_is_refused(tmp_path):
    binary = tmp_path / "chunk_002_x.txt"
    for data, message in [
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x01\x00\x00\x00\x8d\x9d", r"not a text file \(8 NUL bytes"),
        (b"PK\x03\x04\x00\x00content.xml", r"a zipped document \(an .odt"),
        # rich text and PDF under a .txt name: their markup would train as prose
        (b"{\\rtf1\\ansi\\ansicpg1252\\cocoartf2709\n\\f0 It took all winter.}", r"an RTF document .* Make Plain Text"),
        (b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj", r"a PDF under a text file's name"),
    ]:
        binary.write_bytes(data)
        with pytest.raises(InputError, match=rf"chunk_002_x.txt: {message}"):
            read_text(binary)
    # a real Word file renamed .txt is named for what it is
    import docx
    doc = docx.Document()
    doc.add_paragraph("It took all winter.")
    doc.save(binary)
    with pytest.raises(InputError, match=r"chunk_002_x.txt: a Word document \(.docx\) under another name"):
        read_text(binary)


def test_nul_bytes_in_a_text_file_are_located_and_the_command_removes_only_them(tmp_path):
    """A crashed save leaves NUL bytes after the text (invisible in an editor): the
    message names the line and the command, which keeps every other byte; the path
    in the command is quoted for the shell (it has a space)."""
    import shlex
    import subprocess
    text = "It took all winter.\n\nThe ice held.\n"
    damaged = tmp_path / "my book" / "chunk_001_a.txt"
    damaged.parent.mkdir()
    damaged.write_bytes(text.encode() + b"\x00" * 64)
    with pytest.raises(InputError) as err:
        read_text(damaged)
    message = str(err.value)
    assert "64 NUL byte(s), invisible in an editor" in message and "the first on line 4, byte 35" in message
    command = message.split("`")[1]
    assert shlex.quote(str(damaged)) in command
    subprocess.run(command, shell=True, check=True, cwd=tmp_path)
    assert (tmp_path / "fixed.txt").read_text() == text


def test_utf16_without_a_byte_order_mark_and_a_zeroed_file_are_named_for_what_they_are(tmp_path):
    """Every other byte NUL is UTF-16 saved with no byte-order mark (removing the NULs
    would garble each curly quote): the iconv command restores it; a file of NULs
    alone is a crash's blank, not a picture."""
    import subprocess
    text = "It’s done, “she said”.\n\nThe ice held.\n" * 20
    for encoding in ("utf-16-le", "utf-16-be"):
        saved = tmp_path / "chunk_001_a.txt"
        saved.write_bytes(text.encode(encoding))
        with pytest.raises(InputError, match="saved as UTF-16 without a byte-order mark") as err:
            read_text(saved)
        subprocess.run(str(err.value).split("`")[1], shell=True, check=True, cwd=tmp_path)
        assert (tmp_path / "fixed.txt").read_text(encoding="utf-8") == text
    saved.write_bytes(b"\x00" * 4096)
    with pytest.raises(InputError, match="every one of its 4096 bytes is NUL: a crash while saving left it blank"):
        read_text(saved)


def test_write_atomic_leaves_no_temporary_files(tmp_path):
    target = tmp_path / "sub" / "out.jsonl"
    write_atomic(target, b"one\n")
    write_atomic(target, b"two\n")
    assert target.read_bytes() == b"two\n"
    assert [p.name for p in target.parent.iterdir()] == ["out.jsonl"]


def test_a_folder_that_cannot_be_written_is_named_with_the_fix(tmp_path, monkeypatch):
    """A read-only mount refuses the temporary file: the writer hears the file they
    asked for (not '.out.jsonl.x8f2'), that the mount is read-only, and where to go."""
    import errno
    import tempfile

    from styletune.cli import file_system_problem

    def read_only(prefix, dir):
        raise OSError(errno.EROFS, "Read-only file system", f"{dir}/{prefix}x8f2")
    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    target = tmp_path / "out.jsonl"
    with pytest.raises(OSError) as raised:
        write_atomic(target, b"one\n")
    message = file_system_problem(raised.value)
    assert message.startswith(f"Read-only file system: {target}: ") and ".out.jsonl." not in message
    assert "read-only disk or mount: choose a folder on a writable one (stage 0's --out" in message


def _book(tmp_path, files):
    book = tmp_path / "book"
    book.mkdir()
    for name, text in files.items():
        path = book / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return book


def test_only_chunk_files_are_used_in_natural_order_and_the_rest_is_listed(tmp_path):
    book = _book(tmp_path, {
        "chunk_014_c.txt": "Fourteen. It ends.",
        "chunk_013b_b.txt": "Thirteen b. It ends.",
        "chunk_013a_a.txt": "Thirteen a. It ends.",
        "chunk_100_z.txt": "Hundred. It ends.",
        "chunk_99_y.txt": "Ninety-nine. It ends.",
        "README.md": "notes",
        "CURATION_REPORT.md": "report",
        "metadata.json": "{}",
        "novel_full_manuscript.txt": "everything",
        "draft.docx": b"PK\x03\x04",
        ".DS_Store": b"\x00\x01",
        "backup/chunk_013_original.txt": "Thirteen a. It ends.\n\nThirteen b. It ends.",
        "notes/plan.txt": "Who knows what, when.",
        "chunk_014_c.txt~": "Fourteen. It ends.",
        "chunk_012.bak": "Twelve. It ends.",
    })
    found, skipped = discover(book, "chunk_*.txt")
    assert [p.name for p in found] == ["chunk_013a_a.txt", "chunk_013b_b.txt", "chunk_014_c.txt",
                                       "chunk_99_y.txt", "chunk_100_z.txt"]
    reasons = dict(skipped)
    assert set(reasons) == {"README.md", "CURATION_REPORT.md", "metadata.json",
                            "novel_full_manuscript.txt", "draft.docx", ".DS_Store", "backup/", "notes/",
                            "chunk_014_c.txt~", "chunk_012.bak"}
    assert reasons[".DS_Store"] == "hidden file"
    assert "backups" in reasons["backup/"] and reasons["notes/"] == "folder"
    assert reasons["chunk_014_c.txt~"] == reasons["chunk_012.bak"] == "an editor's backup copy (not read)"


def test_chunk_files_in_a_folder_of_the_book_folder_are_left_out_aloud(tmp_path):
    """A writer who files chunks by part (Part One/, Part Two/) would lose them quietly:
    the folder is LEFT OUT, said with how many and what to do."""
    book = _book(tmp_path, {"chunk_001_a.txt": "One. It ends.",
                            "Part Two/chunk_002_b.txt": "Two. It ends.",
                            "Part Two/Chapter 3/chunk_003_c.txt": "Three. It ends."})
    found, skipped = discover(book, "chunk_*.txt")
    assert [p.name for p in found] == ["chunk_001_a.txt"]
    assert dict(skipped)["Part Two/"].startswith(f"{LEFT_OUT}: a folder holding 2 chunk file(s), which stage 1 "
                                                  "does not read")
    # every chunk in a folder: the error says where they are, not how to name them
    (book / "chunk_001_a.txt").rename(book / "Part Two" / "chunk_001_a.txt")
    with pytest.raises(InputError, match=r"Left out: Part Two/ \(a folder holding 3 chunk file\(s\)"):
        discover(book, "chunk_*.txt")


def test_a_chunk_saved_as_docx_is_an_error_not_a_silent_skip(tmp_path):
    book = _book(tmp_path, {"chunk_001_a.txt": "One. Two.", "chunk_002_b.docx": b"PK\x03\x04"})
    with pytest.raises(InputError, match=r"chunk_002_b.docx: a chunk saved as a .docx.*Save it as plain"):
        discover(book, "chunk_*.txt")


def test_missing_or_empty_book_folder(tmp_path):
    with pytest.raises(InputError, match="no book folder"):
        discover(tmp_path / "nope", "chunk_*.txt")
    with pytest.raises(InputError, match="no chunk files matching"):
        discover(_book(tmp_path, {"notes.md": "x"}), "chunk_*.txt")
    manuscript = tmp_path / "My Novel.txt"
    manuscript.write_text("Chapter 1\n\nIt was cold.\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"My Novel.txt is a file, and a folder of chunk files is wanted here.*"
                                         r"python fine-tuning/training/0_segment_manuscript.py '.*/My Novel.txt'.*"
                                         r"style_pipeline.book_dir.*make book BOOK='.*/My Novel.txt'"):
        discover(manuscript, "chunk_*.txt")


def test_empty_chunk_is_skipped_with_a_reason(tmp_path):
    book = _book(tmp_path, {"chunk_001_a.txt": "One sentence. Another one.", "chunk_002_b.txt": " \r\n\n"})
    chunks, skipped = load_chunks(discover(book, "chunk_*.txt")[0])
    assert [c.name for c in chunks] == ["chunk_001_a.txt"]
    assert skipped[0][0] == "chunk_002_b.txt" and "EMPTY" in skipped[0][1]


def test_original_beside_its_parts_is_an_error_naming_both(tmp_path):
    a = "The long paragraph of the first half goes on for quite a while, more than eighty characters."
    b = "The second half has a paragraph of its own, also longer than the eighty character floor here."
    book = _book(tmp_path, {"chunk_013_orig.txt": f"{a}\n\n{b}", "chunk_013a_x.txt": a,
                            "chunk_013b_y.txt": b})
    with pytest.raises(InputError, match=r"chunk_013_orig.txt and chunk_013a_x.txt, chunk_013b_y.txt"):
        load_chunks(discover(book, "chunk_*.txt")[0])


def test_short_repeated_lines_are_not_duplicates(tmp_path):
    book = _book(tmp_path, {"chunk_001_a.txt": "“Yes.”\n\nShe went home. It rained.",
                            "chunk_002_b.txt": "“Yes.”\n\nHe stayed out. It snowed."})
    chunks, _ = load_chunks(discover(book, "chunk_*.txt")[0])
    assert len(chunks) == 2


def test_natural_key_orders_parts():
    names = ["chunk_10.txt", "chunk_9b.txt", "chunk_9a.txt", "chunk_009.txt"]
    assert sorted(names, key=natural_key)[-1] == "chunk_10.txt"


REPEATED = ("The cat sat on the mat. " * 2500).strip()


def test_a_sentence_repeated_thousands_of_times_still_ends_sentences():
    """Punkt trained on a chunk that repeats one sentence must not learn its last word
    as an abbreviation ('mat.'): every repeat is a sentence end a cut may use."""
    from conftest import SAMPLE_BOOK
    from styletune.text.sentences import boundaries, build_punkt
    book = [p.read_text(encoding="utf-8") for p in sorted(SAMPLE_BOOK.glob("chunk_*.txt"))]
    punkt, _ = build_punkt(book + [REPEATED])
    found = boundaries(REPEATED, punkt)
    assert len(found) == 2499 and all(REPEATED[:b.end].endswith("mat.") for b in found)


def test_stage1_on_a_chunk_of_one_repeated_sentence_names_the_real_problem(book_copy, make_config,
                                                                            capsys):
    """2,500 repeats are far over sequence_len: stage 1 says so and names the splitter,
    instead of a false 'no sentence end'."""
    from conftest import FT, load_script
    (book_copy / "chunk_010_repeated.txt").write_text(REPEATED + "\n", encoding="utf-8")
    stage1 = load_script(FT / "training" / "1_prepare_data.py")
    assert stage1.main(["--config", str(make_config()), "--book", str(book_copy), "--dry-run"]) != 0
    err = capsys.readouterr().err
    assert "no sentence end" not in err
    assert "chunk_010_repeated.txt" in err and "split_oversized_chunks.py" in err


@pytest.mark.parametrize("text, expected, removed, joined", [
    # two numbers in a row inside a sentence: both go, the halves join
    ("It was dark before\n\n22)\n\n23)\n\nnightfall, when they came.\n",
     "It was dark before nightfall, when they came.\n", 2, 1),
    # between two paragraphs: the break stays
    ("He came home.\n\n13)\n\n14)\n\nNext day it rained.\n", "He came home.\n\nNext day it rained.\n", 2, 0),
    # the first line, and the last with no line end after it
    ("11)\n\nFirst, it was.\n\nThen it was not.\n", "First, it was.\n\nThen it was not.\n", 1, 0),
    ("The last line.\n\n13)", "The last line.\n", 1, 0),
    # "11." only inside a sentence a lower-case word carries on; before a capital it may head a chapter
    ("and he met\n\n11.\n\nthe doctor at the door.\n", "and he met the doctor at the door.\n", 1, 1),
    ("and he met\n\n11.\n\nDr. Lanyon at the door.\n", "and he met\n\n11.\n\nDr. Lanyon at the door.\n", 0, 0),
    ("The chapter ends here,\n\n2.\n\nThe second chapter.\n",
     "The chapter ends here,\n\n2.\n\nThe second chapter.\n", 0, 0),
    # a word hyphenated over the page keeps its hyphen; a dialogue line is no page number
    ("a some-\n\n12)\n\nthing else.\n", "a some-thing else.\n", 1, 1),
    ("He said:\n\n“12.”\n\nShe nodded.\n", "He said:\n\n“12.”\n\nShe nodded.\n", 0, 0),
    # the longer break stays (a scene break of blank lines), with the next paragraph's indent
    ("The end.\n\n      12)\n\n\n\n    Indented.\n", "The end.\n\n\n\n    Indented.\n", 1, 0),
    # a signature in capitals, then the next chapter: no sentence to join
    ("Yours ever,\n\n  HASTIE LANYON\n\n82)\n\n  HENRY JEKYLL'S STATEMENT\n",
     "Yours ever,\n\n  HASTIE LANYON\n\n  HENRY JEKYLL'S STATEMENT\n", 1, 0),
    # one paragraph a line
    ("It was cold and\n14)\nwet.\nNext.\n15)\nDay.\n", "It was cold and wet.\nNext.\nDay.\n", 2, 1),
])
def test_page_numbers_go_and_the_sentences_they_split_join(text, expected, removed, joined):
    from styletune.text.paragraphs import page_number_paragraphs, without_page_numbers
    hyphenated = ["some-thing"] if "some-" in text else []        # named for the writer to look at
    assert without_page_numbers(text) == (expected, removed, joined, hyphenated)
    assert len(page_number_paragraphs(text)) == removed and page_number_paragraphs(expected) == []
