"""Where a writer pauses: the kinds of place a prompt can stop, found in the author's
text. Stage 4 measures the joins there (eval/joins.py) and stage 1 drills them
(data/drills.py), from the same patterns."""
import re

from styletune.text.paragraphs import paragraph_spans

# Where a prompt can stop, by kind: a pattern whose match ends where the prompt ends,
# in the author's text (a validation completion). Sentence ends come from the
# sentence splitter instead (prompts.validation_prompts), as training's cuts do.
STOPS = {
    "after a comma": r",(?= \S)",
    "after a dash": r"(?<=\w)[—–](?=\S)",
    "after an opening quote": r"(?:(?<=\s)|^)[“‘\"](?=\w)",
    # two letters before the end of a word of seven or more ("everythi|ng"), the
    # letters typed not a word of the text themselves (stops()):
    "mid-word": r"\b[^\W\d_]{5,}(?=[^\W\d_]{2}\b)",
}
# The other kind, where the writer pressed Enter (and Tab, if they indent) and paused:
# the start of every paragraph but the first (paragraphs.paragraph_spans), whichever
# layout the text has: a blank line between paragraphs, one per line, hard-wrapped.
AFTER_PARAGRAPH_BREAK = "after a paragraph break"
KINDS = (*STOPS, AFTER_PARAGRAPH_BREAK)
# A sentence's end (the splitter's), and the kinds measured (stage 4) and drilled (stage 1)
# with the space the writer typed before pausing: now a word must come first.
SENTENCE_END = "sentence end"
TYPED_SPACE = {SENTENCE_END: "sentence end, space typed", "after a comma": "after a comma, space typed"}


def words_of(texts) -> set[str]:
    """Every word of the texts, lower-cased: what counts as a whole word for stops()."""
    return {w.lower() for t in texts for w in re.findall(r"[^\W\d_]+", t)}


def stops(text: str, kind: str, vocabulary: set[str] = frozenset()) -> list[int]:
    """The offsets in `text` where a prompt of this kind would end. A mid-word stop
    whose letters are also a whole word ("respectful" of "respectfully"), of this
    text or of `vocabulary` (the book's words), is left out: there the writer may as
    well have finished a word, and a space is no fault."""
    if kind == AFTER_PARAGRAPH_BREAK:
        return [a for a, _ in paragraph_spans(text) if text[:a].strip()]
    found = [m.end() for m in re.finditer(STOPS[kind], text)]
    if kind != "mid-word":
        return found
    words = words_of([text]) | set(vocabulary)
    return [p for p in found if re.search(r"[^\W\d_]+$", text[:p]).group().lower() not in words]
