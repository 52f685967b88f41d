"""What 1_prepare_data.py prints and writes."""
import json
import sys
import textwrap

from . import paths, report
from .config import load_config
from .errors import UserError
from .fileio import write_outputs  # noqa: F401 (stage 1's callers and tests)
from .stage1 import jsonl_bytes, manifest, prepare


def planned_outputs(result) -> dict:
    cfg = result.config
    rep = report.report_dict(result)
    outputs = {
        cfg.train_path: jsonl_bytes(result.train),
        cfg.validation_path: jsonl_bytes(result.validation),
    }
    rdir = cfg.pipeline.report_dir
    outputs[rdir / "stage1_report.json"] = (json.dumps(rep, indent=2, ensure_ascii=False) + "\n").encode()
    outputs[rdir / "stage1_report.md"] = report.markdown(rep).encode()
    outputs[rdir / "stage1_lengths.png"] = report.histogram_png(result)
    man = manifest(result, outputs)
    outputs[cfg.train_path.with_suffix(".manifest.json")] = \
        (json.dumps(man, indent=2, ensure_ascii=False) + "\n").encode()
    return outputs


def preview(examples, n):
    for e in examples[:n]:
        print(f"\n--- {e.chunk.name}: prefix {e.prefix_tokens} tokens ({e.ratio:.1%}), "
              f"completion {e.completion_tokens}, example {e.total_tokens} ---")
        if e.header:
            print(f"  [user turn opens with Continue's autocomplete path line: {e.header!r}]")
        print(textwrap.indent(e.prefix, "  "))
        opens = {" ": "a space", "\n": "a line break"}.get(e.completion[:1], "a word: the prompt ends "
                                                           "with the paragraph break")
        print(f"  ✂ ──────── cut: the model writes from here, starting with {opens} ────────")
        rest = e.completion
        print(textwrap.indent(rest[:400] + (" [...]" if len(rest) > 400 else ""), "  "))


def run(args) -> int:
    cfg = load_config(args.config)
    print(f"config: {paths.shown(cfg.path)}")
    result = prepare(cfg, book_dir=args.book, skip_overlong=args.skip_overlong,
                     say=lambda message: print(f"... {message}", file=sys.stderr, flush=True))
    rep = report.report_dict(result)
    print(f"book: {rep['book_dir']}  ({len(result.chunks)} chunk files)")
    print(f"tokens: {rep['tokenizer']}")
    print(f"sentences: {rep['sentence_splitter']}")
    print(report.markdown_body(rep))
    for warning in result.warnings():
        print(f"warning: {warning}", file=sys.stderr)
    if args.preview:
        preview(result.examples, args.preview)
    outputs = planned_outputs(result)
    if args.dry_run:
        print("\ndry run: nothing written. Would write:")
        for p in outputs:
            print(f"  {paths.shown(p)}")
        return 0
    changed = write_outputs(outputs, args.force)
    print()
    for p in outputs:
        print(f"{'wrote' if p in changed else 'unchanged'}: {paths.shown(p)}")
    print(f"\nnext: read {paths.shown(cfg.pipeline.report_dir / 'stage1_report.md')} (look at every "
          f"exception listed), then train:\n  fine-tuning/training/2_train_lora.sh --config "
          f"{paths.shown(cfg.path)}")
    return 0
