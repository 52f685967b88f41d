#!/usr/bin/env python3
"""Stage 1: turn curated chunk files into prefix-completion training data.

Reads   the chunk files in `style_pipeline.book_dir` (default
        data/raw/the_quiet_orbit/, the sample book): chunk_001_*.txt, chunk_013a_*.txt, ...
        Everything else in the folder is skipped and listed; stage 0's
        segment_manifest.json there (the text between chunks, for scene openings), and
        the rules file (`style_pipeline.system_prompt_file`) a quarter of the drills open with.
Writes  where the config's `datasets[0].path` and `test_datasets[0].path` point
        (data/processed/training.jsonl, data/processed/validation.jsonl),
        a provenance manifest beside the training file (<name>.manifest.json),
        and in `style_pipeline.report_dir`: stage1_report.{md,json} and
        stage1_lengths.png (a histogram of example lengths).

Each example: {"messages": [{"role": "user", "content": <first 5-10% of the
chunk, cut at a sentence end>}, {"role": "assistant", "content": <the rest>}]}.
The two turns hold every character of the chunk (line endings unified, spaces at
line ends and blank lines around the text dropped; indents and blank lines between
paragraphs kept as typed): the space or paragraph break
at the cut opens the completion, or, in `typed_join_share` of the examples
(default half), ends the prompt as a writer who typed it before pausing leaves
it. `editor_header_share` of the examples (default half), and of the join drills and
scene openings without the chat route's system message, start the user turn
with the path line Continue's autocomplete sends before the text, so both editor
routes see the training format. Tokens are counted exactly, as Axolotl sees them
through styletune's prompt strategy (styletune/train/turns.py): the rendered chat
template with the base model's tokenizer, the prompt and the continuation
tokenised apart as a server tokenises a request. An example longer than
`sequence_len` is an error. Beside the examples, the training file holds
`join_drills_per_chunk` join drills per training chunk (default 4; data/drills.py):
windows of 10-60 words of the chunk stopping where a writer pauses mid-flow (after
a typed space or paragraph break, after a comma, inside a word), continued by the
next 24 words, with `"ends_turn": false`: no end-of-turn token is learnt from them.
A quarter open with the system message Continue's chat sends (ours, then the rules
file `system_prompt_file`), the text as its chat box sends it (lines joined by one
line break, no blank lines or indents); the examples never carry one. Then one scene opening
per two training chunks that follow each other (`scene_openings`, data/openings.py):
the last words of the first, the text between them as typed (stage 0's record, or a
paragraph break between chunks cut by hand), and the second's opening up to its
first cut, which no example's completion holds; also without an end of turn. A
validation chunk's opening is written so to validation.jsonl (held out, scored by
the validation loss and stage 4), whether scene_openings is on or not.

Exit    0 written (or dry run), 2 a problem the message names the fix for, 5 an example
        longer than sequence_len (the message names split_oversized_chunks.py).

Run     python fine-tuning/training/1_prepare_data.py                # main config
        python fine-tuning/training/1_prepare_data.py --config configs/cpu_rehearsal.yaml
        ... --book data/raw/my_novel   --dry-run   --preview 2   --force
        (--config and --book may be relative to the current folder or to fine-tuning/)

What it prints and writes, stage by stage: docs/stages.md.
"""
import argparse
import sys

from styletune import cli  # beside this script; cli turns a missing package into one line


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser(__doc__, epilog="How to read the report: docs/stages.md, 'Reading the report'.")
    p.add_argument("--book", help="book folder of chunk files (overrides style_pipeline.book_dir)")
    p.add_argument("--dry-run", action="store_true",
                   help="read, cut and count, show what would be written; write nothing")
    p.add_argument("--force", action="store_true", help="overwrite outputs that differ")
    p.add_argument("--preview", type=int, default=0, metavar="N",
                   help="print N examples with the cut marked, and one scene opening")
    p.add_argument("--skip-overlong", action="store_true",
                   help="leave out examples longer than sequence_len (listed in the report) "
                        "instead of stopping")
    return p


def main(argv=None) -> int:
    from styletune.data import prepare
    return cli.run_main(prepare.run, build_parser().parse_args(argv),
                        "interrupted: every output file is whole (old or new version); rerun to finish")


if __name__ == "__main__":
    sys.exit(main())
