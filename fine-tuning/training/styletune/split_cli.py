"""What split_oversized_chunks.py prints and writes: chunk files whose stage-1
example is over the limit, cut at their best scene boundaries into a/b/... parts,
the original moved into backup/."""
import re
import sys

from . import paths
from .chunks import discover, load_chunks
from .config import load_config
from .errors import InputError
from .fileio import read_text, write_atomic
from .sentences import build_punkt
from .split_chunks import Measure, candidates, example_tokens, plan, sentence_candidates, units
from .tokens import load_counter

_ID = re.compile(r"^(chunk_\d+)([a-z]*)(.*)$", re.IGNORECASE)


def part_names(name, n):
    m = _ID.match(name)
    if not m:
        stem, dot, ext = name.rpartition(".")
        return [f"{stem}_{chr(97 + i)}.{ext}" for i in range(n)]
    return [f"{m.group(1)}{chr(97 + i)}{m.group(3)}" for i in range(n)]


def propose(text, counter, limit, punkt, margin=8, min_part=0):
    """[Candidate] cuts so that every part's estimated example fits `limit`."""
    measure = Measure(counter, text, margin=margin)
    cands = candidates(text)
    cuts = plan(len(text), cands, measure.tokens, limit=limit, min_part=min_part)
    if cuts is None:
        extra = [c for a, b, _ in units(text) if measure.tokens(a, b) > limit
                 for c in sentence_candidates(text, punkt, a, b)]
        cuts = plan(len(text), cands + extra, measure.tokens, limit=limit, min_part=min_part)
    return cuts


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
    sizes = example_tokens(cfg, counter, [(c.name, c.text) for c in chunks], punkt)
    oversized = [c for c in chunks if sizes.get(c.name, 0) > limit]
    if not oversized:
        print("no chunk is over the limit: nothing to split")
        return 0
    plans, left_alone = [], []
    for chunk in oversized:
        m = _ID.match(chunk.name)
        if m and m.group(2):
            left_alone.append(chunk)
            continue
        raw = read_text(chunk.path)  # the file's own text, so the parts rebuild it exactly
        parts = None
        for margin in (8, 32, 96):
            cuts = propose(raw, counter, limit, punkt, margin=margin)
            if cuts is None:
                raise InputError(f"{chunk.path}: cannot be cut into parts of at most {limit} tokens "
                                 "(a single sentence is longer). Add punctuation or raise --limit.")
            bounds = [0] + [c.offset for c in cuts] + [len(raw)]
            texts = [raw[a:b] for a, b in zip(bounds, bounds[1:])]
            names = part_names(chunk.name, len(texts))
            others = [(c.name, c.text) for c in chunks if c is not chunk]
            exact = example_tokens(cfg, counter, others + list(zip(names, texts)))
            if all(exact.get(n, 0) <= limit for n in names):
                parts = list(zip(names, texts, [exact.get(n, 0) for n in names]))
                break
        if parts is None:
            raise InputError(f"{chunk.path}: no cut found whose parts all fit {limit} tokens")
        assert "".join(t for _, t, _ in parts) == raw  # conservation
        plans.append((chunk, raw, cuts, parts))
    for chunk in left_alone:
        print(f"left alone: {chunk.name} ({sizes[chunk.name]} tokens) is already a split part; "
              "split it by hand or raise the limit")
    for chunk, raw, cuts, parts in plans:
        print(f"\n{chunk.name}: {sizes[chunk.name]} tokens -> {len(parts)} parts")
        for cut in cuts:
            print(f"  cut at character {cut.offset}: {'; '.join(cut.signals)}")
            print("\n".join(_context(raw, cut.offset)))
    print("\n| original chunk | words | split into | words | description |\n|---|---|---|---|---|")
    for chunk, raw, cuts, parts in plans:
        for i, (name, text, tokens) in enumerate(parts):
            opening = " ".join(text.split()[:10])
            print(f"| {chunk.name if i == 0 else ''} | {len(raw.split()) if i == 0 else ''} | {name} | "
                  f"{len(text.split())} | {opening}... ({tokens} tokens) |")
    if args.dry_run:
        print("\ndry run: nothing written")
        return 0
    backup = book / "backup"
    for chunk, raw, cuts, parts in plans:  # check everything before changing anything
        if (backup / chunk.name).exists():
            raise InputError(f"{paths.shown(backup / chunk.name)} already exists: a backup is never "
                             "overwritten. Move it elsewhere (or delete it if it is a stale copy), "
                             "then rerun; nothing was changed")
        for name, _, _ in parts:
            if (book / name).exists():
                raise InputError(f"{paths.shown(book / name)} already exists: rename or remove it, "
                                 "then rerun; nothing was changed")
    for chunk, raw, cuts, parts in plans:
        data = chunk.path.read_bytes()
        write_atomic(backup / chunk.name, data)
        for name, text, _ in parts:
            write_atomic(book / name, text.encode("utf-8"))
        chunk.path.unlink()
        print(f"split {chunk.name} into {', '.join(n for n, _, _ in parts)}; original in "
              f"{paths.shown(backup / chunk.name)}")
    return 0
