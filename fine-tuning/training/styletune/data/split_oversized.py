"""What split_oversized_chunks.py prints and writes: chunk files whose stage-1
example is over the limit, cut at their best scene boundaries into a/b/... parts,
the original moved into backup/."""
import re
import shlex
import sys

from styletune import paths
from styletune.config import load_config
from styletune.data.chunks import discover, load_chunks
from styletune.data.seams import Candidate, Measure, candidates, example_tokens, plan, sentence_candidates, units
from styletune.data.tokens import load_counter
from styletune.errors import InputError
from styletune.fileio import read_text, write_atomic
from styletune.text.sentences import build_punkt

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


def alternatives(text, cuts, counter, limit, k=3):
    """For each chosen cut, the next-best paragraph boundaries that would fit in its
    place (estimated count): what the writer can pick instead with --cut-before."""
    measure = Measure(counter, text, margin=8)
    offsets = [0] + [c.offset for c in cuts] + [len(text)]
    out = []
    for i, cut in enumerate(cuts, 1):
        lo, hi = offsets[i - 1], offsets[i + 1]
        fits = [c for c in candidates(text) if lo < c.offset < hi and c.offset != cut.offset
                and measure.tokens(lo, c.offset) <= limit and measure.tokens(c.offset, hi) <= limit]
        out.append(sorted(fits, key=lambda c: -c.score)[:k])
    return out


def _squash(text):
    return " ".join(text.split())


def _starts(raw, want):
    """Offsets of the paragraphs of `raw` that begin with `want` (whitespace squashed)."""
    return [a for a, _, _ in units(raw) if _squash(raw[a:a + 4 * len(want) + 40]).startswith(want)]


def cut_before_text(raw, offset, words=6):
    """The paragraph's first words, enough of them that no other paragraph of the
    chunk starts the same way: what to pass to --cut-before for this place."""
    end = next((b for a, b, _ in units(raw) if a == offset), len(raw))
    split = raw[offset:end].split()
    n = min(words, len(split))
    while n < min(len(split), 40) and len(_starts(raw, " ".join(split[:n]))) > 1:
        n += 1
    return " ".join(split[:n])


def writer_cuts(chunks, openings):
    """{chunk name: [Candidate]} from --cut-before: each opening must be the start of
    exactly one paragraph among `chunks` (whitespace and line wrapping ignored)."""
    found = {}
    for opening in openings:
        want = _squash(opening)
        hits = [(chunk, a) for chunk, raw in chunks for a in _starts(raw, want)] if want else []
        if not want or len(hits) != 1:
            inside = [chunk.name for chunk, raw in chunks if want and want in _squash(raw)]
            why = (f"{len(hits)} paragraphs begin with it: add words until one does" if len(hits) > 1 else
                   f"it is inside a paragraph of {inside[0]}, and a cut never falls inside one"
                   if inside else "no chunk over the limit contains it")
            raise InputError(f"--cut-before {opening!r}: {why}. Give the first words of the "
                             "paragraph that should start a new part, as they are in the file; "
                             "nothing was changed.")
        chunk, a = hits[0]
        if a == 0:
            raise InputError(f"--cut-before {opening!r} is the first paragraph of {chunk.name}: "
                             "a part must start later in the chunk")
        if any(c.offset == a for c in found.get(chunk.name, [])):
            raise InputError(f"--cut-before {opening!r} names a paragraph another --cut-before "
                             "already names: give each cut once; nothing was changed.")
        found.setdefault(chunk.name, []).append(Candidate(a, 0.0, ["your choice (--cut-before)"]))
    return {name: sorted(c, key=lambda c: c.offset) for name, c in found.items()}


def counted_parts(cfg, counter, others, name, raw, cuts):
    """[(part name, text, tokens as stage 1 counts them)] for `raw` cut at `cuts`."""
    bounds = [0] + [c.offset for c in cuts] + [len(raw)]
    texts = [raw[a:b] for a, b in zip(bounds, bounds[1:])]
    names = part_names(name, len(texts))
    exact = example_tokens(cfg, counter, others + list(zip(names, texts)))
    return list(zip(names, texts, [exact.get(n, 0) for n in names]))


def proposed_parts(cfg, counter, others, chunk, raw, limit, punkt):
    """The best cuts whose parts all fit, counted exactly; a safety margin on the
    estimate grows until they do."""
    for margin in (8, 32, 96):
        cuts = propose(raw, counter, limit, punkt, margin=margin)
        if cuts is None:
            raise InputError(f"{chunk.path}: cannot be cut into parts of at most {limit} tokens "
                             "(a single sentence is longer). Add punctuation or raise --limit.")
        parts = counted_parts(cfg, counter, others, chunk.name, raw, cuts)
        if all(t <= limit for _, _, t in parts):
            return cuts, parts
    raise InputError(f"{chunk.path}: no cut found whose parts all fit {limit} tokens")


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
        print("no chunk is over the limit: nothing to split"
              + (" (--cut-before only splits chunks over the limit)" if args.cut_before else ""))
        return 0
    plans, left_alone = [], []
    todo = []
    for chunk in oversized:
        m = _ID.match(chunk.name)
        if m and m.group(2):
            left_alone.append(chunk)
        else:  # the file's own text, so the parts rebuild it exactly
            todo.append((chunk, read_text(chunk.path)))
    chosen = writer_cuts(todo, args.cut_before or [])
    others_of = lambda chunk: [(c.name, c.text) for c in chunks if c is not chunk]  # noqa: E731
    for chunk, raw in todo:
        if chunk.name in chosen:
            cuts = chosen[chunk.name]
            parts = counted_parts(cfg, counter, others_of(chunk), chunk.name, raw, cuts)
            over = [(n, t) for n, _, t in parts if t > limit]
            if over:
                raise InputError(f"{chunk.name}: with the cuts you chose, {over[0][0]} is still "
                                 f"{over[0][1]} tokens, over the {limit} limit. Add another "
                                 "--cut-before inside it (a dry run without --cut-before lists places that fit).")
        else:
            cuts, parts = proposed_parts(cfg, counter, others_of(chunk), chunk, raw, limit, punkt)
        assert "".join(t for _, t, _ in parts) == raw  # conservation
        plans.append((chunk, raw, cuts, parts))
    for chunk in left_alone:
        print(f"left alone: {chunk.name} ({sizes[chunk.name]} tokens) is already a split part; "
              "split it by hand or raise the limit")
    for chunk, raw, cuts, parts in plans:
        print(f"\n{chunk.name}: {sizes[chunk.name]} tokens -> {len(parts)} parts")
        mine = chunk.name in chosen
        for cut, others in zip(cuts, [[]] * len(cuts) if mine else alternatives(raw, cuts, counter, limit)):
            print(f"  cut at character {cut.offset}: {'; '.join(cut.signals)}")
            print("\n".join(_context(raw, cut.offset)))
            for alt in others:
                print(f"    or instead: --cut-before {shlex.quote(cut_before_text(raw, alt.offset))} "
                      f"({'; '.join(alt.signals)})")
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
