"""Stage 1: curated chunk files -> train/validation JSONL, manifest and report
(the report's tables and histogram are prepare_report's), and what
1_prepare_data.py prints."""
import json
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

from styletune import chat, paths
from styletune.config import Reads, load_config
from styletune.data import examples, tokens
from styletune.data import prepare_report as report
from styletune.data.chunks import LEFT_OUT, discover, left_out_note, load_chunks, stage0_manifest
from styletune.data.drills import build_drills, finish_rows
from styletune.data.examples import build_examples, quoted_paragraph_end
from styletune.data.openings import OPENING, opening_rows, seams
from styletune.data.tokens import load_counter
from styletune.errors import InputError, UserError
from styletune.fileio import sha256_bytes, write_outputs
from styletune.settings import SEGMENT_MANIFEST, shipped_default
from styletune.stage import Files, Stage, rules_file, training_data
from styletune.text.paragraphs import hard_wrap_advice, page_number_paragraphs, wrapped_by_hand
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
    invisible_characters_advice,
    page_numbers_advice,
    some_of,
)
from styletune.text.quotes import mixed_styles_advice
from styletune.text.sentences import Tier, build_punkt

# Stage 1's settings.
READS = tokens.READS + examples.READS + Reads(
    pipeline=("join_drills_per_chunk", "scene_openings", "system_prompt_file"))
REPORT_FILES = ("stage1_report.*", "stage1_lengths.png")
STAGE = Stage("1", "1_prepare_data.py", "make the training examples", READS,
              inputs=lambda cfg, book: [Files(book.chunks, (cfg.pipeline.chunk_glob, SEGMENT_MANIFEST),
                                              what="chunk files"),
                                        rules_file(cfg)],
              outputs=lambda cfg, book: [
                  *training_data(cfg),
                  Files(cfg.data_manifest_path, what="their manifest"),
                  Files(cfg.pipeline.report_dir, REPORT_FILES, what="a report (md, json, png)")],
              # 2: the chat rows hold the text as Continue's chat input sends it; 3: the rules
              # as Continue reads the file (only its own --- lines end front matter), and no
              # cut after a run of initials ("A.J. Fenn")
              revision=3)


@dataclass
class Stage1Result:
    config: object
    book_dir: Path
    chunks: list
    train: list
    validation: list
    skipped: list                  # [(file, reason)]
    tokenizer: str
    exact: bool
    splitter: str
    overlong_skipped: list = field(default_factory=list)
    drills: list = field(default_factory=list)     # drills.Drill, training rows beside train
    openings: list = field(default_factory=list)   # openings.opening_rows, training rows too
    validation_openings: list = field(default_factory=list)  # the validation chunks' openings, held out
    seams: list = field(default_factory=list)      # openings.Seam: which chunks follow which
    long_rows: list = field(default_factory=list)  # drills and openings over sequence_len, left out

    @property
    def rows_without_end(self):
        """The training rows whose continuation does not end the turn."""
        return self.drills + self.openings

    @property
    def examples(self):
        return self.train + self.validation

    def warnings(self):
        """Things the writer must hear about on the terminal, not only in the report."""
        rules = [w for w in (chat.sample_rules_warning(self.config, self.book_dir),
                             chat.dropped_rules_warning(self.config)) if w]
        wrapped = [c.name for c in self.chunks if wrapped_by_hand(c.text)]
        return [f"{paths.shown(self.book_dir / name)}: {reason}" for name, reason in self.skipped
                if reason.startswith(("EMPTY", LEFT_OUT))] + rules + (
            [hard_wrap_advice(f"{len(wrapped)} chunk file(s) ({some_of(wrapped)}) are", self.plain_manuscript())]
            if wrapped else []) + (
            self.residue_warnings()) + ([
                f"{len(self.long_rows)} join drill(s) or scene opening(s) longer than sequence_len left out "
                f"({some_of([r.chunk.name for r in self.long_rows])}): a drill's text still trains in its "
                "examples, an opening's nowhere (a validation chunk's goes unscored). Shorten the rules "
                "file (system_prompt_file: a quarter of these rows carry it) or raise sequence_len"]
                if self.long_rows else [])

    def plain_manuscript(self) -> str:
        """The plain-text manuscript stage 0 cut these chunks from ('' for none, or for a
        .docx, which a text command would corrupt): its lines are joined once, not each
        chunk's."""
        manuscript = (stage0_manifest(self.book_dir) or {}).get("manuscript", "")
        return manuscript if str(manuscript).lower().endswith((".txt", ".md")) else ""

    def residue_warnings(self) -> list[str]:
        """What an edition or a conversion left in the chunk files (footnote marks, page
        numbers, garbled or invisible characters), notes to self, and chunks whose
        quotation marks differ from the book's."""
        warnings = []
        for find, least, advice in ((double_encoded, DOUBLE_ENCODED_WARN, double_encoded_advice),
                                    (footnote_marks, FOOTNOTE_MARKS_WARN, footnote_marks_advice),
                                    (comments, 1, comments_advice),
                                    (bracketed_notes, 1, bracketed_notes_advice),
                                    (page_number_paragraphs, PAGE_NUMBERS_WARN, page_numbers_advice)):
            found = {c.name: len(find(c.text)) for c in self.chunks}
            found = {name: n for name, n in found.items() if n}
            if sum(found.values()) >= least:
                warnings.append(advice(sum(found.values()), list(found)))
        text_of = {c.name: c.text for c in self.chunks}
        return warnings + [w for w in (invisible_characters_advice(text_of), mixed_styles_advice(text_of)) if w]

    def exceptions(self):
        """Cuts a person should look at: out of the ratio range, or beside a speech tag."""
        out = []
        for e in self.examples:
            if not e.in_range:
                out.append((e.chunk.name, f"no sentence end a cut may fall at (outside a quotation, or at the end of one "
                                          f"of its paragraphs) gives a prefix in range: nearest used, "
                                          f"prefix {e.ratio:.1%}"))
            if e.cut.tier == Tier.SPEECH_TAG:
                out.append((e.chunk.name, "cut between a speech and its tag "
                                          "(no cleaner boundary in range)"))
            elif e.cut.tier == Tier.IN_QUOTATION:
                where = "at a paragraph's end " if quoted_paragraph_end(e.chunk.text, e.cut) else ""
                out.append((e.chunk.name, f"cut {where}inside a quotation that runs on, a letter or a long "
                                          "speech (no sentence end outside one in range)"))
        return out


OVERLONG_EXIT = 5
# the config's book_dir is still the project's own sample: say so where the book is named
SAMPLE_BOOK_NOTE = ("\n  (the sample book, style_pipeline.book_dir's default: for your own give --book "
                    "data/raw/<name>, the folder stage 0 wrote, or set book_dir in the config)")


class OverlongError(InputError):
    """A chunk's example is longer than sequence_len: the writer decides where to cut it
    (book.py shows the splitter's proposal on this exit code)."""
    exit_code = OVERLONG_EXIT


def stage1_command(config, book_dir, force=False) -> str:
    """The command that makes this book's training data: with its --book, or stage 1
    would read the config's book_dir (the sample book's, until the writer sets it)."""
    return (f"python fine-tuning/training/1_prepare_data.py --config {paths.typed(config.path)} "
            f"--book {paths.typed(book_dir)}" + (" --force" if force else ""))


def _overlong_message(examples, seq_len, config=None, book_dir=None) -> str:
    lines = [f"{len(examples)} example(s) longer than sequence_len = {seq_len} tokens "
             "(Axolotl would drop or truncate them without a word):"]
    lines += [f"  {e.chunk.name}: {e.total_tokens} tokens" for e in examples]
    command = "python fine-tuning/training/split_oversized_chunks.py"
    if config is not None:
        command += f" --config {paths.typed(config.path)} --book {paths.typed(book_dir)}"
    lines.append(f"Fix: split each at its scene breaks with\n  {command} --dry-run\n"
                 "(look at the cuts, then run it without --dry-run: parts chunk_013a_..., "
                 "chunk_013b_..., original into backup/), raise sequence_len, or "
                 "rerun with --skip-overlong to leave them out (listed in the report).")
    return "\n".join(lines)


def emptied_since_stage0(book_dir: Path, skipped):
    """An empty chunk file stage 0 wrote with text in it: how many words went, and
    where they are in the manuscript (a recut would not give this file back as it
    was: the writer's answers to its review may have moved the cuts)."""
    try:
        record = stage0_manifest(book_dir)
        written = {c["file"]: c for c in record["chunks"]}
    except (KeyError, TypeError):
        return skipped
    return [(name, f"EMPTY, though stage 0 wrote {written[name]['words']:,} words here from "
                   f"{_lines_of(record, written[name])}: if they went by mistake, copy them back from "
                   "there; if you meant to leave the scene out, delete the file")
            if reason.startswith("EMPTY") and written.get(name, {}).get("words") else (name, reason)
            for name, reason in skipped]


def _lines_of(record: dict, chunk: dict) -> str:
    """'lines 40-95 of <manuscript>' where the manuscript is still as stage 0 read it,
    else the manuscript's name."""
    from styletune.data.manuscript import read_manuscript
    try:
        ms = read_manuscript(record["manuscript"])
        if sha256_bytes(ms.body.encode("utf-8")) == record.get("body_sha256"):
            return f"lines {ms.line_of(chunk['start'])}-{ms.line_of(chunk['end'] - 1)} of {record['manuscript']}"
    except (UserError, OSError, KeyError, TypeError):
        pass
    return record.get("manuscript", "the manuscript")


def prepare_data(config, book_dir=None, skip_overlong=False, say=lambda message: None) -> Stage1Result:
    """Read, cut, count and split. Writes nothing; `say` reports each phase."""
    s = config.pipeline
    book_dir = paths.resolve_cli(book_dir) if book_dir else s.book_dir
    found, skipped = discover(book_dir, s.chunk_glob)
    say(f"reading {len(found)} chunk files")
    chunks, empty = load_chunks(found, exclude=set(s.exclude_chunks))
    skipped += emptied_since_stage0(book_dir, empty)
    if not chunks:
        raise InputError(f"every chunk file in {book_dir} is empty or excluded: nothing to train on"
                         + left_out_note(skipped))
    base = config.base_model
    say(f"loading the tokenizer of {paths.shown(base) if Path(base).exists() else base}")
    counter = load_counter(config)
    say("learning sentence boundaries")
    punkt, splitter = build_punkt([c.text for c in chunks])
    say("choosing cut points and counting tokens")
    examples, held_out = build_examples(chunks, punkt, counter, s)
    train = [e for e in examples if e.chunk.group not in held_out]
    validation = [e for e in examples if e.chunk.group in held_out]
    overlong = [e for e in train + validation if e.total_tokens > config.sequence_len]
    if overlong and not skip_overlong:
        raise OverlongError(_overlong_message(overlong, config.sequence_len, config, book_dir))
    dropped = {id(e) for e in overlong}
    train = [e for e in train if id(e) not in dropped]
    validation = [e for e in validation if id(e) not in dropped]
    if not validation:
        raise InputError(
            f"no validation examples: with {len({c.group for c in chunks})} chunk group(s) and "
            f"validation_share {s.validation_share}, no chunk is held out, and Axolotl's "
            "`test_datasets` would point at an empty file. Set style_pipeline.validation_share "
            "above 0, list style_pipeline.validation_chunks, or add chunks (two at least)."
            + left_out_note(skipped))
    say("choosing join drills and scene openings")
    training_chunks = list({e.chunk.name: e.chunk for e in train}.values())
    system = chat.configured_system_message(config)
    share = s.editor_header_share
    drills = build_drills(training_chunks, punkt, counter, s.join_drills_per_chunk, s.seed, system, share)
    book_seams = seams(chunks, book_dir)
    openings = finish_rows(opening_rows(book_seams, train, s.seed), counter, system, share) if s.scene_openings else []
    # Held out whether or not the openings train, so the validation loss of a run with
    # them and one without is taken on the same rows; the chunk before may be any.
    held_openings = finish_rows(opening_rows(book_seams, validation, s.seed, [c.name for c in chunks]),
                                counter, system, share)
    # a row is a stretch of an example's text plus at most ~90 words and the chat route's
    # system message, so only a chunk whose example nearly fills sequence_len can give one
    long_rows = [r for r in drills + openings + held_openings if r.total_tokens > config.sequence_len]
    drills, openings, held_openings = ([r for r in rows if all(r is not x for x in long_rows)]
                                       for rows in (drills, openings, held_openings))
    return Stage1Result(config, book_dir, chunks, train, validation, skipped, counter.description,
                        counter.exact, splitter, overlong, drills, openings, held_openings, book_seams, long_rows)


def jsonl_bytes(examples, drills=()) -> bytes:
    """One row per example, then one per join drill or scene opening; every row says whether its
    continuation ends the turn (train/turns.py reads it; a file of one shape loads
    as one table)."""
    rows = [{"messages": e.messages(), "ends_turn": True} for e in examples]
    rows += [{"messages": d.messages(), "ends_turn": False} for d in drills]
    lines = [json.dumps(row, ensure_ascii=False) for row in rows]
    return ("\n".join(lines) + "\n").encode("utf-8") if lines else b""


def drill_provenance(d) -> dict:
    """Where a row's text is: characters of its chunk, or for a scene opening of the
    text of its two chunks with the separator between them."""
    where = ({"chunk": d.chunk.name} if d.kind != OPENING else
             {"chunks": [d.chunk.before.name, d.chunk.after.name], "separator": d.chunk.separator,
              "separator_from": d.chunk.source})
    return {**where, "kind": d.kind, "prompt_char": d.start, "stop_char": d.stop,
            "end_char": d.end, "editor_header": d.header, "total_tokens": d.total_tokens}


def provenance(e, split) -> dict:
    return {
        "split": split,
        "chunk": e.chunk.name,
        "chunk_sha256": e.chunk.sha256,
        "completion_char": e.join,
        "editor_header": e.header,
        "prefix_ratio": round(e.ratio, 4),
        "prefix_tokens": e.prefix_tokens,
        "completion_tokens": e.completion_tokens,
        "total_tokens": e.total_tokens,
    }


def manifest(result: Stage1Result, outputs: dict) -> dict:
    """What went in, what came out, with hashes: later stages use it to detect stale data."""
    cfg = result.config
    return {
        "stage": 1,
        "config": paths.shown(cfg.path),
        "config_sha256": cfg.sha256(),
        "book_dir": paths.shown(result.book_dir),
        "tokenizer": result.tokenizer,
        "token_counts_exact": result.exact,
        "sentence_splitter": result.splitter,
        "sequence_len": cfg.sequence_len,
        "inputs": [{"file": c.name, "sha256": c.sha256} for c in result.chunks],
        "outputs": {paths.shown(p): sha256_bytes(b) for p, b in outputs.items()},
        "examples": [provenance(e, "train") for e in result.train]
                    + [provenance(e, "validation") for e in result.validation],
        "join_drills": [drill_provenance(d) for d in result.drills],
        "scene_openings": [drill_provenance(d) for d in result.openings],
        "validation_scene_openings": [drill_provenance(d) for d in result.validation_openings],
    }


def planned_outputs(result) -> dict:
    cfg = result.config
    rep = report.report_dict(result)
    outputs = {
        cfg.train_path: jsonl_bytes(result.train, result.rows_without_end),
        cfg.validation_path: jsonl_bytes(result.validation, result.validation_openings),
    }
    rdir = cfg.pipeline.report_dir
    outputs[rdir / "stage1_report.json"] = (json.dumps(rep, indent=2, ensure_ascii=False) + "\n").encode()
    outputs[rdir / "stage1_report.md"] = report.markdown(rep).encode()
    outputs[rdir / "stage1_lengths.png"] = report.histogram_png(result)
    man = manifest(result, outputs)
    outputs[cfg.data_manifest_path] = \
        (json.dumps(man, indent=2, ensure_ascii=False) + "\n").encode()
    return outputs


def preview(examples, n):
    for e in examples[:n]:
        print(f"\n--- {e.chunk.name}: prefix {e.prefix_tokens} tokens ({e.ratio:.1%}), "
              f"completion {e.completion_tokens}, example {e.total_tokens} ---")
        if e.header:
            print(f"  [user turn opens with Continue's autocomplete path line: {e.header!r}]")
        print(textwrap.indent(e.prefix, "  "))
        opens, typed = report.join_kinds(e)
        opens = opens or f"a word: the prompt ends with {f'{typed}, typed' if typed else 'its last character'}"
        print(f"  ✂ ──────── cut: the model writes from here, starting with {opens} ────────")
        rest = e.completion
        print(textwrap.indent(rest[:400] + (" [...]" if len(rest) > 400 else ""), "  "))


def preview_opening(row) -> None:
    """One scene opening as it trains: the end of one chunk, the text between, the cut."""
    seam = row.chunk
    route = (" after the chat route's system message" if row.system else
             f" after Continue's path line {row.header.strip()!r}" if row.header else "")
    print(f"\n--- scene opening: {seam.name} ({row.total_tokens} tokens{route}; the text between: "
          f"{seam.separator!r}, {seam.source}) ---")
    print(textwrap.indent(("[...] " if row.start else "") + row.prompt, "  "))
    print("  ✂ ──────── cut: the model writes the next scene's opening from here ────────")
    print(textwrap.indent(row.continuation, "  "))


def run(args) -> int:
    cfg = load_config(args.config)
    print(f"config: {paths.shown(cfg.path)}")
    result = prepare_data(cfg, book_dir=args.book, skip_overlong=args.skip_overlong,
                     say=lambda message: print(f"... {message}", file=sys.stderr, flush=True))
    rep = report.report_dict(result)
    print(f"book: {rep['book_dir']}  ({len(result.chunks)} chunk files)"
          + (SAMPLE_BOOK_NOTE if result.book_dir.resolve() == shipped_default("book_dir") else ""))
    print(f"tokens: {rep['tokenizer']}")
    print(f"sentences: {rep['sentence_splitter']}")
    print(report.markdown_body(rep))
    for warning in result.warnings():
        print(f"warning: {warning.removeprefix('WARNING: ')}", file=sys.stderr)
    if args.preview:
        preview(result.examples, args.preview)
        for row in result.openings[:1]:
            preview_opening(row)
    outputs = planned_outputs(result)
    if args.dry_run:
        print("\ndry run: nothing written. Would write:")
        for p in outputs:
            print(f"  {paths.shown(p)}")
        return 0
    changed = write_outputs(outputs, args.force)
    print()
    for p in outputs:
        print(f"{'wrote' if p in changed else 'unchanged'}: {paths.shown(p)}")
    print(f"\nnext: read {paths.shown(cfg.pipeline.report_dir / 'stage1_report.md')} (look at every "
          f"exception listed), then train:\n  fine-tuning/training/2_train_lora.sh --config "
          f"{paths.typed(cfg.path)}")
    return 0
