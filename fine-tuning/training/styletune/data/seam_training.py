"""Where the seam model's weights come from: novels whose seams are known.

A novel's known seams are its chapter headings and its scene-break lines. Remove
them (`labelled_novel`: the scenes joined by ordinary paragraph breaks) and every
paragraph boundary becomes a question, was a seam here? The logistic regression
(`fit`) answers it from seam_model's features. Seams marked only by extra blank
lines are left out of both classes: in these files they are as often layout
(a letter, a list) as a scene change.

`fit` is deterministic: fixed Newton steps on float64 sums in a fixed order, the
result rounded, so retraining on the same novels writes the same file.
"""
import bisect
import json
from dataclasses import dataclass

import numpy as np

from styletune.data.manuscript import analyse, read_manuscript
from styletune.data.seam_model import FEATURES, boundary_features, units

# Ridge on the standardised weights (not the bias). Strong: a habit of one novel
# (Dracula's dated diary entries, a third of the seams) must not become the rule;
# leave-one-novel-out AUC rose from 0.83 at 1 to 0.88 at 100.
L2 = 100.0
NEWTON_STEPS = 30
DIGITS = 4          # the file holds weights to this many decimals


@dataclass
class LabelledNovel:
    name: str
    text: str            # the scenes, cues removed, joined by blank lines
    seams: list          # offsets in text where a chapter or a marked scene began
    unsure: set          # offsets of seams marked only by blank lines: no label
    kinds: dict          # offset -> "chapter" | "scene"


def labelled_novel(path) -> LabelledNovel:
    """The novel's body with its headings, scene-break lines and front matter
    removed, each scene's paragraphs as they were, and where its seams were."""
    ms = read_manuscript(path)
    structure = analyse(ms.body)
    parts, seams, unsure, kinds, at = [], [], set(), {}, 0
    for n, section in enumerate(structure.sections):
        piece = ms.body[section.start:section.end]
        if n:
            at += 2
            if section.reason.startswith("chapter heading"):
                seams.append(at)
                kinds[at] = "chapter"
            elif section.reason.startswith("scene break: ") and "blank line" not in section.reason:
                seams.append(at)
                kinds[at] = "scene"
            else:
                unsure.add(at)
        parts.append(piece)
        at += len(piece)
    text = "\n\n".join(parts)
    # A page-number line ("11)") ending a scene goes with the next paragraph (units),
    # so the seam is where that paragraph's unit starts.
    starts = [a for a, _, _ in units(text)]
    at_unit = lambda o: starts[bisect.bisect_right(starts, o) - 1]  # noqa: E731
    seams = [at_unit(o) for o in seams]
    kinds = {at_unit(o): k for o, k in kinds.items()}
    unsure = {at_unit(o) for o in unsure}
    return LabelledNovel(path.stem, text, seams, unsure, kinds)


def labelled_boundaries(novel: LabelledNovel):
    """(paragraph units, index of each row's paragraph, features [n x len(FEATURES)],
    labels [n]) for every candidate boundary with a label."""
    paras = units(novel.text)
    feats = boundary_features(novel.text, paras)
    seams = set(novel.seams)
    index = [i for i in feats if paras[i][0] not in novel.unsure]
    x = np.array([[feats[i][k] for k in FEATURES] for i in index], dtype=np.float64).reshape(-1, len(FEATURES))
    return paras, index, x, np.array([1.0 if paras[i][0] in seams else 0.0 for i in index])


def rows(novel: LabelledNovel):
    """(features [n x len(FEATURES)], labels [n]) for every candidate boundary."""
    return labelled_boundaries(novel)[2:]


def novel_weights(labels) -> np.ndarray:
    """Row weights that give every novel's seams the same total weight, and every
    novel's other boundaries likewise (each class keeps its overall count)."""
    seams = sum(y.sum() for y in labels)
    others = sum(len(y) - y.sum() for y in labels)
    return np.concatenate([np.where(y == 1, seams / len(labels) / max(1.0, y.sum()),
                                    others / len(labels) / max(1.0, len(y) - y.sum()))
                           for y in labels])


def fit(x, y, chunker: dict, trained_on: list, weights=None, features=FEATURES) -> dict:
    """Logistic regression on standardised features (x's columns, named `features`),
    L2 on the weights, rows weighted by `weights`: the data seam_model.json holds
    (SeamModel reads it)."""
    assert x.shape[1] == len(features), (x.shape, features)
    sw = np.ones(len(y)) if weights is None else weights
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale == 0] = 1.0
    z = np.hstack([np.ones((len(x), 1)), (x - mean) / scale])
    w = np.zeros(z.shape[1])
    ridge = np.full(z.shape[1], L2)
    ridge[0] = 0.0
    for _ in range(NEWTON_STEPS):
        p = 1 / (1 + np.exp(-(z @ w)))
        grad = z.T @ (sw * (p - y)) + ridge * w
        hess = (z * (sw * p * (1 - p))[:, None]).T @ z + np.diag(ridge)
        w = w - np.linalg.solve(hess, grad)
    r = lambda v: round(float(v), DIGITS)  # noqa: E731
    return {
        "about": "seam model: logistic regression over seam_model.FEATURES (standardised); "
                 "retrain with fine-tuning/training/train_seam_model.py",
        "trained_on": trained_on,
        "rows": int(len(y)),
        "seams": int(y.sum()),
        "features": list(features),
        "mean": {k: r(v) for k, v in zip(features, mean)},
        "scale": {k: r(v) for k, v in zip(features, scale)},
        "weights": {k: r(v) for k, v in zip(features, w[1:])},
        "bias": r(w[0]),
        **chunker,
    }


def train(novels, chunker: dict) -> dict:
    """The model data from [LabelledNovel], rows stacked in the order given."""
    parts = [rows(n) for n in novels]
    x = np.vstack([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    return fit(x, y, chunker, [n.name for n in novels], novel_weights([p[1] for p in parts]))


def model_bytes(data: dict) -> bytes:
    return (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
