"""How much a paragraph boundary reads like a scene change: one model for stage 0
and the splitter, learned from where novelists put chapter breaks and scene-break
marks.

Every paragraph start is a candidate. Its features are numbers about the text on
both sides of it, nothing about where it lies in the book:
- typography: an opening word in capitals, a paragraph in capitals only;
- a time or place phrase opening the next paragraph ("That night", "At the station");
- who is named: the people named in the paragraphs just before and just after
  (how much the two sets differ, how many after are new to the last ~500 words);
- dialogue and narration: the previous paragraph a line of speech, the next one
  speech (a new exchange when narration came before) or narration again;
- lexical cohesion: TextTiling depth (content words, stop words out, crude stems,
  blocks of 8 and 20 sentences either side) and the dissimilarity of the ~400 words
  either side, each relative to its neighbourhood;
- point of view changing (first <-> third person), a first word pointing back
  ("He", "But", "This"), the paragraph lengths around the boundary (a long
  opening paragraph sets a scene), a short last sentence before it.
Distance from the last cut is the chunker's (seams.plan's length cost), not a feature.

The weights are a logistic regression (`train`, numpy Newton steps, L2) on seams
labelled in the public-domain novels of data/corpus/ (`labelled_novel`: headings
and scene-break lines removed, then asked whether a seam was there). They ship in
seam_model.json beside this file; `fine-tuning/training/train_seam_model.py`
rewrites that file from the corpus, byte for byte the same.
"""
import json
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from styletune.text.paragraphs import indent_before, paragraph_spans
from styletune.text.patterns import CLOSERS, blank_lines_mark, is_blank_lines_mark, is_page_marker, is_scene_break
from styletune.text.quotes import quote_depths, quoted_spans
from styletune.text.sentences import Tier, paragraph_sentences

MODEL_FILE = Path(__file__).with_name("seam_model.json")
LEXICAL_WINDOW_WORDS = 400
NAME_WINDOW_WORDS = 500
TILING_SENTENCES = (8, 20)      # TextTiling block sizes, in sentences either side
FEATURES = ("tiling_short", "tiling_long", "lexical", "time", "place", "pov", "caps_opening",
            "heading_like", "opening_length", "closing_length", "next_length", "previous_length",
            "closing_sentence_short", "ends_dialogue",
            "opens_dialogue", "opens_exchange", "narration_restart", "anaphoric_opening",
            "names_change", "names_new")

_STOP = set("""a about above after again against all am an and any are as at be because been
before being below between both but by can could did do does doing down during each few for
from further had has have having he her here hers herself him himself his how i if in into is
it its itself just me more most my myself no nor not now of off on once only or other our ours
out over own same she should so some such than that the their theirs them themselves then there
these they this those through to too under until up very was we were what when where which
while who whom why will with would you your yours yourself said says one upon into shall may
might must us ye thee thou thy mr mrs miss dr sir""".split())
_WORD = re.compile(r"[a-z][a-z’']+")
_TIME = re.compile(
    r"^\W*(?:\w+\W+){0,5}?(that|the next|next|the following|this|one|each|every|early|late|"
    r"later|by|at|on|in|towards?|during|until|till|about|some|a few|several|two|three|four|"
    r"five|ten|many)?\W*(morning|evening|night|afternoon|day|days|week|weeks|month|months|year|"
    r"years|hour|hours|minutes|dawn|daybreak|dusk|sunset|sunrise|noon|midnight|twilight|"
    r"autumn|winter|spring|summer|sunday|monday|tuesday|wednesday|thursday|friday|saturday|"
    r"january|february|march|april|may|june|july|august|september|october|november|december|"
    r"o’clock|o'clock|time)\b", re.IGNORECASE)
_TIME_WORDS = re.compile(r"^\W*(meanwhile|afterwards|later|next day|the next|that night|"
                         r"that evening|that morning|the following|time ran on|it was (?:late|"
                         r"early|nearly|past|not until)|nearly a|a (?:week|month|year|fortnight)|"
                         r"some (?:days|weeks|months|years|time)|(?:when|after) (?:i|we|he|she|they) "
                         r"(?:had|got|reached|returned|came|awoke|woke))", re.IGNORECASE)
# "When I had got so far in my list...", "After he had read it through...": a clause
# in the past perfect whose verb is reading or writing the block just shown looks
# back at it, so after a display block (the list, the letter) the scene goes on;
# "When we had reached Whitby", "After we had breakfasted" still open a new one.
_LOOKS_BACK = re.compile(r"^\W*(?:when|after) (?:i|we|he|she|they) had (?:got so far|come to the end|"
                         r"(?:re-?)?read|finished|written|copied|signed|sealed|deciphered|glanced|looked "
                         r"(?:at|over|through)|scanned|studied|perused)\b", re.IGNORECASE)
_PLACE = re.compile(r"^\W*(?:at|in|inside|outside|back at|back in|on board|aboard|across|"
                    r"beyond)\s+(?:the|a|an|his|her|their|my|our)?\s*[A-Za-z’']+", re.IGNORECASE)
# "THE papers", "I CONFESS", "A FORTNIGHT later", "MR. UTTERSON the lawyer"
_CAPS_OPENING = re.compile(r"^(?:[A-Z][A-Z’']+|[AI]\s+[A-Z][A-Z’']+)(?:[.,]?\s+[A-Z][A-Z’'.]+)*[.,]?\s+[a-z]")
_OPENS_QUOTE = re.compile(r"^[\"“‘'_]*[\"“‘']")
# A paragraph that ends so may be followed by a cut: a sentence end, a speech broken
# off ("Wait—”) or a closing quote after a speech without final punctuation.
_PARAGRAPH_MAY_END = re.compile(rf"[.!?…]{CLOSERS}*$|[—–-]['\"’”]$|[’”\"]$")
# The paragraph before a seam ends with a question, or with a closing quote.
_ENDS_QUESTION = re.compile(rf"\?{CLOSERS}*$")
_ENDS_QUOTE = re.compile(r"['\"’”]$")
# A paragraph that introduces what follows: it ends with a colon or a dash, not inside
# a quotation ('said:--', 'a single word--', 'headlines:').
_INTRODUCES = re.compile(r"(?::|:?(?:--+|—+|–))\s*$")
# A paragraph ends in speech when its last quotation closes this near its end ('"With
# an actress," said Dorian Gray, blushing.'); the next replies when it quotes someone
# this soon ('He shook his head. "To-night she is Imogen,"').
SPEECH_TAIL_CHARS = 60
REPLY_WITHIN_CHARS = 200
# A first word that points back at the last paragraph: a continuation, not a start.
_ANAPHORIC = re.compile(r"^\W*(?:he|she|it|they|him|her|his|its|their|this|these|those|that|"
                        r"such|but|and|yet|so|or|nor|then|there|here|thus|still|however|"
                        r"again|also|besides|moreover|nevertheless|presently)\b(?!\s+(?:was|is)\s+"
                        r"(?:on|in|at|the|a|not|while|late|early|nearly|past)\b)", re.IGNORECASE)
# A paragraph in capitals only: a chapter title or summary left in the text.
_HEADING_LIKE = re.compile(r"^[^a-z]{3,400}$")
# One line in italics, short: a dateline or a document's heading in an epistolary
# novel (_"The Westminster Gazette," 25 September._), not a line of speech (one
# italic quotation, _"Go!"_, is one).
_ITALIC_LINE = re.compile(r"^_(?![\"“][^\"”]*[\"”]_)[^_\n]{1,120}_[.:]?$")
# A capitalised word that does not open a sentence: most often a name.
_NAME = re.compile(r"(?<![.!?\"“‘'—:]\s)(?<![.!?\"“‘'—:])(?<=\s)([A-Z][a-z’']{2,})")


@dataclass
class Candidate:
    """A place a chunk may start: a paragraph boundary (or, as a last resort, a
    sentence end inside one paragraph), its score and the reasons to show."""
    offset: int                 # the part after the cut starts here
    score: float
    signals: list = field(default_factory=list)
    inside_paragraph: bool = False
    features: dict = field(default_factory=dict)
    tier: Tier = Tier.CLEAN     # a sentence end's, when the cut is inside a paragraph
    mark: str = ""              # the scene-break mark before it ("* * *", "2 blank line(s)"), if any


def units(text):
    """Paragraphs that can start a part: (start, end, is_scene_break_glyph). A page
    number line ('12)') goes with the paragraph after it."""
    out, pending = [], None
    for a, b in paragraph_spans(text):
        para = text[a:b].strip()
        if is_page_marker(para):
            pending = pending if pending is not None else a
            continue
        out.append((pending if pending is not None else a, b, is_scene_break(para)))
        pending = None
    if pending is not None and out:
        out[-1] = (out[-1][0], len(text.rstrip()), out[-1][2])
    return out


# --- text measures ----------------------------------------------------------------

def _words(text):
    return [w for w in _WORD.findall(text.lower()) if w not in _STOP and len(w) > 2]


_SUFFIXES = ("ingly", "edly", "ement", "ments", "ment", "ness", "ings", "ing", "ies", "ied",
             "ers", "ed", "es", "er", "ly", "s")


def _stem(word):
    """Crude suffix stripping: 'watched', 'watching', 'watches' -> 'watch'."""
    word = word.replace("’", "'").split("'")[0]
    for suf in _SUFFIXES:
        if word.endswith(suf) and len(word) - len(suf) >= 3:
            return word[:-len(suf)]
    return word


def _cosine(a: Counter, b: Counter) -> float:
    if not a or not b:
        return 0.0
    dot = sum(v * b.get(k, 0) for k, v in a.items())
    return dot / math.sqrt(sum(v * v for v in a.values()) * sum(v * v for v in b.values()))


def _first_person_share(words):
    first = sum(w in ("i", "me", "my", "we", "our", "us") for w in words)
    third = sum(w in ("he", "she", "him", "her", "his", "they", "them") for w in words)
    return first / max(1, first + third)


def _depths(values):
    """TextTiling depth of each gap's dissimilarity: how far it stands above the
    lowest point on each side, climbing while the values fall."""
    out = []
    for i, v in enumerate(values):
        left = v
        for j in range(i - 1, -1, -1):
            if values[j] > left:
                break
            left = values[j]
        right = v
        for j in range(i + 1, len(values)):
            if values[j] > right:
                break
            right = values[j]
        out.append((v - left) + (v - right))
    return out


def _smooth(values, width=1):
    return [sum(values[max(0, i - width):i + width + 1]) / len(values[max(0, i - width):i + width + 1])
            for i in range(len(values))]


def _tiling(sent_stems, sent_of_para, size):
    """Dissimilarity (1 - cosine) of the `size` sentences before and after each
    paragraph boundary, smoothed, then its depth."""
    dis = []
    for i in range(1, len(sent_of_para)):
        k = sent_of_para[i]
        before = Counter(w for ws in sent_stems[max(0, k - size):k] for w in ws)
        after = Counter(w for ws in sent_stems[k:k + size] for w in ws)
        dis.append(1.0 - _cosine(before, after))
    return _depths(_smooth(dis))


def _local_ratio(values, i, width=6):
    """log of values[i] over the median of its neighbourhood (itself excluded)."""
    around = values[max(0, i - width):i] + values[i + 1:i + 1 + width]
    if not around:
        return 0.0
    med = sorted(around)[len(around) // 2]
    return math.log((values[i] + 1) / (med + 1))


def _window(lengths, i, words, forward):
    """Paragraph indices of about `words` words after (forward) or before boundary i."""
    total, j = 0, i
    if forward:
        while j < len(lengths) and (total < words or j == i):
            total += lengths[j]
            j += 1
        return range(i, j)
    while j > 0 and (total < words or j == i):
        j -= 1
        total += lengths[j]
    return range(j, i)


def _lexical(words_per, lengths, i):
    before = Counter(w for k in _window(lengths, i, LEXICAL_WINDOW_WORDS, False) for w in words_per[k])
    after = Counter(w for k in _window(lengths, i, LEXICAL_WINDOW_WORDS, True) for w in words_per[k])
    return 1.0 - _cosine(before, after)


def _names(names_per, lengths, i):
    """(names_change, names_new) at boundary i: how far the people named in the ~3
    paragraphs either side differ, and the share named after who were not named in
    the last NAME_WINDOW_WORDS words."""
    before = set().union(*(names_per[k] for k in range(max(0, i - 3), i)))
    after = set().union(*(names_per[k] for k in range(i, min(len(names_per), i + 3))))
    recent = set().union(*(names_per[k] for k in _window(lengths, i, NAME_WINDOW_WORDS, False)))
    change = 1 - len(before & after) / len(before | after) if before | after else 0.0
    new = len(after - recent) / len(after) if after else 0.0
    return change, new


# --- features and scores ----------------------------------------------------------

def boundary_features(text, paras=None, keep=()):
    """{paragraph index i: features} for every boundary before paragraph i where a
    part may start: not before a scene-break line (the cut goes after it), not
    before a lower-case word, not after a paragraph that stops mid-sentence;
    always at the paragraph starts in `keep` (offsets: a mark the writer made)."""
    paras = paras if paras is not None else units(text)
    ptexts = [text[a:b].strip() for a, b, _ in paras]
    words_per = [_words(t) for t in ptexts]
    raw_per = [re.findall(r"[a-z’']+", t.lower()) for t in ptexts]
    lengths = [len(w) for w in raw_per]
    names_per = [{n for n in _NAME.findall(". " + t) if n.lower() not in _STOP} for t in ptexts]
    sent_stems, sent_of_para, last_sentence_words = [], [], []
    for t in ptexts:
        sent_of_para.append(len(sent_stems))
        found = paragraph_sentences(t)
        sent_stems += [[_stem(w) for w in _words(s)] for s in found]
        last_sentence_words.append(len(found[-1].split()) if found else 0)
    tiling = {size: _tiling(sent_stems, sent_of_para, size) for size in TILING_SENTENCES}
    lexical = [_lexical(words_per, lengths, i) for i in range(1, len(paras))]
    dialogue = [bool(_OPENS_QUOTE.match(t)) for t in ptexts]
    out = {}
    for i in range(1, len(paras)):
        prev_text, para = ptexts[i - 1], ptexts[i]
        last_line = prev_text.rsplit("\n", 1)[-1].strip()
        signed = last_line.isupper() and len(last_line) < 40  # a letter's signature
        may_start = not paras[i][2] and not para[:1].islower() and (
            paras[i - 1][2] or signed or _PARAGRAPH_MAY_END.search(prev_text))
        if not may_start and paras[i][0] not in keep:
            continue
        local = lexical[max(0, i - 7):i + 6]
        opening = para[:80]
        time = bool(_TIME.search(opening[:60]) or _TIME_WORDS.search(opening))
        pov_b = _first_person_share([w for k in range(max(0, i - 4), i) for w in raw_per[k]])
        pov_a = _first_person_share([w for k in range(i, min(len(paras), i + 4)) for w in raw_per[k]])
        change, new = _names(names_per, lengths, i)
        out[i] = {
            "tiling_short": tiling[TILING_SENTENCES[0]][i - 1],
            "tiling_long": tiling[TILING_SENTENCES[1]][i - 1],
            # relative to the neighbourhood, so a general drift does not dominate
            "lexical": max(0.0, lexical[i - 1] - sorted(local)[len(local) // 2]),
            "time": float(time),
            "place": float(not time and bool(_PLACE.search(opening))),
            "pov": abs(pov_a - pov_b) if abs(pov_a - pov_b) > 0.5 else 0.0,
            "caps_opening": float(bool(_CAPS_OPENING.match(para) and not _CAPS_OPENING.match(prev_text))),
            "heading_like": float(bool(_HEADING_LIKE.match(para)) and any(c.isalpha() for c in para)
                                  and not _HEADING_LIKE.match(prev_text)),
            "opening_length": max(0.0, _local_ratio(lengths, i)),
            "closing_length": max(0.0, -_local_ratio(lengths, i - 1)),
            # a long opening paragraph sets a scene; a short last sentence closes one
            "next_length": math.log1p(lengths[i]),
            "previous_length": math.log1p(lengths[i - 1]),
            "closing_sentence_short": float(0 < last_sentence_words[i - 1] <= 8),
            "ends_dialogue": float(dialogue[i - 1]),
            "opens_dialogue": float(dialogue[i]),
            "opens_exchange": float(dialogue[i] and not dialogue[i - 1]),
            "narration_restart": float(dialogue[i - 1] and not dialogue[i]),
            "anaphoric_opening": float(bool(_ANAPHORIC.match(para))),
            "names_change": change,
            "names_new": new,
        }
        # a question and its answer, a speech and the reply: 1.7% of the seven novels'
        # seams, 53% of their other paragraph starts (the chunker's talk_penalty)
        italic_line = bool(_ITALIC_LINE.match(para))       # a dateline or a document's heading
        out[i]["opens_speech"] = float(dialogue[i] and not italic_line)
        out[i]["replies_soon"] = float(not italic_line and _quotes_within(para, REPLY_WITHIN_CHARS))
        out[i]["dialogue_runs_on"] = float(bool(dialogue_runs_on(out[i], prev_text)))
    return out


def dialogue_runs_on(features, previous) -> str:
    """Why a conversation seems to run on across a seam, '' when it does not: the
    paragraph after opens with a quotation that is no italic dateline (the features'
    opens_speech) and the one before (`previous`, its text) is a line of speech
    (ends_dialogue), ends with a question or a closing quote, or ends with a
    quotation still open; or the one before ends in a spoken question (a tag may
    follow), or in speech that the one after answers within REPLY_WITHIN_CHARS
    (replies_soon). The chunker docks talk_penalty there, and the review ranks a cut
    where this holds as its most doubtful."""
    prev = previous.strip()
    if features.get("opens_speech"):
        if _ENDS_QUESTION.search(prev):
            return "the dialogue runs on across it: a question before, a quotation after"
        if features.get("ends_dialogue") or _ENDS_QUOTE.search(prev):
            return "the dialogue runs on across it: a line of speech before, another after"
        depths = quote_depths(prev)[1]
        if depths and depths[-1] > 0:
            return "the dialogue runs on across it: a quotation still open before, a quotation after"
    # the reply may open with a gesture or a silence ("He shook his head.", "She did
    # not answer for some time"): 4.8% more of the seven novels' other paragraph starts,
    # 0.5% more of their seams (1.2% before)
    last = _last_speech(prev)
    if last is not None and _ENDS_QUESTION.search(last.rstrip()):
        return "the dialogue runs on across it: a question asked before, the answer or the silence after"
    if last is not None and features.get("replies_soon"):
        return "the dialogue runs on across it: a line of speech before, a reply after"
    return ""


def blank_lines_only_layout(mark: str, features, previous: str, after_display: bool = False,
                            following: str = "") -> str:
    """Why a run of blank lines alone reads as layout, not a scene break ('' when it
    does not): the paragraph before announces what follows (it ends with a colon or a
    dash: "the letter which I read to him----", "startled London with enormous
    headlines:"); or it is a display block set in from the margin (`after_display`:
    Scarlet's "RACHE." and Holmes's list, a letter's signature in Jekyll, Wilde's
    verse) and the text goes on after it, not under a title line of its own (Dracula's
    "_Dr. Seward's Diary._" after a telegram is a new document), or looks back at it
    ("When I had got so far in my list"); or the dialogue runs on across it (1.7% of
    the seven novels' seams, 53% of their other paragraph starts). Not where the
    paragraph after opens otherwise with a time or a place, as a new scene does. There
    the run scores as any paragraph start, so the chunker cuts a set-apart letter, list
    or headline from its scene only where the lengths leave no other place. A visible mark (* * *) always counts."""
    resumes = after_display and bool(_LOOKS_BACK.search(following)) and not _TIME.search(following[:60])
    if not is_blank_lines_mark(mark) or features.get("place") or (features.get("time") and not resumes):
        return ""       # a visible mark, or the next opens as a new scene does ("The next morning")
    if _INTRODUCES.search(previous.strip()):
        return "but the paragraph before announces what follows (it ends with a colon or a dash)"
    if resumes:
        return ("but the paragraph before is set in from the margin (a list, an inscription, verse, "
                f"a letter's close) and the text looks back at it ('{_time_phrase(following)}')")
    if after_display and not _title_line(following):
        return ("but the paragraph before is set in from the margin (a list, an inscription, verse, "
                "a letter's close) and the text goes on after it")
    runs_on = dialogue_runs_on(features, previous)
    return f"but {runs_on}" if runs_on else ""


# A title line: one line of at most this many words ("_Dr. Seward's Diary._",
# "_Varna to Whitby._"), as a new document or section opens in an epistolary novel.
_TITLE_WORDS = 8


def _title_line(paragraph: str) -> bool:
    shown = paragraph.strip()
    return "\n" not in shown and len(shown.split()) <= _TITLE_WORDS


def set_in_from_margin(text: str, start: int, end: int, usual: float) -> bool:
    """Every line of the paragraph text[start:end] is set in further than the text's
    paragraphs usually start (`usual`, their median indent_before) by two or more: a
    display block, as a printed copy sets a list, an inscription or verse."""
    lines = [line for line in text[text.rfind("\n", 0, start) + 1:end].split("\n") if line.strip()]
    return bool(lines) and min(len(line) - len(line.lstrip()) for line in lines) >= usual + 2


def _last_speech(paragraph: str) -> str | None:
    """The quotation a paragraph ends with (closing at most SPEECH_TAIL_CHARS before
    its end, a speech tag after it), or None."""
    spans = quoted_spans(paragraph)[0]
    if spans and spans[-1][1] >= len(paragraph) - SPEECH_TAIL_CHARS:
        return paragraph[spans[-1][0]:spans[-1][1]]
    return None


def _quotes_within(paragraph: str, chars: int) -> bool:
    spans = quoted_spans(paragraph)[0]
    return bool(spans) and spans[0][0] < chars


class SeamModel:
    """The logistic regression in seam_model.json: standardised features, weights,
    bias; and the chunker's settings tuned with it (length_weight, mark_score,
    seam_offset)."""

    def __init__(self, data):
        self.data = data
        self.features = data["features"]     # the file's own list (FEATURES when shipped)
        self.mean, self.scale = data["mean"], data["scale"]
        self.weights, self.bias = data["weights"], data["bias"]

    @classmethod
    def load(cls, path=MODEL_FILE):
        return cls(json.loads(Path(path).read_text(encoding="utf-8")))

    def seam_score(self, features) -> float:
        """What a cut here is worth to the chunker, no mark before it: the logit plus the
        tuned seam_offset, less talk_penalty where the dialogue runs on across it (the
        model's own weight for that is shrunk by its regularisation, and 1.7% of the
        novels' seams fall there against 53% of their other paragraph starts)."""
        return (self.logit(features) + self.data["seam_offset"]
                - self.data["talk_penalty"] * features["dialogue_runs_on"])

    def logit(self, features) -> float:
        return self.bias + sum(self.weights[k] * (features[k] - self.mean[k]) / self.scale[k]
                               for k in self.features)

    def probability(self, features) -> float:
        return 1 / (1 + math.exp(-self.logit(features)))

    def signals(self, features, para):
        """The features that speak for this seam most, in words, for the report."""
        said = {
            "time": f"time phrase ('{_time_phrase(para)}')",
            "place": f"new place ('{_place_phrase(para)}')",
            "caps_opening": "opens with a word in capitals (a chapter-opening habit)",
            "heading_like": "a line in capitals (a title left in the text)",
            "names_change": "other people named after it",
            "names_new": "someone new is named",
            "opens_exchange": "a line of dialogue opens a new exchange",
            "narration_restart": "narration resumes after dialogue",
            "pov": "point of view changes",
            "tiling_short": "vocabulary changes", "tiling_long": "vocabulary changes",
            "lexical": "vocabulary changes",
        }
        pushes = sorted(((self.weights[k] * (features[k] - self.mean[k]) / self.scale[k], k)
                         for k in said), reverse=True)
        out = list(dict.fromkeys(said[k] for push, k in pushes if push > 0.3))[:3]
        return out or ["paragraph boundary"]


def _time_phrase(para: str) -> str:
    """The words that made the time feature fire ('some time', 'night', 'The next
    day'), so the writer sees why, not only the paragraph's first words."""
    m = _TIME.search(para[:60])
    if m:
        return " ".join(w for w in (m.group(1), m.group(2)) if w)
    m = _TIME_WORDS.search(para[:80])
    return " ".join(m.group(0).split()).strip(" \"“‘'_") if m else " ".join(para.split()[:4]) + "..."


def _place_phrase(para: str) -> str:
    """The words that made the place feature fire ('At the house')."""
    m = _PLACE.search(para[:80])
    return " ".join(m.group(0).split()) if m else " ".join(para.split()[:4]) + "..."


_MODEL = None


def model() -> SeamModel:
    global _MODEL
    if _MODEL is None:
        _MODEL = SeamModel.load()
    return _MODEL


def candidates(text, marks=None, seam_model=None):
    """Every paragraph boundary where a part may start, scored: a boundary after a
    scene-break mark gets the model's mark_score; any other, its seam logit plus
    its seam_score. `marks` ({offset: mark}) names the marks when the caller
    has found them (stage 0's structure); otherwise a scene-break line, or more
    blank lines than the text's usual paragraph gap, is one."""
    m = seam_model or model()
    paras = units(text)
    if len(paras) < 2:
        return []
    feats = boundary_features(text, paras, keep=set(marks or ()))
    if marks is None:
        gaps = sorted(text.count("\n", paras[i - 1][1], paras[i][0]) for i in range(1, len(paras)))
        scene_gap = gaps[len(gaps) // 2] + 1
        marks = {}
        for i in range(1, len(paras)):
            gap = text.count("\n", paras[i - 1][1], paras[i][0])
            if paras[i - 1][2]:
                marks[paras[i][0]] = f"'{text[paras[i - 1][0]:paras[i - 1][1]].strip()}'"
            elif gap >= scene_gap + 1:
                marks[paras[i][0]] = blank_lines_mark(gap - 1)
    usual = sorted(indent_before(text, a) for a, _, _ in paras)[len(paras) // 2]
    out = []
    for i, f in feats.items():
        a = paras[i][0]
        para = text[a:paras[i][1]].strip()
        layout = a in marks and blank_lines_only_layout(
            marks[a], f, text[paras[i - 1][0]:paras[i - 1][1]],
            after_display=set_in_from_margin(text, *paras[i - 1][:2], usual), following=para)
        if layout:      # the review lists it as a mark left uncut, with the reason
            out.append(Candidate(a, m.seam_score(f), [f"scene break {marks[a]}", layout], features=f,
                                 mark=marks[a]))
        elif a in marks:
            out.append(Candidate(a, m.data["mark_score"], [f"scene break {marks[a]}"], features=f,
                                 mark=marks[a]))
        else:
            out.append(Candidate(a, m.seam_score(f), m.signals(f, para), features=f))
    return out
