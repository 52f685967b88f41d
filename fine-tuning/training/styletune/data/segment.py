"""What 0_segment_manuscript.py prints and writes."""
import json
import shutil
import sys
from pathlib import Path

from styletune import paths
from styletune.config import load_config
from styletune.data.chunks import natural_key
from styletune.data.manuscript import analyse, name_chunks, plan_chunks, read_manuscript, rebuild
from styletune.data.seams import example_tokens
from styletune.data.tokens import load_counter
from styletune.errors import ConfigError, InputError, UserError
from styletune.fileio import sha256_bytes, write_atomic
from styletune.text.patterns import word_count


def segment(cfg, manuscript_path, say=lambda m: None):
    """(manuscript, structure, chunks, notes): everything planned, nothing written."""
    s = cfg.pipeline
    if s.segment_max_tokens > cfg.sequence_len:
        raise ConfigError(f"{paths.shown(cfg.path)}: style_pipeline.segment_max_tokens "
                          f"({s.segment_max_tokens}) is over sequence_len ({cfg.sequence_len}); "
                          "lower it (e.g. 3000 for 4096)")
    ms = read_manuscript(manuscript_path)
    structure = analyse(ms.body)
    if not structure.sections:
        raise InputError(f"{ms.path}: only headings and front matter, no text to cut into chunks")
    say("loading the tokenizer")
    counter = load_counter(cfg)
    say("planning chunks")
    chunks, notes = plan_chunks(structure, counter, s.segment_min_tokens, s.segment_max_tokens,
                               hard_limit=cfg.sequence_len - 16)
    name_chunks(chunks, structure)
    say("counting every chunk's example exactly, as stage 1 will")
    texts = [(c.name, ms.body[c.start:c.end]) for c in chunks]
    exact = example_tokens(cfg, counter, texts)
    for c in chunks:
        c.tokens = exact.get(c.name, 0)
        c.words = word_count(ms.body[c.start:c.end])
    over = [c for c in chunks if c.tokens > cfg.sequence_len]
    if over:  # the search estimate missed by more than its margin: say so, do not write
        raise InputError("chunks over sequence_len after segmentation: "
                         + ", ".join(f"{c.name} ({c.tokens})" for c in over)
                         + ". Lower style_pipeline.segment_max_tokens and rerun.")
    if not structure.chapters and not structure.has_scene_breaks:
        notes.insert(0, "no chapter headings and no scene breaks found: the text was cut at the "
                        "paragraph boundaries that read most like a scene change (check the cuts)")
    if structure.front_matter:
        notes.insert(0, f"front matter before the first chapter ({structure.front_matter[2]} words: "
                        "title, contents, notes) is not a chunk; it is kept verbatim in the manifest")
    for title, words in structure.heading_matter:
        notes.append(f"{words} word(s) between headings under '{title}' (a subtitle or note) are "
                     "not a chunk; kept in the manifest")
    notes += structure.notes
    guessed = [c.name for c in chunks if c.reason.startswith("cut to fit the budget")
               and "scene break" not in c.reason]
    if guessed:
        notes.append(f"{len(guessed)} chunk(s) start at a cut made inside a scene to fit the budget "
                     f"({', '.join(guessed[:3])}{', ...' if len(guessed) > 3 else ''}): the place is "
                     "the splitter's best guess, so read those openings. Where your scene really "
                     "turns elsewhere, put a scene-break line (* * *) there in the manuscript and "
                     "rerun with --force.")
    return ms, structure, chunks, notes


def separators(body, chunks):
    bounds = [0] + [x for c in chunks for x in (c.start, c.end)] + [len(body)]
    return [body[a:b] for a, b in zip(bounds[::2], bounds[1::2])]


def report_rows(chunks):
    return [{"file": c.name, "chapter": c.chapter_title, "words": c.words, "tokens": c.tokens,
             "starts_here_because": c.reason} for c in chunks]


def markdown(ms, structure, chunks, notes, cfg) -> str:
    lines = [f"# Segmentation of {ms.path.name}", "",
             f"- chunks: {len(chunks)}; chapters found: {len(structure.chapters)}; "
             f"paragraphs: {'one per line' if structure.one_per_line else 'blank-line separated'}"
             f"{' (hard-wrapped lines)' if structure.hard_wrapped else ''}",
             f"- tokens per example: {min(c.tokens for c in chunks)}-{max(c.tokens for c in chunks)} "
             f"(budget {cfg.pipeline.segment_max_tokens}, sequence_len {cfg.sequence_len})",
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


def planned_outputs(cfg, ms, structure, chunks, notes, out_dir) -> dict:
    body = ms.body
    seps = separators(body, chunks)
    if rebuild([body[c.start:c.end] for c in chunks], seps) != body:
        raise RuntimeError(f"bug: the chunks planned for {ms.path} and the text between them do "
                           "not rebuild the manuscript byte for byte; nothing was written. "
                           "Please report it with the manuscript.")
    outputs = {out_dir / c.name: (body[c.start:c.end] + "\n").encode("utf-8") for c in chunks}
    manifest = {
        "stage": 0,
        "manuscript": paths.shown(ms.path),
        "manuscript_sha256": sha256_bytes(ms.path.read_bytes()),
        "gutenberg_stripped": ms.gutenberg_stripped,
        "config": paths.shown(cfg.path),
        "segment_min_tokens": cfg.pipeline.segment_min_tokens,
        "segment_max_tokens": cfg.pipeline.segment_max_tokens,
        "body_sha256": sha256_bytes(body.encode("utf-8")),
        "chunks": [{**row, "start": c.start, "end": c.end,
                    "sha256": sha256_bytes(outputs[out_dir / c.name])}
                   for row, c in zip(report_rows(chunks), chunks)],
        "separators": seps,
        "notes": notes,
        "rebuild": "separators[0] + chunk[0] + separators[1] + ... + chunk[n-1] + separators[n], "
                   "each chunk file's text without its final newline, gives the manuscript body",
    }
    outputs[out_dir / "segment_manifest.json"] = \
        (json.dumps(manifest, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
    outputs[out_dir / "segment_report.md"] = \
        markdown(ms, structure, chunks, notes, cfg).encode("utf-8")
    return outputs


def free_backup_path(backup: Path, name: str) -> Path:
    """backup/<name>, or backup/<stem>.2<suffix>, .3, ... when an older backup holds
    that name: each recut of a revised manuscript keeps every earlier version."""
    backup.mkdir(exist_ok=True)
    stem, suffix = Path(name).stem, Path(name).suffix
    candidates = (backup / (name if n == 1 else f"{stem}.{n}{suffix}") for n in range(1, 10_000))
    return next(c for c in candidates if not c.exists())


def write_outputs(outputs, out_dir, glob, force):
    """Refuse to touch a folder holding other chunk files unless --force; then every
    old chunk file this run replaces or does not rewrite moves into backup/ first
    (never overwriting a backup), so no version of the writer's text is lost."""
    existing = sorted(out_dir.glob(glob), key=lambda p: natural_key(p.name)) if out_dir.is_dir() else []
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
    kept = stale + differ
    for p in kept:
        shutil.move(str(p), str(free_backup_path(out_dir / "backup", p.name)))
    changed = [p for p, data in outputs.items() if not p.exists() or p.read_bytes() != data]
    for p in changed:
        write_atomic(p, outputs[p])
    return changed, kept


def run(args) -> int:
    cfg = load_config(args.config)
    out_dir = paths.resolve_cli(args.out) if args.out else cfg.pipeline.book_dir
    print(f"config: {paths.shown(cfg.path)}")
    ms, structure, chunks, notes = segment(
        cfg, paths.resolve_cli(args.manuscript),
        say=lambda m: print(f"... {m}", file=sys.stderr, flush=True))
    print(f"manuscript: {paths.shown(ms.path)} ({word_count(ms.body):,} words)")
    if ms.gutenberg_stripped:
        print("Project Gutenberg header and licence found and removed")
    print(f"structure: {len(structure.chapters)} chapter(s), {len(structure.sections)} scene(s), "
          f"paragraphs {'one per line' if structure.one_per_line else 'separated by blank lines'}")
    for note in notes:
        print(f"note: {note}")
    print()
    print("| chunk | words | tokens | starts here because |\n|---|---|---|---|")
    for c in chunks:
        print(f"| {c.name} | {c.words} | {c.tokens} | {c.reason[:90]} |")
    outputs = planned_outputs(cfg, ms, structure, chunks, notes, out_dir)
    if args.dry_run:
        print(f"\ndry run: nothing written. Would write {len(chunks)} chunk files and the "
              f"report into {paths.shown(out_dir)}/")
        return 0
    changed, moved = write_outputs(outputs, out_dir, cfg.pipeline.chunk_glob, args.force)
    print(f"\n{len(changed)} file(s) written, {len(outputs) - len(changed)} unchanged, in "
          f"{paths.shown(out_dir)}/ (report: segment_report.md)")
    if moved:
        print(f"moved {len(moved)} old chunk file(s) into backup/")
    print(f"\nnext: read the report, then\n  python fine-tuning/training/1_prepare_data.py "
          f"--config {paths.shown(cfg.path)} --book {paths.shown(out_dir)}")
    return 0
