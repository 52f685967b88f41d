"""make book (book_to_editor.py): stages in order on the writer's book, a stop where
the writer decides, and fresh stages skipped by their recorded hashes."""
import json
import shutil
import subprocess
import sys

import pytest
from conftest import FT, SAMPLE_BOOK
from styletune.book import Files, Hashes, check_book
from styletune.errors import UserError

SCRIPT = FT / "training" / "book_to_editor.py"
MANUSCRIPT = SAMPLE_BOOK / "the_quiet_orbit_full_manuscript.txt"


def run_book(book, config, *extra):
    done = subprocess.run([sys.executable, str(SCRIPT), str(book), "--config", str(config), *extra],
                          capture_output=True, text=True)
    return done.returncode, done.stdout + done.stderr


def gpu_config(make_config, tmp_path, rules=True, **top):
    """The rehearsal config, but training on a GPU, with chunk folders under tmp_path and
    a rules file of the book's own (`rules`; else the sample book's)."""
    own = tmp_path / "my_book.md"
    own.write_text("---\nname: My book\n---\n\nA quiet novel of a space station.\n")
    return make_config({"train_device": "cuda", "book_dir": str(tmp_path / "raw" / "sample"),
                        **({"system_prompt_file": str(own)} if rules else {})}, **top)


def test_the_sample_books_rules_stop_training_another_book_and_a_dry_run_lists_every_stage(
        make_config, tmp_path):
    """The sample book's description would train into the chat drills: make book stops
    before stage 2 until the writer has written their own; a dry run says it would stop
    there and still lists the stages after."""
    config = gpu_config(make_config, tmp_path, rules=False)
    novel = tmp_path / "my_novel.txt"
    shutil.copy(MANUSCRIPT, novel)
    code, out = run_book(novel, config, "--dry-run")
    assert code == 0, out
    assert "would stop before training: " in out and "describes the sample book" in out
    assert "=== stage 5: " in out and "would run" in out.split("=== stage 5: ")[1]
    if not cuda_present():
        assert "\nand: no GPU here" in out and "make book BOOK=" in out.split("no GPU here")[1]
    # the sample manuscript itself is the book those rules describe
    code, out = run_book(MANUSCRIPT, config, "--dry-run")
    assert code == 0 and "describes the sample book" not in out, out


def test_a_card_pytorch_cannot_use_is_named_not_called_no_gpu(make_config, tmp_path, monkeypatch):
    """nvidia-smi answers but PyTorch sees no GPU (a CPU build of torch, a driver older
    than torch's CUDA): make book names the preflight's cause and fix on this machine,
    not "no GPU here, copy the book to a machine with one"."""
    import torch
    from styletune.book import gpu_missing
    from styletune.config import load_config
    from styletune.train import preflight
    cfg = load_config(gpu_config(make_config, tmp_path))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(preflight, "nvidia_driver", lambda: "570.86.15")
    said = gpu_missing(cfg, tmp_path / "chunks")
    assert said == preflight.no_gpu_reason(torch.__version__, torch.version.cuda, "570.86.15")
    assert "no GPU here" not in said and ("CPU-only build" in said or "570.86.15" in said)
    monkeypatch.setattr(preflight, "nvidia_driver", lambda: None)
    assert gpu_missing(cfg, tmp_path / "chunks").startswith("no GPU here")


def test_stage_2_trains_in_the_venv_the_other_stages_run_in(tmp_path, monkeypatch):
    """book_to_editor.py run by another venv's python (make book passes its VENV
    already): 2_train_lora.sh gets that VENV, not its default ~/.venvs/finetune; a VENV
    the writer set stays theirs."""
    from styletune.book import stage_environment
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "axolotl").write_text("")
    (tmp_path / "bin" / "python").write_text("")
    monkeypatch.delenv("VENV", raising=False)
    monkeypatch.setattr(sys, "prefix", str(tmp_path))
    assert stage_environment()["VENV"] == str(tmp_path)
    monkeypatch.setenv("VENV", "/somewhere/else")
    assert stage_environment()["VENV"] == "/somewhere/else"
    monkeypatch.delenv("VENV")
    monkeypatch.setattr(sys, "prefix", str(tmp_path / "no_axolotl_here"))
    assert "VENV" not in stage_environment()


def cuda_present():
    import torch
    return torch.cuda.is_available()


@pytest.mark.slow
def test_manuscript_runs_stages_0_and_1_then_stops_without_a_gpu_and_a_rerun_skips_them(make_config, tmp_path):
    if cuda_present():
        pytest.skip("this machine has a GPU, so stage 2 would train instead of stopping")
    config = gpu_config(make_config, tmp_path)
    code, out = run_book(MANUSCRIPT, config)
    assert code == 3, out
    assert "=== stage 0: cut the manuscript into chunk files" in out
    assert "=== stage 1: make the training examples" in out
    assert "stopped before training: no GPU here" in out and "cpu_rehearsal.yaml" in out
    chunks = sorted((tmp_path / "raw" / "the_quiet_orbit_full_manuscript").glob("chunk_*.txt"))
    assert len(chunks) >= 5
    assert (tmp_path / "out" / "train.jsonl").stat().st_size > 0
    record = json.loads((tmp_path / "out" / "book_manifest.config.json").read_text())
    assert set(record["stages"]) == {"0", "1"}

    code, out = run_book(MANUSCRIPT, config)
    assert code == 3, out
    assert "stage 0: cut the manuscript into chunk files: fresh" in out
    assert "stage 1: make the training examples: fresh" in out

    # the writer edits one word of a chunk: stage 0 never recuts over it; stage 1 reruns
    edited = chunks[1].read_text().replace(" the ", " a ", 1)
    chunks[1].write_text(edited)
    code, out = run_book(MANUSCRIPT, config)
    assert code == 3, out
    assert "were edited after stage 0 wrote them: used as they are" in out
    assert "=== stage 1: make the training examples\n" in out
    assert chunks[1].read_text() == edited

    # and if the manuscript changes too, it stops rather than choose between them
    changed = tmp_path / MANUSCRIPT.name
    changed.write_text(MANUSCRIPT.read_text().replace("Haji", "Hadji", 1))
    code, out = run_book(changed, config)
    assert code == 3, out
    assert "recutting would replace those edits" in out
    assert chunks[1].read_text() == edited


@pytest.mark.slow
def test_a_manuscript_beside_its_chunks_is_recut_when_revised_and_a_new_name_gets_its_own_folder(
        make_config, tmp_path):
    if cuda_present():
        pytest.skip("this machine has a GPU, so stage 2 would train instead of stopping")
    config = gpu_config(make_config, tmp_path)
    folder = tmp_path / "raw" / "novel"
    folder.mkdir(parents=True)
    manuscript = folder / "novel.txt"                  # the writer keeps it beside the chunks
    manuscript.write_text(MANUSCRIPT.read_text())
    assert run_book(manuscript, config)[0] == 3
    first = {p.name: p.read_text() for p in folder.glob("chunk_*.txt")}

    manuscript.write_text(MANUSCRIPT.read_text().replace("Haji", "Hadji"))   # a revision
    code, out = run_book(manuscript, config)
    assert code == 3 and "stopped before training" in out, out
    assert "=== stage 0: cut the manuscript into chunk files\n" in out
    assert "Hadji" in "".join(p.read_text() for p in folder.glob("chunk_*.txt"))

    renamed = tmp_path / "novel_v2.txt"
    renamed.write_text(manuscript.read_text())
    code, out = run_book(renamed, config)
    assert code == 3 and "=== stage 0: cut the manuscript into chunk files\n" in out, out
    assert len(list((tmp_path / "raw" / "novel_v2").glob("chunk_*.txt"))) == len(first)

    # a folder of chunk files make book did not write is never written into
    theirs = tmp_path / "raw" / "theirs"
    shutil.copytree(SAMPLE_BOOK, theirs)
    before = {p.name: p.read_bytes() for p in theirs.iterdir() if p.is_file()}
    their_manuscript = tmp_path / "theirs.txt"
    their_manuscript.write_text(MANUSCRIPT.read_text())
    code, out = run_book(their_manuscript, config)
    assert code == 3 and "already holds chunk files that make book did not write" in out, out
    assert {p.name: p.read_bytes() for p in theirs.iterdir() if p.is_file()} == before


@pytest.mark.slow
def test_a_chunk_too_long_stops_with_the_splitters_proposal(make_config, tmp_path):
    book = tmp_path / "book"
    shutil.copytree(SAMPLE_BOOK, book)
    config = gpu_config(make_config, tmp_path, sequence_len=1024)
    code, out = run_book(book, config)
    assert code == 3, out
    assert "=== stage 0" not in out                    # a chunk folder: no stage 0
    assert "the splitter's proposal (nothing written yet)" in out
    assert "cut at character" in out                   # the dry run's own lines
    assert f"split_oversized_chunks.py --config {config} --book {book}" in out
    assert "stopped: a chunk is too long" in out
    assert not (book / "backup" / "chunk_001_prologue_awakening.txt").exists()   # nothing split


def test_a_book_that_is_not_there_or_not_a_manuscript_is_one_clear_error(tmp_path):
    with pytest.raises(UserError, match="does not exist: give a manuscript"):
        check_book(tmp_path / "missing.docx")
    pdf = tmp_path / "novel.pdf"
    pdf.write_bytes(b"%PDF-1.7")
    with pytest.raises(UserError, match=r"novel.pdf: a manuscript must be .txt, .md or .docx"):
        check_book(pdf)
    code, out = run_book(pdf, FT / "configs" / "cpu_rehearsal.yaml")
    assert code == 2 and out.startswith("error: ") and "Traceback" not in out


def test_hashes_follow_content_and_reuse_a_recorded_hash_only_for_the_same_size_and_mtime(tmp_path):
    folder = tmp_path / "f"
    folder.mkdir()
    (folder / "chunk_001.txt").write_text("one")
    first = Hashes({})
    digest = first.files(Files(folder))
    assert Hashes(first.seen).files(Files(folder)) == digest
    (folder / "chunk_001.txt").write_text("two")        # new content and mtime: rehashed
    assert Hashes(first.seen).files(Files(folder)) != digest
    assert Hashes({}).files(Files(tmp_path / "nothing")) is None
    # with patterns, only the matching files of the folder count (not a manuscript beside them)
    chunks = Files(folder, ("chunk_*.txt",))
    before = Hashes({}).files(chunks)
    (folder / "manuscript.docx").write_bytes(b"PK")
    (folder / "backup").mkdir()
    (folder / "backup" / "chunk_001.txt").write_text("old")
    assert Hashes({}).files(chunks) == before
    assert Hashes({}).files(Files(folder)) != before


def test_a_stage_whose_code_writes_something_new_reruns_once_for_an_older_record(make_config, tmp_path):
    """Stage 3 at revision 2 states add_bos_token for Ollama: a merge recorded before it is
    stale, though its adapter and settings are unchanged (stage 1 at revision 3 reads the
    rules file as Continue does); the other stages stay fresh."""
    from styletune.book import Hashes, is_fresh, stages
    from styletune.config import load_config
    cfg = load_config(make_config({}))
    found = {s.number: s for s in stages(cfg, SAMPLE_BOOK, "ollama")}
    merge = found["3"]
    assert merge.settings["stage revision"] == 2
    assert found["1"].settings["stage revision"] == 3
    assert all("stage revision" not in s.settings for n, s in found.items() if n not in ("1", "3"))
    hashes = Hashes({})
    now, outputs = hashes.state(merge), hashes.outputs(merge)
    merge.settings.pop("stage revision")
    older = {**hashes.state(merge), "outputs": outputs}     # as a run before revision 2 recorded it
    assert not is_fresh(older, now, outputs)
