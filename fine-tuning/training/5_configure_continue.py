#!/usr/bin/env python3
"""Stage 5: put the merged model in VS Code through Continue.dev (served by Ollama,
llama.cpp's llama-server or vLLM).

Reads   the merged folder from stage 3 (`style_pipeline.merged_dir`, with its
        merge_manifest.json), the system prompt file (`style_pipeline.system_prompt_file`,
        default configs/prompts/scifi_writer.md), and one validation example from stage 1
        (to check a GGUF).
Writes  into `style_pipeline.serve_dir` (default outputs/serve/):
          Modelfile                  for Ollama: FROM the merged folder, a TEMPLATE that
                                     renders exactly what training rendered, stop tokens,
                                     context length, sampling defaults for fiction
          continue/config.yaml       Continue's model entries for the chosen server: chat
                                     (all three modes' system messages replaced) and, for
                                     Ollama and llama.cpp, autocomplete in the training format
                                     with options for prose
          continue/rules/<prompt>.md the writer's system prompt as a Continue rules file
          SERVE.md                   how to start the server and use the model, step by step
          <name>.<type>.gguf         with --backend llamacpp or --gguf: the GGUF, checked in a
                                     real llama-server (loads, tokenises a training example as
                                     training did, renders chat as training did, stops at the
                                     end of a turn) where `make llama-server` built one
        With --install, also merges the entries into ~/.continue/config.yaml (other
        models and settings kept, a timestamped backup first) and adds the rules file.
        Nothing outside serve_dir changes without --install.

Run     python fine-tuning/training/5_configure_continue.py
        python fine-tuning/training/5_configure_continue.py --config configs/cpu_rehearsal.yaml
        ... --backend llamacpp [--gguf q8_0|bf16]   --backend vllm   --quantize q4_K_M
        ... --install [--continue-dir DIR]   --dry-run   --force
        ... --backend llamacpp --try "Haji and Alan walked along the street. ... Haji said,"

Output (rehearsal config, --backend llamacpp):
        model: fine-tuning/outputs/rehearsal/merged (chatml template, EOS <|im_end|>)
        wrote fine-tuning/outputs/rehearsal/serve/Modelfile
        ...
        wrote fine-tuning/outputs/rehearsal/serve/my-voice-rehearsal.q8_0.gguf
        checked: loads in llama-server (145 MB)
        checked: tokenises a training example as training did (1728 tokens)
        ... (chat and autocomplete prompts, the end-of-turn stop)
        next:  llama-server -m .../my-voice-rehearsal.q8_0.gguf --jinja ...
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from styletune import cli, llamacpp, paths  # noqa: E402



def build_parser() -> argparse.ArgumentParser:
    p = cli.parser(__doc__)
    p.add_argument("--model", metavar="DIR", help="merged folder (default: style_pipeline.merged_dir)")
    p.add_argument("--backend", choices=("ollama", "llamacpp", "vllm"), default="ollama",
                   help="which server the Continue entries talk to (default: ollama)")
    p.add_argument("--quantize", choices=("q8_0", "q4_K_M", "q4_K_S"),
                   help="let `ollama create` quantise (default: keep the merged dtype)")
    p.add_argument("--install", action="store_true",
                   help="also merge the entry and rules into your Continue folder (backup first)")
    p.add_argument("--continue-dir", default="~/.continue", metavar="DIR",
                   help="Continue's folder for --install (default: ~/.continue)")
    p.add_argument("--gguf", choices=("bf16", "q8_0"), metavar="TYPE",
                   help="write a GGUF file with llama.cpp's converter, bf16 or q8_0 "
                        "(--backend llamacpp: always, q8_0 unless given)")
    p.add_argument("--try", dest="try_text", metavar="TEXT",
                   help="with a GGUF: send TEXT (the end of a scene) through each route as Continue "
                        "sends it, and print the continuations joined to it")
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
    gguf_type = args.gguf or ("q8_0" if args.backend == "llamacpp" else None)
    if args.try_text and not gguf_type:
        raise serving.ServeError("--try needs a GGUF to serve: add --backend llamacpp or --gguf q8_0")
    plan = serving.Plan(cfg, model_dir, args.backend, args.quantize, gguf_type or "q8_0")
    if gguf_type and llamacpp.find_converter() is None:
        raise llamacpp.LlamaCppError(llamacpp.BUILD_HELP)
    eos = plan.entries[0]["defaultCompletionOptions"]["stop"][0]
    print(f"model: {paths.shown(model_dir)} ({cfg.chat_template} template, EOS {eos})")
    if args.dry_run:
        for path in list(plan.files.values()) + ([plan.gguf] if gguf_type else []):
            print(f"would write {paths.shown(path)}")
        if args.install:
            print(f"would merge the model entries into {Path(args.continue_dir).expanduser() / 'config.yaml'}")
        print("dry run: nothing written")
        return 0
    written = write_outputs(plan.outputs(), args.force)
    for path in plan.files.values():
        print(f"{'wrote' if path in written else 'unchanged'} {paths.shown(path)}")
    if gguf_type:
        write_gguf(cfg, model_dir, plan.gguf, gguf_type)
        if args.try_text:
            try_routes(cfg, model_dir, plan, args.try_text)
    if args.install:
        for line in serving.install(plan, Path(args.continue_dir).expanduser(), cfg):
            print(line)
        print("note: comments in config.yaml are not kept by the merge; the backup has them")
    print(f"next:  {plan.commands[args.backend]}")
    print(f"       then see {paths.shown(plan.files['SERVE.md'])}")
    return 0


def write_gguf(cfg, model_dir: Path, dest: Path, outtype: str) -> None:
    """Convert, then prove the GGUF serves the training format in a real llama-server;
    only a GGUF that passed (or could not be checked, said so) lands at dest."""
    from styletune import merge, serving

    unchecked = dest.with_name(dest.name + ".unchecked")
    llamacpp.convert(model_dir, unchecked, outtype)
    try:
        if llamacpp.find_server() is None:
            print("warning: the GGUF was not checked: no llama-server here (`make llama-server` builds one)")
        else:
            tok = merge.load_tokenizer(cfg, model_dir)
            conversation = merge.probe_conversations(cfg)[0]
            template = serving.AUTOCOMPLETE.get(cfg.template_family)
            for line in llamacpp.check_gguf(unchecked, tok, conversation, template):
                print(f"checked: {line}")
    except BaseException:
        unchecked.unlink(missing_ok=True)
        raise
    unchecked.replace(dest)
    print(f"wrote {paths.shown(dest)}")


def try_routes(cfg, model_dir: Path, plan, text: str) -> None:
    from styletune import merge, serving

    tok = merge.load_tokenizer(cfg, model_dir)
    system = serving.BASE_SYSTEM_MESSAGE + "\n\n" + plan.contents["rules"].split("---", 2)[-1].strip()
    entries = serving.continue_models(cfg, tok.eos_token, "llamacpp")
    for route, continuation in llamacpp.try_routes(plan.gguf, tok, entries, system, text).items():
        print(f"\n{route} (as Continue sends it; ⟨⟩ marks what the model wrote):\n"
              f"  ...{text[-80:]}⟨{continuation}⟩")


def main(argv=None) -> int:
    return cli.run_main(run, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
