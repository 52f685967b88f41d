"""Stage 1 end to end on the sample book with the real SmolLM2 tokenizer."""
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import CORPUS, FT, REHEARSAL_CONFIG, SAMPLE_BOOK, load_script
from styletune import paths
from styletune.config import load_config
from styletune.data.prepare import planned_outputs, prepare_data
from styletune.errors import ConfigError, InputError
from styletune.fileio import write_outputs
from test_conservation import assert_conserved

SCRIPT = FT / "training" / "1_prepare_data.py"


STAGE1 = load_script(SCRIPT)


@pytest.fixture
def run_script(capsys):
    """Run the script's main() in-process (the subprocess test below covers the real entry)."""
    def run(*args):
        code = STAGE1.main([str(a) for a in args])
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(args, code, out, err)
    return run


@pytest.fixture(scope="module")
def sample_result(tmp_path_factory):
    from conftest import write_config
    return prepare_data(load_config(write_config(tmp_path_factory.mktemp("s1"))))


def test_sample_book_examples(sample_result):
    r = sample_result
    assert len(r.chunks) == 10
    assert len(r.train) + len(r.validation) == 10 and len(r.validation) == 1
    assert {name for name, _ in r.skipped} >= {"backup/", "metadata.json",
                                                "the_quiet_orbit_full_manuscript.txt"}
    for e in r.examples:
        roles = [m["role"] for m in e.messages()]
        assert roles == ["user", "assistant"]          # no system message
        assert_conserved(e)
        assert 0.05 <= e.ratio <= 0.10 or not e.in_range
    exceptions = dict(r.exceptions())
    out_of_range = {e.chunk.name for e in r.examples if not e.in_range}
    assert out_of_range <= set(exceptions)
    assert sum(e.in_range for e in r.examples) >= 8


def test_counts_are_exact_for_the_rendered_conversation(sample_result, smol_counter, hf_tokenizer):
    for e in sample_result.examples:
        rendered = smol_counter.render(e.messages())
        assert "<|im_start|>system" not in rendered
        # the continuation layout: the writer's text opens the assistant's turn
        assert rendered == "<|im_start|>assistant\n" + e.header + e.prefix + e.completion + "<|im_end|>\n"
        # tokenised as a server tokenises a request: the prompt alone, then the
        # continuation with its end token, then the template's closing newline
        parts = ("<|im_start|>assistant\n" + e.header + e.prefix, e.completion + "<|im_end|>", "\n")
        assert e.total_tokens == sum(len(hf_tokenizer(t, add_special_tokens=False)["input_ids"]) for t in parts)
        assert e.prefix_tokens == len(hf_tokenizer(e.prefix, add_special_tokens=False)["input_ids"])
        assert e.completion_tokens == len(hf_tokenizer(e.completion, add_special_tokens=False)["input_ids"])


def test_parts_of_one_chunk_stay_on_one_side(make_config):
    for seed in range(6):
        r = prepare_data(load_config(make_config({"seed": seed, "validation_share": 0.3})))
        sides = {e.chunk.name: s for s, group in (("t", r.train), ("v", r.validation)) for e in group}
        assert sides["chunk_006a_the_last_burn.txt"] == sides["chunk_006b_into_the_cistern.txt"]
        assert len(r.validation) >= 2


def test_the_validation_split_stays_put_as_the_book_grows_and_spreads_across_it():
    """A chapter added at the end leaves the chunks held out before held out; one
    inserted and the rest renumbered leaves those of the stretches before it (drawing
    one from each of n equal shares moved most of them into training); they sample
    each tenth of the book, and validation_share is honoured, not rounded to 1/k."""
    from styletune.data.chunks import Chunk
    from styletune.data.holdout import choose_validation_groups
    paragraphs = [p for p in (CORPUS / "doyle_a_study_in_scarlet.txt").read_text(encoding="utf-8").split("\n\n")
                  if len(p.split()) > 40]

    def held(texts, seed=42, share=0.1):
        chunks = [Chunk(Path(f"chunk_{i:03d}_x.txt"), t, "") for i, t in enumerate(texts, 1)]
        return {c.text for c in chunks if c.group in choose_validation_groups(chunks, share, seed)}

    texts = paragraphs[:35]
    before = held(texts)
    assert len(before) == 4
    assert held(texts + paragraphs[35:36]) >= before                      # a chapter added at the end
    for at in (5, 12, 27):                                                # one inserted, the rest renumbered
        kept = {t for t in before if texts.index(t) < 10 * (at // 10)}
        assert held(texts[:at] + paragraphs[40:41] + texts[at:]) >= kept
    assert held(texts, seed=43) != before                                 # the seed draws another set
    for n in (35, 60, 100):
        places = sorted(paragraphs.index(t) for t in held(paragraphs[:n]))
        assert len(places) == round(n / 10)
        assert all(10 * k <= at < 10 * (k + 1) for k, at in enumerate(places[:-1]))
        assert places[-1] >= 10 * (len(places) - 1)
    for share, n in ((0.15, 40), (0.3, 20), (0.5, 36)):
        assert len(held(paragraphs[:n], share=share)) == round(share * n)


def test_explicit_validation_list_overrides(make_config):
    r = prepare_data(load_config(make_config({"validation_chunks": ["chunk_009_the_quiet_orbit.txt"]})))
    assert [e.chunk.name for e in r.validation] == ["chunk_009_the_quiet_orbit.txt"]
    with pytest.raises(ConfigError, match="chunk_999"):
        prepare_data(load_config(make_config({"validation_chunks": ["chunk_999.txt"]})))


def test_several_cuts_per_chunk_give_different_prefixes(make_config):
    r = prepare_data(load_config(make_config({"cuts_per_chunk": 3})))
    by_chunk = {}
    for e in r.train:
        by_chunk.setdefault(e.chunk.name, []).append(e.cut.end)
    assert any(len(set(v)) == 3 for v in by_chunk.values())
    assert all(len(set(v)) == len(v) for v in by_chunk.values())
    assert len(r.validation) == 1  # validation keeps one fixed cut


def test_length_gate_names_the_chunk_and_the_fix(make_config):
    cfg = load_config(make_config(sequence_len=3000))
    with pytest.raises(InputError) as err:
        prepare_data(cfg)
    msg = str(err.value)
    assert "chunk_004_the_long_walk.txt" in msg and "sequence_len = 3000" in msg
    assert "chunk_013a" in msg and "backup/" in msg
    r = prepare_data(cfg, skip_overlong=True)
    assert [e.chunk.name for e in r.overlong_skipped] == ["chunk_004_the_long_walk.txt"]
    assert all(e.total_tokens <= 3000 for e in r.examples)


def test_outputs_rerun_identical_dry_run_writes_nothing_and_force(make_config, tmp_path, run_script):
    cfg_path = make_config()
    out = tmp_path / "out"
    dry = run_script("--config", cfg_path, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "dry run: nothing written" in dry.stdout and not out.exists()

    first = run_script("--config", cfg_path, "--preview", "1")
    assert first.returncode == 0, first.stderr
    assert "✂" in first.stdout and "| chunks |" in first.stdout
    files = sorted(p for p in out.rglob("*") if p.is_file())
    names = {p.name for p in files}
    assert names == {"train.jsonl", "val.jsonl", "train.manifest.json", "stage1_report.json",
                     "stage1_report.md", "stage1_lengths.png"}
    before = {p: p.read_bytes() for p in files}
    again = run_script("--config", cfg_path)
    assert again.returncode == 0 and "unchanged:" in again.stdout and "wrote:" not in again.stdout
    assert {p: p.read_bytes() for p in files} == before

    # a different seed changes the cuts: refused without --force, done with it
    data = yaml.safe_load(cfg_path.read_text())
    data["style_pipeline"]["seed"] = 7
    cfg_path.write_text(yaml.safe_dump(data))
    refused = run_script("--config", cfg_path)
    assert refused.returncode == 2 and "--force" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert {p: p.read_bytes() for p in files} == before
    forced = run_script("--config", cfg_path, "--force")
    assert forced.returncode == 0 and (out / "train.jsonl").read_bytes() != before[out / "train.jsonl"]


def test_jsonl_rows_and_manifest(make_config, tmp_path):
    cfg = load_config(make_config())
    result = prepare_data(cfg)
    outputs = planned_outputs(result)
    write_outputs(outputs, force=False)
    rows = [json.loads(line) for line in cfg.train_path.read_text().splitlines()]
    assert len(rows) == len(result.train) + len(result.drills) + len(result.openings)
    assert all(list(row) == ["messages", "ends_turn"] for row in rows)   # provenance is not in the rows
    manifest = json.loads(cfg.train_path.with_suffix(".manifest.json").read_text())
    assert len(manifest["inputs"]) == 10 and manifest["token_counts_exact"] is True
    assert {e["chunk"] for e in manifest["examples"]} == {c.name for c in result.chunks}
    assert manifest["config_sha256"] == cfg.sha256()
    report = json.loads((tmp_path / "out" / "report" / "stage1_report.json").read_text())
    assert report["summary"]["chunks"] == 10
    assert set(report["summary"]) == {"chunks", "training_examples", "validation_examples",
                                      "max_tokens", "average_tokens", "over_3000", "over_4000",
                                      "over_sequence_len_4096"}
    png = (tmp_path / "out" / "report" / "stage1_lengths.png").read_bytes()
    assert png.startswith(b"\x89PNG")


def test_bad_inputs_give_one_line_errors_not_tracebacks(make_config, book_copy, run_script):
    (book_copy / "chunk_010_bad.txt").write_bytes(b"Fine start. \xff\xfe broken")
    res = run_script("--config", make_config(), "--book", book_copy)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "chunk_010_bad.txt: not valid UTF-8 at byte 12" in res.stderr
    # every file that cannot be read is named in one run, not one a run
    (book_copy / "chunk_011_bad.txt").write_bytes(b"{\\rtf1\\ansi It ends.}")
    res = run_script("--config", make_config(), "--book", book_copy)
    assert res.returncode == 2 and "error: 2 chunk files cannot be read as text:" in res.stderr
    assert "chunk_010_bad.txt: not valid UTF-8" in res.stderr and "chunk_011_bad.txt: an RTF document" in res.stderr
    (book_copy / "chunk_011_bad.txt").unlink()

    (book_copy / "chunk_010_bad.txt").write_text("a chunk with no sentence end at all\n\nnor here")
    res = run_script("--config", make_config(), "--book", book_copy)
    assert res.returncode == 2 and "chunk_010_bad.txt: no sentence end" in res.stderr

    (book_copy / "chunk_010_bad.txt").write_text("\n\n")
    res = run_script("--config", make_config(), "--book", book_copy, "--dry-run")
    assert res.returncode == 0
    empty = next(line for line in res.stderr.splitlines() if "EMPTY" in line)   # named by its path
    assert empty.startswith("warning: ") and empty.endswith("chunk_010_bad.txt: EMPTY: no text in this "
                                                             "chunk file; delete it or fill it")
    assert Path(empty.split(": ")[1]).resolve() == (book_copy / "chunk_010_bad.txt").resolve()

    # named like a chunk, but not chunk_*.txt: left out, and said on the terminal
    (book_copy / "chunk_010_bad.txt").unlink()
    for name in ("chunk_011_notes.md", "Chunk_012 ending.txt", "chunk_013.TXT"):
        (book_copy / name).write_text("A chunk the writer meant to train on.\n")
    res = run_script("--config", make_config(), "--book", book_copy, "--dry-run")
    assert res.returncode == 0
    for name in ("chunk_011_notes.md", "Chunk_012 ending.txt", "chunk_013.TXT"):
        assert f"{name}: LEFT OUT: named like a chunk" in res.stderr


def test_a_template_that_cannot_render_is_a_config_error(make_config):
    cfg = load_config(make_config(chat_template="jinja",
                                  chat_template_jinja="{{ raise_exception('system turn required') }}"))
    with pytest.raises(ConfigError, match="system turn required"):
        prepare_data(cfg)


def test_empty_validation_set_is_an_error(make_config, tmp_path):
    with pytest.raises(InputError, match="no validation examples"):
        prepare_data(load_config(make_config({"validation_share": 0.0})))
    # one chunk left, the others misnamed: the error names them, not only the share
    book = tmp_path / "book"
    book.mkdir()
    shutil.copy(SAMPLE_BOOK / "chunk_001_prologue_the_silence.txt", book)
    shutil.copy(SAMPLE_BOOK / "chunk_002_the_infirmary.txt", book / "chunk_002_the_infirmary.md")
    with pytest.raises(InputError, match=r"Left out: chunk_002_the_infirmary\.md \(named like a chunk, but not"):
        prepare_data(load_config(make_config()), book_dir=book)


def test_book_path_relative_to_fine_tuning(make_config, monkeypatch, tmp_path):
    monkeypatch.chdir(REHEARSAL_CONFIG.parent.parent.parent)   # the repository root
    r = prepare_data(load_config(make_config()), book_dir="data/raw/the_quiet_orbit")
    assert r.book_dir == SAMPLE_BOOK
    # a folder still to be made (stage 0's --out) lands under fine-tuning/, git-ignored,
    # not in a data/ beside it that git would show; a path whose first folder is here stays here
    assert paths.resolve_cli("data/raw/my_novel") == SAMPLE_BOOK.parent / "my_novel"
    assert paths.resolve_cli("my_chunks/book") == Path.cwd() / "my_chunks" / "book"
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    assert paths.resolve_cli("data/raw/my_novel") == tmp_path / "data" / "raw" / "my_novel"


def test_tokenizer_that_cannot_load_says_what_to_do(make_config):
    cfg = load_config(make_config(base_model="meta-llama/Llama-3.1-8B-Instruct"))
    with pytest.raises(ConfigError) as err:
        prepare_data(cfg)
    msg = str(err.value)
    assert "hf auth login" in msg and "tiktoken_bpe" in msg and "allow_approximate_tokens" in msg


def test_approximate_counts_are_opt_in_and_labelled(make_config, tmp_path, run_script):
    cfg_path = make_config({"allow_approximate_tokens": True}, base_model="no/such-model")
    res = run_script("--config", cfg_path)
    assert res.returncode == 0, res.stderr
    assert "APPROXIMATE" in res.stdout
    md = (tmp_path / "out" / "report" / "stage1_report.md").read_text()
    assert "APPROXIMATE" in md and "(APPROXIMATE)" in md


def test_help_and_default_config_from_another_directory(tmp_path):
    res = subprocess.run([sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True,
                         cwd=tmp_path)
    assert res.returncode == 0 and "--dry-run" in res.stdout and "--preview" in res.stdout
    assert "\nRun     python fine-tuning/training/1_prepare_data.py" in res.stdout   # how to run it, too
    res = subprocess.run([sys.executable, str(SCRIPT), "--config", str(REHEARSAL_CONFIG),
                          "--dry-run"], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "fine-tuning/data/processed/rehearsal/training.jsonl" in res.stdout
    assert SAMPLE_BOOK.name in res.stdout


def test_hub_id_loads_from_the_hugging_face_cache_offline(make_config, monkeypatch, tmp_path):
    """The writer's path: base_model is a Hub id whose tokenizer sits in the HF cache."""
    import shutil

    import huggingface_hub.constants
    from conftest import SMOL
    repo = tmp_path / "hub" / "models--acme--novel-model"
    snapshot = repo / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(SMOL / name, snapshot / name)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    from_hub = prepare_data(load_config(make_config(base_model="acme/novel-model")))
    local = prepare_data(load_config(make_config()))
    assert "acme/novel-model tokenizer" in from_hub.tokenizer
    assert [e.total_tokens for e in from_hub.examples] == [e.total_tokens for e in local.examples]


def test_half_the_examples_start_with_continues_autocomplete_header(sample_result):
    """editor_header_share 0.5: Continue's path line (Markdown and .txt forms) before
    the text, on the same examples every run, half of those whose prompt ends in typed
    whitespace and half of the others; the rest are the text alone."""
    examples = sample_result.examples
    headers = [e.header for e in examples]
    groups = [[e for e in examples if e.prefix[-1:].isspace() == typed] for typed in (True, False)]
    assert sum(map(bool, headers)) == sum(round(0.5 * len(g)) for g in groups) >= 0.4 * len(examples)
    md = [h for h in headers if h.endswith(".md\n")]
    txt = [h for h in headers if h.endswith(".txt\n")]
    assert md and txt and len(md) + len(txt) == sum(map(bool, headers))
    for e in examples:
        if e.header:
            stem = f"{e.chunk.path.parent.name}/{e.chunk.path.stem}"
            assert e.header in (f"\n {stem}.md\n", f"\n// {stem}.txt\n")
            assert e.messages()[0]["content"] == e.header + e.prefix


def test_half_the_cuts_keep_the_whitespace_the_writer_typed(sample_result):
    """typed_join_share 0.5: of the cuts followed by whitespace, half keep it in the
    prompt (the writer typed the space or the paragraph break, and the completion
    opens with the next word), the same ones every run; the rest stop on the
    sentence's last character and the completion opens with the whitespace."""
    spaced = [e for e in sample_result.examples if e.cut.start > e.cut.end]
    typed = [e for e in spaced if e.prefix[-1].isspace()]
    assert len(typed) == round(0.5 * len(spaced)) > 0
    for e in typed:
        assert e.join == e.cut.start and not e.completion[0].isspace()
    for e in [e for e in spaced if e not in typed]:
        assert e.join == e.cut.end and e.completion[0].isspace() and not e.prefix[-1].isspace()


def test_the_path_line_comes_off_and_gives_the_chunk_back(sample_result):
    """Stage 4 rebuilds the author's chunks from the training file: the user turn
    without Continue's path line, then the completion, is the chunk, byte for byte."""
    from styletune.data.examples import without_path_line
    assert any(e.header for e in sample_result.examples)
    for e in sample_result.examples:
        user, completion = (m["content"] for m in e.messages())
        assert without_path_line(user) + completion == e.chunk.text


def test_the_sample_books_rules_file_with_another_book_is_a_warning(make_config, book_copy, tmp_path):
    """Its description of a science-fiction novel would train (the chat drills) and reach
    Continue (stage 5): stage 1 says so, and says nothing on the sample book itself."""
    assert not [w for w in prepare_data(load_config(make_config())).warnings() if "sample book" in w]
    other = prepare_data(load_config(make_config()), book_dir=book_copy).warnings()
    assert any("describes the sample book" in w and "system_prompt_file" in w for w in other)
    # the config given extends the rehearsal's, which extends the main one: that is where it reaches every run
    main = FT / "configs" / "qlora_style_transfer.yaml"
    assert any(f"(or in {paths.shown(main)}, which it extends, for every config built on it)" in w for w in other)
    rules = tmp_path / "my_book.md"
    rules.write_text("---\nname: My book\n---\n\nA quiet novel of a fishing village.\n")
    own = prepare_data(load_config(make_config({"system_prompt_file": str(rules)})), book_dir=book_copy)
    assert not [w for w in own.warnings() if "sample book" in w]


def test_a_rules_file_that_is_not_there_is_an_error_naming_where_it_was_looked_for(make_config, run_script):
    """Written as the repository sees it (fine-tuning/configs/...), the path counts from
    fine-tuning/ and names no file: stage 1 stops instead of drilling without the rules."""
    cfg = make_config({"system_prompt_file": "fine-tuning/configs/prompts/my_book.md"})
    proc = run_script("--config", cfg, "--dry-run")
    assert proc.returncode == 2
    assert "no file at" in proc.stderr and "fine-tuning/fine-tuning/configs/prompts/my_book.md" in proc.stderr
    assert "counts from fine-tuning/" in proc.stderr and "Traceback" not in proc.stderr


def test_footnote_marks_in_chunk_files_are_a_warning(make_config, book_copy):
    """Marks like "[12]" left by an edition would be learnt as prose: stage 1 names the
    chunk files that hold them; none in the sample book, and a lone one is let be."""
    assert not [w for w in prepare_data(load_config(make_config())).warnings() if "footnote mark(s)" in w]
    chunk = sorted(book_copy.glob("chunk_*.txt"))[2]
    text = chunk.read_text(encoding="utf-8")
    chunk.write_text(text.replace(". ", ". [7] ", 1), encoding="utf-8")
    assert not [w for w in prepare_data(load_config(make_config()), book_dir=book_copy).warnings()
                if "footnote mark(s)" in w]
    chunk.write_text(text.replace(". ", ". [7] ", 3), encoding="utf-8")
    warned = [w for w in prepare_data(load_config(make_config()), book_dir=book_copy).warnings()
              if "footnote mark(s)" in w]
    assert len(warned) == 1 and f"3 footnote mark(s) such as '[12]' in the text ({chunk.name})" in warned[0]
    # a Markdown comment, a note to self, is a warning at the first one
    chunk.write_text(text.replace(". ", ". <!-- check the date --> ", 1), encoding="utf-8")
    warned = [w for w in prepare_data(load_config(make_config()), book_dir=book_copy).warnings() if "comment(s)" in w]
    assert len(warned) == 1 and f"1 comment(s) <!-- ... --> in the text ({chunk.name})" in warned[0]
    # so is a bracketed note, an edition's or a writer's to self (none in the sample book)
    assert not [w for w in prepare_data(load_config(make_config())).warnings() if "bracketed note(s)" in w]
    chunk.write_text(text.replace(". ", ". [TODO: the ferry's name] ", 1), encoding="utf-8")
    warned = [w for w in prepare_data(load_config(make_config()), book_dir=book_copy).warnings()
              if "bracketed note(s)" in w]
    assert len(warned) == 1 and f"1 bracketed note(s) such as '[Footnote: ...]' or '[TK: ...]' in the text ({chunk.name})" in warned[0]


def test_invisible_characters_in_chunk_files_are_a_warning_and_the_command_removes_only_them(
        make_config, book_copy, tmp_path):
    """A PDF's form feeds and a web page's soft hyphens print as nothing but would be
    learnt as text: stage 1 names them, their chunk and the command; the command keeps
    every word (the sample book has none)."""
    import subprocess

    from styletune.text.patterns import INVISIBLE_COMMAND
    assert not [w for w in prepare_data(load_config(make_config())).warnings() if "invisible characters in the text" in w]
    chunk = sorted(book_copy.glob("chunk_*.txt"))[2]
    text = chunk.read_text(encoding="utf-8")
    paragraphs = text.split("\n")
    converted = "\n".join([paragraphs[0], "\f" + paragraphs[1], paragraphs[2].replace("e", "e\u00ad", 2),
                           *paragraphs[3:]])
    chunk.write_text(converted, encoding="utf-8")
    warned = [w for w in prepare_data(load_config(make_config()), book_dir=book_copy).warnings() if "invisible characters in the text" in w]
    assert len(warned) == 1
    assert f"(2 × soft hyphen, 1 × form feed (a PDF's page break); {chunk.name})" in warned[0]
    from styletune.text.patterns import invisible_characters_advice
    assert "save the manuscript as plain text" in invisible_characters_advice({"line 3": "\u00ad"}, word_file=True)
    copy = tmp_path / "copy.txt"
    subprocess.run(INVISIBLE_COMMAND.replace("IN", str(chunk)).replace("OUT", str(copy)), shell=True, check=True)
    assert copy.read_text(encoding="utf-8") == text


def test_chunks_whose_quotation_marks_differ_from_the_books_are_a_warning(make_config):
    """The sample book is typed as drafts are: one chunk with straight quotes, one with
    single curly ones, in a book of curly doubles. Stage 1 names both, with the counts;
    without them the book is of one style and nothing is said."""
    warned = [w for w in prepare_data(load_config(make_config())).warnings() if "quotation marks differ" in w]
    assert len(warned) == 1
    assert "most of the book's quotations open with “ (curly double, 217 of 282)" in warned[0]
    assert ('chunk_005_the_captains_table.txt (" straight double, 35 of 35), '
            "chunk_007_the_shout.txt (‘ curly single, 30 of 30)") in warned[0]
    alike = load_config(make_config({"exclude_chunks": ["chunk_005_the_captains_table.txt", "chunk_007_the_shout.txt"]}))
    assert not [w for w in prepare_data(alike).warnings() if "quotation marks differ" in w]


def garbled(text: str) -> str:
    """UTF-8 read as Windows-1252 (its five undefined bytes as their control characters)."""
    return "".join(bytes([b]).decode("cp1252", errors="ignore") or chr(b) for b in text.encode("utf-8"))


def test_text_garbled_by_a_second_encoding_is_a_warning_and_the_command_restores_it(
        make_config, book_copy, tmp_path):
    """UTF-8 opened as Windows-1252 and saved again: "—" becomes "â€”", "”" "â€\x9d".
    Stage 1 names the chunk and the command, which gives the writer's text back
    byte for byte (the sample book has none)."""
    import subprocess

    from styletune.text.patterns import DOUBLE_ENCODED_COMMAND
    assert not [w for w in prepare_data(load_config(make_config())).warnings() if "garbled character" in w]
    chunk = sorted(book_copy.glob("chunk_*.txt"))[2]
    text = chunk.read_text(encoding="utf-8")
    assert {"“", "”", "’"} <= set(text)
    chunk.write_text(garbled(text), encoding="utf-8")
    warned = [w for w in prepare_data(load_config(make_config()), book_dir=book_copy).warnings() if "garbled character" in w]
    assert len(warned) == 1 and f"in the text ({chunk.name}): UTF-8 text that was read as Windows-1252" in warned[0]
    copy = tmp_path / "copy.txt"
    subprocess.run(DOUBLE_ENCODED_COMMAND.replace("IN", str(chunk)).replace("OUT", str(copy)), shell=True, check=True)
    assert copy.read_text(encoding="utf-8") == text
    # saved again by old Notepad: a byte-order mark before the garble, Windows line ends, both of which it keeps
    chunk.write_bytes(b"\xef\xbb\xbf" + garbled(text).replace("\n", "\r\n").encode("utf-8"))
    subprocess.run(DOUBLE_ENCODED_COMMAND.replace("IN", str(chunk)).replace("OUT", str(copy)), shell=True, check=True)
    assert copy.read_bytes() == text.replace("\n", "\r\n").encode("utf-8")


def test_page_numbers_in_chunk_files_are_a_warning_with_the_command_that_removes_them(
        make_config, book_copy, tmp_path):
    """A hand-cut chunk file that kept a printed edition's page numbers ("41)"): stage 1
    names it and the command, which writes a copy with each number's line gone; a
    chapter's "12." heading is not a page number, and the sample book has none."""
    from test_segment import run_page_numbers_command
    assert not [w for w in prepare_data(load_config(make_config())).warnings() if "page numbers" in w]
    chunk = sorted(book_copy.glob("chunk_*.txt"))[2]
    text = chunk.read_text(encoding="utf-8")
    paragraphs = text.split("\n")
    numbered = "12.\n" + "\n".join(p + ("\n" + f"{n + 40})" if n % 3 == 1 else "") for n, p in enumerate(paragraphs))
    chunk.write_text(numbered, encoding="utf-8")
    warned = [w for w in prepare_data(load_config(make_config()), book_dir=book_copy).warnings() if "page numbers" in w]
    count = len(paragraphs[1::3])
    assert count >= 3 and len(warned) == 1
    assert warned[0].startswith(f"WARNING: {count} paragraphs are only a number, page numbers left from a "
                                f"printed edition ({chunk.name})")
    cleaned = run_page_numbers_command(warned[0], numbered.encode("utf-8"), tmp_path).decode("utf-8")
    assert cleaned == "12.\n" + text       # the chapter's number stays; each page number goes with its line


def test_the_preview_says_which_join_the_writer_typed(make_config, capsys):
    from styletune.data.prepare import preview
    result = prepare_data(load_config(make_config()))
    typed = {"a space, typed": [e for e in result.examples if e.prefix.endswith(" ")],
             "a paragraph break, typed": [e for e in result.examples if e.prefix.endswith("\n")]}
    for said, found in typed.items():
        assert found, said
        preview(found[:1], 1)
        assert f"starting with a word: the prompt ends with {said}" in capsys.readouterr().out


def test_an_indented_book_keeps_every_indent_and_counts_its_joins_as_typed(make_config, book_copy, capsys):
    """A writer who starts each paragraph with a tab (a plain-text export from Scrivener):
    every prompt opens with its chunk's first indent, a typed paragraph break keeps the
    indent typed after it, and the report and the preview call it a paragraph break."""
    from styletune.data import prepare_report as report
    from styletune.data.prepare import preview
    for path in book_copy.glob("chunk_*.txt"):
        path.write_text(re.sub(r"(?m)^(?=\S)", "\t", path.read_text(encoding="utf-8")), encoding="utf-8")
    result = prepare_data(load_config(make_config({"book_dir": str(book_copy)})))
    for e in result.examples:
        assert e.prefix.startswith("\t") and e.prefix + e.completion == e.chunk.text
    typed_breaks = [e for e in result.examples if e.prefix.endswith("\n\t")]
    joins = report.joins(result.examples)
    assert joins["prompt_ends_with_typed_paragraph_break"] == len(typed_breaks) > 0
    assert joins["prompt_ends_with_typed_line_break"] == joins["completion_opens_with_line_break"] == 0
    preview(typed_breaks[:1], 1)
    assert "starting with a word: the prompt ends with a paragraph break, typed" in capsys.readouterr().out
    # a scene opening's prompt ends with the break and the next chunk's indent, typed
    assert result.openings and all(o.prompt.endswith("\n\n\t") and not o.continuation[0].isspace()
                                   for o in result.openings)


def test_a_join_is_named_as_its_chunks_layout_has_it():
    """A line break at a cut inside a hard-wrapped paragraph is a line break; in one
    paragraph per line, the same character is a paragraph break."""
    from styletune.data.chunks import Chunk
    from styletune.data.examples import Example
    from styletune.data.prepare_report import join_kinds
    wrapped = ("He walked down the long road to\nthe sea. It was late, the tide was out.\nShe waited by "
               "the wall of\nthe harbour.\n\nThen he came back to\nher along the sand.")
    per_line = "He walked to the sea.\nIt was late.\nShe waited."

    def kinds(text, join):
        return join_kinds(Example(Chunk(Path("chunk_001_sea.txt"), text, ""), None, 0, 0, True, join))
    assert kinds(wrapped, wrapped.index("out.") + 4) == ("a line break", "")
    assert kinds(wrapped, wrapped.index("out.") + 5) == ("", "a line break")
    assert kinds(wrapped, wrapped.index("harbour.") + 8) == ("a paragraph break", "")
    assert kinds(per_line, per_line.index("sea.") + 5) == ("", "a paragraph break")
    assert kinds(per_line, per_line.index("late.") + 5) == ("a paragraph break", "")
