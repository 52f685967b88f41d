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

from styletune import cli  # beside this script; cli turns a missing package into one line


def build_parser() -> argparse.ArgumentParser:
    from styletune.deploy.serve import BACKENDS, QUANTIZE_LEVELS
    p = cli.parser(__doc__)
    p.add_argument("--model", metavar="DIR", help="merged folder (default: style_pipeline.merged_dir)")
    p.add_argument("--backend", choices=BACKENDS, default="ollama",
                   help="which server the Continue entries talk to (default: ollama)")
    p.add_argument("--quantize", choices=QUANTIZE_LEVELS,
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


def main(argv=None) -> int:
    from styletune.deploy import serve
    return cli.run_main(serve.run, build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
