"""Style metrics on texts whose right answer is known: hand-made ones, and real
novels from fine-tuning/data/corpus (Austen as the author, Dickens, Doyle and Wells as others)."""
import functools
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import CORPUS
from styletune.eval import attribution as at
from styletune.eval import health
from styletune.eval import report as style_report
from styletune.eval import stylometry as st
from styletune.fileio import normalise, read_text
from styletune.text.gutenberg import gutenberg_body
from styletune.text.quotes import opening_styles


def novel(name: str) -> str:
    body, stripped = gutenberg_body(normalise(read_text(CORPUS / name)))
    assert stripped
    return body


@functools.lru_cache(maxsize=8)
def word_starts(text: str) -> list[int]:
    return [m.start() for m in st.WORD.finditer(text)]


def passage(text: str, first_word: int, n_words: int) -> str:
    """The original text of words [first_word, first_word + n_words)."""
    starts = word_starts(text)
    end = starts[first_word + n_words] if first_word + n_words < len(starts) else len(text)
    return text[starts[first_word]:end]


@pytest.fixture(scope="module")
def books():
    return {"austen": novel("austen_pride_and_prejudice.txt"),
            "dickens": novel("dickens_oliver_twist.txt"),
            "doyle": novel("doyle_a_study_in_scarlet.txt"),
            "wells": novel("wells_the_war_of_the_worlds.txt")}


# ------------------------------------------------------------ tokens and sentences

def test_words_keep_internal_apostrophes_and_drop_quotes_and_dashes():
    text = "“Don’t go,” she said--'it's five o'clock—and the Smiths’ dog_ is _here_ 42 times.'"
    assert st.words(text) == ["don't", "go", "she", "said", "it's", "five", "o'clock", "and",
                              "the", "smiths", "dog", "is", "here", "42", "times"]


def test_sentence_lengths_are_exact_with_titles_initials_and_an_ellipsis():
    text = ("Mr. Bennet met Dr. J. Watson at St. Paul’s. “Where?” she asked. I wonder… "
            "Perhaps not... perhaps so! It was late, said I. Then we left.\n\n"
            "A heading without a stop\n\nThe end.")
    assert st.sentences(text) == [
        "Mr. Bennet met Dr. J. Watson at St. Paul’s.",
        "“Where?” she asked.",
        "I wonder…",
        "Perhaps not... perhaps so!",
        "It was late, said I.",
        "Then we left.",
        "A heading without a stop",
        "The end.",
    ]
    assert st.style_profile(text)["sentence_lengths"] == [9, 3, 2, 4, 5, 3, 5, 2]


# ------------------------------------------------------------ bootstrap

def test_bootstrap_ci_is_deterministic_and_brackets_the_mean():
    values = np.random.default_rng(1).normal(10, 2, 200)
    lo, hi = at.bootstrap_ci(values, seed=3)
    assert (lo, hi) == at.bootstrap_ci(values, seed=3)
    assert lo < values.mean() < hi and hi - lo < 1.0
    assert at.bootstrap_ci([4.0, 4.0, 4.0]) == (4.0, 4.0)
    assert at.bootstrap_ci(values, statistic=np.median, seed=3) == \
        at.bootstrap_ci(values, statistic=np.median, seed=3)
    with pytest.raises(ValueError):
        at.bootstrap_ci([])


# ------------------------------------------------------------ Cosine Delta

def test_cosine_delta_of_a_text_with_itself_is_zero(books):
    reference = passage(books["austen"], 0, 6000)
    result = at.cosine_delta(reference, {"same": reference, "dickens": passage(books["dickens"], 0, 6000)})
    assert result["same"]["delta"] == pytest.approx(0.0, abs=1e-9)
    assert result["same"]["segments"] == 6 and result["same"]["words"] == 6000
    assert result["dickens"]["delta"] > 0.5


def test_cosine_delta_held_out_author_is_closer_than_other_authors(books):
    reference = passage(books["austen"], 0, 80_000)
    candidates = {"austen": passage(books["austen"], 90_000, 5000),
                  "dickens": passage(books["dickens"], 50_000, 5000),
                  "doyle": passage(books["doyle"], 20_000, 5000),
                  "wells": passage(books["wells"], 20_000, 5000)}
    result = at.cosine_delta(reference, candidates)
    author = result["austen"]
    for other in ("dickens", "doyle", "wells"):
        assert author["delta"] < result[other]["delta"]
        assert author["ci"][1] < result[other]["ci"][0], (author, result[other])
    assert all(r["segments"] == 5 and not r["short_sample"] for r in result.values())
    assert result == at.cosine_delta(reference, candidates)  # deterministic for the same seed


def test_background_texts_steady_the_anchor_when_few_texts_are_compared(books):
    reference = passage(books["austen"], 0, 80_000)
    candidates = {"austen": passage(books["austen"], 90_000, 5000),
                  "dickens": passage(books["dickens"], 50_000, 5000)}
    alone = at.cosine_delta(reference, candidates)
    anchored = at.cosine_delta(reference, candidates, background={
        "doyle": passage(books["doyle"], 20_000, 5000), "wells": passage(books["wells"], 20_000, 5000)})
    assert set(anchored) == {"austen", "dickens"}
    assert alone["austen"]["delta"] < alone["dickens"]["delta"]
    assert anchored["austen"]["delta"] < min(1.0, alone["austen"]["delta"])
    assert anchored["austen"]["ci"][1] < anchored["dickens"]["ci"][0]
    other_seed = at.cosine_delta(reference, candidates, seed=1)
    assert other_seed["austen"]["delta"] == alone["austen"]["delta"]
    assert other_seed["austen"]["ci"] != alone["austen"]["ci"]


def test_cosine_delta_refuses_a_candidate_shorter_than_one_segment(books):
    reference = passage(books["austen"], 0, 3000)
    with pytest.raises(ValueError, match=r"'tuned' has 120 words.*at least 1000 words"):
        at.cosine_delta(reference, {"tuned": passage(books["wells"], 0, 120)})
    short = at.cosine_delta(reference, {"base": passage(books["wells"], 0, 2100)})["base"]
    assert short["short_sample"] and short["words"] == 2000 and short["words_total"] == 2100


# ------------------------------------------------------------ char n-gram attribution

def test_char_ngram_classifier_tells_austen_from_dickens(books):
    austen = [passage(books["austen"], i * 500, 500) for i in range(40)]
    dickens = [passage(books["dickens"], i * 500, 500) for i in range(40)]
    candidates = {"austen": [passage(books["austen"], 90_000 + i * 300, 300) for i in range(20)],
                  "dickens": [passage(books["dickens"], 100_000 + i * 300, 300) for i in range(20)]}
    result = at.char_ngram_attribution(austen, dickens, candidates)
    assert result["austen"]["author_share"] >= 0.8 and result["austen"]["n"] == 20
    assert result["dickens"]["author_share"] <= 0.2
    lo, hi = result["austen"]["ci"]
    assert lo <= result["austen"]["author_share"] <= hi
    accuracy = at.char_ngram_holdout_accuracy(austen, dickens)
    assert accuracy["accuracy"] >= 0.9 and accuracy["n_test"] == 20
    recalls = accuracy["author_recall"], accuracy["other_recall"]
    assert accuracy["balanced_accuracy"] == pytest.approx(sum(recalls) / 2) and min(recalls) >= 0.8
    lo, hi = accuracy["balanced_ci"]
    assert lo <= accuracy["balanced_accuracy"] <= hi
    assert accuracy["n_author_test"] + accuracy["n_other_test"] == accuracy["n_test"]
    assert result == at.char_ngram_attribution(austen, dickens, candidates)
    assert accuracy == at.char_ngram_holdout_accuracy(austen, dickens)
    # the config's `evaluation.bootstrap` reaches the classifier's intervals (report.py passes it)
    # (a mixed pool, so that the interval is not a point whatever the count)
    mixed = {"mixed": candidates["austen"][:10] + candidates["dickens"][:10]}
    many, few = (at.char_ngram_attribution(austen, dickens, mixed, n_boot=n)["mixed"] for n in (1000, 30))
    assert many["author_share"] == few["author_share"] and many["ci"] != few["ci"]


def test_typography_is_not_a_style_feature():
    assert at.normalise_typography("“Don’t—” she said…\n  _no_") == \
        at.normalise_typography('"Don\'t--" she said...  no')


def test_split_into_pieces_keeps_every_character():
    text = " ".join(f"w{i}" for i in range(1040))
    pieces = at.split_into_pieces(text, 300)
    assert "".join(pieces) == text
    assert [len(st.words(p)) for p in pieces] == [300, 300, 440]  # a short tail joins the last piece
    assert [len(st.words(p)) for p in at.split_into_pieces(text + " x" * 20, 300)] == [300] * 3 + [160]


# ------------------------------------------------------------ repetition and MATTR

def test_a_looped_sentence_is_flagged_as_repetitive():
    sentence = "The cat sat on the mat and looked at the door. "
    result = health.repetition(sentence * 20)
    assert result["distinct_1"] < 0.05 and result["distinct_2"] < 0.06
    assert result["repeated_4gram_share"] == 1.0
    assert result["longest_repeated_span_words"] == 19 * 11  # overlapping occurrences of the loop


def test_a_novel_passage_is_not_repetitive(books):
    result = health.repetition(passage(books["doyle"], 10_000, 2000))
    assert result["distinct_2"] > 0.8
    assert result["repeated_4gram_share"] < 0.05
    assert result["longest_repeated_span_words"] < 10


def test_repetition_finds_a_repeated_span_of_known_length():
    a = " ".join(f"a{i}" for i in range(40))
    echoed = " ".join(f"e{i}" for i in range(13))
    text = f"{echoed} {a} {echoed} b1 b2"
    assert health.repetition(text)["longest_repeated_span_words"] == 13


def test_mattr_known_values():
    assert st.mattr(["the"] * 2000, window=500) == pytest.approx(1 / 500)
    assert st.mattr([f"w{i}" for i in range(2000)], window=500) == 1.0
    assert st.mattr(["a", "a", "b"], window=2) == pytest.approx((1 / 2 + 1) / 2)
    assert st.mattr(["a", "a", "b", "c"], window=10) == pytest.approx(3 / 4)  # short: plain TTR


def test_profile_says_when_mattr_falls_back_to_ttr():
    short = st.style_profile("One two two three.")
    assert short["mattr"] == pytest.approx(3 / 4) and short["mattr_method"].startswith("ttr")
    assert st.style_profile(" ".join(["word"] * 600) + ".", window=500)["mattr_method"] == "mattr"


# ------------------------------------------------------------ memorisation

def test_memorisation_of_an_identical_text_is_total(books):
    text = passage(books["wells"], 0, 1500)
    result = health.memorisation(text, text)
    assert result["longest_overlap_words"] == 1500 and result["copied_ngram_share"] == 1.0


def test_a_copied_passage_is_found_with_its_exact_length(books):
    training = passage(books["dickens"], 0, 100_000)
    copied = passage(books["dickens"], 40_000, 137)
    text = (passage(books["doyle"], 5000, 1500) + " " + copied + " "
            + passage(books["doyle"], 8000, 1500))
    start = time.perf_counter()
    result = health.memorisation(text, training)
    elapsed = time.perf_counter() - start
    assert result["longest_overlap_words"] == 137
    # the copy's 130 8-grams, and perhaps a stock phrase or two
    assert 130 / 3130 <= result["copied_ngram_share"] < 135 / 3130
    assert elapsed < 3.0, elapsed  # 100k-word training text


def test_unrelated_text_shares_almost_nothing(books):
    result = health.memorisation(passage(books["doyle"], 0, 3000), passage(books["austen"], 0, 30_000))
    assert result["copied_ngram_share"] < 0.005 and result["longest_overlap_words"] < 8


# ------------------------------------------------------------ dialogue and punctuation

@pytest.mark.parametrize("speech", [
    "“I don’t know what o’clock it is. Come along, the Smiths’ carriage waits!”",
    '"I don\'t know what o\'clock it is. Come along, the Smiths\' carriage waits!"',
    "'I don't know what o'clock it is. Come along, the Smiths' carriage waits!'",
    "‘I don’t know what o’clock it is. Come along, the Smiths’ carriage waits!’",
])
def test_dialogue_share_of_pure_speech_is_one(speech):
    assert st.dialogue_share(speech) == 1.0


def test_dialogue_share_of_narration_is_zero():
    text = ("The Smiths’ house stood at the end of the lane. It was five o’clock, and nobody "
            "came; the dogs' kennels were empty and 'twas quiet.")
    assert st.dialogue_share(text) == 0.0


@pytest.mark.parametrize("open_, close, apostrophe", [("'", "'", "'"), ("‘", "’", "’")])
def test_single_quote_dialogue_with_apostrophes_inside(open_, close, apostrophe):
    a = apostrophe
    text = (f"{open_}I don{a}t care about the Smiths{a} dog,{close} she said. "
            f"{open_}It{a}s five o{a}clock.{close}")
    # 7 + 3 spoken words, 2 in the tag
    assert st.dialogue_share(text) == pytest.approx(10 / 12)


def test_single_quote_closed_after_a_letter_and_a_speech_over_two_paragraphs():
    assert st.dialogue_share("'Yes' she said.") == pytest.approx(1 / 3)
    text = "“We went out. It was dark.\n\n“Nothing was there.”\n\nHe stopped."
    assert st.dialogue_share(text) == pytest.approx(9 / 11)


def test_dialogue_share_of_real_novels_is_plausible(books):
    shares = {name: st.dialogue_share(passage(text, 30_000, 5000)) for name, text in books.items()}
    assert 0.3 < shares["austen"] < 0.7   # curly “ ”
    assert 0.15 < shares["dickens"] < 0.5  # straight single quotes among apostrophes
    assert shares["wells"] < 0.1           # a narrated book


def test_punctuation_rates_per_thousand_words():
    text = ("“Well,” he said; “no: never!” Why? Wait... or--wait… – fine. ") * 10  # 10 words each
    rates = st.punctuation_per_1000_words(text)
    per = 1000 / 100 * 10
    assert rates[","] == pytest.approx(per) and rates[";"] == pytest.approx(per)
    assert rates[":"] == pytest.approx(per) and rates["!"] == pytest.approx(per)
    assert rates["?"] == pytest.approx(per) and rates["–"] == pytest.approx(per)
    assert rates["—"] == pytest.approx(per) and rates["…"] == pytest.approx(2 * per)
    assert rates["."] == pytest.approx(per) and rates["quotes"] == pytest.approx(4 * per)


def test_style_profile_fields(books):
    profile = st.style_profile(passage(books["austen"], 30_000, 2000))
    assert profile["words"] == 2000
    assert profile["mean_sentence_length"] == pytest.approx(np.mean(profile["sentence_lengths"]))
    assert 10 < profile["mean_sentence_length"] < 40
    assert 0.4 < profile["mattr"] < 0.7 and profile["mattr_method"] == "mattr"
    assert set(profile["punctuation_per_1000_words"]) == {",", ";", ":", "!", "?", ".", "—", "–",
                                                          "…", "quotes"}
    with pytest.raises(ValueError):
        st.style_profile("“ — ”")


# ------------------------------------------------------------ endings

@pytest.mark.parametrize("text, clean", [
    ("He left the room.", True),
    ("“Go away!”  \n", True),
    ("'Is it you?'", True),
    ("She waited…", True),
    ("(As it happened.)", True),
    ("It was, said I.", True),
    ("He turned to Mr.", False),
    ("and then she", False),
    ("“Come here,”", False),
    ("", False),
])
def test_ends_cleanly(text, clean):
    assert health.ends_cleanly(text) is clean


SINGLE_QUOTES = (Path(__file__).parent / "data" / "single_quotes_sample.txt").read_text(encoding="utf-8")


def test_quotation_style_counts_openings_not_apostrophes():
    counts = opening_styles(SINGLE_QUOTES)
    assert counts["straight single"] == 9 and sum(counts.values()) == 9   # You'll, I've, Dad's... are not


@pytest.mark.parametrize("tuned, verdict", [
    (['"Come in," she said. "Shut the door."', '"Tea?" he asked. "Or the other thing?"'], "WRONG MARKS"),
    (["'Come in,' she said. 'Shut the door.'", "'Tea?' he asked. 'Or the other thing?'"], "ok"),
    (["She came in and shut the door."], "too few"),
])
def test_a_tuned_model_writing_the_other_quotation_marks_is_flagged(tuned, verdict):
    pools = {"base": ['"Hello," he said.'], "tuned": tuned, "author": [SINGLE_QUOTES]}
    out = style_report.quotation_style(SINGLE_QUOTES, pools)
    assert out["author_style"] == "straight single"
    assert out["verdict"].startswith(verdict)
    assert out["share"]["author"] == 1.0 and out["share"]["base"] == 0.0


def test_the_books_cast_does_not_count_as_its_voice(books):
    """Dickens with Austen's names put in is no closer to Austen than Dickens: proper
    names stay out of the MFW (a tuned model learns the cast; that is not the voice)."""
    names = at.proper_names(books["austen"])
    assert {"elizabeth", "darcy", "bennet", "bingley", "london"} <= names
    assert not {"i", "i'm", "the", "she", "her", "said", "very"} & names
    reference = passage(books["austen"], 0, 80_000)
    dickens = passage(books["dickens"], 50_000, 5000)
    cast = dickens
    for theirs, ours in {"Oliver": "Elizabeth", "Bumble": "Darcy", "Fagin": "Bingley", "Sikes": "Wickham",
                         "Nancy": "Jane", "Mr.": "Mrs."}.items():
        cast = cast.replace(theirs, ours)
    assert cast != dickens
    others = {"doyle": passage(books["doyle"], 20_000, 5000), "wells": passage(books["wells"], 20_000, 5000),
              "austen": passage(books["austen"], 90_000, 5000)}
    plain = at.cosine_delta(reference, {"dickens": dickens}, background=others)["dickens"]["delta"]
    named = at.cosine_delta(reference, {"dickens": cast}, background=others)["dickens"]["delta"]
    assert named == pytest.approx(plain, abs=1e-12)      # with the names among the MFW: 1.310 vs 1.354


def test_the_paired_difference_sees_what_two_overlapping_intervals_hide():
    """tuned and base continue the same prompts: the i-th labels of each belong together.
    Tuned is labelled the author's on 6 of 20 prompts more than base and never less, so
    the paired interval of the difference excludes 0, while the two share intervals
    (0.30 and 0.60 on 20 texts) overlap; shuffling one side breaks the pairing and the
    verdict goes back to 'same'. Unequal lists are refused."""
    from styletune.eval.report import compare, paired_verdict
    base = [1] * 6 + [0] * 14
    tuned = [1] * 12 + [0] * 8
    shares = {name: at._share_with_ci(x, seed=0, n_boot=1000) for name, x in (("base", base), ("tuned", tuned))}
    assert compare(shares["tuned"]["ci"], shares["base"]["ci"], higher_is_better=True).startswith("same")
    paired = at.paired_share_difference(tuned, base)
    assert paired["difference"] == pytest.approx(0.30) and paired["ci"][0] > 0 and paired["n"] == 20
    assert paired_verdict(paired["ci"]) == "tuned better"
    assert paired_verdict(at.paired_share_difference(base, tuned)["ci"]) == "tuned worse"
    swapped = [0] * 6 + [1] * 12 + [0] * 2  # 12 of 20 again, none on base's six
    assert paired_verdict(at.paired_share_difference(swapped, base)["ci"]).startswith("same")
    with pytest.raises(ValueError, match="same prompts"):
        at.paired_share_difference(tuned, base[:-1])
