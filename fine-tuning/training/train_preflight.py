#!/usr/bin/env python3
"""Stage 2's Python half: the checks and plan 2_train_lora.sh runs before Axolotl starts.

Reads   the config, stage 1's files and manifest, the installed packages, the
        base model (local folder or Hugging Face cache), the GPU(s), the disk.
Writes  the merged config Axolotl reads (<style_pipeline.log_dir>/<name>.axolotl.yaml) and
        --env-out, a small shell file of settings for the bash script (where things
        are, how to launch, the trackers off: styletune/train/preflight.py lists them).
Exit    0 ready, 2 usage or config error, 3 a check failed (one line: what and the fix).

Run     python fine-tuning/training/train_preflight.py --config CONFIG --env-out FILE [--resume] [--gpus N]
        (2_train_lora.sh runs it; a writer runs 2_train_lora.sh --dry-run instead)
"""
import argparse
import sys

from styletune import cli  # beside this script; cli turns a missing package into one line


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser(__doc__)
    p.add_argument("--env-out", required=True, help="shell file to write the settings to")
    p.add_argument("--resume", action="store_true",
                   help="continue from the newest checkpoint-N in output_dir")
    p.add_argument("--gpus", type=int, metavar="N",
                   help="train on N GPUs (default: every visible GPU); with the CPU rehearsal "
                        "config, N CPU processes")
    return p


def main(argv=None) -> int:
    from styletune.train import preflight
    return cli.run_main(preflight.run, build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
