"""Authorship attribution for stage 4: how close a model's prose is to the author's,
by word use and by character n-grams. Plain strings in, numpy and scikit-learn,
deterministic for a given `seed`.

Cosine Delta (`cosine_delta`)
    Burrows' Delta with the cosine instead of the Manhattan distance (Smith &
    Aldridge 2011), the variant Evert et al. (2017, "Understanding and explaining
    Delta measures for authorship attribution") found the most robust. Procedure:
    1. the most frequent words (MFW, default 300) of the reference text, which is
       the author's training text (ties broken alphabetically), its proper names
       left out (`proper_names`): a tuned model learns the book's cast, and a name
       among the MFW would score that as voice;
    2. every text is cut into consecutive segments of `segment_words` words (the
       remainder, under one segment, is left out) and each segment becomes a vector
       of relative MFW frequencies;
    3. each word's mean and standard deviation are estimated over the segments of
       ALL texts, every text weighted equally (a 100k-word reference does not
       drown the candidates); frequencies become z-scores;
    4. the author profile is the mean z-vector of the reference segments; a
       candidate's profile is the mean z-vector of its segments, i.e. the z-score
       of its pooled text;
    5. delta = cosine distance (1 - cos) between the two profiles: 0 for the same
       word-use profile, about 1 for unrelated ones, up to 2 for opposite ones;
    6. the interval is a percentile bootstrap over the candidate's segments (the
       reference is held fixed: it is the yardstick every candidate is measured
       against). Resampling adds noise, which pulls a cosine distance towards 1,
       so the interval leans towards 1 (for the author's own text it can sit a
       little above the point estimate; for a distant text, below it): intervals
       of a near and a far candidate overlap more readily, i.e. the test
       "non-overlapping intervals" is conservative.
    Delta is relative to the texts compared: the z-scores are centred on their
    mean. With only two or three texts, a candidate's own sampling noise moves
    that mean (seen here: Austen's held-out text scored 0.87 with three other
    authors in the call, 1.22 with only Dickens beside it, still below Dickens's
    1.57), so include the author's held-out text, base and tuned samples in one
    call, and, where there is other text to hand, pass it as `background`.
    Sample size: Eder (2015, "Does size matter? Authorship attribution, small
    samples, big problem") found Delta attribution unreliable below about 2,500
    words per sample and stable from about 5,000. A single 200-word continuation is
    far too short, so continuations are pooled per model and the pooled sample is
    compared; aim for at least 5 segments of 1,000 words (5,000 words) per
    candidate. A candidate under one segment is refused (ValueError); one under
    2,500 words is flagged `short_sample`. The distance of a pooled sample shrinks
    as the sample grows (less sampling noise), so compare candidates of similar
    size: base, tuned and the author's own held-out text (the floor), each pooled
    to the same number of words. The z-scores depend on every text in the call,
    so only compare deltas from the same call.

Character n-gram attribution (`char_ngram_attribution`)
    A TF-IDF (sublinear tf) character 2-4-gram logistic regression, the standard
    strong baseline of authorship attribution (Stamatatos 2009; Sapkota et al.
    2015), trained on the author's text against other text (stage 4 passes base
    model text), balanced classes. Typography is normalised first (curly quotes to
    straight, dashes, ellipses, italics marks, whitespace), so the classifier
    cannot win on how quote marks are typeset. Training texts are cut into pieces
    as long as the median candidate text, so text length cannot stand in for
    style. Reported: the share of each candidate's texts labelled as the author's,
    with a bootstrap interval over texts, and (`paired_share_difference`) one
    candidate's share minus another's, bootstrapped over the prompts both continued;
    `char_ngram_holdout_accuracy` says how
    well the same classifier separates held-out pieces of its own training texts
    (near 0.5 means it cannot tell the two apart, and the shares mean nothing).
    Samples: tens of texts per class of a few hundred words each; a few texts
    give intervals as wide as the scale.

`bootstrap_ci`: the percentile bootstrap every interval here uses (stage 4 also
uses it for perplexity).
"""
from __future__ import annotations

import re
from collections import Counter

import numpy as np

from styletune.eval.stylometry import WORD, words

# ---------------------------------------------------------------- intervals

# Student's t, the 97.5% quantile (a two-sided 95% interval) for 1-30 degrees of
# freedom; beyond 30 the 30's, a little wide (tests/test_evaluate.py checks it
# against scipy)
T_975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
         2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
         2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def group_members(groups, count: int) -> list[list[int]]:
    """The indices of each group's items (a held-out chunk's prompts), in the order the
    groups first appear; one group of all `count` items when `groups` is None."""
    groups = list(groups) if groups is not None else [0] * count
    return [[i for i, g in enumerate(groups) if g == name] for name in dict.fromkeys(groups)]


def grouped_mean_interval(sums, counts) -> tuple[float, float]:
    """The pooled mean sum(sums) / sum(counts) of values that come in groups (a
    held-out chunk's tokens, or its prompts), and the half-width of its 95% interval
    with the groups as the units: the ratio estimator's linearised variance (each
    group's sum against the pooled mean times its count, the k-1 correction) and
    Student's t on k-1 degrees of freedom. Values of one chunk move together, so a
    bootstrap of them (or of a handful of chunks) comes out too narrow. Two groups at
    least."""
    sums, counts = np.asarray(sums, dtype=float), np.asarray(counts, dtype=float)
    k, mean = sums.size, float(sums.sum() / counts.sum())
    if k < 2:
        raise ValueError("an interval over groups needs two groups at least")
    se = float(np.sqrt(k / (k - 1) * ((sums - mean * counts) ** 2).sum()) / counts.sum())
    return mean, T_975[min(k - 1, len(T_975)) - 1] * se


def bootstrap_ci(values, statistic=np.mean, n_boot: int = 1000, seed: int = 0,
                 level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of `statistic` over `values` (resampled with replacement)."""
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        raise ValueError("bootstrap_ci needs at least one value")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, values.size, size=(n_boot, values.size))
    if statistic is np.mean:
        stats = values[idx].mean(axis=1)  # vectorised: the common case
    else:
        stats = np.array([statistic(values[row]) for row in idx], dtype=float)
    alpha = (1 - level) / 2
    lo, hi = np.quantile(stats, [alpha, 1 - alpha])
    return float(lo), float(hi)


# ---------------------------------------------------------------- Cosine Delta

EDER_MIN_WORDS = 2500  # below this Delta attribution is unreliable (Eder 2015)


# Before a word, these mark where a sentence may begin (its capital says nothing).
_SENTENCE_OPENERS = set(".!?:;\n\"“‘'([—-")
NAME_CAPITALISED_SHARE = 0.9   # of a word's mid-sentence occurrences, to count as a name
NAME_MIN_OCCURRENCES = 3


def proper_names(text: str) -> set[str]:
    """Lower-cased words written with a capital in at least NAME_CAPITALISED_SHARE of
    their occurrences inside a sentence (after a letter, a digit or a comma), seen there
    NAME_MIN_OCCURRENCES times or more: Elizabeth, Darcy, London, and the titles before
    them (Mr). "I" (I'll, I'm) is a pronoun."""
    inside, capital = Counter(), Counter()
    for m in WORD.finditer(text):
        i = m.start() - 1
        while i >= 0 and text[i] in " \t":
            i -= 1
        if i < 0 or text[i] in _SENTENCE_OPENERS:
            continue
        word = m.group().lower().replace("’", "'")
        inside[word] += 1
        capital[word] += m.group()[0].isupper()
    return {w for w, n in inside.items() if n >= NAME_MIN_OCCURRENCES and w.split("'")[0] != "i"
            and capital[w] >= NAME_CAPITALISED_SHARE * n}


def most_frequent_words(tokens: list[str], n: int) -> list[str]:
    """The n most frequent tokens, ties broken alphabetically (deterministic)."""
    counts = Counter(tokens)
    return sorted(counts, key=lambda w: (-counts[w], w))[:n]


def segment_frequencies(tokens: list[str], vocabulary: list[str], segment_words: int) -> np.ndarray:
    """(segments, len(vocabulary)) relative frequencies of consecutive segments; remainder dropped."""
    index = {w: i for i, w in enumerate(vocabulary)}
    n_segments = len(tokens) // segment_words
    freqs = np.zeros((n_segments, len(vocabulary)))
    for s in range(n_segments):
        for w in tokens[s * segment_words:(s + 1) * segment_words]:
            i = index.get(w)
            if i is not None:
                freqs[s, i] += 1
    return freqs / segment_words


def _equal_weight_mean_std(blocks: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per-column mean and std over the rows of all blocks, each block weighing the same."""
    rows = np.vstack(blocks)
    weights = np.concatenate([np.full(len(b), 1.0 / len(b)) for b in blocks])
    weights /= weights.sum()
    mean = weights @ rows
    std = np.sqrt(weights @ (rows - mean) ** 2)
    return mean, std


def _cosine_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """1 - cos between rows of a (or a vector) and vector b."""
    num = a @ b
    den = np.linalg.norm(a, axis=-1) * np.linalg.norm(b)
    return 1.0 - np.divide(num, den, out=np.zeros_like(num, dtype=float), where=den > 0)


def _segments_or_error(name: str, tokens: list[str], segment_words: int) -> None:
    if len(tokens) < segment_words:
        raise ValueError(
            f"cosine_delta: '{name}' has {len(tokens)} words, fewer than one segment of "
            f"{segment_words}; it needs at least {segment_words} words (and {EDER_MIN_WORDS}+ "
            "for a reliable Delta): pool more or longer continuations, or lower segment_words")


def cosine_delta(reference: str, candidates: dict[str, str], mfw: int = 300,
                 segment_words: int = 1000, seed: int = 0, n_boot: int = 1000,
                 background: dict[str, str] | None = None) -> dict[str, dict]:
    """Cosine Delta of each candidate text to the reference (the author); see the module docstring.

    `background` texts (other authors, other models) only join the z-score estimate,
    one text each, and are not scored: with few texts in the call, the candidates'
    own sampling noise moves the corpus mean, and an anchor of several texts steadies it.
    Returns {name: {"delta", "ci": [lo, hi], "segments", "words", "words_total",
    "short_sample"}}; "words" is what was used (whole segments).
    """
    ref_tokens = words(reference)
    _segments_or_error("reference", ref_tokens, segment_words)
    cand_tokens = {name: words(text) for name, text in candidates.items()}
    for name, tokens in cand_tokens.items():
        _segments_or_error(name, tokens, segment_words)
    back_tokens = [words(text) for text in (background or {}).values()]
    for name, tokens in zip(background or {}, back_tokens):
        _segments_or_error(f"background {name}", tokens, segment_words)

    names = proper_names(reference)
    vocabulary = most_frequent_words([t for t in ref_tokens if t not in names], mfw)
    ref_freqs = segment_frequencies(ref_tokens, vocabulary, segment_words)
    cand_freqs = {n: segment_frequencies(t, vocabulary, segment_words) for n, t in cand_tokens.items()}
    back_freqs = [segment_frequencies(t, vocabulary, segment_words) for t in back_tokens]
    mean, std = _equal_weight_mean_std([ref_freqs, *cand_freqs.values(), *back_freqs])
    keep = std > 0  # a word that never varies carries no information (and cannot be z-scored)

    def z(freqs):
        return (freqs[:, keep] - mean[keep]) / std[keep]

    profile = z(ref_freqs).mean(axis=0)
    rng = np.random.default_rng(seed)
    results = {}
    for name, freqs in cand_freqs.items():
        zs = z(freqs)
        delta = float(_cosine_distance(zs.mean(axis=0), profile))
        idx = rng.integers(0, len(zs), size=(n_boot, len(zs)))
        boot = _cosine_distance(zs[idx].mean(axis=1), profile)
        lo, hi = np.quantile(boot, [0.025, 0.975])
        results[name] = {
            "delta": delta, "ci": [float(lo), float(hi)], "segments": len(zs),
            "words": len(zs) * segment_words, "words_total": len(cand_tokens[name]),
            "short_sample": len(zs) * segment_words < EDER_MIN_WORDS,
        }
    return results


# ---------------------------------------------------------------- char n-gram attribution

_TYPOGRAPHY = [
    (re.compile(r"[“”„″]"), '"'),
    (re.compile(r"[‘’‚′]"), "'"),
    (re.compile(r"—|-{2,}"), " -- "),
    (re.compile(r"–"), "-"),
    (re.compile(r"…|\.\s?\.\s?\."), "..."),
    (re.compile(r"[_*]"), ""),
    (re.compile(r"\s+"), " "),
]


def normalise_typography(text: str) -> str:
    """One form for quotes, dashes, ellipses and whitespace; italics marks dropped."""
    for pattern, replacement in _TYPOGRAPHY:
        text = pattern.sub(replacement, text)
    return text.strip()


def split_into_pieces(text: str, piece_words: int) -> list[str]:
    """Consecutive pieces of about piece_words words (cut at word starts); a last piece
    under half that length joins the previous one."""
    starts = [m.start() for m in WORD.finditer(text)]
    if len(starts) < 2 * piece_words:
        return [text]
    cuts = starts[piece_words::piece_words]
    if len(starts) - (len(cuts)) * piece_words < piece_words / 2:
        cuts = cuts[:-1]
    bounds = [0, *cuts, len(text)]
    return [text[a:b] for a, b in zip(bounds, bounds[1:])]


def _median_words(texts: list[str]) -> int:
    return max(1, int(np.median([len(words(t)) for t in texts])))


def _labelled_pieces(author_texts, other_texts, piece_words):
    pieces, labels = [], []
    for label, texts in ((1, author_texts), (0, other_texts)):
        for text in texts:
            for piece in split_into_pieces(text, piece_words):
                pieces.append(normalise_typography(piece))
                labels.append(label)
    return pieces, np.array(labels)


def _fit_classifier(texts: list[str], labels: np.ndarray, ngram_range, seed: int):
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    if len(set(labels.tolist())) < 2:
        raise ValueError("char n-gram attribution needs both author and other texts")
    model = make_pipeline(
        # case kept: capitals are part of style; min_df=2 drops one-off n-grams (names, typos)
        TfidfVectorizer(analyzer="char", ngram_range=tuple(ngram_range), lowercase=False,
                        sublinear_tf=True, min_df=2, max_features=100_000),
        # liblinear: exact and fast for two classes (lbfgs took 4x longer here)
        LogisticRegression(C=10.0, class_weight="balanced", solver="liblinear", random_state=seed),
    )
    return model.fit(texts, labels)


def _share_with_ci(labels, seed: int, n_boot: int) -> dict:
    labels = np.asarray(labels, dtype=float)
    lo, hi = bootstrap_ci(labels, n_boot=n_boot, seed=seed)
    return {"author_share": float(labels.mean()), "ci": [lo, hi], "n": int(labels.size),
            "labels": [int(x) for x in labels]}


def paired_share_difference(labels: list[int], other_labels: list[int], groups: list | None = None,
                            seed: int = 0, n_boot: int = 1000) -> dict:
    """One candidate's share labelled the author's minus another's, paired: the i-th
    texts of both are continuations of the same prompt, so a prompt that leads both
    towards the author's voice (or away) weighs on both sides alike. `groups` names
    each prompt's chunk: prompts of one chunk move together, so from two chunks on the
    interval takes the chunks as units (grouped_mean_interval); with one, a bootstrap
    over its prompts, which speaks for that chunk alone."""
    a, b = np.asarray(labels, dtype=float), np.asarray(other_labels, dtype=float)
    if a.size != b.size or not a.size:
        raise ValueError(f"a paired difference needs texts of the same prompts ({a.size} and {b.size})")
    diff, members = a - b, group_members(groups, a.size)
    if len(members) >= 2:
        mean, half = grouped_mean_interval([diff[m].sum() for m in members], [len(m) for m in members])
        ci, interval = [mean - half, mean + half], "chunks, Student's t"
    else:
        ci, interval = list(bootstrap_ci(diff, n_boot=n_boot, seed=seed)), "bootstrap of prompts"
    return {"difference": float(diff.mean()), "ci": [float(x) for x in ci], "n": int(a.size),
            "chunks": len(members), "interval": interval}


def char_ngram_attribution(author_texts: list[str], other_texts: list[str],
                           candidates: dict[str, list[str]], ngram_range=(2, 4), seed: int = 0,
                           piece_words: int | None = None, n_boot: int = 1000) -> dict[str, dict]:
    """Share of each candidate's texts a char n-gram classifier (author vs other) labels author.

    Training texts are cut into pieces of `piece_words` words (default: the median
    length of all candidate texts). Returns {name: {"author_share", "ci": [lo, hi], "n"}}.
    """
    all_candidates = [t for texts in candidates.values() for t in texts]
    if piece_words is None:
        piece_words = _median_words(all_candidates) if all_candidates else 300
    texts, labels = _labelled_pieces(author_texts, other_texts, piece_words)
    model = _fit_classifier(texts, labels, ngram_range, seed)
    results = {}
    for name, cand in candidates.items():
        if not cand:
            raise ValueError(f"char_ngram_attribution: candidate '{name}' has no texts")
        predicted = model.predict([normalise_typography(t) for t in cand])
        results[name] = _share_with_ci(predicted, seed, n_boot)
    return results


def char_ngram_holdout_accuracy(author_texts: list[str], other_texts: list[str], ngram_range=(2, 4),
                                seed: int = 0, piece_words: int = 300, test_share: float = 0.25,
                                n_boot: int = 1000) -> dict:
    """How well the attribution classifier tells author from other on pieces it did not see.

    Texts are cut into `piece_words`-word pieces; whole source texts (not pieces)
    go to the test side, so neighbouring pieces of one chunk cannot leak across.
    The author's pieces usually far outnumber the other's, so plain accuracy is
    mostly the author's recall (a classifier that always says "author" scores high):
    the balanced accuracy, the mean of the two recalls, is the figure to read.
    Returns {"accuracy", "ci", "balanced_accuracy", "balanced_ci", "author_recall",
    "other_recall", "n_author_test", "n_other_test", "n_test", "n_train"}.
    """
    rng = np.random.default_rng(seed)
    train_a, test_a = _split_texts(author_texts, test_share, rng)
    train_o, test_o = _split_texts(other_texts, test_share, rng)
    train_x, train_y = _labelled_pieces(train_a, train_o, piece_words)
    test_x, test_y = _labelled_pieces(test_a, test_o, piece_words)
    model = _fit_classifier(train_x, train_y, ngram_range, seed)
    correct = (model.predict(test_x) == test_y).astype(float)
    lo, hi = bootstrap_ci(correct, n_boot=n_boot, seed=seed)
    by_class = correct[test_y == 1], correct[test_y == 0]
    return {
        "accuracy": float(correct.mean()), "ci": [lo, hi],
        "balanced_accuracy": float(np.mean([c.mean() for c in by_class])),
        "balanced_ci": _balanced_ci(*by_class, seed=seed, n_boot=n_boot),
        "author_recall": float(by_class[0].mean()), "other_recall": float(by_class[1].mean()),
        "n_author_test": int(by_class[0].size), "n_other_test": int(by_class[1].size),
        "n_test": int(correct.size), "n_train": len(train_x),
    }


def _balanced_ci(*classes, seed: int = 0, n_boot: int = 1000, level: float = 0.95) -> list[float]:
    """Percentile bootstrap interval of the mean of per-class means, each class
    resampled on its own (so a small class keeps its size in every resample)."""
    rng = np.random.default_rng(seed)
    stats = np.mean([c[rng.integers(0, c.size, size=(n_boot, c.size))].mean(axis=1) for c in classes], axis=0)
    alpha = (1 - level) / 2
    return [float(q) for q in np.quantile(stats, [alpha, 1 - alpha])]


def _split_texts(texts: list[str], test_share: float, rng) -> tuple[list[str], list[str]]:
    """(train, test) by whole text; a single long text is cut in pieces first so both sides exist."""
    if len(texts) < 2:
        texts = [p for t in texts for p in split_into_pieces(t, max(1, len(words(t)) // 4))]
    if len(texts) < 2:
        raise ValueError("held-out accuracy needs at least two texts (or one long one) per class")
    order = rng.permutation(len(texts))
    n_test = min(len(texts) - 1, max(1, round(test_share * len(texts))))
    test = set(order[:n_test].tolist())
    return ([t for i, t in enumerate(texts) if i not in test],
            [t for i, t in enumerate(texts) if i in test])
