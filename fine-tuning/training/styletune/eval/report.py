"""Stage 4's figures, verdicts and report files (Markdown, JSON, PNG).

Three pools of held-out text are scored the same way: the base model's
continuations, the tuned model's, and the author's own continuations of the
same prompts (the floor: what the author's text scores against the author's
training text). The author's training chunks are the reference.

Verdicts compare intervals: "better" or "worse" only when the 95% interval of the
difference over the prompts both models continued (paired) excludes a tie; otherwise
"same". A held-out chunk's prompts move together, so from two chunks on the interval
takes the chunks as units (Student's t), as the perplexity ratio's does; with one, a
bootstrap of its prompts, and the verdict says it speaks for that chunk. Cosine
Delta alone compares two separate intervals (its segments are cut from pooled text,
not one per prompt), which is conservative.
"""
import io
import json

import numpy as np

from styletune.eval import stylometry as sm
from styletune.eval.attribution import (
    EDER_MIN_WORDS,
    char_ngram_attribution,
    char_ngram_holdout_accuracy,
    cosine_delta,
    group_members,
    grouped_mean_interval,
    paired_share_difference,
)
from styletune.eval.health import ends_cleanly, memorisation, repetition
from styletune.text.quotes import opening_styles

POOLS = ("base", "tuned", "author")
# Continuations are pooled as separate paragraphs: an unfinished last sentence
# must not run on into the next continuation's first.
PARAGRAPH = "\n\n"
# Fewer segments than this per pool give a bootstrap interval that means nothing.
MIN_SEGMENTS = 5
COLOURS = {"base": "#8c8c8c", "tuned": "#2b6cb0", "author": "#c05621"}


def compare(tuned_ci, base_ci, higher_is_better=False) -> str:
    """'tuned better/worse' only when the two 95% intervals do not overlap."""
    if tuned_ci[1] < base_ci[0]:
        return "tuned worse" if higher_is_better else "tuned better"
    if tuned_ci[0] > base_ci[1]:
        return "tuned better" if higher_is_better else "tuned worse"
    return "same (intervals overlap)"


def paired_verdict(diff_ci) -> str:
    """diff = tuned - base, paired by prompt, higher is better: 'tuned better/worse'
    only when its 95% interval excludes 0."""
    if diff_ci[0] > 0:
        return "tuned better"
    if diff_ci[1] < 0:
        return "tuned worse"
    return "same (paired interval of the difference includes 0)"


def _gap_verdict(diff_ci) -> str:
    """diff = |tuned - author| - |base - author|: below zero, tuned is closer."""
    if diff_ci[1] < 0:
        return "tuned closer to the author"
    if diff_ci[0] > 0:
        return "base closer to the author"
    return "same (interval of the difference includes 0)"


def _gap_difference(metric, pools: dict, drawn) -> float:
    """|tuned - author| - |base - author| of the metric on the drawn prompts' texts."""
    value = {n: metric(PARAGRAPH.join(pools[n][i] for i in drawn)) for n in ("author", "base", "tuned")}
    return abs(value["tuned"] - value["author"]) - abs(value["base"] - value["author"])


def closeness(metric, pools: dict, n_boot: int, seed: int, groups: list | None = None) -> dict:
    """A pooled-text metric for each pool, and whether tuned or base is closer to the
    author's value. The pools are paired by prompt: the same prompts' continuations
    from both models and the author's own text after them, so a hard prompt weighs on
    both sides alike and the author's value varies too. `groups` names each prompt's
    chunk: from two chunks on, the difference is measured chunk by chunk and its
    interval takes the chunks as units (a chunk's prompts move together); with one, a
    bootstrap over its prompts."""
    values = {name: metric(PARAGRAPH.join(texts)) for name, texts in pools.items()}
    count = len(pools["author"])
    assert all(len(pools[n]) == count for n in ("base", "tuned")), "pools are paired by prompt"
    members = group_members(groups, count)
    if len(members) >= 2:
        gaps = [_gap_difference(metric, pools, m) for m in members]
        mean, half = grouped_mean_interval(gaps, [1] * len(gaps))
        ci = [mean - half, mean + half]
    else:
        rng = np.random.default_rng(seed)
        diffs = [_gap_difference(metric, pools, rng.integers(0, count, count)) for _ in range(n_boot)]
        ci = [float(np.percentile(diffs, 2.5)), float(np.percentile(diffs, 97.5))]
    return {**{k: float(v) for k, v in values.items()}, "gap_difference_ci": [float(x) for x in ci],
            "verdict": _gap_verdict(ci) + _one_chunk(len(members))}


def _one_chunk(chunks: int) -> str:
    """What a verdict adds when its interval speaks for fewer chunks than the book needs."""
    return f" on {chunks} held-out chunk(s), not yet the book" if chunks < CHUNKS_FOR_THE_BOOK else ""


def _equal_length(pools: dict) -> tuple[dict, int]:
    """Each pool as its first n word tokens (n the smallest pool's), for the
    word-based measures that depend on length (Delta, MATTR)."""
    tokens = {name: sm.words(" ".join(t)) for name, t in pools.items()}
    n = min(len(t) for t in tokens.values())
    return {name: [" ".join(t[:n])] for name, t in tokens.items()}, n


def _delta_verdict(delta: dict) -> str:
    fewest = min(delta[n]["segments"] for n in POOLS)
    if fewest < MIN_SEGMENTS:
        return f"no verdict: {fewest} segment(s) a pool, {MIN_SEGMENTS} needed for an interval"
    return compare(delta["tuned"]["ci"], delta["base"]["ci"])


def style_figures(reference: str, pools: dict, other_texts: list, author_texts: list, ev: dict,
                  groups: list | None = None) -> dict:
    """Cosine Delta, the classifier and the style profile of each pool. Pools are cut
    to the same number of words first: a pooled distance shrinks as a sample grows."""
    seed, n_boot = int(ev["seed"]), int(ev["bootstrap"])
    equal, n_words = _equal_length(pools)
    segment = min(int(ev["segment_words"]), n_words)
    other = " ".join(other_texts)
    # Base-model text from training prompts steadies the z-scores without being scored.
    background = {"base, training prompts": other} if len(other.split()) >= segment else None
    delta = cosine_delta(reference, {n: equal[n][0] for n in POOLS}, mfw=int(ev["mfw"]),
                            segment_words=segment, seed=seed, n_boot=n_boot, background=background)
    attribution = char_ngram_attribution(author_texts, other_texts, pools, seed=seed, n_boot=n_boot)
    paired = paired_share_difference(attribution["tuned"]["labels"], attribution["base"]["labels"],
                                     groups=groups, seed=seed, n_boot=n_boot)
    piece = max(10, int(np.median([len(t.split()) for t in pools["author"]])))
    try:
        classifier = char_ngram_holdout_accuracy(author_texts, other_texts, seed=seed, piece_words=piece,
                                                 n_boot=n_boot)
    except ValueError as err:  # too little base-model text to hold some out
        classifier = {"error": str(err)}
    window = min(500, max(50, n_words // 2))
    profiles = {n: sm.style_profile(PARAGRAPH.join(t), window=window) for n, t in pools.items()}
    return {
        "cosine_delta": {**delta, "segment_words": segment, "verdict": _delta_verdict(delta)},
        "attribution": {**attribution, "classifier": classifier, "tuned_minus_base": paired,
                        "verdict": paired_verdict(paired["ci"]) + _one_chunk(paired["chunks"])},
        "sentence_length": closeness(lambda t: np.mean([len(sm.words(x)) for x in sm.sentences(t)] or [0]),
                                     pools, n_boot, seed, groups),
        "dialogue_share": closeness(sm.dialogue_share, pools, n_boot, seed, groups),
        "quotation_style": quotation_style(reference, pools),
        "mattr": {**{n: sm.mattr(sm.words(equal[n][0]), window) for n in POOLS},
                  "window": window, "words_per_pool": n_words},
        "profiles": {n: {k: v for k, v in p.items() if k != "sentence_lengths"} for n, p in profiles.items()},
        "sentence_lengths": {n: p["sentence_lengths"] for n, p in profiles.items()},
    }


# A model's quotations count against the author's style from this many on.
QUOTATIONS_TO_JUDGE = 3


def quotation_style(reference: str, pools: dict) -> dict:
    """The author's quotation mark (the style most of the training text's quotations
    open with) and, per pool, the share of quotations opened with it. Flags a tuned
    model that mostly writes another mark (double quotes for a writer of single)."""
    author = opening_styles(reference)
    style = max(author, key=author.get) if any(author.values()) else None
    out = {"author_style": style, "counts": {}, "share": {}}
    for name, texts in pools.items():
        counts = opening_styles(PARAGRAPH.join(texts))
        total = sum(counts.values())
        out["counts"][name] = counts
        out["share"][name] = counts[style] / total if style and total else None
    tuned = out["counts"]["tuned"]
    if style is None:
        out["verdict"] = "the author's text has no quotations"
    elif sum(tuned.values()) < QUOTATIONS_TO_JUDGE:
        out["verdict"] = f"too few quotations from the tuned model to judge (under {QUOTATIONS_TO_JUDGE})"
    elif out["share"]["tuned"] < 0.5:
        out["verdict"] = (f"WRONG MARKS: the tuned model opens most quotations with "
                          f"{max(tuned, key=tuned.get)} quotes; the author uses {style}")
    else:
        out["verdict"] = f"ok: mostly the author's {style} quotes"
    return out


# A run this many words long of a training example's own continuation, written back
# from its prompt, is recall, not style: two writers' texts share a few words by chance.
RECALL_WORDS = 20


def health(pools: dict, continuations: dict, training_text: str, ev: dict, on_training_prompts: dict) -> dict:
    """Loops, copying and clean ends of each pool; and, from each model's continuations
    of training prompts ({name: [(text, the author's continuation)]}), the longest run
    of the author's own continuation it wrote back."""
    out = {}
    for name, texts in pools.items():
        memo = [memorisation(t, training_text) for t in texts]
        out[name] = {**repetition(PARAGRAPH.join(texts)),
                     "copied_8gram_share": float(np.mean([m["copied_ngram_share"] for m in memo])),
                     "longest_overlap_words": int(max(m["longest_overlap_words"] for m in memo)),
                     "ends_cleanly": float(np.mean([ends_cleanly(t) for t in texts]))}
        if name in continuations:
            out[name]["stopped_before_limit"] = float(np.mean([c["stopped"] for c in continuations[name]]))
    floor = out["author"]["copied_8gram_share"] + ev["memorisation_margin"]
    out["memorisation_verdict"] = ("ok: no more copying than the author's own held-out text"
                                   if out["tuned"]["copied_8gram_share"] <= floor else
                                   "MEMORISING: the tuned model copies training text more than the author does")
    for name, pairs in on_training_prompts.items():
        out[name]["recalled_words"] = max(memorisation(text, truth)["longest_overlap_words"] for text, truth in pairs)
    recalled, known = out["tuned"]["recalled_words"], out["base"]["recalled_words"]
    out["recall_verdict"] = (
        f"ok: under {RECALL_WORDS} words" if recalled < RECALL_WORDS else
        f"the base writes as much back ({known} words): a book it knew before tuning" if known >= recalled else
        f"RECALLING: a training example's continuation written back, {recalled} words verbatim: "
        "fewer epochs or a lower learning rate")
    return out


# A perplexity ratio whose 95% interval is wider than this says little either way.
WIDE_RATIO_INTERVAL = 0.1


def ratio_verdict(ratio: dict) -> str:
    return ("tuned better" if ratio["ci"][1] < 1 else "tuned worse" if ratio["ci"][0] > 1
            else "same (interval includes 1)")


# From this many held-out chunks the ratio's interval takes the chunks as units
# (evaluate.chunk_ratio_interval) and speaks for the book's scenes; with one, only its
# blocks can be resampled, and it speaks for that scene. Scenes differ more than the
# blocks of one scene: in a simulation (2,000 tokens a chunk, the chunks' log-ratios
# 0.05 apart in standard deviation, 1,000 books a row) the two-level bootstrap held
# the book's ratio 34% of the time with one chunk, 65% with two, 84% with four or
# five, 90% with ten; the chunk interval 95.0-95.7% from two chunks to ten.
CHUNKS_FOR_THE_BOOK = 2


def perplexity_verdicts(ppl: dict, ev: dict) -> dict:
    ratio = ppl["ratio"]
    verdict = ratio_verdict(ratio)
    if len(ratio["per_chunk"]) < CHUNKS_FOR_THE_BOOK:
        verdict += f" on {len(ratio['per_chunk'])} held-out chunk(s), not yet the book"
    target = "met" if ratio["ratio"] <= ev["ppl_ratio_target"] else "not met"
    base_gap = ppl["base"]["ppl"] / ppl["base_train"]["ppl"]
    tuned_gap = ppl["tuned"]["ppl"] / ppl["tuned_train"]["ppl"]
    overfit = tuned_gap > ev["overfit_gap"] * base_gap
    return {"verdict": verdict, "target": f"ratio <= {ev['ppl_ratio_target']}: {target}",
            "too_wide": ratio["ci"][1] - ratio["ci"][0] > WIDE_RATIO_INTERVAL,
            **({"verdict_nf4": ratio_verdict(ppl["ratio_nf4"])} if "ratio_nf4" in ppl else {}),
            "train_validation_gap": {"base": base_gap, "tuned": tuned_gap,
                                     "overfitting": bool(overfit)}}


# --- files ----------------------------------------------------------------------------

def _fmt_ci(ci) -> str:
    return f"[{ci[0]:.3g}, {ci[1]:.3g}]"


def _classifier_line(clf: dict) -> str:
    if "accuracy" not in clf:
        return f"Classifier check: not possible ({clf['error']})."
    return (f"Classifier check: on pieces it did not train on, it tells the author's text from the base "
            f"model's with a balanced accuracy of {clf['balanced_accuracy']:.0%} "
            f"{_fmt_ci(clf['balanced_ci'])} (the mean of the author's {clf['n_author_test']} pieces "
            f"recognised, {clf['author_recall']:.0%}, and the base model's {clf['n_other_test']}, "
            f"{clf['other_recall']:.0%}); near 50%, the attribution row says little, and a few base "
            "pieces make it a rough figure.")


def _delta_line(delta: dict) -> str:
    words = delta["author"]["words"]
    short = any(delta[n].get("short_sample") for n in POOLS)
    return (f"Cosine Delta: {words} words per pool in {delta['segment_words']}-word segments"
            + (f" - SHORT: Delta is reliable from about {EDER_MIN_WORDS:,}-5,000 words a sample (Eder 2015); "
               "raise prompts_per_chunk or generation_tokens for a firmer figure." if short else "."))


def _share_of(quotation: dict, name: str) -> str:
    share, count = quotation["share"][name], sum(quotation["counts"][name].values())
    return "-" if share is None else f"{share:.0%} of {count}"


def per_chunk_line(ratio: dict) -> str:
    """The ratio held-out chunk by held-out chunk, and what the interval above speaks for."""
    each = ratio["per_chunk"]
    how = ("resamples this chunk's 64-token blocks: it speaks for this scene, not for scenes unlike it"
           if len(each) < CHUNKS_FOR_THE_BOOK else
           f"takes these {len(each)} chunks as a draw of the book's scenes (Student's t over the chunks): "
           "with few it is wide, and a verdict that holds in every chunk is the firmer one")
    return (f"Tuned/base perplexity, each held-out chunk: {', '.join(f'{r:.3f}' for r in each)} "
            f"({sum(r < 1 for r in each)} of {len(each)} below 1). The interval above {how}.")


# Fewer held-out openings than this give no verdict: one opening's ~100-300 tokens are
# two or three 64-token blocks to resample, and two give Student's t one degree of
# freedom (an interval 12.7 standard errors wide each side).
MIN_OPENINGS_FOR_VERDICT = 3


def openings_row(p: dict) -> tuple:
    """The table's row for the validation chunks' openings (stage 1's held-out rows)."""
    ratio = p["openings_ratio"]
    rows = len(ratio["per_chunk"])
    verdict = (ratio_verdict(ratio) if rows >= MIN_OPENINGS_FOR_VERDICT
               else f"too few to judge ({rows} opening(s), {p['tuned_openings']['tokens']} tokens)")
    return (f"held-out scene openings, perplexity ({rows} validation chunk opening(s), each after the "
            "end of the chunk before it)",
            f"{p['base_openings']['ppl']:.2f} {_fmt_ci(p['base_openings']['ci'])}",
            f"{p['tuned_openings']['ppl']:.2f} {_fmt_ci(p['tuned_openings']['ci'])}", "-",
            f"{verdict}; tuned/base {ratio['ratio']:.3f} {_fmt_ci(ratio['ci'])}, each: "
            + ", ".join(f"{r:.3f}" for r in ratio["per_chunk"]))


def checkpoint_line(chosen: dict) -> str:
    """Which checkpoint was measured; where the validation loss picked it among others,
    that it is scored here on the examples that picked it, which flatters it a little."""
    step = f"the checkpoint at step {chosen['step']}" if chosen.get("step") is not None else "the adapter"
    if chosen.get("picked_among", 0) < 2:
        return f"The tuned model is {step}; no choice among checkpoints was made on these validation examples."
    return (f"The tuned model is {step}, picked among {chosen['picked_among']} for the lowest loss on "
            "these same validation examples and openings (load_best_model_at_end), so its held-out figures lean a "
            "little its way. A new chapter of yours, which no step has seen, is the untouched test.")


def markdown(report: dict) -> str:
    p, s, h = report["perplexity"], report["style"], report["health"]
    rows = [
        ("held-out perplexity (lower is better)", f"{p['base']['ppl']:.2f} {_fmt_ci(p['base']['ci'])}",
         f"{p['tuned']['ppl']:.2f} {_fmt_ci(p['tuned']['ci'])}", "-",
         f"{p['verdicts']['verdict']}; tuned/base {p['ratio']['ratio']:.3f} {_fmt_ci(p['ratio']['ci'])}, "
         f"target {p['verdicts']['target']}"),
        *([("held-out perplexity, base in 4-bit NF4 as training saw it",
            f"{p['base_nf4']['ppl']:.2f} {_fmt_ci(p['base_nf4']['ci'])}",
            f"{p['tuned']['ppl']:.2f} {_fmt_ci(p['tuned']['ci'])}", "-",
            f"{p['verdicts']['verdict_nf4']}; tuned/NF4 base {p['ratio_nf4']['ratio']:.3f} "
            f"{_fmt_ci(p['ratio_nf4']['ci'])}")] if "base_nf4" in p else []),
        *([openings_row(p)] if "openings_ratio" in p else []),
        ("Cosine Delta to the author (lower is closer)",
         *(f"{s['cosine_delta'][n]['delta']:.3f} {_fmt_ci(s['cosine_delta'][n]['ci'])}" for n in POOLS),
         s["cosine_delta"]["verdict"]),
        ("char n-gram classifier: share labelled the author's",
         *(f"{s['attribution'][n]['author_share']:.2f} {_fmt_ci(s['attribution'][n]['ci'])}" for n in POOLS),
         f"{s['attribution']['verdict']}; tuned - base {s['attribution']['tuned_minus_base']['difference']:+.2f} "
         f"{_fmt_ci(s['attribution']['tuned_minus_base']['ci'])}, paired by prompt "
         f"({s['attribution']['tuned_minus_base']['interval']})"),
        ("mean sentence length (words)", *(f"{s['sentence_length'][n]:.1f}" for n in POOLS),
         s["sentence_length"]["verdict"]),
        ("dialogue share of words", *(f"{s['dialogue_share'][n]:.2f}" for n in POOLS),
         s["dialogue_share"]["verdict"]),
        (f"quotations in the author's style ({s['quotation_style']['author_style'] or 'none'} quotes)",
         *(_share_of(s["quotation_style"], n) for n in POOLS), s["quotation_style"]["verdict"]),
        (f"MATTR (window {s['mattr']['window']}, {s['mattr']['words_per_pool']} words each)",
         *(f"{s['mattr'][n]:.3f}" for n in POOLS), "closer to the author's is better"),
        ("repeated 4-gram share", *(f"{h[n]['repeated_4gram_share']:.3f}" for n in POOLS),
         "tuned should not exceed base or the author"),
        ("distinct-2", *(f"{h[n]['distinct_2']:.3f}" for n in POOLS), ""),
        ("copied training 8-grams", *(f"{h[n]['copied_8gram_share']:.3f}" for n in POOLS),
         h["memorisation_verdict"]),
        ("longest verbatim overlap with training (words)",
         *(str(h[n]["longest_overlap_words"]) for n in POOLS), ""),
        (f"on {report['counts']['training_prompts']} training prompts: longest run of the author's own "
         "continuation written back (words)",
         *(str(h[n]["recalled_words"]) if n in ("base", "tuned") else "-" for n in POOLS), h["recall_verdict"]),
        ("ends at a sentence end", *(f"{h[n]['ends_cleanly']:.0%}" for n in POOLS), ""),
    ]
    gap = p["verdicts"]["train_validation_gap"]
    lines = [f"# Style report: {report['tuned_model']} vs {report['base_model']}", "",
             f"Validation examples: {report['counts']['validation_examples']}; prompts: "
             f"{report['counts']['prompts']} ({report['counts']['generation_tokens']} tokens generated "
             f"each, same sampling and seed for both models); author reference: "
             f"{report['counts']['reference_words']} words of training text. Both models get each "
             "prompt as the editor sends it to the tuned model (its chat template, the text in the "
             "assistant's turn after Continue's path line): the base column is the base model in "
             "your editor, not the base at its best with an instruction to continue.", "",
             "| measure | base | tuned | author (held out) | verdict |", "|---|---|---|---|---|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    lines += ["", f"Train/validation perplexity ratio: base {gap['base']:.2f}, tuned {gap['tuned']:.2f}"
              + (" - OVERFITTING: the tuned model fits training text much better than held-out text."
                 if gap["overfitting"] else " (no sign of overfitting)."), "",
              per_chunk_line(p["ratio"]), "",
              checkpoint_line(report["tuned_checkpoint"]), "",
              *([f"TOO WIDE TO JUDGE: the perplexity ratio's interval spans "
                 f"{p['ratio']['ci'][1] - p['ratio']['ci'][0]:.2f} (over {WIDE_RATIO_INTERVAL}); more "
                 "validation text (validation_share) or a longer run narrows it.", ""]
                if p["verdicts"]["too_wide"] else []),
              _classifier_line(s["attribution"]["classifier"]), "",
              _delta_line(s["cosine_delta"]), "",
              *joins_lines(report), "",
              "Intervals are 95%: bootstrap intervals, the tuned/base perplexity ratios' over the held-out "
              "chunks (Student's t) from two of them. Continuations: `continuations.md`. "
              "Every figure: `style_report.json`. How to read this: docs/stages.md, 'Reading the style report'."]
    return "\n".join(lines) + "\n"


def joins_lines(report: dict) -> list[str]:
    """How continuations join the prompt in the editor, by kind of prompt: the chance
    the first token joins right, and the share of greedy continuations that do; and
    the writer's own prompt."""
    joins, seed = report["joins"], report["seed_prompt"]
    lines = ["Joins (what the editor inserts right after the prompt: the model's text as it "
             "came, a doubled space included): the probability that the first token joins right, and the share "
             "of greedy continuations that do. Right: a space after a word or \"said,\" (a new "
             "paragraph too after a sentence end), a letter mid-word (the rest of the word), "
             "a letter or mark after an opening quote, and after a space or paragraph break the writer typed.", "",
             "| prompts | n | base: first token | base: greedy | tuned: first token | tuned: greedy |",
             "|---|---|---|---|---|---|"]
    for kind, row in joins.items():
        if row["prompts"]:
            cells = [f"{row[n]['first_token']:.1%} | {row[n]['greedy']:.0%}" for n in ("base", "tuned")]
            lines.append(f"| {kind} | {row['prompts']} | " + " | ".join(cells) + " |")
    lines += ["", "The writer's prompt, continued as the editor would show it:", ""]
    lines += [f"- {name}: `{'...' + seed['prompt'][-40:] + '⟨' + seed[name][:120]!r}`" for name in ("base", "tuned")]
    return lines


def _bar(ax, x, value, ci, colour):
    """A bar with its 95% interval drawn as a line (a bootstrap interval need not
    contain the point estimate: Delta's leans towards 1)."""
    ax.bar(x, value, color=colour)
    ax.vlines(x, ci[0], ci[1], color="black", linewidth=1.5)
    ax.hlines(ci, x - 0.1, x + 0.1, color="black", linewidth=1.5)


def png(report: dict) -> bytes:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    p, s = report["perplexity"], report["style"]
    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    ax = axes[0, 0]
    for i, n in enumerate(("base", "tuned")):
        _bar(ax, i, p[n]["ppl"], p[n]["ci"], COLOURS[n])
    ax.set_xticks([0, 1], ["base", "tuned"])
    ax.set_title("held-out perplexity of the author's text (lower = expects it more)")
    ax = axes[0, 1]
    for i, n in enumerate(POOLS):
        _bar(ax, i, s["cosine_delta"][n]["delta"], s["cosine_delta"][n]["ci"], COLOURS[n])
    ax.set_xticks(range(3), ["base", "tuned", "author (held out)"])
    ax.set_title("Cosine Delta to the author's training text (lower = closer)")
    ax = axes[1, 0]
    top = max([max(v) for v in s["sentence_lengths"].values() if v] + [10])
    bins = np.linspace(0, min(top, 80), 21)
    for n in POOLS:
        if s["sentence_lengths"][n]:
            ax.hist(s["sentence_lengths"][n], bins=bins, histtype="step", density=True, linewidth=2,
                    color=COLOURS[n], label=n)
    ax.legend()
    ax.set_xlabel("words per sentence")
    ax.set_title("sentence lengths")
    ax = axes[1, 1]
    names = ["labelled author's", "dialogue share", "MATTR"]
    width = 0.26
    for i, n in enumerate(POOLS):
        vals = [s["attribution"][n]["author_share"], s["dialogue_share"][n], s["mattr"][n]]
        ax.bar(np.arange(3) + (i - 1) * width, vals, width, color=COLOURS[n], label=n)
    ax.set_xticks(range(3), names)
    ax.set_ylim(0, 1)
    ax.legend()
    ax.set_title("style shares (closer to the author's bar is better)")
    fig.suptitle(f"{report['tuned_model']} vs base - {report['counts']['prompts']} held-out prompts")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def continuations_markdown(prompts, continuations: dict) -> str:
    parts = ["# Continuations (same prompt, same seed for both models)", ""]
    for i, prompt in enumerate(prompts):
        parts += [f"## {i + 1}. {prompt.chunk} ({prompt.kind})", "", "**Prompt (end):** ..."
                  + prompt.text[-400:], ""]
        for name in ("base", "tuned"):
            parts += [f"**{name}:** {continuations[name][i]['text']}", ""]
        parts += [f"**author:** {prompt.truth}", ""]
    return "\n".join(parts)


def json_bytes(report: dict) -> bytes:
    return (json.dumps(report, indent=2, ensure_ascii=False, default=float) + "\n").encode()
