"""Joins: how a continuation meets the writer's text once the editor inserts it.

A join is right when the first character the editor adds is of the kind the
author's own text has there: a space after a word or a comma, a space or a new
paragraph after a sentence end; a letter mid-word (the rest of the word: "machi"
+ "-" or "," is no join); a letter or a mark after an opening quote, and after a
space or a paragraph break the writer typed. What the editor adds is the model's text
as the server returned it (`editor_insert`): stage 5 turns Continue's `transform` off,
and with it Continue's postprocessing, so a space after the one the writer typed is
inserted too, a doubled space, and counts as no join.
"""
import re

from styletune.text.stops import AFTER_PARAGRAPH_BREAK, SENTENCE_END, TYPED_SPACE

# The writer's own prompt (prompts.SEED_PROMPT): as it stands, with a space typed, and
# after the chat route's system message.
SEED, SEED_TYPED, SEED_CHAT = "seed", "seed, space typed", "seed, chat"
# The Joins table's rows, in order.
ROWS = (SENTENCE_END, TYPED_SPACE[SENTENCE_END], "after a comma", TYPED_SPACE["after a comma"],
        "after a dash", "after an opening quote", "mid-word", AFTER_PARAGRAPH_BREAK,
        SEED, SEED_TYPED, SEED_CHAT)


def char_class(text: str) -> str:
    """"text", "space" or "newline" for the first character; "" for none."""
    if not text:
        return ""
    return "newline" if text[0] in "\r\n" else "space" if text[0].isspace() else "text"


def editor_insert(completion: str) -> str:
    """What Continue's autocomplete inserts, with `transform: false` (stage 5's
    AUTOCOMPLETE_OPTIONS): the completion as the server returned it. Continue then
    skips postprocessCompletion (core/autocomplete/CompletionProvider.ts at the commit
    tests/support/continue_port.py pins), so no leading space is dropped after a typed
    one. A completion of whitespace alone shows the writer nothing: "" here."""
    return completion if completion.strip() else ""


def ends_sentence(prompt: str) -> bool:
    """Whether the prompt stops at a sentence end (closing quotes and brackets allowed)."""
    return bool(re.search(r"[.!?…][”’\"')\]]*$", prompt))


def inside_word(prompt: str, truth: str) -> bool:
    """Whether the prompt stops inside one of the author's words: a letter on both sides."""
    return prompt[-1:].isalpha() and truth[:1].isalpha()


def joins_right(shown: str, truth: str, prompt: str = "") -> bool:
    """Whether what the editor shows begins as the author's text does: inside a word,
    a letter (the word goes on); a letter or mark where the author has one; where the
    author has whitespace, a space, or a new paragraph when the prompt stops at a
    sentence end (after "said," a line break is no join)."""
    if inside_word(prompt, truth):
        return shown[:1].isalpha()
    got, want = char_class(shown), char_class(truth)
    if want == "text" or not got:
        return got == "text"
    return got == "space" or (got == "newline" and ends_sentence(prompt))


def token_classes(token_texts: list[str], special: set[int]) -> dict:
    """char_class of every vocabulary entry as the editor shows it first ("raw": as
    written, a leading space included, since the editor inserts it as it is), and
    which entries open with a letter ("letter", what goes on inside a word). Special
    tokens get "" and no letter (the continuation would be empty)."""
    import numpy as np
    raw = [("" if i in special else char_class(t)) for i, t in enumerate(token_texts)]
    letter = [i not in special and t[:1].isalpha() for i, t in enumerate(token_texts)]
    return {"raw": np.array(raw), "letter": np.array(letter)}


def right_first_tokens(classes: dict, prompt: str, truth: str):
    """Boolean mask over the vocabulary: the first tokens that join right here."""
    if inside_word(prompt, truth):
        return classes["letter"]
    shown = classes["raw"]
    if char_class(truth) == "text":
        return shown == "text"
    return (shown == "space") | ((shown == "newline") & ends_sentence(prompt))
