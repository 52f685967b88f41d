#!/usr/bin/env python3
"""Benchmark: how continuations join a writer's text, on a novel the models never
trained on, with enough prompts of each kind to tell two models apart (stage 4's
Joins table has a handful a row on the sample book).

Stage 4's own prompts and measures (eval/prompts.join_prompts, eval/evaluate.
join_measures, eval/joins.py), on windows of a corpus novel (default: The War of
the Worlds, which the demo never sees), its hard-wrapped lines joined into
paragraphs. For each model and kind of stop: the mean probability that the first
token joins right, with a 95% bootstrap interval over the prompts, and the share of
greedy continuations that join right as Continue shows them. Every model is read
with the last model's tokenizer and chat template, as stage 4 reads the base with
the tuned model's.

Run:    python fine-tuning/benchmarks/bench_joins.py BASE_DIR TUNED_DIR [--novel PATH] [--prompts 40]
        (make demo leaves fine-tuning/models/SmolLM2-135M-Instruct and
        fine-tuning/outputs/rehearsal/merged)
Output: | mid-word | 40 | 68.0% [56.5%, 77.9%] | 65% | 72.6% [62.6%, 81.3%] | 78% |  (~3 min a model on 2 cores)
"""
import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
from corpus_chunks import paragraph_chunks  # noqa: E402  (beside this script)
from styletune.eval import joins  # noqa: E402
from styletune.eval.attribution import bootstrap_ci  # noqa: E402
from styletune.eval.evaluate import free, join_measures, joins_summary  # noqa: E402
from styletune.eval.prompts import in_the_editor, join_prompts, spread, validation_prompts  # noqa: E402
from styletune.fileio import normalise, read_text  # noqa: E402
from styletune.text import stops  # noqa: E402
from styletune.text.gutenberg import gutenberg_body  # noqa: E402
from styletune.text.sentences import build_punkt, paragraph_spans  # noqa: E402

HERE = Path(__file__).resolve().parent
NOVEL = HERE.parent / "data" / "corpus" / "wells_the_war_of_the_worlds.txt"
WINDOW_CHARS = 3600   # ~600 words: prompts and the author's continuation come from one window
BOOTSTRAP = 2000


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("models", nargs="+", help="model folders; the last one's tokenizer and template serve all")
    p.add_argument("--novel", type=Path, default=NOVEL, help="a plain-text novel (default: %(default)s)")
    p.add_argument("--prompts", type=int, default=40, help="prompts of each kind, spread over the novel (default 40)")
    return p.parse_args(argv)


def segments(novel: Path) -> list[str]:
    """The novel's body as windows of whole paragraphs (at most WINDOW_CHARS), each
    paragraph's hard-wrapped lines joined by spaces."""
    body, _ = gutenberg_body(normalise(read_text(novel)))
    return paragraph_chunks("\n\n".join(" ".join(body[a:b].split()) for a, b in paragraph_spans(body)),
                            WINDOW_CHARS)


def prompt_set(texts: list[str], count: int, folder: str) -> list:
    """Stage 4's join prompts from these texts, `count` of each kind at most (the
    sentence ends without the empty prefix a window has no use for), as the editor
    sends them: each window a file of `folder` on Continue's path line."""
    conversations = [[{"role": "user", "content": ""}, {"role": "assistant", "content": t}] for t in texts]
    names = [f"window_{i + 1:03d}" for i in range(len(texts))]
    ev = {"generation_tokens": 48, "prompts_per_chunk": 2, "prompt_words": 100, "max_prompts": count}
    punkt, _ = build_punkt(texts)
    ends = spread([p for p in validation_prompts(conversations, punkt, ev, names) if p.text.strip()], count)
    return in_the_editor(join_prompts(ends, conversations, ev, names, stops.words_of(texts)), folder)


def labels(models: list[str]) -> list[str]:
    """Each model folder by the fewest trailing path parts that tell it from the others
    (two runs' folders are both called merged)."""
    parts = [Path(m).resolve().parts for m in models]
    for k in range(1, max(map(len, parts)) + 1):
        names = ["/".join(p[-k:]) for p in parts]
        if len(set(names)) == len(names):
            return names
    return list(models)


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    missing = [m for m in args.models if not (Path(m) / "config.json").is_file()]
    if missing or not args.novel.is_file():
        print(f"not found: {', '.join(missing) or args.novel} (a model folder with config.json; "
              "make demo leaves fine-tuning/outputs/rehearsal/merged)", file=sys.stderr)
        return 2
    prompts = prompt_set(segments(args.novel), args.prompts, args.novel.stem)
    tok = AutoTokenizer.from_pretrained(args.models[-1])
    classes = joins.token_classes(tok.batch_decode([[i] for i in range(len(tok))]), set(tok.all_special_ids))
    runs = {}
    for path in args.models:
        print(f"{path}: {len(prompts)} prompts", file=sys.stderr)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
        runs[path] = {"join": join_measures(model, tok, prompts, classes)}
        free(model)
    summary = joins_summary(prompts, runs)
    print(f"Joins on {args.novel.name} (first token right: mean [95% interval]; greedy right)\n")
    print("| prompts | n | " + " | ".join(f"{name}: first token | greedy" for name in labels(args.models)) + " |")
    print("|---|---|" + "---|---|" * len(args.models))
    for kind, row in summary.items():
        idx = [i for i, p in enumerate(prompts) if p.kind == kind]
        cells = []
        for m in args.models:
            low, high = bootstrap_ci([runs[m]["join"][i]["p"] for i in idx], n_boot=BOOTSTRAP)
            cells.append(f"{row[m]['first_token']:.1%} [{low:.1%}, {high:.1%}] | {row[m]['greedy']:.0%}")
        print(f"| {kind} | {row['prompts']} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
