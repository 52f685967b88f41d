#!/usr/bin/env python3
"""Stage 0: cut a whole manuscript into chunk files at chapter and scene boundaries.

Reads   one manuscript: .txt or .md (UTF-8), or .docx (italics kept as *...*).
        Finds chapter headings (Chapter 1, CHAPTER IV., BOOK ONE + I., Prologue,
        Seventh memory - Mother, # headings), scene breaks (***, * * *, #, ~, §,
        extra blank lines) and paragraphs (blank-line separated or one per line).
        Project Gutenberg's header and licence are removed when present.
Writes  into --out (default: style_pipeline.book_dir) chunk_NNN_<chapter>_<slug>.txt
        files, each a scene or several short scenes of one chapter whose stage-1
        example fits style_pipeline.segment_max_tokens; a scene over it is cut at
        its best paragraph boundary. Plus segment_report.md (each chunk: chapter,
        words, tokens, why it starts there) and segment_manifest.json (hashes, and
        the text between chunks verbatim: chunks + separators rebuild the manuscript).
        Refuses a folder that already holds other chunk files unless --force.

Run     python fine-tuning/training/0_segment_manuscript.py MANUSCRIPT --out data/raw/my_book --dry-run
        python fine-tuning/training/0_segment_manuscript.py MANUSCRIPT --out data/raw/my_book
        ... --config configs/cpu_rehearsal.yaml   --force

Output (the sample book's manuscript, rehearsal config):
        structure: 0 chapter(s), 8 scene(s), paragraphs separated by blank lines
        | chunk | words | tokens | starts here because |
        | chunk_001_afterwards_when_consortiums_inquiry.txt | 1828 | 2452 | after the title: The Quiet Orbit |
        | chunk_002_captain_came_in_at.txt | 555 | 769 | scene break: * * * |
        | chunk_003_by_evening_of_first.txt | 1775 | 2430 | cut to fit the budget: time jump ('By the evening of...') |
"""
import argparse
import sys

from styletune import cli  # beside this script; cli turns a missing package into one line


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser(__doc__, epilog="Too-long chunk files later: split_oversized_chunks.py")
    p.add_argument("manuscript", help="the whole manuscript (.txt, .md or .docx)")
    p.add_argument("--out", help="folder for the chunk files (default: style_pipeline.book_dir)")
    p.add_argument("--dry-run", action="store_true",
                   help="find the structure, plan and count the chunks; write nothing")
    p.add_argument("--decide", action="append", metavar="ID=ACTION",
                   help="answer a seam of the last review (segment_review.md): ID=keep, ID=drop, "
                        "ID=cut, ID=alt1..3, or 'cut:First words of a paragraph', 'drop:...', 'whole:...'; recorded in "
                        "segment_decisions.json, then the book is recut around every decision "
                        "(repeatable)")
    p.add_argument("--force", action="store_true",
                   help="write into a folder that holds other chunk files (every old chunk file "
                        "it replaces or leaves out moves into backup/ first)")
    return p


def main(argv=None) -> int:
    from styletune.data import segment
    return cli.run_main(segment.run, build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
