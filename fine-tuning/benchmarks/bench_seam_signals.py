#!/usr/bin/env python3
"""Benchmark: would another model or signal rank unmarked seams better than the
shipped seam model? (Stage 0's unmarked-seam F1 is 0.34 on the held-out novels,
bench_segmentation.py; the chunker can only pick among the places the model ranks
high.)

Leave one novel out, as bench_segmentation.py: each corpus novel's boundaries are
scored by a model trained on the other six, and the figure is AUC (the chance a
true seam outranks another paragraph start). Against the shipped logistic
regression on seam_model.FEATURES:
- gbm: gradient-boosted trees (scikit-learn) on the same features, for what a
  non-linear model finds in them;
- embedding: the features plus cohesion of SmolLM2-135M's input embeddings (a
  model whose weights ship in a package) over ~400 words either side, idf-weighted,
  as a shift against the neighbourhood and as a TextTiling depth;
- pmi (--pmi): the features plus SmolLM2-135M's pointwise mutual information
  between the 128 tokens before a boundary and the first 32 after it (mean log
  probability with that context minus without), and that log probability itself.
  Every seam and PMI_OTHERS other boundaries a novel: ~10 min on 2 cores.

Run:    python fine-tuning/benchmarks/bench_seam_signals.py [--pmi] [--model DIR]
Output: | logistic regression (shipped) | 0.896 | 0.906 | ... | 0.890 |  (2 cores, 2026-12-06)
"""
import argparse
import os
import random
import re
import sys
from collections import Counter
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import numpy as np  # noqa: E402
from bench_segmentation import CORPUS, auc  # noqa: E402  (beside this script)
from styletune import paths  # noqa: E402
from styletune.data import seam_model  # noqa: E402
from styletune.data.seam_model import FEATURES, SeamModel  # noqa: E402
from styletune.data.seam_training import fit, labelled_boundaries, labelled_novel, novel_weights  # noqa: E402

EMBEDDING_WINDOW_WORDS = 400
PMI_CONTEXT, PMI_NEXT, PMI_OTHERS = 128, 32, 300


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pmi", action="store_true", help="also the language model's PMI across each boundary (~10 min)")
    p.add_argument("--model", default=str(paths.REHEARSAL_MODEL),
                   help="the small model for the embedding and PMI signals (default: %(default)s)")
    return p.parse_args(argv)


class Novel:
    """One labelled novel's candidate boundaries (paragraph indices), features and labels."""

    def __init__(self, labelled):
        self.name, self.text = labelled.name, labelled.text
        self.paras, self.index, self.x, self.y = labelled_boundaries(labelled)


# --- signals ------------------------------------------------------------------------

def embedding_cohesion(novel: Novel, embed) -> np.ndarray:
    """[shift, depth] at each candidate: 1 - cosine of the idf-weighted mean word
    embeddings of ~400 words before and after, less its neighbourhood's median, and
    the TextTiling depth of that series (seam_model's own measures on vectors)."""
    ptexts = [novel.text[a:b] for a, b, _ in novel.paras]
    words_per = [seam_model._words(t) for t in ptexts]
    lengths = [len(re.findall(r"[a-z’']+", t.lower())) for t in ptexts]
    df = Counter(w for ws in words_per for w in set(ws))
    vocab = sorted(df)
    vectors = np.stack([embed(w) for w in vocab])
    vectors -= vectors.mean(axis=0)       # cosines of raw LM embeddings all sit near 1
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True) + 1e-9
    row = {w: k for k, w in enumerate(vocab)}
    idf = np.log(len(ptexts) / np.array([df[w] for w in vocab]))
    per_para = np.zeros((len(ptexts), vectors.shape[1]))
    for k, ws in enumerate(words_per):
        for w in ws:
            per_para[k] += idf[row[w]] * vectors[row[w]]
    sums = np.vstack([np.zeros(vectors.shape[1]), np.cumsum(per_para, axis=0)])
    dis = []
    for i in range(1, len(ptexts)):
        before = seam_model._window(lengths, i, EMBEDDING_WINDOW_WORDS, False)
        after = seam_model._window(lengths, i, EMBEDDING_WINDOW_WORDS, True)
        vb, va = sums[before.stop] - sums[before.start], sums[after.stop] - sums[after.start]
        dis.append(1 - vb @ va / (np.linalg.norm(vb) * np.linalg.norm(va) + 1e-9))
    depth = seam_model._depths(seam_model._smooth(dis))
    out = []
    for i in novel.index:
        local = dis[max(0, i - 7):i + 6]
        out.append([max(0.0, dis[i - 1] - sorted(local)[len(local) // 2]), depth[i - 1]])
    return np.array(out)


def word_embedder(model_dir):
    """word -> the mean of SmolLM2's input embeddings of its tokens (' word')."""
    from safetensors import safe_open
    from tokenizers import Tokenizer
    with safe_open(f"{model_dir}/model.safetensors", "pt") as f:
        key = next(k for k in f.keys() if k.endswith("embed_tokens.weight"))
        table = f.get_tensor(key).float().numpy()
    tok = Tokenizer.from_file(f"{model_dir}/tokenizer.json")
    return lambda w: table[tok.encode(" " + w, add_special_tokens=False).ids].mean(axis=0)


class Pmi:
    """Mean log probability of a boundary's next PMI_NEXT tokens with the PMI_CONTEXT
    tokens before it as context, and with none."""

    def __init__(self, model_dir):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
        self.torch = torch
        self.tok = AutoTokenizer.from_pretrained(model_dir)
        self.model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
        self.start = self.tok.bos_token_id if self.tok.bos_token_id is not None else self.tok.eos_token_id

    def _mean_logprob(self, contexts, nexts):
        torch = self.torch
        seqs = [c + n for c, n in zip(contexts, nexts)]
        ids = torch.zeros((len(seqs), max(map(len, seqs))), dtype=torch.long)
        mask = torch.zeros_like(ids)
        for k, s in enumerate(seqs):
            ids[k, :len(s)], mask[k, :len(s)] = torch.tensor(s), 1
        with torch.no_grad():
            logp = torch.log_softmax(self.model(input_ids=ids, attention_mask=mask).logits.float(), -1)
        return [logp[k, torch.arange(len(c) - 1, len(c) + len(n) - 1), torch.tensor(n)].mean().item()
                for k, (c, n) in enumerate(zip(contexts, nexts))]

    def __call__(self, text, offsets, batch=16):
        """[pmi, log probability with context] at each offset."""
        items = []
        for a in offsets:
            before = self.tok(text[max(0, a - 2000):a].rstrip() + "\n\n", add_special_tokens=False).input_ids
            items.append(([self.start] + before[-PMI_CONTEXT:],
                          self.tok(text[a:a + 400], add_special_tokens=False).input_ids[:PMI_NEXT]))
        out = []
        for b in range(0, len(items), batch):
            ctx, nxt = zip(*items[b:b + batch])
            with_ctx = self._mean_logprob(list(ctx), list(nxt))
            without = self._mean_logprob([[self.start]] * len(nxt), list(nxt))
            out += [[w - o, w] for w, o in zip(with_ctx, without)]
        return np.array(out)


# --- leave one out --------------------------------------------------------------------

def logistic_scores(train, test, columns=FEATURES):
    """The shipped model's fit (seam_training.fit, its rounding included) on x's
    `columns`, trained on `train` [(x, y)]: the logit of each row of test x."""
    model = SeamModel(fit(np.vstack([x for x, _ in train]), np.concatenate([y for _, y in train]), {},
                          [], novel_weights([y for _, y in train]), features=columns))
    return np.array([model.logit(dict(zip(columns, row))) for row in test])


def gbm_scores(train, test):
    from sklearn.ensemble import HistGradientBoostingClassifier
    clf = HistGradientBoostingClassifier(max_iter=200, learning_rate=0.03, max_depth=2,
                                         min_samples_leaf=100, random_state=0)
    clf.fit(np.vstack([x for x, _ in train]), np.concatenate([y for _, y in train]),
            sample_weight=novel_weights([y for _, y in train]))
    return clf.decision_function(test)


def leave_one_out(tables, scorer):
    """{novel: AUC} with `scorer(train [(x, y)], test x)` trained on the other novels."""
    return {n: auc(scorer([tables[o] for o in tables if o != n], tables[n][0]), tables[n][1])
            for n in tables}


def extended(extra):
    """The logistic regression on seam_model.FEATURES plus the `extra` columns."""
    return lambda train, test: logistic_scores(train, test, FEATURES + tuple(extra))


def print_row(label, aucs):
    print(f"| {label} | " + " | ".join(f"{aucs[n]:.3f}" for n in aucs) + f" | {np.mean(list(aucs.values())):.3f} |",
          flush=True)


def main(argv=None):
    args = parse_args(argv)
    if not (Path(args.model) / "model.safetensors").exists():
        sys.exit(f"no {args.model}/model.safetensors: run `make model` first, or give --model")
    print("... labelling the corpus and computing features", file=sys.stderr, flush=True)
    novels = [Novel(labelled_novel(p)) for p in sorted(CORPUS.glob("*.txt"))]
    base = {n.name: (n.x, n.y) for n in novels}
    print("| model | " + " | ".join(n.name.split("_")[0] for n in novels) + " | mean |")
    print("|---|" + "---:|" * (len(novels) + 1))
    shipped = logistic_scores
    print_row("logistic regression (shipped)", leave_one_out(base, shipped))
    print_row("gradient-boosted trees, same features", leave_one_out(base, gbm_scores))
    embed = word_embedder(args.model)
    extra = {n.name: embedding_cohesion(n, embed) for n in novels}
    tables = {n: (np.hstack([x, extra[n]]), y) for n, (x, y) in base.items()}
    print_row("+ SmolLM2 embedding cohesion", leave_one_out(tables, extended(("embed_shift", "embed_depth"))))
    if args.pmi:
        pmi, rng, tables = Pmi(args.model), random.Random(0), {}
        for n in novels:
            seams = [k for k in range(len(n.y)) if n.y[k]]
            others = [k for k in range(len(n.y)) if not n.y[k]]
            rows = sorted(seams + rng.sample(others, min(PMI_OTHERS, len(others))))
            signal = pmi(n.text, [n.paras[n.index[k]][0] for k in rows])
            tables[n.name] = (np.hstack([n.x[rows], signal]), n.y[rows])
            print(f"... {n.name}: {len(rows)} boundaries", file=sys.stderr, flush=True)
        sampled = {n: (x[:, :len(FEATURES)], y) for n, (x, y) in tables.items()}
        print_row(f"logistic regression, the same sample (every seam + {PMI_OTHERS})",
                  leave_one_out(sampled, shipped))
        print_row("+ SmolLM2 PMI across the boundary", leave_one_out(tables, extended(("pmi", "logprob"))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
