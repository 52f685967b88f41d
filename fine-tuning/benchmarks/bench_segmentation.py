#!/usr/bin/env python3
"""Benchmark: how well the splitter finds a scene change, and what stage 0 makes
of whole novels.

1. Chapter seams. For every pair of consecutive chapters of The War of the
   Worlds, Jekyll and Hyde and A Study in Scarlet, the two chapters' text is
   joined with an ordinary paragraph break (heading and its extra blank lines
   removed; a page-number line left at the end of the first chapter removed
   too), and the splitter is asked for exactly one cut. Exact: the cut is on the
   seam; within one: at most one paragraph off (page-number lines not counted).
2. Whole novels through stage 0 (rehearsal config: SmolLM2 tokenizer, budget
   style_pipeline.segment_max_tokens): chunks, their token range, and how many
   cross a chapter heading found by an independent pattern (a capitalised
   heading line after two or more blank lines).

The signal weights are tuned on the development novels (Austen, Dickens, Stoker,
Wilde: `--dev`); the three novels above are the held-out test set (default).
`--all` runs both.

Run:    python fine-tuning/benchmarks/bench_segmentation.py [--dev | --all] [--verbose]
Output (test set): wells_the_war_of_the_worlds: 26 pairs, exact 0 (0%), within one paragraph 3 (12%)
        stevenson_jekyll_and_hyde: 9 pairs, exact 9 (100%), within one paragraph 9 (100%)
        doyle_a_study_in_scarlet: 13 pairs, exact 13 (100%), within one paragraph 13 (100%)
        test set (held out): all 48 pairs: exact 22 (46%), within one paragraph 25 (52%) (target: 80% exact)
        wells_the_war_of_the_worlds: 27 chapters, 41 chunks, 253-2981 tokens (median 2031),
        0 cross a chapter heading (target 0); 2.1 s
"""
import argparse
import os
import re
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
FT = HERE.parent
os.environ.setdefault("HF_HUB_OFFLINE", "1")
from styletune.data.manuscript import analyse, read_manuscript  # noqa: E402
from styletune.data.seams import candidates, plan, units  # noqa: E402
from styletune.errors import InputError  # noqa: E402

CORPUS = FT / "data" / "corpus"
NOVELS = ("wells_the_war_of_the_worlds.txt", "stevenson_jekyll_and_hyde.txt",
          "doyle_a_study_in_scarlet.txt")
# The development set: signal weights are tuned on these, never on NOVELS.
DEV_NOVELS = ("austen_pride_and_prejudice.txt", "dickens_oliver_twist.txt",
              "stoker_dracula.txt", "wilde_the_picture_of_dorian_gray.txt")
_CHAPTERISH = re.compile(r"CHAPTER|^[IVXLC]+\.|/ [IVXLC]+\.")
_PAGE_MARKER_END = re.compile(r"\n+\[?\d{1,4}[)\]]$")
_PAGE_MARKER = re.compile(r"^\[?\d{1,4}[)\]]$")
# An independent heading finder for the crossing check: a short line in capitals
# (or CHAPTER ...) after at least two blank lines.
_HEADING_LINE = re.compile(r"\n\n\n+[ \t]*((?:CHAPTER|BOOK|PART) [^\n]+|[IVXLC]+\.|"
                           r"[A-Z][A-Z .,'’-]{3,60})[ \t]*\n")


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--corpus", type=Path, default=CORPUS)
    p.add_argument("--verbose", action="store_true", help="print every miss")
    p.add_argument("--skip-novels", action="store_true", help="only the chapter-seam test")
    p.add_argument("--dev", action="store_true",
                   help="the development novels (Austen, Dickens, Stoker, Wilde) instead "
                        "of the held-out test novels")
    p.add_argument("--all", action="store_true", help="both sets, dev first")
    return p.parse_args()


def chapters(body):
    """[(title, (start, end))] of the book's real chapters (those with a chapter-shaped
    heading when the book has them; Jekyll's are capitalised titles)."""
    st = analyse(body)
    spans = {}
    for s in st.sections:
        if s.chapter:
            a, b = spans.get(s.chapter, (s.start, s.end))
            spans[s.chapter] = (min(a, s.start), max(b, s.end))
    titles = dict(st.chapters)
    strong = [n for n in spans if _CHAPTERISH.search(titles[n])]
    keep = strong if len(strong) >= 3 else sorted(spans)
    return [(titles[n], spans[n]) for n in sorted(keep)]


def seam_distances(path, verbose=False):
    body = read_manuscript(path).body
    chs = chapters(body)
    out = []
    for (_, (a1, a2)), (title, (b1, b2)) in zip(chs, chs[1:]):
        first = _PAGE_MARKER_END.sub("", body[a1:a2]).rstrip()
        text = first + "\n\n" + body[b1:b2]
        truth = len(first) + 2
        cut = plan(len(text), candidates(text), lambda a, b: 0, n_parts=2)
        offset = cut[0].offset if cut else 0
        starts = [a for a, b, _ in units(text) if not _PAGE_MARKER.match(text[a:b].strip())]
        dist = abs(sum(s < offset for s in starts) - sum(s < truth for s in starts))
        out.append(dist)
        if verbose and dist:
            print(f"  miss before '{title[:40]}' ({dist} paragraphs off): cut at "
                  f"{text[offset:offset + 50]!r}  ({'; '.join(cut[0].signals)})")
    return out


def novel_chunks(path, cfg):
    from styletune.data.segment import segment
    ms, structure, chunks, notes = segment(cfg, path)
    headings = [m.start(1) for m in _HEADING_LINE.finditer(ms.body)]
    crossing = sum(any(c.start < h < c.end for h in headings) for c in chunks)
    return chunks, crossing, len(structure.chapters)


def seam_report(label, names, corpus, verbose, target):
    total = []
    for name in names:
        d = seam_distances(corpus / name, verbose)
        total += d
        print(f"{Path(name).stem}: {len(d)} pairs, exact {sum(x == 0 for x in d)} "
              f"({sum(x == 0 for x in d) / len(d):.0%}), within one paragraph "
              f"{sum(x <= 1 for x in d)} ({sum(x <= 1 for x in d) / len(d):.0%})")
    print(f"{label}: all {len(total)} pairs: exact {sum(x == 0 for x in total)} "
          f"({sum(x == 0 for x in total) / len(total):.0%}), within one paragraph "
          f"{sum(x <= 1 for x in total)} ({sum(x <= 1 for x in total) / len(total):.0%})"
          + (" (target: 80% exact)" if target else ""))


def main():
    args = parse_args()
    sets = []
    if args.dev or args.all:
        sets.append(("dev set (tuning)", DEV_NOVELS, False))
    if not args.dev or args.all:
        sets.append(("test set (held out)", NOVELS, True))
    print("1. One cut in two joined chapters (heading removed)")
    for label, names, target in sets:
        print(f"-- {label}")
        seam_report(label, names, args.corpus, args.verbose, target)
    if args.skip_novels:
        return
    from styletune.config import load_config
    cfg = load_config(FT / "configs" / "cpu_rehearsal.yaml")
    print(f"\n2. Whole novels through stage 0 (SmolLM2 tokenizer, budget "
          f"{cfg.pipeline.segment_max_tokens} tokens, scenes under "
          f"{cfg.pipeline.segment_min_tokens} joined)")
    for name in [n for _, names, _ in sets for n in names]:
        start = time.perf_counter()
        try:
            chunks, crossing, n_chapters = novel_chunks(args.corpus / name, cfg)
        except InputError as e:
            print(f"{Path(name).stem}: stage 0 refused it: {e}")
            continue
        tokens = [c.tokens for c in chunks]
        print(f"{Path(name).stem}: {n_chapters} chapters, {len(chunks)} chunks, "
              f"{min(tokens)}-{max(tokens)} tokens (median {sorted(tokens)[len(tokens) // 2]}), "
              f"{crossing} cross a chapter heading (target 0); {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
