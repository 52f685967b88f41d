#!/usr/bin/env python3
"""Stage 0: cut a whole manuscript into chunk files, scene-sized, where a writer would.

Reads   one manuscript: .txt or .md (UTF-8), or .docx (italics kept as *...*).
        Finds chapter headings (Chapter 1, CHAPTER IV., BOOK ONE + I., Prologue,
        Seventh memory - Mother, # headings; ONE, 1. The Falling Star, and titles
        alone such as THE FALLING STAR only as a series: docs/stages.md), scene breaks
        (***, * * *, #, ~, §, extra blank lines) and paragraphs (blank-line separated,
        one per line, or print's indented layout).
        Project Gutenberg's header and licence are removed when present; front
        matter (title page, contents; a Markdown file's metadata block, --- title:
        ... ---) and back matter (after THE END, or from a heading such as
        Acknowledgements or Transcriber's Notes) are no chunk.
        --out's segment_decisions.json: your answers to earlier reviews.
Cuts    every chapter heading starts a chunk; inside a chapter, a dynamic program
        chooses the cuts: scene-break marks first (unless the scenes on both sides
        are short; extra blank lines alone count as layout where the text plainly
        runs on across them: a colon or dash or a block set in from the margin
        before, or dialogue, and no time or place opening after), elsewhere the
        paragraph starts the seam model scores highest,
        chunk lengths near style_pipeline.chunk_target_tokens (default: the median
        of chunk files you cut by hand in --out or book_dir, not the sample book's
        for another manuscript, else 55% of sequence_len), none over sequence_len, none under segment_min_tokens unless
        a whole chapter is. Where headings and marks make short chunks, the length
        cost aims higher (up to twice) so the chunks' median stays near the target
        (the report's notes say so). Every example is counted by stage 1's own builder.
Writes  into --out (default: style_pipeline.book_dir once you set it; while it is still
        the sample book's, data/raw/<manuscript name>/ beside it, which git ignores)
        chunk_NNN_<chapter>_<slug>.txt
        files (ch05 for your Chapter 5); segment_report.md (each chunk: chapter, words, tokens, why it starts
        there); segment_review.md + .json (the cuts made with no mark in the text,
        those made at a run of blank lines alone, no visible mark, and the marks
        left uncut, most doubtful first, each with its alternatives);
        segment_manifest.json (hashes, and the text between chunks verbatim: chunks +
        separators rebuild the manuscript). Refuses a folder that already holds
        other chunk files unless --force (old chunk files are then copied into backup/
        first, unless only renumbered), and, even with --force, chunk files edited
        since stage 0 wrote them. Each --decide answer is said back in words, and
        the cuts a recut changed are listed with their review ids.

Run     python fine-tuning/training/0_segment_manuscript.py MANUSCRIPT --out data/raw/my_book --dry-run
        python fine-tuning/training/0_segment_manuscript.py MANUSCRIPT --out data/raw/my_book
        ... --force --decide s03=alt1 --decide 'cut:First words of a paragraph'
        ... --config configs/cpu_rehearsal.yaml
        python fine-tuning/training/0_segment_manuscript.py MANUSCRIPT --without-page-numbers COPY.txt

Output  (the sample manuscript with --config configs/cpu_rehearsal.yaml)
        lengths: target 1647 tokens per example, minimum 500, at most 4096 (sequence_len)
        | chunk | words | tokens | starts here because |
        | chunk_001_afterwards_when_consortiums_inquiry.txt | 1828 | 2470 | after the title: The Quiet Orbit |
        | chunk_002_captain_came_in_at_ten.txt | 2330 | 3205 | scene break: * * * |
        | chunk_005_on_morning_of_seventh_day.txt | 1284 | 1846 | seam: time phrase ('On the morning of...'); vocabulary changes |
        review: 1 cut(s) guessed with no visible mark in the text (0 of them at blank lines alone),
        then 0 mark(s) left uncut; 0 decision(s) of yours applied
"""
import argparse
import sys

from styletune import cli  # beside this script; cli turns a missing package into one line


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser(__doc__, epilog="Too-long chunk files later: split_oversized_chunks.py")
    p.add_argument("manuscript", help="the whole manuscript (.txt, .md or .docx)")
    p.add_argument("--out", help="folder for the chunk files (default: style_pipeline.book_dir once "
                   "you set it, else data/raw/<manuscript name>/)")
    p.add_argument("--dry-run", action="store_true",
                   help="find the structure, plan and count the chunks; write nothing")
    p.add_argument("--decide", action="append", metavar="ID=ACTION",
                   help="answer a seam of the last review (segment_review.md): ID=keep, ID=drop, "
                        "ID=cut, ID=alt1..3, or 'cut:First words of a paragraph', 'drop:...', 'whole:First...|Next...'; recorded in "
                        "segment_decisions.json, then the book is recut around every decision "
                        "(repeatable)")
    p.add_argument("--without-page-numbers", metavar="OUT",
                   help="write a copy of the manuscript without the page numbers a printed edition "
                        "left ('11)', '[11]', '- 11 -', 'Page 11'; '11.' where it splits a sentence), "
                        "each sentence one split joined again, then stop; the manuscript is not changed")
    p.add_argument("--force", action="store_true",
                   help="write into a folder that holds other chunk files (every old chunk file "
                        "it replaces or leaves out is copied into backup/ first; chunk files you "
                        "edited since stage 0 wrote them are never replaced)")
    return p


def main(argv=None) -> int:
    from styletune.data import segment
    return cli.run_main(segment.run, build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
