"""What split_oversized_chunks.py prints and writes: chunk files whose stage-1
example is over the limit, cut at their best scene boundaries into a/b/... parts,
the original moved into backup/."""
import shlex
import sys

from styletune import paths
from styletune.config import load_config
from styletune.data.chunks import CHUNK_NAME, discover, load_chunks
from styletune.data.examples import example_sizes
from styletune.data.seams import MARGINS, Measure, alternatives, cut_before_text, cut_to_fit, writer_cuts
from styletune.data.segment import chunk_lengths
from styletune.data.tokens import load_counter
from styletune.errors import InputError
from styletune.fileio import read_text, write_outputs
from styletune.text.paragraphs import indent_before
from styletune.text.patterns import word_count
from styletune.text.sentences import build_punkt


def part_names(name, n):
    m = CHUNK_NAME.match(name)
    if not m:
        stem, dot, ext = name.rpartition(".")
        return [f"{stem}_{chr(97 + i)}.{ext}" for i in range(n)]
    return [f"{m.group(1)}{chr(97 + i)}{m.group(4)}" for i in range(n)]


def part_start(raw, cut) -> int:
    """Where the part after `cut` starts: its first line's first character (the
    paragraph's indent goes with it, as typed)."""
    return cut.offset - indent_before(raw, cut.offset)


def counted_parts(cfg, counter, others, name, raw, cuts):
    """[(part name, text, tokens as stage 1 counts them)] for `raw` cut at `cuts`."""
    bounds = [0] + [part_start(raw, c) for c in cuts] + [len(raw)]
    texts = [raw[a:b] for a, b in zip(bounds, bounds[1:])]
    if "".join(texts) != raw:  # the parts are written in place of the file
        raise RuntimeError(f"bug: the parts of {name} would not rebuild it byte for byte "
                           f"(cuts at {[c.offset for c in cuts]}); nothing was changed. "
                           "Please report it with the chunk file.")
    names = part_names(name, len(texts))
    exact = example_sizes(others + list(zip(names, texts)), None, counter, cfg.pipeline)
    return list(zip(names, texts, [exact.get(n, 0) for n in names]))


def proposed_parts(cfg, counter, others, chunk, raw, lengths, punkt):
    """(cuts, parts, the places considered, the measure): stage 0's chunker on one
    chunk file, counted exactly; a safety margin on the estimate grows until every
    part fits."""
    limit = lengths.maximum
    for margin in MARGINS:
        measure = Measure(counter, raw, margin=margin)
        cuts, places = cut_to_fit(raw, measure.tokens, lengths, punkt, fix="raise --limit",
                                  where=f"{chunk.path}: ")
        parts = counted_parts(cfg, counter, others, chunk.name, raw, cuts)
        if all(t <= limit for _, _, t in parts):
            return cuts, parts, places, measure
    raise InputError(f"{chunk.path}: no cut found whose parts all fit {limit} tokens as stage 1 "
                     "counts them. Choose the cuts yourself with --cut-before (a dry run lists "
                     "places), or raise --limit.")


def _context(text, offset, lines=3):
    before = text[:offset].rstrip("\n").split("\n")[-lines:]
    after = text[offset:].split("\n")[:lines]
    clip = lambda s: s if len(s) <= 100 else s[:97] + "..."  # noqa: E731
    return ["    " + clip(x) for x in before] + ["    ✂ ─────────────"] + ["    " + clip(x) for x in after]


def run(args) -> int:
    cfg = load_config(args.config)
    s = cfg.pipeline
    book = paths.resolve_cli(args.book) if args.book else s.book_dir
    limit = args.limit or cfg.sequence_len
    found, _ = discover(book, s.chunk_glob)
    chunks, _ = load_chunks(found, exclude=set(s.exclude_chunks))
    print(f"config: {paths.shown(cfg.path)}\nbook: {paths.shown(book)} ({len(chunks)} chunk files); "
          f"limit: {limit} tokens per example")
    print("... counting every chunk's example as stage 1 does", file=sys.stderr, flush=True)
    counter = load_counter(cfg)
    punkt, _ = build_punkt([c.text for c in chunks])
    sizes = example_sizes([(c.name, c.text) for c in chunks], punkt, counter, cfg.pipeline)
    oversized = [c for c in chunks if sizes.get(c.name, 0) > limit]
    lengths = chunk_lengths(cfg, [t for t in sizes.values() if t <= limit], maximum=limit)
    if not oversized:
        print("no chunk is over the limit: nothing to split"
              + (" (--cut-before only splits chunks over the limit)" if args.cut_before else ""))
        return 0
    plans, left_alone = [], []
    todo = []
    for chunk in oversized:
        m = CHUNK_NAME.match(chunk.name)
        if m and m.group(3):
            left_alone.append(chunk)
        else:  # the file's own text, so the parts rebuild it exactly
            todo.append((chunk, read_text(chunk.path)))
    chosen = writer_cuts(todo, args.cut_before or [])
    others_of = lambda chunk: [(c.name, c.text) for c in chunks if c is not chunk]  # noqa: E731
    for chunk, raw in todo:
        if chunk.name in chosen:
            cuts, places, measure = chosen[chunk.name], [], None
            parts = counted_parts(cfg, counter, others_of(chunk), chunk.name, raw, cuts)
            over = [(n, t) for n, _, t in parts if t > limit]
            if over:
                raise InputError(f"{chunk.name}: with the cuts you chose, {over[0][0]} is still "
                                 f"{over[0][1]} tokens, over the {limit} limit. Add another "
                                 "--cut-before inside it (a dry run without --cut-before lists places that fit).")
        else:
            cuts, parts, places, measure = proposed_parts(cfg, counter, others_of(chunk), chunk, raw,
                                                          lengths, punkt)
        plans.append((chunk, raw, cuts, parts, places, measure))
    for chunk in left_alone:
        print(f"left alone: {chunk.name} ({sizes[chunk.name]} tokens) is already a split part; "
              "split it by hand or raise the limit")
    print(f"parts aim at {lengths.target} tokens each (minimum {lengths.minimum})")
    for chunk, raw, cuts, parts, places, measure in plans:
        print(f"\n{chunk.name}: {sizes[chunk.name]} tokens -> {len(parts)} parts")
        mine = chunk.name in chosen
        others = ([[]] * len(cuts) if mine else
                  alternatives(cuts, places, measure.tokens, lengths, len(raw)))
        for cut, others in zip(cuts, others):
            print(f"  cut at character {part_start(raw, cut)}: {'; '.join(cut.signals)}")
            print("\n".join(_context(raw, part_start(raw, cut))))
            for alt in others:
                print(f"    or instead: --cut-before {shlex.quote(cut_before_text(raw, alt.offset))} "
                      f"({'; '.join(alt.signals)})")
    print("\n| original chunk | words | split into | words | description |\n|---|---|---|---|---|")
    for chunk, raw, cuts, parts, _, _ in plans:
        for i, (name, text, tokens) in enumerate(parts):
            opening = " ".join(text.split()[:10])
            print(f"| {chunk.name if i == 0 else ''} | {word_count(raw) if i == 0 else ''} | {name} | "
                  f"{word_count(text)} | {opening}... ({tokens} tokens) |")
    if args.dry_run:
        print("\ndry run: nothing written")
        return 0
    for chunk, raw, cuts, parts, _, _ in plans:  # check everything before changing anything
        for name, _, _ in parts:
            if (book / name).exists():
                raise InputError(f"{paths.shown(book / name)} already exists: rename or remove it, "
                                 "then rerun; nothing was changed")
    for chunk, raw, cuts, parts, _, _ in plans:
        write_outputs({book / name: text.encode("utf-8") for name, text, _ in parts}, force=False,
                      retire=[chunk.path])
        print(f"split {chunk.name} into {', '.join(n for n, _, _ in parts)}; original in "
              f"{paths.shown(book / 'backup')}/")
    return 0
