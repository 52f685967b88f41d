"""What 0_segment_manuscript.py prints and writes."""
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from styletune import paths
from styletune.config import Reads, load_config
from styletune.data import examples, tokens
from styletune.data.chunks import load_chunks, natural_key, stage0_manifest
from styletune.data.examples import NoSentenceEnd, example_sizes, longest_example
from styletune.data.manuscript import (
    HEADING_MATTER_MAX_WORDS,
    analyse,
    chapters_of,
    name_chunks,
    plan_to_target,
    read_manuscript,
    rebuild,
)
from styletune.data.prepare import stage1_command
from styletune.data.review import (
    constraints,
    decide,
    described,
    id_key,
    place_key,
    quoted_opening,
    read_decisions,
    review_entries,
    review_markdown,
    seam_key,
)
from styletune.data.seam_model import model
from styletune.data.seams import MARGINS, Lengths, Measure, as_typed
from styletune.data.tokens import load_counter
from styletune.errors import InputError, UserError
from styletune.fileio import backed_up, normalise, read_text, sha256_bytes, write_atomic, write_outputs
from styletune.settings import DEFAULT_TARGET_SHARE, SEGMENT_MANIFEST, is_sample_book, shipped_default
from styletune.stage import Files, Stage
from styletune.text.paragraphs import hard_wrap_advice, layout, without_page_numbers, wrapped_by_hand
from styletune.text.patterns import (
    DOUBLE_ENCODED_WARN,
    FOOTNOTE_MARKS_WARN,
    PAGE_NUMBERS_WARN,
    bracketed_notes,
    bracketed_notes_advice,
    comments,
    comments_advice,
    double_encoded,
    double_encoded_advice,
    footnote_marks,
    footnote_marks_advice,
    invisible_characters,
    invisible_characters_advice,
    page_numbers_advice,
    some_of,
    word_count,
)
from styletune.text.quotes import mixed_styles_advice
from styletune.text.sentences import build_punkt

# Stage 0's settings: it sizes chunks with stage 1's example builder.
READS = tokens.READS + examples.READS + Reads(pipeline=("segment_min_tokens", "chunk_target_tokens"))
# Beside the chunk files: the record of what it wrote, its report, the review of its
# guesses, and the writer's answers to it. The declaration keeps "segment_review.*"
# (both review files) as make book's records have always named it.
MANIFEST, REPORT, REVIEW_JSON, REVIEW_MD, DECISIONS = (
    SEGMENT_MANIFEST, "segment_report.md", "segment_review.json", "segment_review.md",
    "segment_decisions.json")
STAGE = Stage("0", "0_segment_manuscript.py", "cut the manuscript into chunk files", READS,
              inputs=lambda cfg, book: [Files(book.manuscript, what="a whole manuscript (.txt, .md, .docx)")],
              outputs=lambda cfg, book: [Files(book.chunks, (cfg.pipeline.chunk_glob, MANIFEST, REPORT,
                                                             "segment_review.*", DECISIONS),
                                               what="chunk files, a report, a review of its guesses")])


def hand_cut_sizes(cfg, counter, folders):
    """(example tokens of each chunk file a writer cut by hand, folder) in the first of
    `folders` that holds three or more (files stage 0 wrote, by its manifest, do not
    count); ([], None) when none does."""
    for folder in folders:
        if not folder or not folder.is_dir():
            continue
        manifest = folder / MANIFEST
        ours = set()
        if manifest.exists():
            ours = {c["sha256"] for c in json.loads(manifest.read_text(encoding="utf-8"))["chunks"]}
        found = [p for p in folder.glob(cfg.pipeline.chunk_glob) if p.is_file()]
        chunks, _ = load_chunks(found)
        mine = [c for c in chunks if c.sha256 not in ours]
        if len(mine) >= 3:
            punkt, _ = build_punkt([c.text for c in mine])
            return list(longest_example(mine, punkt, counter, cfg.pipeline).values()), folder
    return [], None


def chunk_lengths(cfg, writer_sizes=(), maximum=None) -> Lengths:
    """The chunker's lengths, for stage 0 and the splitter alike: the target is
    style_pipeline.chunk_target_tokens, else the median of the writer's own chunk
    sizes (three or more), else DEFAULT_TARGET_SHARE of sequence_len."""
    s = cfg.pipeline
    maximum = maximum or cfg.sequence_len
    sizes = sorted(writer_sizes)
    target = s.chunk_target_tokens or (sizes[len(sizes) // 2] if len(sizes) >= 3
                                       else round(DEFAULT_TARGET_SHARE * cfg.sequence_len))
    target = max(s.segment_min_tokens + 1, min(target, maximum - MARGINS[0]))
    return Lengths(target, s.segment_min_tokens, maximum, model().data["length_weight"])


def chunk_folder(cfg, manuscript: Path) -> Path:
    """Where stage 0 puts a manuscript's chunk files without --out: the book folder the
    writer configured, or, while book_dir is still the sample book's, a folder beside it
    named after the manuscript (data/raw/<name>/, which git ignores); the sample's own
    manuscript goes to the sample's folder."""
    book = cfg.pipeline.book_dir.resolve()
    if book != shipped_default("book_dir") or is_sample_book(manuscript):
        return cfg.pipeline.book_dir
    return manuscript_folder(cfg, manuscript)


def manuscript_folder(cfg, manuscript: Path) -> Path:
    """data/raw/<manuscript name>/, beside the configured book folder: make book's chunk
    folder for every manuscript (a new draft gets its own), git-ignored."""
    slug = re.sub(r"[^a-z0-9]+", "_", manuscript.stem.lower()).strip("_") or "book"
    return cfg.pipeline.book_dir.parent / slug


def hand_cut_folders(cfg, out_dir: Path, manuscript: Path) -> list:
    """Where the writer's own hand-cut chunks may be: --out, and book_dir unless it is
    still the sample book's while the manuscript is another (its chunks' lengths say
    nothing of this book)."""
    book = cfg.pipeline.book_dir.resolve()
    sample = book == shipped_default("book_dir") and not is_sample_book(manuscript)
    return [out_dir] + ([] if sample else [book])


def lengths_for(cfg, counter, folders, say=lambda m: None) -> Lengths:
    """Stage 0's lengths; says where the target came from when it is the writer's."""
    sizes, folder = ([], None) if cfg.pipeline.chunk_target_tokens else hand_cut_sizes(cfg, counter, folders)
    lengths = chunk_lengths(cfg, sizes)
    if folder:
        say(f"target length {lengths.target} tokens: the median of the chunks you cut by hand in "
            f"{paths.shown(folder)} (set style_pipeline.chunk_target_tokens to choose)")
    return lengths


def segment(cfg, manuscript_path, say=lambda m: None, decisions=(), folders=(), known_ids=None, fresh=()):
    """(manuscript, structure, chunks, notes, review): everything planned, nothing written.
    `decisions`: the writer's answers to earlier reviews (review.py); `folders`: where
    to look for chunks cut by hand (their lengths set the target); `known_ids`: the
    review ids seams already have (review.assign_ids); `fresh`: this run's answers."""
    ms = read_manuscript(manuscript_path)
    structure = analyse(ms.body)
    if not structure.sections:
        raise InputError(f"{ms.path}: no text to cut into chunks: every line reads as a heading or as "
                         "front matter (a title page, a contents list). Stage 0 wants the story's "
                         "paragraphs; a manuscript of a few words is too short to learn a voice from")
    say("loading the tokenizer")
    counter = load_counter(cfg)
    lengths = lengths_for(cfg, counter, folders, say)
    rules = constraints(ms.body, decisions,
                        barriers=[sections[0].start for sections in chapters_of(structure).values()],
                        fresh=fresh)
    say("planning chunks")
    punkt = None
    for margin in MARGINS:
        chunks, notes, seams, aimed = plan_to_target(structure, counter, lengths, margin=margin,
                                                     forced=rules.forced, forbidden=rules.forbidden,
                                                     extra=rules.extra)
        name_chunks(chunks, structure)
        say("counting every chunk's example exactly, as stage 1 will")
        texts = [(c.name, ms.body[c.text_start:c.end]) for c in chunks]
        punkt = punkt or build_punkt([normalise(t) for _, t in texts])[0]
        exact = sizes_or_where_not(ms, chunks, texts, punkt, counter, cfg.pipeline)
        for c in chunks:
            c.tokens = exact.get(c.name, 0)
            c.words = word_count(ms.body[c.start:c.end])
        over = [c for c in chunks if c.tokens > cfg.sequence_len]
        if not over:
            break
    if over:  # the search estimate missed by more than its largest margin: say so, do not write
        raise InputError("chunks over sequence_len after segmentation: "
                         + ", ".join(f"{c.name} ({c.tokens})" for c in over)
                         + ". Lower style_pipeline.chunk_target_tokens and rerun.")
    if aimed != lengths:
        notes.append(f"the length cost aimed at {aimed.target} tokens a chunk, not {lengths.target}: "
                     "headings and marks make chunks shorter than the target, and a cost aimed at "
                     f"it would cut every longer scene down to it too (median now "
                     f"{sorted(c.tokens for c in chunks)[len(chunks) // 2]})")
    for c in chunks:
        if c.start in rules.forced:
            c.reason = "your cut (segment_decisions.json)"
    notes += short_by_your_cuts(chunks, rules.forced, lengths.minimum, ms.body)
    if rules.clashes:
        notes.append(f"{len(rules.clashes)} of your answers clash (a cut where another answer keeps a "
                     "stretch whole or says no cut): " + "; ".join(
                         f"the cut before {quoted_opening(ms.body[at:at + 300])} was made, against your "
                         f"answer “{described(rules.uncut_by[at])}”" for at in rules.clashes[:3])
                     + ". Answer that place again with --decide (the later answer replaces the earlier), "
                     "or remove one from segment_decisions.json")
    if rules.stale:
        notes.append(f"{len(rules.stale)} decision(s) no longer match the manuscript's words (edited "
                     "there?) and were not applied: " + "; ".join(
                         f"{d['action']} before '{d['seam']['after'] if 'seam' in d else d['at']}'"
                         for d in rules.stale[:3]))
    if not structure.chapters and not structure.has_scene_breaks:
        notes.insert(0, "no chapter headings and no scene breaks found: the text was cut at the "
                        "paragraph boundaries that read most like a scene change (check the review). If "
                        "your chapters have headings stage 0 did not take for them, put '# ' before each "
                        "and rerun")
    if wrapped_by_hand(ms.body):
        notes.insert(0, hard_wrap_advice("the manuscript's lines are"))
    if structure.front_matter:
        notes.insert(0, f"front matter before the first chapter ({structure.front_matter[2]} words: "
                        "title, contents, notes) is not a chunk; it is kept verbatim in the manifest. If "
                        "some of it is your story (a cold open), give it a heading of its own such as "
                        "'Prologue' and rerun: it then becomes a chunk")
    if structure.back_matter:
        at, _, words = structure.back_matter
        heading = ms.body[at:].split(chr(10))[0]
        notes.insert(0, f"back matter from '{heading.strip()}' (line {ms.line_of(at)}) to the end "
                        f"({words} words, from {quoted_opening(ms.body[at + len(heading):])}: read as a "
                        "publisher's list, notes, errata) is not a chunk; it is kept verbatim in the "
                        "manifest. If any of it is your novel, move it before that line (or rename that "
                        "heading) and rerun")
    notes += heading_matter_notes(structure.heading_matter)
    notes += structure.notes
    if page := page_numbers(ms, structure):
        notes.insert(0, page["warning"])
    by_line = {}
    for a in (a for c in chunks for a in invisible_characters(ms.body, c.start, c.end)):
        by_line[f"line {ms.line_of(a)}"] = by_line.get(f"line {ms.line_of(a)}", "") + ms.body[a]
    if invisible := invisible_characters_advice(by_line, word_file=ms.path.suffix.lower() == ".docx"):
        notes.insert(0, invisible)
    if quotes := mixed_styles_advice({c.name: ms.body[c.text_start:c.end] for c in chunks}):
        notes.insert(0, quotes)
    # what a conversion or an edition left in the text, each warned of with the lines it is on
    word_file = ms.path.suffix.lower() == ".docx"
    for find, least, advice in ((double_encoded, DOUBLE_ENCODED_WARN,
                                 lambda n, lines: double_encoded_advice(n, lines, word_file=word_file)),
                                (footnote_marks, FOOTNOTE_MARKS_WARN, footnote_marks_advice),
                                (comments, 1, comments_advice),
                                (bracketed_notes, 1,
                                 lambda n, lines: bracketed_notes_advice(n, lines, word_file=word_file))):
        found = [a for c in chunks for a in find(ms.body, c.start, c.end)]
        if len(found) >= least:
            notes.insert(0, advice(len(found), list(dict.fromkeys(f"line {ms.line_of(a)}" for a in found))))
    if len(chunks) < 2:
        notes.insert(0, f"WARNING: {len(chunks)} chunk: stage 1 holds chunks out for validation and "
                        "needs two at least; a manuscript this short is too little to learn a voice from")
    decided = rules.forced | rules.forbidden
    entries = review_entries(ms.body, seams, chunks, Measure(counter, ms.body, margin=MARGINS[0]),
                             aimed, decided, known_ids)
    blank = [e for e in entries if e.get("blank_lines")]
    if blank:
        notes.append(f"{len(blank)} cut(s) made at a run of blank lines alone, no visible mark such as "
                     "'* * *': a guess (often a scene break, sometimes only layout), so each is in the "
                     "review to confirm (--decide ID=keep) or undo (--decide ID=drop)")
    runs_on = [e["id"] for e in entries if e.get("dialogue_runs_on")]
    if runs_on:
        notes.append(f"{len(runs_on)} cut(s) with no visible mark where the dialogue runs on across "
                     f"the cut (a question and its answer, a speech and the reply): {', '.join(runs_on)}, "
                     "first in the review")
    return Segmentation(ms, structure, chunks, notes, entries, lengths, len(rules.stale))


def sizes_or_where_not(ms, chunks, texts, punkt, counter, settings) -> dict:
    """example_sizes of the planned chunks; where one has no sentence end a prompt can
    stop at (a poem, a chapter left unfinished), the error names the manuscript's line,
    not a chunk file that was never written, and fixes that stage 0 can act on."""
    try:
        return example_sizes(texts, punkt, counter, settings)
    except NoSentenceEnd as err:
        c = next(c for c in chunks if c.name == err.chunk)
        raise InputError(
            f"{ms.path}, line {ms.line_of(c.start)}: the stretch that starts "
            f"{quoted_opening(ms.body[c.start:c.start + 300])} ({c.reason}) has no sentence end "
            "with more of its text after it (a '.', '!' or '?', then another sentence), so no "
            "example can be cut from it (a prompt stops at a sentence end, and the model learns "
            "what follows). Stage 0 changes none of your words: for a line or two, a poem or an "
            "unfinished chapter, remove the heading or scene break before it so it joins the text "
            "before; else end one of its sentences; then rerun") from None


def short_by_your_cuts(chunks, forced, minimum, body) -> list[str]:
    """A note for each chunk under the minimum that one of the writer's cuts made (it
    starts or ends there): stage 1 can hardly cut a prompt from a scrap, and stage 0
    would have joined it to a neighbour."""
    notes = []
    for n, c in enumerate(chunks):
        nxt = chunks[n + 1].start if n + 1 < len(chunks) else None
        if c.tokens < minimum and (c.start in forced or nxt in forced):
            at = c.start if c.start in forced else nxt
            notes.append(f"your cut before {quoted_opening(body[at:at + 300])} leaves {c.name} "
                         f"{c.tokens} tokens long (minimum {minimum}): too short to train on well. "
                         "Keep it if it stands alone, or answer the cut drop (its review id, or "
                         "--decide 'drop:First words') to join it to its neighbour")
    return notes


def heading_matter_notes(heading_matter) -> list[str]:
    """One note per run of headings: the words between them that are no chunk, however
    many stretches (a table of contents is one run: 27 of them in Dracula)."""
    runs = {}
    for title, words in heading_matter:
        runs.setdefault(title, []).append(words)
    what = lambda w: ("a subtitle, an epigraph, a note, or a chapter of a few lines" if len(w) == 1  # noqa: E731
                      else f"{len(w)} short stretches: a table of contents, subtitles or notes")
    return [f"{sum(w)} word(s) between the headings before '{title}' ({what(w)}) are not a chunk; "
            f"kept in the manifest (a chapter needs over {HEADING_MATTER_MAX_WORDS} words of prose to be "
            "one: if these are your story, join them to a neighbouring chapter by removing the heading "
            "between, and rerun)" for title, w in runs.items()]


def page_numbers(ms, structure) -> dict:
    """{count, examples (line, text), warning} when the manuscript holds PAGE_NUMBERS_WARN
    or more paragraphs that are only a page number ('11)', '11.', '[11]', '- 11 -',
    'Page 11': a printed edition's, often splitting a sentence); {} otherwise. Stage 0
    never deletes the author's text itself: it says what to remove."""
    found = structure.page_numbers
    if len(found) < PAGE_NUMBERS_WARN:
        return {}
    body = ms.body
    examples = [{"line": ms.line_of(a), "text": body[a:body.find("\n", a) % (len(body) + 1)].strip()}
                for a in found[:5]]
    warning = page_numbers_advice(len(found), [f"line {e['line']}: '{e['text']}'" for e in examples])
    return {"count": len(found), "examples": examples, "warning": warning}


@dataclass
class Segmentation:
    ms: object
    structure: object
    chunks: list
    notes: list
    review: list
    lengths: Lengths
    unapplied: int = 0     # decisions whose words are no longer in the manuscript


def separators(body, chunks):
    bounds = [0] + [x for c in chunks for x in (c.text_start, c.end)] + [len(body)]
    return [body[a:b] for a, b in zip(bounds[::2], bounds[1::2])]


def report_rows(chunks):
    return [{"file": c.name, "chapter": c.chapter_title, "words": c.words, "tokens": c.tokens,
             "starts_here_because": c.reason} for c in chunks]


def paragraphs_shown(structure) -> str:
    """How the manuscript's paragraphs are laid out, in words for the report."""
    if layout(structure.text) == "indented":
        return "opening with an indent, no blank line between (print's layout)"
    return "one per line" if structure.one_per_line else "separated by blank lines"


def markdown(ms, structure, chunks, notes, cfg, lengths) -> str:
    lines = [f"# Segmentation of {ms.path.name}", "",
             f"- chunks: {len(chunks)}; chapters found: {len(structure.chapters)}; "
             f"paragraphs {paragraphs_shown(structure)}"
             f"{' (hard-wrapped lines)' if structure.hard_wrapped else ''}",
             f"- tokens per example: {min(c.tokens for c in chunks)}-{max(c.tokens for c in chunks)}, "
             f"median {sorted(c.tokens for c in chunks)[len(chunks) // 2]} (target {lengths.target}, "
             f"minimum {lengths.minimum}, sequence_len {cfg.sequence_len})",
             f"- Project Gutenberg header and licence removed: {'yes' if ms.gutenberg_stripped else 'no'}",
             ""]
    if notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    lines += ["## Chunks", "", "| chunk | chapter | words | tokens | starts here because |",
              "|---|---|---|---|---|"]
    for c in chunks:
        lines.append(f"| {c.name} | {c.chapter_title.replace('|', '/')[:60]} | {c.words} | "
                     f"{c.tokens} | {c.reason.replace('|', '/')[:120]} |")
    return "\n".join(lines) + "\n"


def planned_outputs(cfg, seg, out_dir, review_command, earlier=()) -> dict:
    """Every file stage 0 writes, by path. `earlier`: seams of earlier reviews the
    last one no longer lists, kept so their ids still resolve (record_decisions)."""
    ms, structure, chunks, notes = seg.ms, seg.structure, seg.chunks, seg.notes
    body = ms.body
    seps = separators(body, chunks)
    if rebuild([body[c.text_start:c.end] for c in chunks], seps) != body:
        raise RuntimeError(f"bug: the chunks planned for {ms.path} and the text between them do "
                           "not rebuild the manuscript byte for byte; nothing was written. "
                           "Please report it with the manuscript.")
    outputs = {out_dir / c.name: (body[c.text_start:c.end] + "\n").encode("utf-8") for c in chunks}
    manifest = {
        "stage": 0,
        "manuscript": paths.shown(ms.path),
        "manuscript_sha256": sha256_bytes(ms.path.read_bytes()),
        "gutenberg_stripped": ms.gutenberg_stripped,
        "config": paths.shown(cfg.path),
        "lengths": {"target": seg.lengths.target, "minimum": seg.lengths.minimum,
                    "maximum": seg.lengths.maximum},
        "body_sha256": sha256_bytes(body.encode("utf-8")),
        "chunks": [{**row, "start": c.text_start, "end": c.end,
                    "sha256": sha256_bytes(outputs[out_dir / c.name])}
                   for row, c in zip(report_rows(chunks), chunks)],
        "separators": seps,
        "notes": notes,
        "page_number_paragraphs": page_numbers(ms, structure).get("count", 0),
        "rebuild": "separators[0] + chunk[0] + separators[1] + ... + chunk[n-1] + separators[n], "
                   "each chunk file's text without its final newline, gives the manuscript body",
    }
    outputs[out_dir / MANIFEST] = \
        (json.dumps(manifest, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
    outputs[out_dir / REPORT] = \
        markdown(ms, structure, chunks, notes, cfg, seg.lengths).encode("utf-8")
    outputs[out_dir / REVIEW_JSON] = \
        (json.dumps({"seams": seg.review, "earlier": list(earlier)}, indent=2, ensure_ascii=False)
         + "\n").encode("utf-8")
    outputs[out_dir / REVIEW_MD] = review_markdown(seg.review, review_command).encode("utf-8")
    return outputs


def edited_since_written(folder: Path, glob: str) -> list | None:
    """The chunk files in `folder` that are not as stage 0 wrote them (edited since, or
    added by hand), by its manifest's hashes; None when no manifest records them."""
    if (record := stage0_manifest(folder)) is None:
        return None
    written = {c["file"]: c["sha256"] for c in record["chunks"]}
    found = sorted((f for f in folder.glob(glob) if f.is_file()), key=lambda p: natural_key(p.name))
    return [f for f in found if written.get(f.name) != sha256_bytes(f.read_bytes())]


def chunks_to_retire(outputs, out_dir, glob, force) -> list:
    """The old chunk files this run replaces or leaves out, which move into backup/
    (fileio.write_outputs); refuses a folder holding other chunk files or reports
    unless --force, and, even with it, chunk files the writer edited since stage 0
    wrote them: a recut takes every chunk from the manuscript, and --force is in the
    review's own command, so it cannot stand for 'replace my edits'."""
    existing = sorted(out_dir.glob(glob), key=lambda p: natural_key(p.name)) if out_dir.is_dir() else []
    edited = [p for p in (edited_since_written(out_dir, glob) or []) if outputs.get(p) != p.read_bytes()]
    if edited:
        names = ", ".join(p.name for p in edited[:5]) + (", ..." if len(edited) > 5 else "")
        raise UserError(f"{len(edited)} chunk file(s) in {paths.shown(out_dir)} changed since stage 0 "
                        f"wrote them ({names}): a recut takes every chunk from the manuscript and would "
                        "put these edits into backup/. Copy your changes into the manuscript and rerun, "
                        "or move the folder away and cut afresh; to train on the chunks as they are, "
                        "skip stage 0 (stage 1 reads them).")
    stale = [p for p in existing if p not in outputs]
    differ = [p for p in existing if p in outputs and p.read_bytes() != outputs[p]]
    others = [p for p in outputs if p.exists() and p.read_bytes() != outputs[p] and p not in differ]
    if (stale or differ or others) and not force:
        names = ", ".join(p.name for p in (stale + differ + others)[:5])
        raise UserError(f"{paths.shown(out_dir)} already holds chunk files or reports this run "
                        f"would replace or leave beside its own ({names}"
                        f"{', ...' if len(stale + differ + others) > 5 else ''}). Give another "
                        "folder with --out, or rerun with --force (every old chunk file it replaces "
                        "or leaves out moves into backup/ first).")
    return stale + differ


def last_review(out_dir) -> list:
    """Every seam the reviews so far gave an id: the last review's, then earlier ones'."""
    review = out_dir / REVIEW_JSON
    data = json.loads(review.read_text(encoding="utf-8")) if review.exists() else {}
    return data.get("seams", []) + data.get("earlier", [])


def earlier_seams(out_dir, review) -> list:
    """The entries earlier reviews listed that this one does not (decided, re-planned,
    or changed by a recut: a new id then), without their excerpts: an id is never
    given to another entry, and an answer read off an older review still means what
    that review showed."""
    listed = {e["id"] for e in review}
    return [{k: e[k] for k in ("id", "kind", "was_cut", "seam", "alternatives")}
            for e in last_review(out_dir) if e["id"] not in listed]


def same_place(a, b) -> bool:
    """Whether two decisions answer for the same paragraph start: the same seam, or
    opening words one of which begins the other (each names exactly one paragraph,
    so the longer's paragraph is the shorter's)."""
    if "seam" in a and "seam" in b:
        return a["seam"] == b["seam"]
    words = [as_typed(d["seam"]["after"] if "seam" in d else d["at"]) for d in (a, b)]
    return all(words) and (words[0].startswith(words[1]) or words[1].startswith(words[0]))


def record_decisions(out_dir, answers) -> tuple[list, list]:
    """The decisions file with `answers` (--decide) added, each resolved against the
    reviews so far (or an earlier decision's id); a later answer about the same place
    (same_place) replaces an earlier one. Returns (every decision, [(answer, its decision)])."""
    decisions = read_decisions(out_dir / DECISIONS)
    entries = last_review(out_dir) if answers else []
    new = []
    for answer in answers:
        if not entries and not decisions and not answer.startswith(("cut:", "drop:", "whole:")):
            review = paths.shown(out_dir / REVIEW_JSON)
            if (out_dir / REVIEW_JSON).exists():
                raise InputError(f"--decide {answer!r}: the last review ({review}) lists no seam to answer, "
                                 "so there is nothing to keep or drop. To cut or join by hand, give 'cut:First words "
                                 "of a paragraph', 'drop:...' or 'whole:First...|Next...' (see --help)")
            raise InputError(f"--decide {answer!r} needs the last review ({review}): "
                             "run stage 0 without --decide first")
        one = decide(entries, answer, decisions)
        decisions = [d for d in decisions if not same_place(d, one)]
        decisions.append(one)
        new.append((answer, one))
    return decisions, new


def changed_cuts(out_dir, body, chunks, entries=()) -> list[str]:
    """Lines saying which cuts differ from the last run's on the same manuscript body,
    with the review id of each place where one has it (`entries`, newest first), so
    an answer that moves other cuts (the chunker re-plans around it) never does so unseen."""
    record = stage0_manifest(out_dir)
    if record is None or record.get("body_sha256") != sha256_bytes(body.encode("utf-8")):
        return []
    # by first words: a manifest's "start" is the file's first character (an indent
    # before the words since indents are kept), an older one's the first word
    old = {re.compile(r"[ \t]*").match(body, c["start"]).end() for c in record["chunks"]}
    new = {c.start for c in chunks}
    ids = {}
    for e in entries:
        ids.setdefault(place_key(e["seam"]), e["id"])

    def place(at):
        known = ids.get(place_key(seam_key(body, at)))
        return quoted_opening(body[at:at + 300]) + (f" ({known})" if known else "")
    return ([f"new cut before {place(at)}" for at in sorted(new - old)]
            + [f"no longer a cut before {place(at)}" for at in sorted(old - new)])


def known_ids(out_dir, decisions) -> tuple[dict, set]:
    """(id_key -> id, every id used) from the reviews so far and the decisions."""
    entries = last_review(out_dir)
    return ({id_key(e): e["id"] for e in entries},
            {e["id"] for e in entries} | {d["id"] for d in decisions if "id" in d})


def decisions_bytes(decisions) -> bytes:
    return (json.dumps({"about": "your answers to stage 0's review (segment_review.md); "
                                 "actions: keep, drop, cut, move", "decisions": decisions},
                       indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def write_without_page_numbers(manuscript: Path, out: Path, config: Path) -> int:
    """--without-page-numbers: a copy of the manuscript less its page numbers, the
    sentences they split joined again; the manuscript itself is never rewritten. Line
    ends and a byte-order mark stay as they were. The command it prints next names
    `config` unless it is the default."""
    from styletune.cli import DEFAULT_CONFIG
    if manuscript.suffix.lower() == ".docx":
        raise InputError(f"{paths.shown(manuscript)}: a .docx keeps its text inside XML, which this copy "
                         "cannot rewrite: save it as plain text (.txt, UTF-8) in your word processor and "
                         "run this on that file")
    if out.exists():
        what = "that is a folder; name a new file (e.g. inside it)" if out.is_dir() else \
            "that file exists; name a new one"
        raise UserError(f"--without-page-numbers {paths.shown(out)}: {what} (your manuscript is never "
                        "rewritten)")
    raw = manuscript.read_bytes()
    text = read_text(manuscript)
    crlf = "\r\n" in text
    cleaned, removed, joined, hyphenated = without_page_numbers(text.replace("\r\n", "\n"))
    cleaned = cleaned.replace("\n", "\r\n") if crlf else cleaned
    write_atomic(out, (b"\xef\xbb\xbf" if raw.startswith(b"\xef\xbb\xbf") else b"") + cleaned.encode("utf-8"))
    print(f"wrote {paths.shown(out)}: {removed} page number(s) removed, {joined} sentence(s) they split "
          f"joined again, every word of {paths.shown(manuscript)} kept. Compare the two (e.g. diff "
          f"{paths.typed(manuscript)} {paths.typed(out)}), then cut the copy:\n"
          f"  python fine-tuning/training/0_segment_manuscript.py {paths.typed(out)} --dry-run"
          + ("" if config.resolve() == DEFAULT_CONFIG.resolve() else f" --config {paths.typed(config)}"))
    if hyphenated:
        print(f"{len(hyphenated)} word(s) hyphenated across a page are kept as printed, hyphen and all: "
              f"{some_of(hyphenated, 6)}. Where the hyphen is only the printer's, delete it in the copy")
    return 0


def run(args) -> int:
    if args.without_page_numbers:
        return write_without_page_numbers(paths.resolve_cli(args.manuscript),
                                          paths.resolve_cli(args.without_page_numbers),
                                          paths.resolve_cli(args.config))
    cfg = load_config(args.config)
    manuscript = paths.resolve_cli(args.manuscript)
    out_dir = paths.resolve_cli(args.out) if args.out else chunk_folder(cfg, manuscript)
    print(f"config: {paths.shown(cfg.path)}")
    decisions, answered = record_decisions(out_dir, args.decide or [])
    seg = segment(cfg, manuscript, say=lambda m: print(f"... {m}", file=sys.stderr, flush=True),
                  decisions=decisions, folders=hand_cut_folders(cfg, out_dir, manuscript),
                  known_ids=known_ids(out_dir, decisions), fresh=[d for _, d in answered])
    ms, structure, chunks = seg.ms, seg.structure, seg.chunks
    for answer, decision in answered:
        print(f"your answer {answer}: {described(decision)}")
    print(f"manuscript: {paths.shown(ms.path)} ({word_count(ms.body):,} words)")
    if ms.gutenberg_stripped:
        print("Project Gutenberg header and licence found and removed")
    print(f"structure: {len(structure.chapters)} chapter(s), {len(structure.sections)} scene(s), "
          f"paragraphs {paragraphs_shown(structure)}")
    print(f"lengths: target {seg.lengths.target} tokens per example, minimum {seg.lengths.minimum}, "
          f"at most {seg.lengths.maximum} (sequence_len)")
    for note in seg.notes:
        print(f"note: {note}")
    print()
    print("| chunk | words | tokens | starts here because |\n|---|---|---|---|")
    for c in chunks:
        print(f"| {c.name} | {c.words} | {c.tokens} | {c.reason[:90]} |")
    command = (f"python fine-tuning/training/0_segment_manuscript.py {paths.typed(ms.path)} "
               f"--config {paths.typed(cfg.path)} --out {paths.typed(out_dir)} --force")
    outputs = planned_outputs(cfg, seg, out_dir, command, earlier_seams(out_dir, seg.review))
    if decisions:
        outputs[out_dir / DECISIONS] = decisions_bytes(decisions)
    # refused before anything is said to have been applied
    try:
        retired = [] if args.dry_run else chunks_to_retire(outputs, out_dir, cfg.pipeline.chunk_glob, args.force)
    except UserError as err:
        if not answered:
            raise
        # the answers were said back above, as if taken: they were not
        raise type(err)(f"{err} Your --decide answer(s) above were not recorded: give them again "
                        "when you rerun.") from None
    if changes := changed_cuts(out_dir, ms.body, chunks, seg.review + last_review(out_dir)):
        print(f"\ncuts changed since the last run ({len(changes)}):")
        print("\n".join(f"  {line}" for line in changes[:12])
              + (f"\n  ... and {len(changes) - 12} more" if len(changes) > 12 else ""))
    guessed = [e for e in seg.review if e["was_cut"]]
    print(f"\nreview: {len(guessed)} cut(s) guessed with no visible mark in the text "
          f"({sum(bool(e.get('blank_lines')) for e in guessed)} of them at blank lines alone), then "
          f"{len(seg.review) - len(guessed)} mark(s) left uncut; {len(decisions) - seg.unapplied} "
          "decision(s) of yours applied")
    if args.dry_run:
        print(f"\ndry run: nothing written. Would write {len(chunks)} chunk files, the report and "
              f"the review into {paths.shown(out_dir)}/")
        return 0
    # stage 0's own chunk files, unedited: a renumbered one needs no copy in backup/
    ours = retired if edited_since_written(out_dir, cfg.pipeline.chunk_glob) == [] else []
    kept = backed_up(outputs, retired, ours)
    changed = write_outputs(outputs, force=True, retire=retired, regenerated=ours)
    print(f"\n{len(changed)} file(s) written, {len(outputs) - len(changed)} unchanged, in "
          f"{paths.shown(out_dir)}/ (report: segment_report.md)")
    if kept:
        print(f"copied {len(kept)} old chunk file(s) into backup/ before replacing them")
    if len(retired) > len(kept):
        print(f"{len(retired) - len(kept)} old chunk file(s) renumbered only: their text is in the new "
              "files word for word")
    if seg.review:
        print(f"\nreview the cuts in {paths.shown(out_dir / 'segment_review.md')}; answer each with\n"
              f"  {command} --decide {seg.review[0]['id']}=keep\n"
              "(keep, drop, cut or altN after each ID, as the review says; one --decide per answer)")
    print(f"\nnext: read the report, then\n  {stage1_command(cfg, out_dir)}")
    return 0
