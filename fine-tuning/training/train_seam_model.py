#!/usr/bin/env python3
"""Retrain the seam model (styletune/data/seam_model.json) from the corpus novels.

Reads   the seven public-domain novels in fine-tuning/data/corpus/: each one's
        chapter headings and scene-break lines are removed, and every paragraph
        boundary is labelled: was a seam here? (styletune/data/seam_training.py)
Writes  styletune/data/seam_model.json: the logistic regression's weights and the
        chunker's settings (CHUNKER below). Deterministic: the same novels give the
        same file, byte for byte (tests/test_chunker.py checks the shipped one).
        Figures on novels the model never saw: fine-tuning/benchmarks/bench_segmentation.py.

Run     python fine-tuning/training/train_seam_model.py            # rewrite the file
        python fine-tuning/training/train_seam_model.py --check    # compare, write nothing
"""
import sys

from styletune import cli  # beside this script; cli turns a missing package into one line

# The chunker's own settings, chosen with `bench_segmentation.py --tune` on the
# development novels (Austen, Dickens, Stoker, Wilde) only, the model weights
# trained without the novel measured:
# - length_weight: the length cost's scale, weight * ln(tokens / target)^2;
# - mark_score: a seam at a scene-break mark (a model seam's score is its logit);
# - seam_offset: added to every model seam's logit (the logit's own prior is a
#   chapter's rarity; a chunk boundary is several times as common).
# - talk_penalty: taken off a seam's score where the dialogue runs on across it.
CHUNKER = {"length_weight": 2.0, "mark_score": 8.0, "seam_offset": 2.0, "talk_penalty": 3.0}


def build_parser():
    p = cli.parser(__doc__)
    p.add_argument("--check", action="store_true",
                   help="retrain and compare with the shipped file; write nothing")
    return p


def run(args) -> int:
    from styletune import paths
    from styletune.data.seam_model import MODEL_FILE
    from styletune.data.seam_training import labelled_novel, model_bytes, train
    from styletune.fileio import write_atomic
    novels = sorted((paths.FINE_TUNING_DIR / "data" / "corpus").glob("*.txt"))
    print(f"... features of {len(novels)} novels", file=sys.stderr, flush=True)
    data = model_bytes(train([labelled_novel(p) for p in novels], CHUNKER))
    if args.check:
        same = MODEL_FILE.exists() and MODEL_FILE.read_bytes() == data
        print(f"{paths.shown(MODEL_FILE)}: {'the same' if same else 'DIFFERS from the retrained model'}")
        return 0 if same else 1
    write_atomic(MODEL_FILE, data)
    print(f"wrote {paths.shown(MODEL_FILE)}")
    return 0


if __name__ == "__main__":
    sys.exit(cli.run_main(run, build_parser().parse_args()))
