#!/usr/bin/env python3
"""Split chunk files whose stage-1 example is longer than sequence_len (stage 1
names this command when it finds one), with stage 0's chunker.

Reads   the chunk files of a book folder (style_pipeline.book_dir or --book), and
        counts each one's example with stage 1's own builder.
Writes  for each chunk over the limit: parts named like the original with a
        letter (chunk_006_x.txt -> chunk_006a_x.txt, chunk_006b_x.txt). The cuts
        are stage 0's: scene-break marks first, elsewhere the paragraph starts the
        seam model scores highest, parts near style_pipeline.chunk_target_tokens
        (default: the median of the book's chunks that fit, i.e. your own cuts),
        never inside a paragraph unless one paragraph alone is too long. The parts
        together are the original byte for byte; the original moves into backup/
        (a name backed up before gets .2, .3: no backup is overwritten). Parts
        already split (006a) are left alone, so a rerun changes nothing.
        The dry run also lists, under each cut, the next-best places;
        --cut-before "first words of a paragraph" puts the cut there instead.
        Where no scene-break line marks the turn, the proposal is a guess: read it
        before applying.

Run     python fine-tuning/training/split_oversized_chunks.py --dry-run   # show the cuts
        python fine-tuning/training/split_oversized_chunks.py             # apply them
        ... --config configs/cpu_rehearsal.yaml  --book data/raw/my_book  --limit 3000
        ... --cut-before "The next morning the rain"                      # your cut instead

Output  (the sample book, --config configs/cpu_rehearsal.yaml --limit 3000 --dry-run)
        parts aim at 1568 tokens each (minimum 500)
        chunk_004_the_long_walk.txt: 3350 tokens -> 3 parts
          cut at character 3530: scene break '* * *'
            or instead: --cut-before 'She had seen it every day' (time phrase ...)
        | original chunk | words | split into | words | description |
        | chunk_004_the_long_walk.txt | 2429 | chunk_004a_the_long_walk.txt | 661 | They met in ... |
"""
import argparse
import sys

from styletune import cli  # beside this script; cli turns a missing package into one line


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser(__doc__)
    p.add_argument("--book", help="book folder of chunk files (overrides style_pipeline.book_dir)")
    p.add_argument("--limit", type=int,
                   help="tokens per example a part may have (default: sequence_len)")
    p.add_argument("--dry-run", action="store_true",
                   help="show each proposed cut with its context, signals and the next-best "
                        "places; write nothing")
    p.add_argument("--cut-before", action="append", metavar="TEXT",
                   help="the first words of a paragraph that should start a new part, your "
                        "choice instead of the proposed cut (repeat for more cuts; the chunk "
                        "is the one whose paragraph starts so)")
    return p


def main(argv=None) -> int:
    from styletune.data import split_oversized
    return cli.run_main(split_oversized.run, build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
