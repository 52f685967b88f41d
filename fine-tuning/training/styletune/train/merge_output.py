"""The merged folder both routes of stage 3 write: built in <out>.partial, its
manifest, and moved into place only once verified."""
import json
import shutil
import time
from pathlib import Path

from styletune import paths
from styletune.errors import MergeError
from styletune.fileio import sha256_bytes, write_atomic
from styletune.train.adapter import ADAPTER_FILE, AdapterChoice
from styletune.train.models import SAMPLE_TOKENS, generation_config, is_qlora, merges_into_nf4

MANIFEST = "merge_manifest.json"


def fresh_partial(out: Path) -> Path:
    """The folder the merge writes into; it replaces `out` only once verified."""
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    return partial


def save_tokenizer_and_generation(cfg, tok, partial: Path) -> None:
    tok.save_pretrained(partial)
    state_special_tokens_added(tok, partial)
    generation_config(cfg, tok, cfg.base_model).save_pretrained(partial)


def special_tokens_added(tok) -> dict:
    """{"add_bos_token": ..., "add_eos_token": ...}: whether the tokenizer puts BOS
    before, and EOS after, what it encodes, as it behaves (not as its config says)."""
    ids = tok("x").input_ids
    return {"add_bos_token": tok.bos_token_id is not None and ids[:1] == [tok.bos_token_id],
            "add_eos_token": tok.eos_token_id is not None and ids[-1:] == [tok.eos_token_id]}


def state_special_tokens_added(tok, folder: Path) -> None:
    """Write into tokenizer_config.json whether the tokenizer puts BOS (and EOS) around
    what it encodes. Llama 3's tokenizer says so only in tokenizer.json's post-processor,
    and transformers 5 saves no add_bos_token; Ollama's importer reads only that key,
    and before its 2026-05 release (ollama/ollama 9db4bdb) wrote a missing one as false,
    so a model imported from this folder got no BOS, which every training row opens with.
    Stated, Ollama adds exactly one before and after that release, as training did
    (read in its source; transformers reads the same ids either way: tests/test_merge.py)."""
    path = folder / "tokenizer_config.json"
    record = {**json.loads(path.read_text(encoding="utf-8")), **special_tokens_added(tok)}
    write_atomic(path, (json.dumps(record, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))


# The merge method a manifest records when the adapter went into the 4-bit-rounded base.
NF4_METHOD = "QLoRA: base loaded in NF4 as in training (bitsandbytes), dequantised, adapter added"


def method_of(cfg) -> str:
    if merges_into_nf4(cfg):
        return NF4_METHOD
    if is_qlora(cfg):
        return "QLoRA: adapter added to the original, unquantised base (style_pipeline.merge_into: original)"
    return "LoRA: adapter added to the unquantised base"


def manifest_for(cfg, choice: AdapterChoice, tok, dtype: str, device: str, verification: dict,
                 route: str) -> dict:
    return {
        "base_model": cfg.axolotl.base_model,
        "adapter": paths.shown(choice.path), "adapter_choice": choice.reason,
        "checkpoint_step": choice.step, "validation_loss": choice.eval_loss,
        "picked_among_evaluations": choice.picked_among,
        "adapter_sha256": sha256_bytes((choice.path / ADAPTER_FILE).read_bytes()),
        "merge_method": method_of(cfg), "merge_route": route,
        "chat_template": cfg.chat_template, "eos_token": tok.eos_token,
        "saved_dtype": cfg.pipeline.merged_dtype, "compute_dtype": dtype, "device": device,
        "verification": verification,
        "config": paths.shown(cfg.path), "config_sha256": cfg.sha256(),
    }


def finish(partial: Path, out: Path, manifest: dict, failure: str | None, sample: str | None,
           t0: float, say) -> None:
    """Write the manifest; move the folder into place only when the verification passed."""
    write_atomic(partial / MANIFEST, (json.dumps(manifest, indent=2) + "\n").encode())
    if failure:
        raise MergeError(f"{failure}. The merged folder is left in {paths.shown(partial)} for "
                         "inspection; nothing was replaced")
    if sample is not None:
        say(f'sample (greedy, {SAMPLE_TOKENS} tokens): "{sample.strip()}"')
    _move_into_place(partial, out)
    say(f"took {time.time() - t0:.0f} s")


def _move_into_place(partial: Path, out: Path) -> None:
    """The old folder is removed only after the new one is complete and verified."""
    old = out.with_name(out.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        out.rename(old)
    partial.rename(out)
    shutil.rmtree(old, ignore_errors=True)
