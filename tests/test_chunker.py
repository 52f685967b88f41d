"""The chunker stage 0 and the splitter share: the seam model (shipped weights that
retraining reproduces), the dynamic program's bounds and the writer's decisions,
one example builder with stage 1, and the review loop a writer's agent runs."""
import json
import random

import pytest
from conftest import FT, SAMPLE_BOOK, load_script
from styletune.config import load_config
from styletune.data.manuscript import read_manuscript, rebuild
from styletune.data.prepare import OverlongError, prepare_data
from styletune.data.review import reference_answers
from styletune.data.seam_model import MODEL_FILE, Candidate
from styletune.data.seams import SHORT_COST, Lengths, plan

STAGE0 = load_script(FT / "training" / "0_segment_manuscript.py")
SPLIT = load_script(FT / "training" / "split_oversized_chunks.py")
RETRAIN = load_script(FT / "training" / "train_seam_model.py")
MANUSCRIPT = SAMPLE_BOOK / "the_quiet_orbit_full_manuscript.txt"


def test_retraining_the_seam_model_reproduces_the_shipped_file(capsys):
    """The weights in seam_model.json are what train_seam_model.py makes of the corpus."""
    assert RETRAIN.run(RETRAIN.build_parser().parse_args(["--check"])) == 0, capsys.readouterr().out
    data = json.loads(MODEL_FILE.read_text(encoding="utf-8"))
    assert data["seams"] > 300 and len(data["trained_on"]) == 7


def test_the_seam_signals_benchmark_measures_each_signal_on_a_real_novel():
    """bench_seam_signals.py's other signals, on Jekyll and Hyde with its cues removed:
    SmolLM2's embedding cohesion at every candidate, its PMI across a boundary (the
    text before helps predict the same narrator's next words), and the shipped fit
    with the extra columns named."""
    import numpy as np
    from conftest import CORPUS, SMOL
    from styletune.data.seam_model import FEATURES
    from styletune.data.seam_training import labelled_novel
    bench = load_script(FT / "benchmarks" / "bench_seam_signals.py")
    novel = bench.Novel(labelled_novel(CORPUS / "stevenson_jekyll_and_hyde.txt"))
    assert novel.y.sum() == 9 and novel.x.shape == (len(novel.index), len(FEATURES))
    cohesion = bench.embedding_cohesion(novel, bench.word_embedder(SMOL))
    assert cohesion.shape == (len(novel.index), 2) and np.isfinite(cohesion).all() and (cohesion[:, 0] >= 0).all()
    assert cohesion[:, 1].std() > 0
    pmi = bench.Pmi(SMOL)(novel.text, [novel.paras[i][0] for i in novel.index[10:14]])
    assert pmi.shape == (4, 2) and pmi[:, 0].mean() > 0 and (pmi[:, 1] < 0).all()
    half = len(novel.y) // 2
    train = [(np.hstack([novel.x, cohesion])[:half], novel.y[:half])]
    scores = bench.extended(("embed_shift", "embed_depth"))(train, np.hstack([novel.x, cohesion])[half:])
    assert scores.shape == (len(novel.y) - half,) and np.isfinite(scores).all()


# --- the dynamic program -------------------------------------------------------------------

def places(*pairs):
    return [Candidate(offset, score) for offset, score in pairs]


def chars(a, b):
    return b - a


def test_plan_keeps_lengths_near_the_target_and_prefers_better_seams():
    cands = places(*[(x, 0.0) for x in range(100, 1000, 100)])
    cands[4] = Candidate(500, 5.0)                 # a strong seam in the middle
    cuts = plan(1000, cands, chars, Lengths(target=500, minimum=0, maximum=2000))
    assert [c.offset for c in cuts] == [500]
    cuts = plan(1000, cands, chars, Lengths(target=250, minimum=0, maximum=2000, weight=20.0))
    assert len(cuts) == 3 and 500 in [c.offset for c in cuts]


def test_plan_never_exceeds_the_maximum_and_avoids_the_minimum():
    cands = places(*[(x, 0.0) for x in range(100, 1000, 100)])
    cands[0] = Candidate(100, 50.0)                # tempting, but leaves a 100-char chunk
    cuts = plan(1000, cands, chars, Lengths(target=400, minimum=200, maximum=450))
    bounds = [0] + [c.offset for c in cuts] + [1000]
    sizes = [b - a for a, b in zip(bounds, bounds[1:])]
    assert max(sizes) <= 450 and min(sizes) >= 200
    assert plan(1000, places((500, 0.0)), chars, Lengths(400, 0, 450)) is None   # no plan fits


def test_plan_obeys_the_writer_forced_and_forbidden_places():
    cands = places((300, 9.0), (500, 0.0), (700, 9.0))
    lengths = Lengths(target=500, minimum=0, maximum=2000)
    assert [c.offset for c in plan(1000, cands, chars, lengths, forbidden={300, 700})] == [500]
    forced = plan(1000, cands, chars, lengths, forced={500}, forbidden={300, 700})
    assert [c.offset for c in forced] == [500]
    # a forced cut may make a chunk under the minimum: the writer wins
    short = plan(1000, places((50, 0.0)), chars, Lengths(500, 200, 2000), forced={50})
    assert [c.offset for c in short] == [50] and Lengths(500, 200, 2000).cost(50) > SHORT_COST


def test_the_chunks_median_moves_to_the_target_where_marks_make_short_chunks(smol_counter):
    """The War of the Worlds as written: its chapter headings and marks make chunks
    shorter than the target that no length cost can lengthen, and a plan aimed at the
    target itself cuts the longer scenes down to it too (median 0.81 of it).
    plan_to_target aims higher (at most MAX_AIM times), every chapter still a chunk's
    start; a plan whose median is near the target already is left as it was (Jekyll
    and Hyde), and so is a text with no heading or mark (Dorian Gray with them removed)."""
    import statistics

    from conftest import CORPUS
    from styletune.data.manuscript import MAX_AIM, MEDIAN_SHORT, analyse, plan_chunks, plan_to_target
    from styletune.data.seam_training import labelled_novel
    from styletune.data.seams import MARGINS, Measure
    structure = analyse(read_manuscript(CORPUS / "wells_the_war_of_the_worlds.txt").body)
    measure = Measure(smol_counter, structure.text, margin=MARGINS[0])
    median = lambda chunks: statistics.median(measure.tokens(c.start, c.end) for c in chunks)  # noqa: E731
    lengths = Lengths(2900, 500, 8192, 2.0)
    plain, *_ = plan_chunks(structure, smol_counter, lengths)
    aimed_chunks, _, _, aimed = plan_to_target(structure, smol_counter, lengths)
    assert median(plain) < 0.85 * lengths.target < median(aimed_chunks) <= lengths.target
    assert lengths.target < aimed.target <= MAX_AIM * lengths.target and len(aimed_chunks) < len(plain)
    chapters = {c.start for c in plain if c.reason.startswith("chapter heading")}
    assert len(chapters) == len(structure.chapters) and chapters <= {c.start for c in aimed_chunks}
    structure = analyse(read_manuscript(CORPUS / "stevenson_jekyll_and_hyde.txt").body)
    near = Lengths(1800, 500, 8192, 2.0)
    plain, *_ = plan_chunks(structure, smol_counter, near)
    again, _, _, same = plan_to_target(structure, smol_counter, near)
    assert same == near and [c.start for c in again] == [c.start for c in plain]
    # with no heading or mark every cut is the cost's own: a short median is not made up for
    bare = analyse(labelled_novel(CORPUS / "wilde_the_picture_of_dorian_gray.txt").text)
    wide = Lengths(5442, 500, 8192, 2.0)
    plain, *_ = plan_chunks(bare, smol_counter, wide)
    kept, _, _, same = plan_to_target(bare, smol_counter, wide)
    assert not bare.chapters and not bare.has_scene_breaks and same == wide
    assert [c.start for c in kept] == [c.start for c in plain]
    # (short enough that a book with marks would be aimed higher)
    assert statistics.median(Measure(smol_counter, bare.text, 24).tokens(c.start, c.end) for c in plain) \
        < MEDIAN_SHORT * 5442


# --- one example builder ---------------------------------------------------------------------

@pytest.mark.parametrize("sequence_len", [1700, 2300])
def test_every_chunk_stage1_refuses_gets_a_proposal_that_fits(book_copy, make_config, capsys,
                                                              sequence_len):
    """Stage 1 and the splitter count an example with the same builder: whatever stage 1
    refuses, the splitter proposes parts for, and after the split stage 1 takes them all."""
    cfg_path = make_config({"book_dir": str(book_copy)}, sequence_len=sequence_len)
    cfg = load_config(cfg_path)
    with pytest.raises(OverlongError) as err:
        prepare_data(cfg)
    refused = {line.split(":")[0].strip() for line in str(err.value).splitlines()
               if line.startswith("  chunk_")}
    assert refused
    assert SPLIT.main(["--config", str(cfg_path), "--book", str(book_copy), "--dry-run"]) == 0
    proposal = capsys.readouterr().out
    for name in refused:
        assert f"\n{name}: " in proposal and "-> " in proposal.split(f"\n{name}: ")[1].split("\n")[0]
    assert SPLIT.main(["--config", str(cfg_path), "--book", str(book_copy)]) == 0
    result = prepare_data(cfg)
    assert max(e.total_tokens for e in result.examples) <= sequence_len


# --- the review loop ---------------------------------------------------------------------------

def reference_openings():
    """The sample book's own chunking (the writer's hand-cut chunk files): each chunk's
    first words, as the review keys a seam."""
    files = sorted(SAMPLE_BOOK.glob("chunk_*.txt"))
    return [" ".join(f.read_text(encoding="utf-8").split()[:12]) for f in files]


def current_openings(out):
    manifest = json.loads((out / "segment_manifest.json").read_text(encoding="utf-8"))
    return [" ".join((out / c["file"]).read_text(encoding="utf-8").split()[:12]) for c in manifest["chunks"]]


def test_a_scripted_review_reaches_the_writers_chunking(tmp_path, make_config, capsys):
    """The writer's agent answers every review from the sample book's hand-cut chunks:
    the book reaches that chunking exactly, in at most one decision per chunk."""
    config, out = str(make_config()), tmp_path / "cut"
    args = [str(MANUSCRIPT), "--config", config, "--out", str(out), "--force"]
    reference = reference_openings()
    assert STAGE0.main(args) == 0
    decisions = 0
    for _ in range(6):
        current = current_openings(out)
        if current == reference:
            break
        review = json.loads((out / "segment_review.json").read_text(encoding="utf-8"))["seams"]
        answers = reference_answers(review, reference, current)
        assert answers, "the chunking differs, yet the review offers nothing to decide"
        decisions += len(answers)
        assert STAGE0.main(args + [x for a in answers for x in ("--decide", a)]) == 0
    capsys.readouterr()
    assert current_openings(out) == reference
    for f, ours in zip(sorted(SAMPLE_BOOK.glob("chunk_*.txt")), sorted(out.glob("chunk_*.txt"))):
        assert ours.read_text(encoding="utf-8").strip() == f.read_text(encoding="utf-8").strip()
    assert decisions <= len(reference), f"{decisions} decisions for {len(reference)} chunks"
    print(f"scripted review: {decisions} decision(s) for {len(reference)} chunks")

    # the decisions are keyed by words, not positions: an edit elsewhere keeps them
    edited = tmp_path / "edited.txt"
    text = MANUSCRIPT.read_text(encoding="utf-8")
    edited.write_text(text.replace("asthmatic rattle", "asthmatic, wheezing rattle"), encoding="utf-8")
    assert STAGE0.main([str(edited)] + args[1:]) == 0
    assert current_openings(out) == reference
    assert "no longer match" not in capsys.readouterr().out


def test_decide_names_an_unknown_seam_and_changes_nothing(tmp_path, make_config, capsys):
    out = tmp_path / "cut"
    args = [str(MANUSCRIPT), "--config", str(make_config()), "--out", str(out)]
    assert STAGE0.main(args) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert STAGE0.main(args + ["--force", "--decide", "s99=keep"]) == 2
    err = capsys.readouterr().err
    assert "no seam 's99'" in err and "Traceback" not in err
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before


def test_the_sample_manuscript_is_conserved_whatever_the_decisions(tmp_path, make_config):
    out = tmp_path / "cut"
    args = [str(MANUSCRIPT), "--config", str(make_config()), "--out", str(out), "--force"]
    assert STAGE0.main(args + ["--decide", "cut:Haji was standing at the junction"]) == 0
    manifest = json.loads((out / "segment_manifest.json").read_text(encoding="utf-8"))
    texts = [(out / c["file"]).read_text(encoding="utf-8")[:-1] for c in manifest["chunks"]]
    from styletune.data.manuscript import rebuild
    assert rebuild(texts, manifest["separators"]) == read_manuscript(MANUSCRIPT).body
    assert any(t.startswith("Haji was standing at the junction") for t in texts)


def assert_conserved(out, body):
    """The chunk files and the manifest's separators give the manuscript body back."""
    manifest = json.loads((out / "segment_manifest.json").read_text(encoding="utf-8"))
    texts = [(out / c["file"]).read_text(encoding="utf-8")[:-1] for c in manifest["chunks"]]
    assert rebuild(texts, manifest["separators"]) == body


def _blank_line_book(tmp_path):
    """A chapter of four scenes: one after a run of blank lines that splits a question
    from its answer, one after blank lines before a new morning, one after '* * *'."""
    rng = random.Random(7)

    def scene(words, n=6):
        words = words.split()
        return [" ".join(" ".join(rng.choices(words, k=11)).capitalize() + "." for _ in range(6))
                for _ in range(n)]
    harbour = scene("boats rocked harbour wall gulls cried nets tide rope mast salt")
    talk = (scene("anna walked quay found tom mending sail cold wind needle thread canvas", 5)
            + ['"Did you see the stranger who came off the evening boat?" asked Anna.'])
    answer = (['"No, never," replied Tom. "Nobody came off it but the mail."']
              + scene("tom went back sail anna stood watching water while grey light", 5))
    morning = ["The next morning the frost lay white on the roofs."] + scene(
        "frost white roofs road hill cart horse breath smoke chimney cold")
    orchard = ["In the orchard the old trees leaned over the wall."] + scene(
        "orchard trees leaned wall apples small grass wet ladder basket bees")
    text = ("Chapter 1\n\n" + "\n\n".join(harbour) + "\n\n" + "\n\n".join(talk) + "\n\n\n\n"
            + "\n\n".join(answer) + "\n\n\n\n" + "\n\n".join(morning) + "\n\n* * *\n\n"
            + "\n\n".join(orchard) + "\n")
    src = tmp_path / "book.txt"
    src.write_text(text, encoding="utf-8")
    return src


def test_a_cut_at_blank_lines_alone_is_a_guess_in_the_review(tmp_path, make_config, capsys):
    """Extra blank lines with no visible mark: stage 0 cuts there (before a new morning)
    but lists the cut in the review, and `=drop` undoes it; where the blank lines split
    a question from its answer they are layout, not cut, and the review lists them as
    a mark left uncut, saying why (`=cut` cuts there); a cut at '* * *' stays the
    writer's own, unlisted."""
    src = _blank_line_book(tmp_path)
    out = tmp_path / "cut"
    cfg = make_config({"chunk_target_tokens": 600, "segment_min_tokens": 150}, sequence_len=2048)
    args = [str(src), "--config", str(cfg), "--out", str(out), "--force"]
    assert STAGE0.main(args) == 0
    printed = capsys.readouterr().out
    body = read_manuscript(src).body
    assert_conserved(out, body)
    openings = current_openings(out)
    assert not any(o.startswith('"No, never," replied Tom.') for o in openings)
    assert any(o.startswith("The next morning") for o in openings)
    assert any(o.startswith("In the orchard") for o in openings)
    review = json.loads((out / "segment_review.json").read_text(encoding="utf-8"))["seams"]
    blank = [e for e in review if e.get("blank_lines")]
    assert [e["seam"]["after"][:16] for e in blank] == ["The next morning"] and blank[0]["was_cut"]
    talk = next(e for e in review if e["seam"]["after"].startswith('"No, never,"'))
    assert not talk["was_cut"] and any("but the dialogue runs on" in s for s in talk["signals"])
    assert not any(e["seam"]["after"].startswith("In the orchard") for e in review)
    assert "1 cut(s) made at a run of blank lines alone" in printed
    assert "1 of them at blank lines alone" in printed

    assert STAGE0.main(args + ["--decide", f"{blank[0]['id']}=drop", "--decide", f"{talk['id']}=cut"]) == 0
    capsys.readouterr()
    assert_conserved(out, body)
    openings = current_openings(out)
    assert not any(o.startswith("The next morning") for o in openings)
    assert any(o.startswith('"No, never,"') for o in openings)
    assert any(o.startswith("In the orchard") for o in openings)


def test_a_paragraph_is_found_by_its_words_as_typed():
    """`cut:` takes the words as the writer reads and types them: no _italics_ marks,
    quotation marks of either shape or none, a dash as one character or two hyphens."""
    from styletune.data.review import find_opening
    from styletune.errors import InputError
    body = "_24 August._--A quiet day.\n\n_25 August._--Another bad night.\n\n“What time is it?” she asked.\n"
    assert find_opening(body, "25 August.--Another bad") == body.index("_25 August")
    assert find_opening(body, '"What time is it?" she') == body.index("“What")
    assert find_opening(body, "What time is it? she") == body.index("“What")      # quotes left out
    assert find_opening(body, "25 August.—Another bad") == body.index("_25 August")  # Word's dash
    with pytest.raises(InputError, match="0 paragraphs"):
        find_opening(body, "26 August")
