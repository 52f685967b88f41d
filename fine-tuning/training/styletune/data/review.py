"""Stage 0's review: the cuts the writer should look at, and their answers.

The review lists the cuts made where the book has no mark (the seam model's
choices), the cuts made at a run of blank lines alone (no `* * *` or other visible
mark: often a scene break, sometimes only layout, as in a Gutenberg file) and the
scene-break marks left uncut, most doubtful first: each with an
id, ~150 words either side, the chunk lengths either side, the signals, and the
nearest alternative places, each one `--decide` away.

Each entry's id stands for what its review showed (the place, cut or not, the
alternatives; assign_ids): a recut that changes an entry gives it a new id, and
segment_review.json keeps the entries gone from the review under "earlier", so an
answer read off an older review means what that review showed.

The writer's answers live in a decisions file (segment_decisions.json beside the
chunks), one per seam, keyed by the words around it, not by position, so an edit
elsewhere in the manuscript keeps them:
  keep  the tool's choice stands (a cut stays; a mark stays uncut)
  drop  no cut here (a seam of the review, or `at` "the paragraph starting ...")
  cut   a cut here (a mark the tool left uncut, or `at` "the paragraph starting ...")
  move  no cut here; a cut at `to` (an alternative)
  whole a chunk starts at `at` and runs to `to` (the next chunk's first words) or,
        without `to`, to your next cut or the chapter's end
Stage 0 turns them into cuts it must make and places it must not cut
(`constraints`), and chooses every other cut around them.
"""
import json
import re
from dataclasses import dataclass, field

from styletune import paths
from styletune.data.seam_model import Candidate, dialogue_runs_on, model, units
from styletune.data.seams import as_typed, paragraphs_starting, places_between, squash
from styletune.errors import InputError
from styletune.text.patterns import is_blank_lines_mark

KEY_WORDS = 12          # words either side that identify a seam
CONTEXT_WORDS = 150     # words either side shown to the writer
ACTIONS = ("keep", "drop", "cut", "move", "whole")


def seam_key(body, offset) -> dict:
    return {"before": " ".join(_words_beside(body, offset, -KEY_WORDS)),
            "after": " ".join(_words_beside(body, offset, KEY_WORDS))}


def _words_beside(body, offset, n) -> list[str]:
    """The |n| words before `offset` (n < 0) or after it, read from a window that widens
    until it holds one word more than asked (so a word the window cut is never one of
    them), not from the whole book: a review asks for hundreds of keys."""
    span = 40 * abs(n)
    while True:
        lo, hi = (max(0, offset - span), offset) if n < 0 else (offset, min(len(body), offset + span))
        words = body[lo:hi].split()
        if len(words) > abs(n) or (lo == 0 if n < 0 else hi == len(body)):
            return words[n:] if n < 0 else words[:n]
        span *= 4


def find_seam(body, key, starts) -> int | None:
    """The paragraph start whose surrounding words are `key`'s (None: no longer in the text)."""
    hits = [a for a in starts if squash(body[a:a + 20 * KEY_WORDS]).startswith(key["after"])
            and squash(body[max(0, a - 20 * KEY_WORDS):a]).endswith(key["before"])]
    return hits[0] if len(hits) == 1 else None


def find_opening(body, opening, gone_ok=False) -> int | None:
    """The one paragraph start whose first words are `opening` (seams.paragraphs_starting);
    None when none does and `gone_ok` (a recorded answer whose words were edited away)."""
    hits = paragraphs_starting(body, opening) if as_typed(opening) else []
    if not hits and gone_ok:
        return None
    if len(hits) != 1:
        raise InputError(f"decision {opening!r}: {len(hits)} paragraphs of the manuscript begin so; "
                         "give the first words of exactly one paragraph (add words until only one "
                         "matches; they may run on into the paragraph after it)")
    return hits[0]


@dataclass
class Constraints:
    forced: set
    forbidden: set
    extra: list          # [Candidate] for forced places the model does not score
    stale: list          # decisions whose words are no longer in the manuscript
    clashes: list = field(default_factory=list)  # one answer cuts, another says no cut: the cut wins
    # offset -> the answer that says no cut there (a drop, a keep of no cut, a whole)
    uncut_by: dict = field(default_factory=dict)


def read_decisions(path) -> list:
    if path is None or not path.exists():
        return []
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        decisions = data["decisions"]
        assert isinstance(decisions, list) and all(d.get("action") in ACTIONS for d in decisions)
    except (ValueError, KeyError, AssertionError, AttributeError) as err:
        raise InputError(f"{paths.shown(path)}: not a decisions file ({err or 'bad action'}): each entry "
                         f"needs an action among {', '.join(ACTIONS)}; fix or delete it") from None
    return decisions


def constraints(body, decisions, barriers=(), fresh=()) -> Constraints:
    """The decisions as offsets in `body`: cuts to make, places never to cut.
    `barriers`: where chunks start whatever the decisions (chapter openings); `fresh`:
    this run's answers, whose words must be found (a recorded one may have been
    edited away: not applied, and said so)."""
    starts = [a for a, _, _ in units(body)]
    out = Constraints(set(), set(), [], [])
    wholes = []
    for d in decisions:
        if "seam" in d:
            at = find_seam(body, d["seam"], starts)
        else:                                   # "cut:/drop:First words of a paragraph"
            at = find_opening(body, d["at"], gone_ok=d not in fresh)
        to = d.get("to")
        if isinstance(to, dict):
            to = find_seam(body, to, starts)
        elif to is not None:
            to = find_opening(body, to, gone_ok=d not in fresh)
        if at is None or (d["action"] in ("move", "whole") and "to" in d and to is None):
            out.stale.append(d)
            continue
        if d["action"] in ("keep", "drop", "move") and not (d["action"] == "keep" and d.get("was_cut")):
            out.uncut_by[at] = d
        if d["action"] == "keep":
            (out.forced if d.get("was_cut") else out.forbidden).add(at)
        elif d["action"] == "drop":
            out.forbidden.add(at)
        elif d["action"] == "cut":
            out.forced.add(at)
        elif d["action"] == "whole":            # `to`, when given: where the next chunk starts
            out.forced.update(o for o in (at, to) if o is not None)
            wholes.append((at, to, d))
        else:                                   # move
            out.forbidden.add(at)
            out.forced.add(to)
    for at, to, d in wholes:                    # no cut to `to`, or until the next one that must be
        ends = [to] if to is not None else [o for o in out.forced if o > at]
        until = min([o for o in [*ends, *barriers] if o > at] + [len(body)])
        inside = [o for o in starts if at < o < until]
        out.forbidden.update(inside)
        out.uncut_by.update((o, d) for o in inside if o not in out.uncut_by)
    out.clashes = sorted(out.forced & out.forbidden)
    out.forbidden -= out.forced
    out.extra = [Candidate(a, 0.0, ["your cut (decisions file)"]) for a in sorted(out.forced)]
    return out


# --- the review --------------------------------------------------------------------------

def blank_line_cut(body, seam, paragraphs) -> tuple[float, list, str]:
    """A cut at blank lines alone, judged as the text reads without them: the seam
    model's score for the place, the signals shown, and why the dialogue runs on
    across it ('' when it does not). `paragraphs`: units(body)'s (start, end) spans."""
    para = next(body[s:e] for s, e in paragraphs if s == seam.offset)   # seams start paragraphs
    runs_on = dialogue_runs_on(seam.features, _paragraph_before(body, seam.offset, paragraphs))
    said = model().signals(seam.features, para)
    signals = ([f"scene break {seam.mark} (no visible mark)"] + ([runs_on] if runs_on else [])
               + (["the text alone shows no other sign of a scene change"]
                  if said == ["paragraph boundary"] else ["the text: " + ", ".join(said)]))
    return model().seam_score(seam.features), signals, runs_on


def review_entries(body, seams, chunks, measure, lengths, decided=(), known_ids=None):
    """[entry dict] for every cut the model chose, every cut made at a run of blank
    lines alone (no visible mark: a guess too, many a blank line is only layout) and
    every mark left uncut, most doubtful first. `seams`: plan_chunks' (Candidate,
    places, chapter span); `decided`: offsets the writer already decided (left out);
    `known_ids`: (id_key -> id, ids used), from earlier reviews and decisions
    (assign_ids).

    Doubt, in four tiers: a cut with no visible mark where the dialogue runs on
    across it (seam_model.dialogue_runs_on: a question and its answer, a speech and
    the reply); then the cuts where the text has no mark at all, by margin, how
    little the cut beats the best other place; then the cuts at a run of blank lines
    alone, by margin too (scored by the seam model as if the blank lines were not
    there, so the two margins are not on one scale): the writer typed those lines,
    where an unmarked cut is the planner's alone (in Dracula the blank-line cuts fell
    at a new letter or journal, the unmarked ones mid-scene); last the marks left
    uncut, which only put two scenes in one chunk."""
    starts = sorted(c.start for c in chunks)
    paragraphs = [(a, b) for a, b, _ in units(body)]
    entries = []
    for seam, places, (a, b) in seams:
        if seam.offset in decided:
            continue
        cut = seam.offset in starts
        blank = cut and is_blank_lines_mark(seam.mark)
        if cut and seam.mark and not blank:
            continue                      # a cut at the writer's own visible mark needs no review
        i = sum(s <= seam.offset for s in starts)
        lo, hi = (starts[i - 2] if cut and i >= 2 else starts[i - 1]), (starts[i] if i < len(starts) else b)
        lo, hi = max(lo, a), min(hi, b)
        ranked = places_between(places, lo, hi, measure.tokens, lengths, skip=seam.offset)
        alts = [p for p, _ in ranked]
        if blank:
            score, signals, runs_on = blank_line_cut(body, seam, paragraphs)
        else:
            runs_on = dialogue_runs_on(seam.features, _paragraph_before(body, seam.offset, paragraphs)) if cut else ""
            score, signals = seam.score, list(seam.signals) + ([runs_on] if runs_on else [])
        own = score - lengths.cost(measure.tokens(lo, seam.offset)) - lengths.cost(measure.tokens(seam.offset, hi))
        # doubt: how little this cut beats the best other place
        margin = (own - ranked[0][1]) if cut and ranked else (0.0 if not cut else 10.0)
        entries.append({
            "kind": (f"cut at {seam.mark} alone (no visible mark)" if blank else
                     "cut at an unmarked seam" if cut else f"scene-break mark {seam.mark} left uncut"),
            "was_cut": cut,
            "seam": seam_key(body, seam.offset),
            "before": context(body[lo:seam.offset], -CONTEXT_WORDS),
            "after": context(body[seam.offset:hi], CONTEXT_WORDS),
            "tokens_before": measure.tokens(lo, seam.offset),
            "tokens_after": measure.tokens(seam.offset, hi),
            "signals": signals,
            "margin": round(margin, 2),
            **({"dialogue_runs_on": bool(runs_on)} if cut else {}),
            **({"blank_lines": True} if blank else {}),
            "alternatives": [{"seam": seam_key(body, p.offset), "signals": p.signals,
                              "tokens_before": measure.tokens(lo, p.offset),
                              "tokens_after": measure.tokens(p.offset, hi)} for p in alts],
        })
    entries.sort(key=lambda e: (0 if e.get("dialogue_runs_on") else 3 if not e["was_cut"]
                                else 2 if e.get("blank_lines") else 1, e["margin"], e["seam"]["after"]))
    assign_ids(entries, *(known_ids or ({}, ())))
    return entries


def context(text, words) -> str:
    """The first `words` words of `text` (the last, when negative), its paragraphs kept
    apart by a blank line, each on one line: a heading or a signature reads as one."""
    paragraphs = [squash(p) for p in re.split(r"\n\s*\n", text) if p.strip()]
    kept, left = [], abs(words)
    for p in (paragraphs if words > 0 else reversed(paragraphs)):
        if left <= 0:
            break
        w = p.split()
        kept.append(" ".join(w[:left] if words > 0 else w[-left:]))
        left -= len(w)
    return "\n\n".join(kept if words > 0 else reversed(kept))


def _paragraph_before(body, offset, paragraphs) -> str:
    return next((body[s:e] for s, e in reversed(paragraphs) if e <= offset), "")


def place_key(seam: dict) -> str:
    """A seam's place, by the words around it."""
    return seam["before"] + "\u2702" + seam["after"]


def id_key(entry: dict) -> str:
    """What a review entry shows: its place, whether the tool cut there, and its
    alternatives. An id stands for all of it, so `keep` and `altN` mean what the
    review the writer read showed."""
    return "|".join([place_key(entry["seam"]), str(entry["was_cut"]),
                     *(place_key(a["seam"]) for a in entry["alternatives"])])


def assign_ids(entries, known: dict, used=()) -> None:
    """An id per entry, for good: the one an earlier review gave the same entry
    (`known`: id_key -> id), else the next number unused (`used`: ids of earlier
    entries and decisions). An entry a recut changed (another alternative, or no
    longer cut) gets a new id; its old id keeps its old meaning."""
    n = max([int(i[1:]) for i in [*known.values(), *used] if i[1:].isdigit()], default=0)
    for e in entries:
        if (given := known.get(id_key(e))) is not None:
            e["id"] = given
        else:
            n += 1
            e["id"] = f"s{n:02d}"


def review_markdown(entries, command) -> str:
    cuts = [e for e in entries if e["was_cut"]]
    runs_on = sum(bool(e.get("dialogue_runs_on")) for e in cuts)
    blank = sum(bool(e.get("blank_lines")) for e in cuts)
    lines = ["# Stage 0's review: the cuts to look at", "",
             f"{len(cuts)} cut(s) the tool guessed, with no visible mark in the text"
             + (f" ({runs_on} where the dialogue runs on across the cut, first)" if runs_on else "")
             + (f", the {len(cuts) - blank} with no mark at all before the {blank} at a run of blank "
                "lines alone" if blank and blank < len(cuts) else "")
             + f", most doubtful first; then {len(entries) - len(cuts)} scene-break mark(s) it left uncut "
             "(two scenes in one chunk: harmless for training, cut one if you want it apart). Your "
             "sense of where a beat ends wins: answer each with one command (it records the answer in "
             "segment_decisions.json and recuts the book):", "",
             f"    {command} --decide {entries[0]['id'] if entries else 's01'}=keep", "",
             "(one `--decide` per answer, several in one command), where the answer after `ID=` is "
             "keep: the tool's choice stands; drop: no cut here; cut: cut here (a mark left uncut); "
             "altN: move the cut to alternative N. An id names its seam for good: it does not change "
             "when other answers recut the book. Anywhere else, by a paragraph's first words: "
             "--decide 'cut:First words of the paragraph', --decide 'drop:First words of the "
             "paragraph' (a cut the tool made at a visible scene-break mark, not listed here), or --decide "
             "'whole:First words of a chunk|First words of the next' (one chunk, no cut inside).", ""]
    for n, e in enumerate(entries):
        if not e["was_cut"] and (n == 0 or entries[n - 1]["was_cut"]):
            lines += ["# Scene-break marks left uncut", ""]
        # estimates (the planner's count): segment_report.md has each chunk's exact one
        lengths = (f"- chunk lengths: about {e['tokens_before']} tokens before, {e['tokens_after']} after"
                   if e["was_cut"] else f"- not cut; if cut here, about {e['tokens_before']} tokens "
                   f"before, {e['tokens_after']} after")
        lines += [f"## {e['id']}: {e['kind']}", "", lengths,
                  f"- signals: {'; '.join(e['signals'])}", "",
                  *_quoted("..." + _last_words(e["before"], 700)), ">",
                  "> ✂" if e["was_cut"] else "> (✂ only if you answer cut)", ">",
                  *_quoted(_first_words(e["after"], 700) + "..."), ""]
        for k, alt in enumerate(e["alternatives"], 1):
            lines.append(f"- alt{k}: before \"{alt['seam']['after']}...\" (about {alt['tokens_before']} | "
                         f"{alt['tokens_after']} tokens; {'; '.join(alt['signals'])})")
        lines.append("")
    return "\n".join(lines) + "\n"


def _quoted(text) -> list[str]:
    """Markdown quote lines, a paragraph break kept as an empty quote line."""
    return ["> " + line if line else ">" for line in text.split("\n")]


def _first_words(text, chars) -> str:
    """The words of `text` that fit in `chars` characters (no word cut in two)."""
    return text if len(text) <= chars else text[:chars + 1].rsplit(" ", 1)[0]


def _last_words(text, chars) -> str:
    return text if len(text) <= chars else text[-chars - 1:].split(" ", 1)[-1]


def decide(entries, answer, decided=()) -> dict:
    """One `--decide` answer ("s03=keep", "s03=alt2", "cut:First words") as a decision.
    `entries`: the last review; `decided`: earlier decisions, whose seams keep their
    ids, so one can be answered again (keep, drop or cut)."""
    for action in ("cut", "drop", "whole"):
        if answer.startswith(action + ":"):
            at, _, to = answer[len(action) + 1:].partition("|")
            return {"action": action, "at": at.strip(), **({"to": to.strip()} if to.strip() else {})}
    ident, _, action = answer.partition("=")
    ident, action = ident.strip(), action.strip()
    entry = next((e for e in entries if e["id"] == ident), None)
    earlier = next((d for d in decided if d.get("id") == ident and "seam" in d), None)
    if entry is None and earlier is None:
        raise InputError(f"--decide {answer!r}: no seam {ident!r} in the last review "
                         "(segment_review.md lists them) or among your decisions")
    if action.startswith("alt") and action[3:].isdigit():
        if entry is None:
            raise InputError(f"--decide {answer!r}: {ident} is decided already ({earlier['action']}), so the "
                             "review no longer lists its alternatives; answer it keep, drop or cut, or "
                             "cut elsewhere with --decide 'cut:First words of the paragraph'")
        n = int(action[3:])
        if not 1 <= n <= len(entry["alternatives"]):
            raise InputError(f"--decide {answer!r}: {ident} has {len(entry['alternatives'])} alternative(s)")
        return {"seam": entry["seam"], "action": "move", "to": entry["alternatives"][n - 1]["seam"],
                "was_cut": entry["was_cut"], "id": ident}
    if action not in ("keep", "drop", "cut"):
        raise InputError(f"--decide {answer!r}: say ID=keep, ID=drop, ID=cut or ID=altN")
    source = entry or earlier
    return {"seam": source["seam"], "action": action, "was_cut": bool(source.get("was_cut")), "id": ident}


def quoted_opening(text, words=8) -> str:
    """A place in words for the terminal: “its first eight words…”."""
    return "“" + " ".join(text.split()[:words]) + "…”"


def described(decision) -> str:
    """What a decision does, in words, for the terminal: which place, cut or not."""
    place = quoted_opening(decision["seam"]["after"] if "seam" in decision else decision["at"])
    to = decision.get("to")
    to = quoted_opening(to["after"] if isinstance(to, dict) else to) if to else None
    action = decision["action"]
    said = {"keep": (f"a cut before {place}, as the review had it" if decision.get("was_cut")
                     else f"no cut at the mark before {place}, as the review had it"),
            "drop": f"no cut before {place}",
            "cut": f"a cut before {place}",
            "move": f"no cut before {place}; a cut before {to} instead",
            "whole": f"one chunk from {place}" + (f" to just before {to}" if to else "")}[action]
    return said


def opening(body, offset) -> str:
    """A chunk's first words, as the review keys a seam's `after`."""
    return seam_key(body, offset)["after"]


def reference_answers(review, reference, current) -> list:
    """The `--decide` answers of a writer who knows the chunking they want
    (`reference`: each chunk's opening words; `current`: the tool's), one per chunk
    of theirs the tool got wrong: the review's alternative where it offers that
    chunk's start, otherwise 'whole:' that chunk. The tests and the segmentation
    benchmark count with it how many decisions reach a chunking."""
    position = {o: n for n, o in enumerate(current)}
    wrong = [n for n, o in enumerate(reference)
             if o not in position or current[position[o] + 1:position[o] + 2] != reference[n + 1:n + 2]]
    answers = []
    for n in wrong:
        alt = [(e["id"], k) for e in review if e["was_cut"] and e["seam"]["after"] not in reference
               for k, a in enumerate(e["alternatives"], 1) if a["seam"]["after"] == reference[n]]
        words = lambda o: " ".join(o.split()[:8])  # noqa: E731
        answers.append(f"{alt[0][0]}=alt{alt[0][1]}" if alt and n + 1 not in wrong
                       else f"whole:{words(reference[n])}"
                       + (f"|{words(reference[n + 1])}" if n + 1 < len(reference) else ""))
    return answers
