#!/usr/bin/env python3
"""Your book, from manuscript to your editor: stages 0-5 in order (`make book` runs this).

Reads   BOOK: a whole manuscript (.txt, .md or .docx), which stage 0 cuts into chunk
        files in data/raw/<manuscript name>/, or a folder of chunk files you curated
        (stage 0 is then skipped). The config (default: the main one, the 8B on a GPU).
Writes  what each stage writes (see each script's --help), and
        <output_dir>/../book_manifest.<config name>.json: each stage's input and output
        hashes, so a rerun skips every stage whose inputs and outputs are unchanged
        ("fresh").
Stops   (exit 3) where you must decide or act, saying what to do and how to go on:
        - a chunk is too long for one example: the splitter's proposed cuts are shown;
        - with --stop-for-review: stage 0's review lists cuts for you to decide;
        - before training on a GPU while the rules file is still the sample book's
          and the book is yours (write your own: README step 3);
        - no GPU and the config trains on one (rehearse on CPU with the CPU config);
        - a chunk folder make book did not write, or edited chunks and a new manuscript.
        A stage that fails stops the run with its own message and exit code.

Run     make book BOOK=~/novel/manuscript.docx
        python fine-tuning/training/book_to_editor.py ~/novel/manuscript.docx
        ... --config configs/cpu_rehearsal.yaml   (the whole path on CPU, small model)
        ... --backend llamacpp   --dry-run        (which stages would run or be skipped,
                                                   and what each reads and writes)

Output  === stage 0: cut the manuscript into chunk files
        ...
        === stage 1: make the training examples: fresh (inputs and outputs unchanged), skipped
"""
import argparse
import sys

from styletune import cli  # beside this script; cli turns a missing package into one line


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser(__doc__)
    p.add_argument("book", help="the manuscript (.txt, .md, .docx) or a folder of chunk files")
    from styletune.deploy.serve import BACKENDS, DEFAULT_BACKEND
    p.add_argument("--backend", choices=BACKENDS, default=DEFAULT_BACKEND,
                   help=f"the server stage 5 sets Continue up for (default: {DEFAULT_BACKEND})")
    p.add_argument("--stop-for-review", action="store_true",
                   help="stop after stage 0 when its review lists seams to decide (make book REVIEW=stop)")
    p.add_argument("--dry-run", action="store_true",
                   help="say which stages would run and which are fresh; run nothing")
    return p


def main(argv=None) -> int:
    from styletune import book
    return cli.run_main(book.run, build_parser().parse_args(argv),
                        "interrupted: every stage finished so far is recorded; run it again to go on")


if __name__ == "__main__":
    sys.exit(main())
