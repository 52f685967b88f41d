#!/usr/bin/env python3
"""Benchmark: where stage 0 cuts a novel, against where its author put the seams,
with today's chunker and the one before it (commit BASELINE_COMMIT) in the same run.

For each corpus novel, its known seams are its chapter headings and scene-break
lines (seam_training.labelled_novel). Two conditions:
- unmarked: the headings and scene-break lines removed, the scenes joined by
  ordinary paragraph breaks. Every seam must be found from the text alone.
- marked: the novel as it is, through stage 0 (headings and marks found first).
Both chunkers aim at the same lengths: the target is the median length of the
novel's own seam-to-seam chunks (as when a writer has cut some chunks by hand),
minimum 500 tokens; the maximum is sequence_len (4096) or the longest reference
chunk if longer, so the reference chunking is always possible. The old chunker runs
as it shipped: its budget 3000, its minimum 600 (it has no target).

Figures per novel and per set: boundary precision, recall and F1 within one
paragraph; Pk and WindowDiff (paragraphs as units, k = half the mean reference
chunk); chunk count; median length over the target; the share within [0.5, 1.5] x
target; the shortest and longest chunk; the cuts (not the author's) where the dialogue
runs on across the cut, a question and its answer split ("cuts in talk"); and the seam
model's ranking alone (AUC).
The seam model used on a novel is trained on the other six only (leave one out); the chunker's three settings were tuned on
the development novels (--tune searches them there). Also: stage 0's time on a
200,000-word manuscript (two novels joined), and how many review decisions a
scripted writer needs to reach each novel's reference chunking (--review).

The splitter too (split_oversized_chunks.py's cut_to_fit and chunk_lengths): every
two neighbouring reference chunks of the cue-less text, joined, that are over
sequence_len (4096) while each fits, stand for a chunk a writer made too long;
the figure is how often a cut lands within one paragraph of the seam between them.

Run:    python fine-tuning/benchmarks/bench_segmentation.py [--dev | --all] [--review] [--tune]
"""
import argparse
import itertools
import os
import statistics
import subprocess
import sys
import time
import types
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
from styletune import paths  # noqa: E402
from styletune.config import load_config  # noqa: E402
from styletune.data import seam_model  # noqa: E402
from styletune.data.manuscript import analyse, chapters_of, plan_to_target, read_manuscript  # noqa: E402
from styletune.data.review import constraints, decide, opening, reference_answers, review_entries  # noqa: E402
from styletune.data.seam_model import SeamModel, boundary_features, dialogue_runs_on, units  # noqa: E402
from styletune.data.seam_training import fit, labelled_novel, novel_weights, rows  # noqa: E402
from styletune.data.seams import MARGINS, Lengths, Measure, cut_to_fit  # noqa: E402
from styletune.data.segment import chunk_lengths  # noqa: E402
from styletune.data.tokens import load_counter  # noqa: E402
from styletune.text.sentences import build_punkt  # noqa: E402

CORPUS = paths.FINE_TUNING_DIR / "data" / "corpus"
TEST_NOVELS = ("wells_the_war_of_the_worlds", "stevenson_jekyll_and_hyde", "doyle_a_study_in_scarlet")
DEV_NOVELS = ("austen_pride_and_prejudice", "dickens_oliver_twist", "stoker_dracula",
              "wilde_the_picture_of_dorian_gray")
BASELINE_COMMIT = "481a036"   # the chunker before the seam model and the length cost
# The rehearsal's settings: its sequence_len and the default minimum chunk.
CONFIG = load_config(paths.CONFIG_DIR / "cpu_rehearsal.yaml")
MINIMUM = CONFIG.pipeline.segment_min_tokens


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dev", action="store_true", help="the development novels instead of the test novels")
    p.add_argument("--all", action="store_true", help="both sets")
    p.add_argument("--review", action="store_true", help="also count the scripted review's decisions")
    p.add_argument("--tune", action="store_true",
                   help="search the chunker's settings on the development novels (unmarked F1)")
    p.add_argument("--no-baseline", action="store_true", help="skip the old chunker")
    return p.parse_args()


# --- the old chunker, from git ----------------------------------------------------------

def baseline_chunker():
    """plan_chunks of commit BASELINE_COMMIT (its seams.py and manuscript.py, read from git)."""
    def source(rel):
        return subprocess.run(["git", "-C", str(paths.REPO_DIR), "show", f"{BASELINE_COMMIT}:{rel}"],
                              capture_output=True, text=True, check=True).stdout
    pkg = "fine-tuning/training/styletune/data/"
    seams = types.ModuleType("baseline_seams")
    exec(compile(source(pkg + "seams.py"), "baseline_seams.py", "exec"), seams.__dict__)
    sys.modules["baseline_seams"] = seams
    ms = types.ModuleType("baseline_manuscript")
    code = source(pkg + "manuscript.py").replace("from styletune.data.seams import", "from baseline_seams import")
    exec(compile(code, "baseline_manuscript.py", "exec"), ms.__dict__)
    return ms


# --- measures ---------------------------------------------------------------------------

def para_index(text):
    starts = [a for a, _, _ in units(text)]
    return lambda offset: sum(s <= offset for s in starts) - 1, len(starts)


def boundary_scores(pred, ref, ignore=(), within=1):
    """(true positives, predicted, reference) matching one to one within `within` paragraphs;
    predictions at an ignored place count for nothing."""
    pred = [p for p in pred if p not in ignore]
    free, tp = sorted(pred), 0
    for r in sorted(ref):
        near = [p for p in free if abs(p - r) <= within]
        if near:
            free.remove(min(near, key=lambda p: abs(p - r)))
            tp += 1
    return tp, len(pred), len(ref)


def pk_windowdiff(pred, ref, n):
    """Pk and WindowDiff over n paragraphs, boundaries as paragraph indices (a boundary
    at i: paragraph i starts a chunk)."""
    ref_set, pred_set = set(ref), set(pred)
    k = max(2, round(n / (len(ref_set) + 1) / 2))
    pk = wd = 0
    for i in range(n - k):
        r = sum(1 for j in range(i + 1, i + k + 1) if j in ref_set)
        p = sum(1 for j in range(i + 1, i + k + 1) if j in pred_set)
        pk += (r > 0) != (p > 0)
        wd += r != p
    return pk / max(1, n - k), wd / max(1, n - k)


def f1(tp, npred, nref):
    prec, rec = tp / max(1, npred), tp / max(1, nref)
    return 2 * prec * rec / max(1e-9, prec + rec)


# --- one novel, one chunker -------------------------------------------------------------

def reference(novel, text, cues):
    """(seam offsets, ignored offsets) in `text` (the cue-less text, or the body)."""
    if not cues:
        return novel.seams, novel.unsure
    st = analyse(text)
    seams, unsure = [], set()
    for s in st.sections[1:]:
        if s.reason.startswith("chapter heading") or (s.reason.startswith("scene break")
                                                     and "blank line" not in s.reason):
            seams.append(s.start)
        else:
            unsure.add(s.start)
    return seams, unsure


def run_chunker(kind, text, counter, lengths, old=None):
    st = analyse(text)
    if kind == "new":
        chunks, *_ = plan_to_target(st, counter, lengths)
    else:
        chunks, _ = old.plan_chunks(st, counter, 600, 3000, hard_limit=4096 - 16)
    return chunks


def measure_one(kind, novel, text, cues, counter, old=None, review=False):
    seams, unsure = reference(novel, text, cues)
    measure = Measure(counter, text, margin=MARGINS[0])     # the margin plan_chunks keeps
    bounds = [0] + sorted(seams) + [len(text)]
    ref_lengths = [measure.tokens(a, b) for a, b in zip(bounds, bounds[1:])]
    target = int(statistics.median(ref_lengths))
    lengths = Lengths(target, MINIMUM, max(CONFIG.sequence_len, max(ref_lengths) + 100),
                      seam_model.model().data["length_weight"])
    start = time.perf_counter()
    chunks = run_chunker(kind, text, counter, lengths, old)
    seconds = time.perf_counter() - start
    index, n = para_index(text)
    pred = [index(c.start) for c in chunks[1:]]
    ref = [index(o) for o in seams]
    ignore = {index(o) for o in unsure}
    tokens = [measure.tokens(c.start, c.end) for c in chunks]
    pk, wd = pk_windowdiff(pred, ref, n)
    return {"tp_pred_ref": boundary_scores(pred, ref, ignore), "pk": pk, "wd": wd,
            "talk": cuts_in_talk(text, [c.start for c in chunks[1:]], set(seams)),
            "chunks": len(chunks), "ref_chunks": len(seams) + 1, "target": target,
            "median_ratio": statistics.median(tokens) / target,
            "in_band": sum(0.5 * target <= t <= 1.5 * target for t in tokens) / len(tokens),
            "shortest": min(tokens), "longest": max(tokens), "seconds": seconds,
            "under_min": sum(t < MINIMUM for t in tokens),
            "review": review_decisions(text, seams, counter, lengths) if review and kind == "new" else None}


def cuts_in_talk(text, cuts, seams) -> int:
    """The cuts, other than the author's own seams, where the dialogue runs on across
    the cut (seam_model.dialogue_runs_on: a question and its answer, a speech and the
    reply): the cuts a writer would least make."""
    paras = units(text)
    feats = boundary_features(text, paras, keep=set(cuts))
    at = {paras[i][0]: i for i in feats}
    return sum(bool(dialogue_runs_on(feats[at[c]], text[paras[at[c] - 1][0]:paras[at[c] - 1][1]]))
               for c in cuts if c in at and c not in seams)


def splitter_finds(novel, counter, cfg):
    """(seams found, pairs tried, cuts made): the splitter on each pair of neighbouring
    reference chunks of the cue-less text that is over sequence_len while each chunk
    fits, its lengths as split_oversized_chunks.py sets them (segment.chunk_lengths:
    the median of the other chunks that fit)."""
    text, index = novel.text, para_index(novel.text)[0]
    measure = Measure(counter, text, margin=MARGINS[0])
    bounds = [0] + sorted(novel.seams) + [len(text)]
    sizes = [measure.tokens(a, b) for a, b in zip(bounds, bounds[1:])]
    lengths = chunk_lengths(cfg, [t for t in sizes if t <= cfg.sequence_len])
    punkt = lambda: build_punkt([text])[0]  # noqa: E731  (only a paragraph over the limit needs it)
    found = tried = made = 0
    for a, seam, b in zip(bounds, bounds[1:], bounds[2:]):
        if measure.tokens(a, b) <= lengths.maximum or max(measure.tokens(a, seam), measure.tokens(seam, b)) > lengths.maximum:
            continue
        raw = text[a:b]
        cuts, _ = cut_to_fit(raw, Measure(counter, raw, margin=MARGINS[0]).tokens, lengths, punkt)
        tried, made = tried + 1, made + len(cuts)
        found += any(abs(index(a + c.offset) - index(seam)) <= 1 for c in cuts)
    return found, tried, made


def review_decisions(text, seams, counter, lengths):
    """(decisions, reference chunks, reached): the scripted writer of the tests
    (review.reference_answers) answering stage 0's reviews until the chunking is the
    novel's own (its seams), at most 5 rounds."""
    st = analyse(text)
    barriers = [secs[0].start for secs in chapters_of(st).values()]
    first = st.sections[0].start
    reference = [opening(text, o) for o in [first] + sorted(seams)]
    decisions, count = [], 0
    for _ in range(5):
        rules = constraints(text, decisions, barriers)
        chunks, _, found, aimed = plan_to_target(st, counter, lengths, forced=rules.forced,
                                                 forbidden=rules.forbidden, extra=rules.extra)
        current = [opening(text, c.start) for c in chunks]
        if current == reference:
            return count, len(reference), True
        review = review_entries(text, found, chunks, Measure(counter, text, margin=MARGINS[0]), aimed,
                                rules.forced | rules.forbidden)
        answers = reference_answers(review, reference, current)
        if not answers:
            break
        count += len(answers)
        decisions += [decide(review, a) for a in answers]
    return count, len(reference), False


def summary(results):
    tp, npred, nref = (sum(r["tp_pred_ref"][i] for r in results) for i in range(3))
    return {"f1": f1(tp, npred, nref), "precision": tp / max(1, npred), "recall": tp / max(1, nref),
            "pk": statistics.mean(r["pk"] for r in results),
            "wd": statistics.mean(r["wd"] for r in results),
            "chunks": sum(r["chunks"] for r in results), "ref_chunks": sum(r["ref_chunks"] for r in results),
            "median_ratio": statistics.median(r["median_ratio"] for r in results),
            "in_band": statistics.mean(r["in_band"] for r in results),
            "shortest": min(r["shortest"] for r in results), "longest": max(r["longest"] for r in results),
            "under_min": sum(r["under_min"] for r in results),
            "talk": sum(r["talk"] for r in results),
            "decisions": [r.get("review") for r in results]}


# --- the leave-one-out models -----------------------------------------------------------

class Models:
    """Each novel's seam model trained on the other six (rows computed once per novel)."""

    def __init__(self, novels):
        self.novels = novels
        self.rows = {n.name: rows(n) for n in novels}

    def without(self, name, chunker):
        import numpy as np
        others = [n.name for n in self.novels if n.name != name]
        x = np.vstack([self.rows[o][0] for o in others])
        y = np.concatenate([self.rows[o][1] for o in others])
        return SeamModel(fit(x, y, chunker, others, novel_weights([self.rows[o][1] for o in others])))


def auc(scores, labels) -> float:
    """Probability that a seam outscores a boundary that is not one (ties: half)."""
    import numpy as np
    order = np.argsort(scores, kind="stable")
    ranks = np.empty(len(scores))
    ranks[order] = np.arange(1, len(scores) + 1)
    seams = labels.sum()
    return float((ranks[labels == 1].sum() - seams * (seams + 1) / 2) / (seams * (len(labels) - seams)))


def ranking(models, chunker):
    """The seam model's leave-one-novel-out AUC on each novel's boundaries."""
    out = {}
    for name, (x, y) in models.rows.items():
        if y.sum():
            model = models.without(name, chunker)
            out[name] = auc([model.logit(dict(zip(model.data["features"], row))) for row in x], y)
    print("\nseam model, each novel scored by a model trained on the other six (AUC: a seam "
          "outranks another paragraph start):")
    print("  " + ", ".join(f"{n.split('_')[0]} {a:.2f}" for n, a in out.items())
          + f"; mean {sum(out.values()) / len(out):.2f}")


def use(model):
    seam_model._MODEL = model   # the chunker reads the module's model


def evaluate(names, novels, models, chunker, counter, conditions, old, review=False, splitter_cfg=None):
    bodies = {n.name: read_manuscript(CORPUS / f"{n.name}.txt").body for n in novels}
    by_name = {n.name: n for n in novels}
    out = {}
    for name in names:
        use(models.without(name, chunker))
        if splitter_cfg:
            out[(name, "splitter")] = splitter_finds(by_name[name], counter, splitter_cfg)
        for cues in conditions:
            text = bodies[name] if cues else by_name[name].text
            for kind in (["new"] + (["old"] if old else [])):
                out[(name, cues, kind)] = measure_one(kind, by_name[name], text, cues, counter, old,
                                                      review)
    return out


def table(results, names, label, conditions, kinds):
    print(f"\n### {label}\n")
    print("| condition | chunker | F1 | precision | recall | Pk | WindowDiff | chunks (reference) "
          "| median / target | in 0.5-1.5x | shortest | longest | under 500 | cuts in talk |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for cues in conditions:
        for kind in kinds:
            s = summary([results[(n, cues, kind)] for n in names])
            print(f"| {'marked' if cues else 'unmarked'} | {'today' if kind == 'new' else BASELINE_COMMIT} "
                  f"| {s['f1']:.2f} | {s['precision']:.2f} | {s['recall']:.2f} | {s['pk']:.2f} | "
                  f"{s['wd']:.2f} | {s['chunks']} ({s['ref_chunks']}) | {s['median_ratio']:.2f} | "
                  f"{s['in_band']:.0%} | {s['shortest']} | {s['longest']} | {s['under_min']} | {s['talk']} |")


def splitter_table(results, names, limit):
    found, tried, made = (sum(results[(n, "splitter")][i] for n in names) for i in range(3))
    print(f"\nsplitter, two neighbouring reference chunks joined (cues removed) over {limit} tokens: "
          f"a cut within one paragraph of the seam between them in {found} of {tried} "
          f"({found / max(1, tried):.0%}; {made} cuts made); "
          + ", ".join(f"{n.split('_')[0]} {results[(n, 'splitter')][0]}/{results[(n, 'splitter')][1]}"
                      for n in names))


def per_novel(results, names, conditions):
    for cues in conditions:
        for name in names:
            r = results[(name, cues, "new")]
            tp, npred, nref = r["tp_pred_ref"]
            said = ""
            if r["review"]:
                n, chunks, reached = r["review"]
                said = (f"; review: {n} decisions for {chunks} chunks"
                        + ("" if reached else " (reference NOT reached in 5 rounds)"))
            print(f"  {'marked' if cues else 'unmarked'} {name}: F1 {f1(tp, npred, nref):.2f} "
                  f"({tp}/{npred} predicted, {nref} seams), {r['chunks']} chunks vs {r['ref_chunks']}, "
                  f"target {r['target']}, {r['seconds']:.1f} s, {r['talk']} cut(s) in talk{said}")


def tune(novels, models, counter):
    print("tuning on the development novels (unmarked F1, leave-one-out models)")
    best = None
    for weight, offset in itertools.product((2.0, 4.0, 8.0), (1.0, 2.0, 3.0, 4.0)):
        chunker = {"length_weight": weight, "mark_score": 8.0, "seam_offset": offset,
                   "talk_penalty": seam_model.model().data["talk_penalty"]}
        res = evaluate(DEV_NOVELS, novels, models, chunker, counter, [False], None)
        s = summary(list(res.values()))
        print(f"  length_weight {weight}, seam_offset {offset}: F1 {s['f1']:.3f}, "
              f"median/target {s['median_ratio']:.2f}")
        if best is None or s["f1"] > best[0]:
            best = (s["f1"], chunker)
    print(f"best: {best[1]} (F1 {best[0]:.3f})")


def timing(counter, cfg):
    """Stage 0's planning on a ~200,000-word manuscript: two novels joined."""
    from styletune.data.segment import segment
    work = Path(os.environ.get("TMPDIR", "/tmp")) / "bench_segmentation_200k.txt"
    texts = [read_manuscript(CORPUS / f"{n}.txt").body for n in ("dickens_oliver_twist", "wells_the_war_of_the_worlds")]
    work.write_text("\n\n\n".join(texts) + "\n", encoding="utf-8")
    times = []
    for _ in range(3):
        start = time.perf_counter()
        seg = segment(cfg, work)
        ms, chunks = seg.ms, seg.chunks
        times.append(time.perf_counter() - start)
    words = len(ms.body.split())
    print(f"\nstage 0 on a {words:,}-word manuscript: median {statistics.median(times):.1f} s of 3 runs "
          f"({len(chunks)} chunks; target: at most 30 s on 2 cores)")


def main():
    args = parse_args()
    cfg = CONFIG
    counter = load_counter(cfg)
    print("... labelling the corpus and computing features", file=sys.stderr, flush=True)
    novels = [labelled_novel(p) for p in sorted(CORPUS.glob("*.txt"))]
    models = Models(novels)
    shipped = seam_model.model().data
    chunker = {k: shipped[k] for k in ("length_weight", "mark_score", "seam_offset", "talk_penalty")}
    if args.tune:
        tune(novels, models, counter)
        return
    old = None if args.no_baseline else baseline_chunker()
    sets = []
    if args.dev or args.all:
        sets.append(("development novels (chunker settings tuned here)", DEV_NOVELS))
    if not args.dev or args.all:
        sets.append(("held-out test novels", TEST_NOVELS))
    conditions = [False, True]
    print(f"tokenizer: {counter.description}; chunker settings: {chunker}")
    ranking(models, chunker)
    for label, names in sets:
        results = evaluate(names, novels, models, chunker, counter, conditions, old, args.review,
                           splitter_cfg=cfg)
        table(results, names, label, conditions, ["new"] + (["old"] if old else []))
        splitter_table(results, names, cfg.sequence_len)
        per_novel(results, names, conditions)
    use(SeamModel(shipped))
    timing(counter, cfg)


if __name__ == "__main__":
    main()
