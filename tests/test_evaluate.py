"""Stage 4: perplexity on the completions only, prompts from held-out chunks, the
verdict rules, and the script end to end on a tiny random model and on the
small real model (very short generations). The text metrics themselves are
tested in test_stylometry.py."""
import json

import numpy as np
import pytest
import support.continue_port as cp
from conftest import FT, SAMPLE_BOOK, SMOL, build_adapter, load_script
from styletune import chat
from styletune.config import load_config
from styletune.data.prepare import planned_outputs, prepare_data
from styletune.errors import ConfigError
from styletune.eval import evaluate, joins
from styletune.eval import report as style_report
from styletune.eval.prompts import Prompt, in_the_editor, join_prompts, stop_prompts, validation_prompts
from styletune.fileio import write_outputs
from styletune.text.sentences import build_punkt

SCRIPT = load_script(FT / "training" / "4_evaluate_style.py")
MERGE = load_script(FT / "training" / "3_merge_adapter.py")
QUICK = {"generation_tokens": 12, "prompts_per_chunk": 2, "prompt_words": 40, "train_prompts": 3,
         "train_examples_for_gap": 2, "segment_words": 20, "bootstrap": 50, "mfw": 50}


def test_perplexity_counts_only_the_completion_and_its_end_token(tiny):
    import torch
    from styletune.data.tokens import axolotl_template
    from transformers import AutoModelForCausalLM, AutoTokenizer
    tok = AutoTokenizer.from_pretrained(str(tiny / "base"))
    tok.chat_template = axolotl_template("chatml")
    tok.eos_token = "<|im_end|>"
    model = AutoModelForCausalLM.from_pretrained(str(tiny / "base"), dtype=torch.float32)
    conv = [{"role": "user", "content": "The station turned."},
            {"role": "assistant", "content": "Nobody slept."}]
    nll = evaluate.completion_token_nll(model, tok, conv)
    completion = tok("Nobody slept.", add_special_tokens=False)["input_ids"]
    assert len(nll) == len(completion) + 1              # + <|im_end|>
    full = tok.apply_chat_template(conv, tokenize=True, return_dict=False)
    full = list(full["input_ids"] if isinstance(full, dict) else full)
    start = len(full) - len(completion) - 2             # "Nobody slept." <|im_end|> "\n"
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([full])).logits[0].float(), -1)
    by_hand = [-logp[i - 1, full[i]].item() for i in range(start, start + len(completion) + 1)]
    assert np.allclose(nll, by_hand, atol=1e-4)
    # a scene opening's continuation goes on: its tokens alone, no end of turn
    opening = evaluate.completion_token_nll(model, tok, conv, ends_turn=False)
    assert np.allclose(opening, by_hand[:-1], atol=1e-4)


def test_perplexity_intervals_and_the_paired_ratio():
    rng = np.random.default_rng(0)
    nll = [rng.exponential(2.0, 300), rng.exponential(2.0, 200)]
    ppl = evaluate.perplexity(nll, 500, 1)
    assert ppl["ci"][0] < ppl["ppl"] < ppl["ci"][1]
    assert ppl["ppl"] == pytest.approx(np.exp(np.concatenate(nll).mean()))
    same = evaluate.perplexity_ratio(nll, nll, 500, 1)
    assert same["ratio"] == pytest.approx(1.0) and same["ci"] == pytest.approx([1.0, 1.0])
    better = evaluate.perplexity_ratio([n * 0.5 for n in nll], nll, 500, 1)
    assert better["ci"][1] < 1
    # chunk by chunk: the first held-out chunk better, the second worse
    mixed = evaluate.perplexity_ratio([nll[0] * 0.5, nll[1] * 1.5], nll, 500, 1)
    assert mixed["per_chunk"] == pytest.approx([np.exp(-nll[0].mean() / 2), np.exp(nll[1].mean() / 2)])
    line = style_report.per_chunk_line(mixed)
    assert "(1 of 2 below 1)" in line and "a draw of the book's scenes" in line
    # chunks that disagree widen the interval beyond what their blocks alone would give:
    # the chunks are its units, two of them here
    assert mixed["ci"][0] < np.exp(-nll[0].mean() / 2) and mixed["ci"][1] > np.exp(nll[1].mean() / 2)
    assert mixed["interval"] == "chunks, Student's t"
    one = evaluate.perplexity_ratio([nll[0] * 0.5], [nll[0]], 500, 1)        # one chunk: blocks alone
    assert one["ci"][0] < one["ratio"] < one["ci"][1] < 1
    assert "speaks for this scene" in style_report.per_chunk_line(one)


def test_the_ratio_interval_over_chunks_holds_the_books_ratio_95_times_in_100():
    """Held-out scenes differ more than the blocks of one scene: books whose chunks'
    log-ratios are 0.05 apart (2,000 tokens each); the interval over 2 to 6 chunks holds
    the book's ratio about 95% of the time (the two-level bootstrap: 65-85%, the
    comment on report.CHUNKS_FOR_THE_BOOK). And the t table is Student's."""
    from scipy.stats import t as student
    from styletune.eval.attribution import T_975
    assert T_975 == pytest.approx([student.ppf(0.975, df) for df in range(1, 31)], abs=5e-4)
    rng, mu = np.random.default_rng(3), -0.15
    for chunks in (2, 4, 6):
        hits = 0
        for _ in range(400):
            base = [rng.exponential(2.0, 2000) for _ in range(chunks)]
            tuned = [b + mu + rng.normal(0, 0.05) + rng.normal(0, 0.5, b.size) for b in base]
            low, high = evaluate.chunk_ratio_interval(tuned, base)
            hits += low <= np.exp(mu) <= high
        assert 0.92 <= hits / 400 <= 0.98, (chunks, hits)


def test_the_perplexity_verdict_on_few_held_out_chunks_says_it_is_not_yet_the_books():
    rng = np.random.default_rng(2)
    def verdict(chunks):
        base = [rng.exponential(2.0, 600) for _ in range(chunks)]
        tuned = [b * 0.8 for b in base]
        ppl = {name: evaluate.perplexity(nll, 200, 0) for name, nll in
               (("base", base), ("tuned", tuned), ("base_train", base), ("tuned_train", tuned))}
        ppl["ratio"] = evaluate.perplexity_ratio(tuned, base, 200, 0)
        return style_report.perplexity_verdicts(ppl, {"ppl_ratio_target": 0.8, "overfit_gap": 1.5})["verdict"]
    assert verdict(1) == "tuned better on 1 held-out chunk(s), not yet the book"
    assert verdict(style_report.CHUNKS_FOR_THE_BOOK) == "tuned better"


def test_held_out_openings_get_a_verdict_only_from_enough_of_them():
    rng = np.random.default_rng(1)
    def row(count):
        base = [rng.exponential(2.0, 150) for _ in range(count)]
        tuned = [b * 0.6 for b in base]
        p = {f"{n}_openings": evaluate.perplexity(nll, 200, 0) for n, nll in (("base", base), ("tuned", tuned))}
        return style_report.openings_row({**p, "openings_ratio": evaluate.perplexity_ratio(tuned, base, 200, 0)})
    few, enough = row(style_report.MIN_OPENINGS_FOR_VERDICT - 1), row(style_report.MIN_OPENINGS_FOR_VERDICT)
    assert few[-1].startswith(f"too few to judge ({style_report.MIN_OPENINGS_FOR_VERDICT - 1} opening(s), 300 tokens)")
    assert enough[-1].startswith("tuned better; tuned/base ") and enough[-1].count(", ") >= 3   # each row's ratio


def test_the_report_says_when_the_validation_loss_picked_the_checkpoint_it_scores():
    picked = style_report.checkpoint_line({"step": 117, "picked_among": 3})
    assert picked.startswith("The tuned model is the checkpoint at step 117, picked among 3")
    assert "lean a little its way" in picked
    for unpicked in ({"step": 40, "picked_among": 1}, {"step": None, "picked_among": 0}):
        assert "no choice among checkpoints" in style_report.checkpoint_line(unpicked)


def test_prompts_are_the_example_prefix_then_later_windows_ending_at_sentence_ends():
    text = (SAMPLE_BOOK / "chunk_002_the_infirmary.txt").read_text(encoding="utf-8")
    conv = [{"role": "user", "content": "An opening line."}, {"role": "assistant", "content": text}]
    punkt, _ = build_punkt([text])
    ev = {"generation_tokens": 40, "prompts_per_chunk": 4, "prompt_words": 30}
    prompts = validation_prompts([conv], punkt, ev, ["chunk_009.txt"])
    assert [p.kind for p in prompts] == ["example", "window", "window", "window"]
    assert prompts[0].text == "An opening line."
    truths = [(text.index(p.truth), text.index(p.truth) + len(p.truth)) for p in prompts]
    for p in prompts[1:]:
        assert p.text.rstrip().rstrip("”’\"'")[-1] in ".!?…" and len(p.text.split()) <= 30
        # the truth starts where the prompt ends, the whitespace at the cut in one of them
        assert text.index(p.text) + len(p.text) == text.index(p.truth)
        assert p.text[-1].isspace() != p.truth[0].isspace()
        assert len(p.truth.split()) == 30                                # 0.75 x 40 tokens
    # the author's continuations never overlap: each piece of held-out text counts once
    assert all(a_end <= b_start for (_, a_end), (b_start, _) in zip(truths, truths[1:]))


def test_a_tuned_model_that_writes_a_training_continuation_back_is_flagged():
    """Copying is also asked where it is most likely: each model continues training
    prompts, and the longest run of the author's own continuation it writes back is
    counted; 20 words or more is recall, not style."""
    truth = ("The rain had come in off the sea before dawn, and by the time the ferry docked the "
             "whole harbour smelt of wet rope and diesel and the bakery on the corner.")
    pools = {n: ["Nothing at all like the author, only words in another order entirely."] * 3
             for n in ("base", "tuned", "author")}
    ev = {"memorisation_margin": 0.02}
    own = ["She walked to the harbour. " + " ".join(truth.split()[:25]) + " and went home."]
    fresh = ["A gull stood on the bollard and watched the rope, then the sea, then her."]
    h = style_report.health(pools, {}, truth, ev, {"base": [(fresh[0], truth)], "tuned": [(own[0], truth)]})
    assert (h["base"]["recalled_words"], h["tuned"]["recalled_words"]) == (2, 25)     # "the rope" by chance
    assert h["recall_verdict"].startswith("RECALLING: a training example's continuation written back, 25 words")
    h = style_report.health(pools, {}, truth, ev, {"base": [(fresh[0], truth)], "tuned": [(fresh[0], truth)]})
    assert h["recall_verdict"] == f"ok: under {style_report.RECALL_WORDS} words"
    # a public-domain book the base model knows by heart: not tuning's doing
    h = style_report.health(pools, {}, truth, ev, {"base": [(truth, truth)], "tuned": [(own[0], truth)]})
    assert h["recall_verdict"].startswith(f"the base writes as much back ({len(truth.split())} words)")


def test_verdicts_need_separate_intervals():
    assert style_report.compare([1, 2], [3, 4]) == "tuned better"
    assert style_report.compare([1, 2], [3, 4], higher_is_better=True) == "tuned worse"
    assert style_report.compare([1, 3.5], [3, 4]).startswith("same")
    pools = {"author": ["A long sentence with many words in it here."] * 5,
             "base": ["Short. Short. Short."] * 5,
             "tuned": ["A long sentence with many words in it too."] * 5}
    mean_length = lambda t: float(np.mean([len(s.split()) for s in t.split(".") if s.strip()]))  # noqa: E731
    result = style_report.closeness(mean_length, pools, 100, 0)     # one chunk: its prompts resampled
    assert result["verdict"] == "tuned closer to the author on 1 held-out chunk(s), not yet the book"
    # paired by prompt: prompts that differ widely, the tuned model two words nearer the
    # author on each, is a firm verdict (resampled apart, the prompts' spread hid it)
    lengths = [4, 30, 8, 25, 12, 40, 6, 18]
    pools = {"author": [" ".join(["w"] * (n + 6)) + "." for n in lengths],
             "base": [" ".join(["w"] * n) + "." for n in lengths],
             "tuned": [" ".join(["w"] * (n + 2)) + "." for n in lengths]}
    result = style_report.closeness(mean_length, pools, 200, 0)
    assert result["gap_difference_ci"] == [pytest.approx(-2.0), pytest.approx(-2.0)]
    assert result["verdict"].startswith("tuned closer to the author on 1 held-out chunk")
    # four chunks of two prompts, two words nearer in each: the chunks are the units
    result = style_report.closeness(mean_length, pools, 200, 0, groups=["a", "a", "b", "b", "c", "c", "d", "d"])
    assert result["gap_difference_ci"] == [pytest.approx(-2.0), pytest.approx(-2.0)]
    assert result["verdict"] == "tuned closer to the author"


def test_a_chunks_prompts_are_one_unit_not_eight_votes():
    """Prompts of one held-out chunk move together (its scene suits one model): tuned
    labelled the author's on all 8 prompts of one chunk and on none of two others, where
    base is never, is a firm 'better' if the 24 prompts are resampled alone, but three
    chunks of which one moved: the interval over chunks (Student's t) includes 0. The
    same figures spread over the chunks give the firm verdict back."""
    from styletune.eval.attribution import paired_share_difference
    groups = [c for c in "abc" for _ in range(8)]
    tuned, base = [1] * 8 + [0] * 16, [0] * 24
    alone = paired_share_difference(tuned, base, seed=0)
    assert alone["ci"][0] > 0 and alone["interval"] == "bootstrap of prompts"
    by_chunk = paired_share_difference(tuned, base, groups=groups, seed=0)
    assert by_chunk["difference"] == pytest.approx(1 / 3) and by_chunk["chunks"] == 3
    assert style_report.paired_verdict(by_chunk["ci"]).startswith("same") and by_chunk["interval"] == "chunks, Student's t"
    spread = [1, 1, 1, 0, 0, 0, 0, 0] * 3
    assert style_report.paired_verdict(paired_share_difference(spread, base, groups=groups)["ci"]) == "tuned better"


def stage1_for(cfg_path):
    result = prepare_data(load_config(cfg_path))
    write_outputs(planned_outputs(result), force=True)


def check_report(folder):
    report = json.loads((folder / "style_report.json").read_text())
    for key in ("perplexity", "style", "health", "prompts", "continuations", "settings", "counts"):
        assert key in report, key
    for name in ("base", "tuned"):
        assert report["perplexity"][name]["ppl"] > 0
        assert len(report["continuations"][name]) == report["counts"]["prompts"]
    for name in ("base", "tuned", "author"):
        assert "delta" in report["style"]["cosine_delta"][name]
        assert "copied_8gram_share" in report["health"][name]
    assert all(report["health"][n]["recalled_words"] >= 0 for n in ("base", "tuned"))
    # the QLoRA configs: the base as training saw it (NF4) is scored too, against the tuned model
    assert report["perplexity"]["base_nf4"]["ppl"] > 0 and "ratio_nf4" in report["perplexity"]
    assert set(report["joins"]) >= {"sentence end", "after a comma", "mid-word", "seed", "seed, space typed",
                                    "seed, chat"}
    md = (folder / "style_report.md").read_text()
    assert "Tuned/base perplexity, each held-out chunk: " in md
    assert style_report.checkpoint_line(report["tuned_checkpoint"]) in md
    assert "| held-out perplexity" in md and "Cosine Delta" in md and "verdict" in md
    assert "| held-out perplexity, base in 4-bit NF4 as training saw it |" in md
    # the held-out chunk's opening, after the end of the chunk before it (stage 1's row)
    assert report["counts"]["validation_openings"] == 1
    openings = report["perplexity"]["openings_ratio"]
    assert len(openings["per_chunk"]) == 1 and openings["ci"][0] <= openings["ratio"] <= openings["ci"][1]
    assert "| held-out scene openings, perplexity (1 validation chunk opening(s), each after" in md
    # one opening is two or three 64-token blocks of one scene: no verdict from it
    assert f"too few to judge (1 opening(s), {report['perplexity']['tuned_openings']['tokens']} tokens)" in md
    assert "| quotations in the author's style" in md and "| after a comma, space typed |" in md
    assert (f"| on {report['counts']['training_prompts']} training prompts: longest run of the author's own "
            "continuation written back (words) |") in md
    assert (folder / "style_report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "**author:**" in (folder / "continuations.md").read_text()
    return report


def test_end_to_end_on_a_tiny_random_model(make_config, tiny, tmp_path, capsys):
    cfg = make_config({"evaluation": {**QUICK, "report_dir": str(tmp_path / "report")}},
                      base_model=str(tiny / "base"), output_dir=str(tiny / "adapter"))
    stage1_for(cfg)
    assert SCRIPT.main(["--config", str(cfg)]) == 2
    assert "run 3_merge_adapter.py --auto first" in capsys.readouterr().err
    assert SCRIPT.main(["--config", str(cfg), "--dry-run"]) == 2          # the dry run checks it too
    assert "run 3_merge_adapter.py --auto first" in capsys.readouterr().err
    assert SCRIPT.main(["--config", str(cfg), "--dry-run", "--adapter", str(tmp_path / "nope")]) == 2
    assert "no adapter at" in capsys.readouterr().err
    assert MERGE.main(["--config", str(cfg), "--auto"]) == 0
    assert SCRIPT.main(["--config", str(cfg), "--dry-run"]) == 0
    assert not (tmp_path / "report").exists()
    assert SCRIPT.main(["--config", str(cfg)]) == 0
    report = check_report(tmp_path / "report")
    assert report["counts"]["validation_examples"] == 1
    merged = json.loads((tmp_path / "out" / "merged" / "merge_manifest.json").read_text())
    assert report["tuned_checkpoint"] == {"step": merged["checkpoint_step"], "picked_among":
                                          merged["picked_among_evaluations"],
                                          "validation_loss": merged["validation_loss"]}
    # a handful of words a pool: Delta is reported, but no verdict is claimed
    assert report["style"]["cosine_delta"]["verdict"].startswith("no verdict")
    assert SCRIPT.main(["--config", str(cfg)]) == 2                      # no silent overwrite
    assert "--force" in capsys.readouterr().err


@pytest.mark.slow
def test_end_to_end_on_the_small_real_model_with_an_adapter(make_config, tmp_path):
    """SmolLM2-135M-Instruct and a real PEFT adapter, compared unmerged (--adapter)."""
    build_adapter(SMOL, tmp_path / "adapter", seed=3)
    cfg = make_config({"evaluation": {**QUICK, "report_dir": str(tmp_path / "report")}})
    stage1_for(cfg)
    assert SCRIPT.main(["--config", str(cfg), "--adapter", str(tmp_path / "adapter")]) == 0
    report = check_report(tmp_path / "report")
    # a random adapter moves the model: the two models' perplexities differ
    assert report["perplexity"]["ratio"]["ratio"] != pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize("kind, ends", [("after a comma", ","), ("mid-word", None),
                                         ("after an opening quote", "“"), ("after a paragraph break", "\n\n")])
def test_stop_prompts_end_where_the_kind_says_and_the_truth_follows_at_once(kind, ends):
    text = (SAMPLE_BOOK / "chunk_002_the_infirmary.txt").read_text(encoding="utf-8")
    conv = [{"role": "user", "content": "An opening line."}, {"role": "assistant", "content": text}]
    ev = {"generation_tokens": 40, "prompts_per_chunk": 4, "prompt_words": 30}
    prompts = stop_prompts([conv], ev, ["chunk_002.txt"], kind)
    assert len(prompts) >= 2 and {p.kind for p in prompts} == {kind}
    for p in prompts:
        assert text.index(p.text) + len(p.text) == text.index(p.truth)   # nothing between them
        if ends:
            assert p.text.endswith(ends)
        else:   # stopped inside a word: letters on both sides
            assert p.text[-1].isalpha() and p.truth[0].isalpha()
        assert joins.char_class(p.truth) == ("space" if kind == "after a comma" else "text")


def test_join_prompts_add_the_typed_space_and_the_seed_both_ways():
    text = (SAMPLE_BOOK / "chunk_002_the_infirmary.txt").read_text(encoding="utf-8")
    conv = [{"role": "user", "content": "An opening line."}, {"role": "assistant", "content": text}]
    ev = {"generation_tokens": 40, "prompts_per_chunk": 4, "prompt_words": 30}
    ends = [Prompt("chunk_002.txt", "example", "The door shut.", " She waited."),
            Prompt("chunk_002.txt", "example", "The door shut. ", "She waited."),
            Prompt("chunk_002.txt", "example", "The door shut.\n\n", "She waited.")]
    found = join_prompts(ends, [conv], ev, ["chunk_002.txt"])
    # a typed validation example (typed_join_share) is measured in its own row
    assert [p.kind for p in found[:3]] == ["sentence end", "sentence end, space typed", "after a paragraph break"]
    for kind, typed_kind in (("sentence end", "sentence end, space typed"),
                             ("after a comma", "after a comma, space typed")):
        plain = [p for p in found if p.kind == kind]
        typed = [p for p in found[3:] if p.kind == typed_kind]
        assert plain and [p.text for p in typed] == [p.text + " " for p in plain]
        assert [p.truth for p in typed] == [p.truth[1:] for p in plain]
    assert [p.kind for p in found[-5:]] == ["seed", "seed", "seed, space typed", "seed, space typed", "seed, chat"]
    # the chat route: the writer's prompt under Continue's system message, which training never has
    assert found[-1].text == found[-5].text and found[-1].system == chat.BASE_SYSTEM_MESSAGE
    assert not any(p.system for p in found[:-1])


def test_every_prompt_reaches_the_model_as_continues_autocomplete_sends_it():
    """Stage 4 asks the models what the editor asks: the user turn is Continue's
    prefix (its path line, then the text; tests/support/continue_port.py, ported from
    Continue's source), for a Markdown and a .txt file in turn; a validation example
    stage 1 headed is asked on its text, not twice headed; the chat route's prompt
    keeps its system message and no path line."""
    text = (SAMPLE_BOOK / "chunk_002_the_infirmary.txt").read_text(encoding="utf-8")
    headed = "\n the_quiet_orbit/chunk_002_the_infirmary.md\nAn opening line."
    conv = [{"role": "user", "content": headed}, {"role": "assistant", "content": text}]
    punkt, _ = build_punkt([text])
    ev = {"generation_tokens": 40, "prompts_per_chunk": 3, "prompt_words": 30}
    prompts = validation_prompts([conv], punkt, ev, ["chunk_002_the_infirmary.txt"])
    assert prompts[0].text == "An opening line."
    chat_prompt = Prompt("writer", joins.SEED_CHAT, "Haji said,", " “", chat.BASE_SYSTEM_MESSAGE)
    sent = in_the_editor(prompts + [chat_prompt], "the_quiet_orbit")
    for p, form in zip(sent[:-1], ("md", "md", "txt")):   # in turn within each kind: example, windows
        path = f"the_quiet_orbit/chunk_002_the_infirmary.{form}"
        assert p.messages() == [{"role": "user", "content": cp.autocomplete_prefix(p.text, path)}]
    assert sent[-1].messages() == [{"role": "system", "content": chat.BASE_SYSTEM_MESSAGE},
                                   {"role": "user", "content": "Haji said,"}]
    assert in_the_editor(sent, "elsewhere") == sent   # a headed prompt keeps its header


def test_the_chat_routes_system_message_is_ours_then_the_writers_rules():
    rules = "---\nname: My book\n---\n\nWrite in the past tense.\n"
    assert chat.chat_system_message(rules) == chat.BASE_SYSTEM_MESSAGE + "\n\nWrite in the past tense."
    assert chat.chat_system_message(None) == chat.BASE_SYSTEM_MESSAGE


@pytest.mark.parametrize("prompt, shown, truth, right", [
    ("Haji said,", " “Ladies", " “Ladies", True),
    ("Haji said,", "Ladies", " “Ladies", False),          # glued on
    ("Haji said,", "\n\n“Ladies", " “Ladies", False),   # no line break after "said,"
    ("night.", "\n\nAlan", " Alan", True),              # a new paragraph after a sentence end
    ("“Go.”", "\n\nAlan", " Alan", True),
    ("Haji said, ", "“Ladies", "“Ladies", True),
    ("Haji said, ", " “Ladies", "“Ladies", False),       # a doubled space: transform off keeps it
    ("Haji sa", "id,", "id,", True),
    ("Haji sa", " said", "id,", False),
    ("a machi", "-\n\nThe", "ne had", False),         # inside a word only a letter goes on
    ("a machi", ", and", "ne had", False),
    ("the *St. Brend", "an*", "an* were", True),
    ("night.\n\n", "\nAlan", "Alan", False),
    ("Haji said,", "   ", " “Ladies", False),           # blank: the writer sees nothing
])
def test_a_join_is_judged_as_the_editor_shows_it(prompt, shown, truth, right):
    assert joins.joins_right(joins.editor_insert(shown), truth, prompt) is right


def test_the_editor_inserts_the_completion_as_it_came_since_stage_5_turns_transform_off():
    """Continue's postprocessing (which drops a space after a typed one) runs only with
    `transform` on (CompletionProvider.ts at the pinned commit): stage 5 turns it off,
    so the Joins count a doubled space as the writer would see it."""
    from styletune.deploy.continue_files import AUTOCOMPLETE_OPTIONS
    assert AUTOCOMPLETE_OPTIONS["transform"] is False
    assert joins.editor_insert(" “Ladies") == " “Ladies" and joins.editor_insert("\n \n") == ""


def test_first_token_classes_of_a_real_tokenizer(hf_tokenizer):
    texts = hf_tokenizer.batch_decode([[i] for i in range(len(hf_tokenizer))])
    classes = joins.token_classes(texts, set(hf_tokenizer.all_special_ids))
    ids = {t: hf_tokenizer(t, add_special_tokens=False)["input_ids"][0] for t in (" The", "The", "\n\n")}
    mask = joins.right_first_tokens(classes, "Haji said,", " The")
    assert [bool(mask[ids[t]]) for t in (" The", "The", "\n\n")] == [True, False, False]
    ended = joins.right_first_tokens(classes, "It was night.", " The")
    assert [bool(ended[ids[t]]) for t in (" The", "The", "\n\n")] == [True, False, True]
    typed = joins.right_first_tokens(classes, "Haji said, ", "The")    # " The" doubles the space
    assert [bool(typed[ids[t]]) for t in (" The", "The", "\n\n")] == [False, True, False]
    assert not mask[hf_tokenizer.eos_token_id] and not typed[hf_tokenizer.eos_token_id]
    # inside a word ("alrea|dy") only a letter goes on: not a mark, not a new word
    ids.update({t: hf_tokenizer(t, add_special_tokens=False)["input_ids"][0] for t in ("dy", ",", "-")})
    inside = joins.right_first_tokens(classes, "the station was alrea", "dy dying")
    assert [bool(inside[ids[t]]) for t in ("dy", ",", "-", " The", "\n\n")] == [True, False, False, False, False]
    assert not inside[hf_tokenizer.eos_token_id]


CONV = [{"role": "user", "content": "The station turned."},
        {"role": "assistant", "content": "Nobody slept."}]
# The generation prompt opens the assistant turn with "bot", the conversation with "assistant".
PROMPT_NOT_A_PREFIX = ("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n"
                       "{% endfor %}{% if add_generation_prompt %}<|im_start|>bot\n{% endif %}")
NO_END_OF_TURN = ("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}\n{% endfor %}"
                  "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


@pytest.mark.parametrize("template, fix", [(PROMPT_NOT_A_PREFIX, "choose a chat_template"),
                                           (NO_END_OF_TURN, "special_tokens.eos_token")])
def test_a_template_perplexity_cannot_follow_is_refused_with_the_fix(template, fix):
    """Checked in every run (not an assert, which `python -O` drops): scores of
    shifted tokens would be silently wrong."""
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(SMOL)
    tok.chat_template, tok.eos_token = template, "<|im_end|>"
    with pytest.raises(ConfigError, match=fix):
        evaluate.completion_token_nll(None, tok, CONV)  # refused before the model is needed


BENCH_JOINS = load_script(FT / "benchmarks" / "bench_joins.py")


def test_the_joins_benchmark_reads_a_novel_as_paragraphs_and_asks_every_kind():
    windows = BENCH_JOINS.segments(BENCH_JOINS.NOVEL)
    assert len(windows) > 50 and not any("\n" in p for w in windows for p in w.split("\n\n"))
    found = BENCH_JOINS.prompt_set(windows[:30], 5, "wells")
    kinds = {p.kind for p in found}
    assert set(joins.ROWS) <= kinds
    assert all(p.header.startswith("\n") for p in found if not p.system)   # as the editor sends them
    seeds = [p.header for p in found if p.kind == joins.SEED]
    assert seeds == ["\n wells/writer.md\n", "\n// wells/writer.txt\n"]   # the writer's prompt in both files
    mid = [p for p in found if p.kind == "mid-word"]
    assert len(mid) == 5 and all(joins.inside_word(p.text, p.truth) for p in mid)


def test_the_joins_benchmark_tells_two_runs_merged_folders_apart(tmp_path):
    runs = [str(tmp_path / "run_a" / "merged"), str(tmp_path / "run_b" / "merged")]
    assert BENCH_JOINS.labels(runs) == ["run_a/merged", "run_b/merged"]
    assert BENCH_JOINS.labels([str(SMOL), runs[0]]) == [SMOL.name, "merged"]


@pytest.mark.slow
def test_the_joins_benchmark_prints_a_row_for_each_kind(capsys):
    assert BENCH_JOINS.main([str(SMOL), "--prompts", "1"]) == 0
    table = capsys.readouterr().out
    for kind in joins.ROWS:
        assert f"| {kind} | " in table


def llama_cpp_step(scores, context, s):
    """One sampling step as llama.cpp's default chain takes it, written out by hand: the
    repeat penalty over the last repeat_last_n tokens, top_k, top_p, min_p, temperature."""
    import torch
    scores = scores.clone()
    for t in set(context[-s["repeat_last_n"]:]):
        scores[t] = scores[t] * s["repeat_penalty"] if scores[t] < 0 else scores[t] / s["repeat_penalty"]
    order = torch.argsort(scores, descending=True)
    keep = order[:s["top_k"]]
    probs = torch.softmax(scores[keep], 0)
    keep = keep[(torch.cumsum(probs, 0) - probs) < s["top_p"]]          # mass before it under top_p
    probs = torch.softmax(scores[keep], 0)
    keep = keep[probs >= s["min_p"] * probs.max()]
    out = torch.full_like(scores, float("-inf"))
    out[keep] = scores[keep] / s["temperature"]
    return out


def test_stage_4_samples_as_llama_server_does(tiny):
    """generate() with the sampler draws, token for token, what the llama.cpp-order chain
    draws by hand, whatever the model's own generation_config.json says."""
    import torch
    from styletune.eval import sampler
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(str(tiny / "base"), dtype=torch.float32)
    with torch.no_grad():
        model.lm_head.weight.mul_(5)           # logits spread enough for top_p and min_p to cut (std ~0.8)
    model.generation_config.update(temperature=0.1, top_k=3, top_p=0.5, min_p=0.5, repetition_penalty=3.0)
    s = {"temperature": 0.8, "top_k": 40, "top_p": 0.95, "min_p": 0.05, "repeat_penalty": 1.3,
         "repeat_last_n": 8}
    prompt = list(range(100, 130))
    torch.manual_seed(7)
    got = model.generate(torch.tensor([prompt]), max_new_tokens=24, eos_token_id=None, pad_token_id=0,
                         **sampler.generate_kwargs(s))[0, len(prompt):].tolist()
    torch.manual_seed(7)
    ids = list(prompt)
    with torch.no_grad():
        for _ in range(24):
            scores = model(torch.tensor([ids])).logits[0, -1].float()
            probs = torch.softmax(llama_cpp_step(scores, ids, s), 0)
            ids.append(int(torch.multinomial(probs[None], 1)[0, 0]))
    assert got == ids[len(prompt):]
    # temperature last: top_p and min_p cut the untempered distribution, as llama.cpp does
    names = [type(p).__name__ for p in sampler.chain(s)]
    assert names == ["RecentRepeatPenalty", "TopKLogitsWarper", "TopPLogitsWarper", "MinPLogitsWarper",
                     "TemperatureLogitsWarper"]


def test_the_repeat_penalty_covers_only_the_recent_window():
    import torch
    from styletune.eval.sampler import RecentRepeatPenalty
    scores = torch.tensor([[2.0, -2.0, 2.0, 2.0]])
    out = RecentRepeatPenalty(2.0, window=2)(torch.tensor([[2, 0, 1]]), scores.clone())
    assert out.tolist() == [[1.0, -4.0, 2.0, 2.0]]      # tokens 0 and 1 recent; 2 out of the window
