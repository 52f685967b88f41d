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
          <name>.<type>.gguf         with --backend llamacpp or --gguf: the GGUF (bf16 and q8_0
                                     from llama.cpp's converter; q6_K, q5_K_M, q4_K_M, q4_K_S,
                                     q3_K_M and q2_K from a temporary bf16 GGUF, removed after,
                                     through llama.cpp's llama-quantize), checked in a real
                                     llama-server (loads, tokenises a training example as
                                     training did, renders chat as training did, stops at the
                                     end of a turn) where `make llama-server` built one
        Prints (and writes into SERVE.md) which GGUF type fits which card: for the merged
        model's shape (its config.json) and each type, the file size (llama.cpp's bits per
        weight), the f16 KV cache at serve_context_length and ~1 GiB runtime, against
        cards of 16, 24, 32 (RTX 5090), 48 and 80 GB; estimates from file sizes, not
        measured VRAM. It marks the largest type that fits one 32 GB RTX 5090, and warns,
        naming what does fit, when the chosen export does not (the llama-server command
        then has the estimated -ngl N, not 99), and when that type is q2_K: a large loss
        of quality (llama.cpp's measure), where q4_K_M with -ngl N, a bigger card or two,
        or the 8B keep it.
        With --install, also merges the entries into ~/.continue/config.yaml (other
        models and settings kept, a timestamped backup first) and adds the rules file.
        Nothing outside serve_dir changes without --install.

Run     python fine-tuning/training/5_configure_continue.py
        python fine-tuning/training/5_configure_continue.py --config configs/cpu_rehearsal.yaml
        ... --backend llamacpp [--gguf q8_0|bf16|q6_K|q5_K_M|q4_K_M|q4_K_S|q3_K_M|q2_K]
        ... --backend vllm
        ... --quantize q8_0|q4_K_M|q4_K_S   (Ollama's own quantiser, at `ollama create`)
        ... --install [--continue-dir DIR]   --dry-run   --force
        ... --backend llamacpp --try "Haji and Alan walked along the street. ... Haji said,"

What it prints and writes, and the editor's side: docs/editor.md.
"""
import argparse
import sys

from styletune import cli  # beside this script; cli turns a missing package into one line


def gguf_type(text: str) -> str:
    """A GGUF type as llama.cpp spells it (q4_K_M), however it was typed (Q4_K_M, q4_k_m)."""
    from styletune.deploy.llamacpp import GGUF_TYPES
    return next((t for t in GGUF_TYPES if t.lower() == text.lower()), text)


def build_parser() -> argparse.ArgumentParser:
    from styletune.deploy.llamacpp import GGUF_TYPES
    from styletune.deploy.serve import BACKENDS, DEFAULT_BACKEND, DEFAULT_GGUF, QUANTIZE_LEVELS
    p = cli.parser(__doc__)
    p.add_argument("--model", metavar="DIR", help="merged folder (default: style_pipeline.merged_dir)")
    p.add_argument("--backend", choices=BACKENDS, default=DEFAULT_BACKEND,
                   help=f"which server the Continue entries talk to (default: {DEFAULT_BACKEND})")
    p.add_argument("--quantize", choices=QUANTIZE_LEVELS,
                   help="let `ollama create` quantise (default: keep the merged dtype)")
    p.add_argument("--install", action="store_true",
                   help="also merge the entry and rules into your Continue folder (backup first)")
    p.add_argument("--continue-dir", default="~/.continue", metavar="DIR",
                   help="Continue's folder for --install (default: ~/.continue)")
    p.add_argument("--gguf", type=gguf_type, choices=GGUF_TYPES, metavar="TYPE",
                   help=f"write a GGUF for llama-server, one of {', '.join(GGUF_TYPES)}: bf16 and "
                        "q8_0 from llama.cpp's converter, the others through a temporary bf16 GGUF "
                        f"and llama.cpp's llama-quantize (--backend llamacpp: always, {DEFAULT_GGUF} unless "
                        "given). The table stage 5 prints says which fits which card.")
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
