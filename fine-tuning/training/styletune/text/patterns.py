"""The shapes of a manuscript's text that every stage reads the same way: what may
close a sentence, a page-number line, a scene-break line. Stage 0 (data/manuscript),
the seam scorer and splitter (data/seams), stage 1's cuts (text/sentences) and the
style metrics (eval/stylometry) all take them from here, so they cannot drift apart."""
import re

# What may follow a sentence's final . ! ? …: closing quotes and brackets, and the
# * or _ that close an italic or bold span in Markdown.
CLOSERS = r"['\"’”)\]*_]"
# Text (stripped) that ends on a sentence end: "cold." / "Stop!”" / "_Finis._"
ENDS_SENTENCE = re.compile(rf"[.!?…]{CLOSERS}*$")
# The same end with its whole run of marks captured ("?!", "..."), for the guards
# that ask whether the word before it is a title or an abbreviation.
FINAL_PUNCTUATION = re.compile(rf"([.!?…]+){CLOSERS}*$")
# A word, for the word counts the reports show: letters and digits with inner
# apostrophes ("didn’t" is one word; "time—and" is two).
WORD = re.compile(r"[\w’']+")
# A line that is only a page number: "12)", "[12]".
PAGE_MARKER = re.compile(r"^\[?\d{1,4}[)\]]$")
# A scene-break line: one to seven groups of up to three marks, no letters or
# digits ("* * *", "#", "~", "§", "***", "— — —").
SCENE_GLYPHS = re.compile(r"^[^\w\s]{1,3}(\s*[^\w\s]{1,3}){0,6}$")


def word_count(text: str) -> int:
    return len(WORD.findall(text))


def is_page_marker(line: str) -> bool:
    return bool(PAGE_MARKER.match(line.strip()))


def is_scene_break(line: str) -> bool:
    return bool(SCENE_GLYPHS.match(line.strip()))
