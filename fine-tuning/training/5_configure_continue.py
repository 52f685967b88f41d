#!/usr/bin/env python3
"""Stage 5: put the merged model in VS Code through Continue.dev (served by Ollama or vLLM).

Reads   the merged folder from stage 3 (`style_pipeline.merged_dir`, with its
        merge_manifest.json) and the system prompt file
        (`style_pipeline.system_prompt_file`, default configs/prompts/scifi_writer.md).
Writes  into `style_pipeline.serve_dir` (default outputs/serve/):
          Modelfile                  FROM the merged folder, a TEMPLATE that renders
                                     exactly what training rendered, stop tokens,
                                     context length, sampling defaults for fiction
          continue/config.yaml       a Continue config with the model entry (provider,
                                     model, apiBase, roles, context length, completion
                                     options, a system message that does not fight the style)
          continue/rules/<prompt>.md the writer's system prompt as a Continue rules file
          SERVE.md                   the `ollama create` and `vllm serve` commands, step by step
        With --install, also merges the entry into ~/.continue/config.yaml (other
        models and settings kept, a timestamped backup first) and adds the rules file.
        Nothing outside serve_dir changes without --install.

Run     python fine-tuning/training/5_configure_continue.py
        python fine-tuning/training/5_configure_continue.py --config configs/cpu_rehearsal.yaml
        ... --backend vllm   --quantize q4_K_M   --install [--continue-dir DIR]
        ... --gguf (needs llama.cpp's converter)   --dry-run   --force

Output (rehearsal config):
        model: fine-tuning/outputs/rehearsal/merged (chatml template, EOS <|im_end|>)
        wrote fine-tuning/outputs/rehearsal/serve/Modelfile
        ...
        next:  ollama create my-voice-rehearsal -f .../serve/Modelfile
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from styletune import cli, paths  # noqa: E402



def build_parser() -> argparse.ArgumentParser:
    p = cli.parser(__doc__)
    p.add_argument("--model", metavar="DIR", help="merged folder (default: style_pipeline.merged_dir)")
    p.add_argument("--backend", choices=("ollama", "vllm"), default="ollama",
                   help="which server the Continue entry talks to (default: ollama)")
    p.add_argument("--quantize", choices=("q8_0", "q4_K_M", "q4_K_S"),
                   help="let `ollama create` quantise (default: keep the merged dtype)")
    p.add_argument("--install", action="store_true",
                   help="also merge the entry and rules into your Continue folder (backup first)")
    p.add_argument("--continue-dir", default="~/.continue", metavar="DIR",
                   help="Continue's folder for --install (default: ~/.continue)")
    p.add_argument("--gguf", choices=("bf16", "q8_0"), metavar="TYPE",
                   help="also write a GGUF file with llama.cpp's converter (bf16 or q8_0)")
    p.add_argument("--dry-run", action="store_true", help="show what would be written; write nothing")
    p.add_argument("--force", action="store_true", help="overwrite files in serve_dir that differ")
    return p


def parse_args(argv=None):
    return build_parser().parse_args(argv)


def run(args) -> int:
    from styletune import serving
    from styletune.config import load_config
    from styletune.fileio import write_outputs

    cfg = load_config(paths.resolve_cli(args.config))
    model_dir = paths.resolve_cli(args.model) if args.model else cfg.pipeline.merged_dir
    plan = serving.Plan(cfg, model_dir, args.backend, args.quantize)
    converter = serving.find_gguf_converter() if args.gguf else None
    if args.gguf and converter is None:
        raise serving.ServeError(serving.GGUF_HELP)
    eos = plan.entry["defaultCompletionOptions"]["stop"][0]
    print(f"model: {paths.shown(model_dir)} ({cfg.chat_template} template, EOS {eos})")
    if args.dry_run:
        for path in plan.files.values():
            print(f"would write {paths.shown(path)}")
        if args.install:
            print(f"would merge the model entry into {Path(args.continue_dir).expanduser() / 'config.yaml'}")
        print("dry run: nothing written")
        return 0
    written = write_outputs(plan.outputs(), args.force)
    for path in plan.files.values():
        print(f"{'wrote' if path in written else 'unchanged'} {paths.shown(path)}")
    if converter:
        dest = cfg.pipeline.serve_dir / f"{cfg.pipeline.serve_model_name}.{args.gguf}.gguf"
        serving.export_gguf(converter, model_dir, dest, args.gguf)
        print(f"wrote {paths.shown(dest)}")
    if args.install:
        for line in serving.install(plan, Path(args.continue_dir).expanduser(), cfg):
            print(line)
        print("note: comments in config.yaml are not kept by the merge; the backup has them")
    print(f"next:  {plan.commands['ollama'] if args.backend == 'ollama' else plan.commands['vllm']}")
    print(f"       then see {paths.shown(plan.files['SERVE.md'])}")
    return 0


def main(argv=None) -> int:
    return cli.run_main(run, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
