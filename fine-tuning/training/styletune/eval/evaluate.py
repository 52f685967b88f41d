"""Stage 4: the base and the tuned model on held-out text, same prompts, same
decoding, fixed seeds; the measurements go to styletune.eval.report.

Perplexity is computed on the assistant turns (the completions) in the training
format, as training's loss was. Intervals come from a two-level bootstrap: the
held-out chunks drawn with replacement, then 64-token blocks within each drawn
chunk (tokens next to each other are not independent, and the blocks of one scene
are more alike than two scenes are), paired between the two models because both
read the same tokens. The tuned/base ratio from report.CHUNKS_FOR_THE_BOOK chunks
on takes the chunks as its units instead (chunk_ratio_interval): a bootstrap of a
handful of chunks is too narrow.
"""
import gc
import json
import math
from pathlib import Path

import numpy as np

from styletune import chat, paths
from styletune.config import Reads, load_config
from styletune.data import tokens
from styletune.data.examples import without_path_line
from styletune.errors import EvaluationError
from styletune.eval import joins
from styletune.eval import report as style_report
from styletune.eval.attribution import grouped_mean_interval
from styletune.eval.prompts import (
    SEED_PROMPT,
    Prompt,
    example_chunk_names,
    in_the_editor,
    join_prompts,
    read_conversations,
    spread,
    validation_prompts,
)
from styletune.fileio import write_atomic
from styletune.stage import Files, Stage, merged_model, rules_file, trained_book, training_data
from styletune.text import stops
from styletune.text.sentences import build_punkt
from styletune.train import adapter as adapters
from styletune.train import models, resources
from styletune.train.checkpoints import checkpoints
from styletune.train.merge_output import MANIFEST as MERGE_MANIFEST
from styletune.train.models import load_tokenizer
from styletune.train.resources import Placement

# Stage 4's settings: the tokenizer and template, the base as training quantised it, its own.
READS = tokens.READS + Reads(axolotl=("load_in_4bit", "adapter", "bnb_config_kwargs"),
                             pipeline=("evaluation", "sampling", "system_prompt_file"))
STAGE = Stage("4", "4_evaluate_style.py", "measure the style transfer: the tuned model against the base", READS,
              inputs=lambda cfg, book: [merged_model(cfg), *training_data(cfg), rules_file(cfg)],
              outputs=lambda cfg, book: [Files(cfg.pipeline.evaluation["report_dir"],
                                               what="a style report (md, json, png)")])

BLOCK_TOKENS = 64
# Tokens of greedy continuation that decide how a join looks in the editor.
JOIN_TOKENS = 6


# --- models ----------------------------------------------------------------------------

def where_loaded(model) -> str:
    """Where from_pretrained put the model, from accelerate's device map when it made one."""
    device_map = getattr(model, "hf_device_map", None)
    if not device_map or len(set(device_map.values())) == 1:
        device = next(model.parameters()).device
        return "on one GPU" if device.type == "cuda" else f"on {device.type.upper()}"
    return describe_device_map(device_map)


def describe_device_map(device_map: dict) -> str:
    """"sharded over 4 GPUs" (and "and CPU RAM", "and disk") from an hf_device_map."""
    places = set(device_map.values())
    gpus = {p for p in places if isinstance(p, int) or str(p).startswith("cuda")}
    parts = [f"{len(gpus)} GPU{'s' if len(gpus) != 1 else ''}"] if gpus else []
    parts += [name for key, name in (("cpu", "CPU RAM"), ("disk", "disk")) if key in places]
    layers = sum(1 for k in device_map if ".layers." in k)
    return "sharded over " + " and ".join(parts) + (f" ({layers} layers)" if layers else "")


def load_model(path: str, placement: Placement, adapter: Path | None = None):
    import torch
    from transformers import AutoModelForCausalLM
    extra = {"max_memory": placement.max_memory} if placement.max_memory else {}
    model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, placement.dtype),
                                                 device_map=placement.device_map, **extra)
    if adapter is not None:
        from peft import PeftModel
        model = PeftModel.from_pretrained(model, str(adapter))
    model.eval()
    return model


def free(model) -> None:
    import torch
    del model
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _ids(tok, messages, generation_prompt: bool) -> list[int]:
    out = tok.apply_chat_template(messages, tokenize=True, add_generation_prompt=generation_prompt,
                                  return_dict=False)
    return list(out["input_ids"] if isinstance(out, dict) else out)


def completion_token_nll(model, tok, conversation, ends_turn: bool = True) -> np.ndarray:
    """NLL of each token of the continuation and its end-of-turn token (a scene
    opening's has none), tokenised as training tokenised it (tokens.training_ids)."""
    import torch
    example = tokens.training_ids(tok, conversation, ends_turn)
    labels = example["labels"]
    scored = [i for i, label in enumerate(labels) if label != tokens.IGNORE_INDEX]
    start, end = scored[0], scored[-1] + 1
    device = next(model.parameters()).device
    with torch.no_grad():
        logits = model(torch.tensor([example["input_ids"][:end]], device=device)).logits[0].float()
    logp = torch.log_softmax(logits[start - 1:end - 1], dim=-1)
    # sharded over GPUs, the logits come from the last one, not the inputs' device
    target = torch.tensor(labels[start:end], device=logp.device)
    return (-logp.gather(1, target[:, None])[:, 0]).cpu().numpy()


def _blocks(nll_lists) -> np.ndarray:
    """(sum of NLL, token count) per 64-token block, every example cut into blocks."""
    out = []
    for nll in nll_lists:
        for i in range(0, len(nll), BLOCK_TOKENS):
            out.append((float(nll[i:i + BLOCK_TOKENS].sum()), len(nll[i:i + BLOCK_TOKENS])))
    return np.array(out)


def _resampled_blocks(nll_lists, n_boot: int, seed: int):
    """Indices into _blocks(nll_lists), one array per bootstrap resample: the chunks
    drawn with replacement, then the blocks of each drawn chunk (a hierarchical
    bootstrap; with one chunk, a block bootstrap)."""
    sizes = np.array([math.ceil(len(n) / BLOCK_TOKENS) for n in nll_lists])
    starts, held = np.cumsum(sizes) - sizes, np.flatnonzero(sizes)
    rng = np.random.default_rng(seed)
    for _ in range(n_boot):
        chosen = held[rng.integers(0, held.size, held.size)]
        yield np.concatenate([starts[c] + rng.integers(0, sizes[c], sizes[c]) for c in chosen])


def perplexity(nll_lists, n_boot: int, seed: int) -> dict:
    blocks = _blocks(nll_lists)
    boot = [np.exp(blocks[i, 0].sum() / blocks[i, 1].sum()) for i in _resampled_blocks(nll_lists, n_boot, seed)]
    return {"ppl": math.exp(blocks[:, 0].sum() / blocks[:, 1].sum()),
            "ci": [float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))],
            "tokens": int(blocks[:, 1].sum()),
            "per_example": [math.exp(float(n.mean())) for n in nll_lists]}


def chunk_ratio_interval(tuned_nll, base_nll) -> list[float]:
    """A 95% interval for tuned / base perplexity with the held-out chunks as the
    units: the ratio estimator's linearised variance over chunks (each chunk's summed
    NLL difference against the pooled log-ratio times its tokens, the chunks-1
    correction) and Student's t on chunks-1 degrees of freedom. A bootstrap of k
    chunks takes them for the whole book and comes out too narrow for a handful."""
    pairs = [(t, b) for t, b in zip(tuned_nll, base_nll) if len(t)]
    log_ratio, half = grouped_mean_interval([float(np.sum(t) - np.sum(b)) for t, b in pairs],
                                            [len(t) for t, _ in pairs])
    return [math.exp(log_ratio - half), math.exp(log_ratio + half)]


def perplexity_ratio(tuned_nll, base_nll, n_boot: int, seed: int) -> dict:
    """tuned / base perplexity, bootstrapped over the same chunks and blocks for both
    (paired); from report.CHUNKS_FOR_THE_BOOK chunks on, the interval takes the chunks
    as units (chunk_ratio_interval)."""
    t, b = _blocks(tuned_nll), _blocks(base_nll)
    by_chunk = sum(len(n) > 0 for n in tuned_nll) >= style_report.CHUNKS_FOR_THE_BOOK
    boot = [] if by_chunk else [np.exp((t[i, 0].sum() - b[i, 0].sum()) / t[i, 1].sum())
                                for i in _resampled_blocks(tuned_nll, n_boot, seed)]
    return {"ratio": math.exp((t[:, 0].sum() - b[:, 0].sum()) / t[:, 1].sum()),
            "ci": chunk_ratio_interval(tuned_nll, base_nll) if by_chunk else
            [float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))],
            "interval": "chunks, Student's t" if by_chunk else "bootstrap of chunks and 64-token blocks",
            # scenes differ more than the blocks of one scene: the ratio chunk by chunk
            "per_chunk": [math.exp(float(tn.mean() - bn.mean())) for tn, bn in zip(tuned_nll, base_nll)]}


def generate(model, tok, prompts, ev: dict, sampling: dict, progress=None) -> list[dict]:
    """One continuation per prompt; prompt i is seeded seed + i for every model; sampled
    as llama-server samples (eval/sampler.py)."""
    import torch

    from styletune.eval import sampler
    device = next(model.parameters()).device
    eos = model.generation_config.eos_token_id
    eos = set(eos if isinstance(eos, list) else [eos]) | {tok.eos_token_id}
    out = []
    for i, prompt in enumerate(prompts):
        ids = _ids(tok, prompt.messages(), True)
        torch.manual_seed(int(ev["seed"]) + i)
        with torch.no_grad():
            gen = model.generate(torch.tensor([ids], device=device), **sampler.generate_kwargs(sampling),
                                 max_new_tokens=int(ev["generation_tokens"]),
                                 eos_token_id=sorted(eos), pad_token_id=tok.pad_token_id)
        new = gen[0, len(ids):].tolist()
        raw = tok.decode(new, skip_special_tokens=True)
        # "text" for the style measures; "raw" as the editor would insert it, leading space and all
        out.append({"text": raw.strip(), "raw": raw, "tokens": len(new),
                    "stopped": any(t in eos for t in new)})
        if progress:
            progress()
    return out


def join_measures(model, tok, prompts, classes: dict) -> list[dict]:
    """For each prompt: the probability that the first token joins right as the
    editor shows it, and whether the greedy continuation does (joins.py)."""
    import torch
    device = next(model.parameters()).device
    out = []
    for prompt in prompts:
        ids = _ids(tok, prompt.messages(), True)
        with torch.no_grad():
            logits = model(torch.tensor([ids], device=device)).logits[0, -1].float()
            greedy = model.generate(torch.tensor([ids], device=device), do_sample=False,
                                    max_new_tokens=JOIN_TOKENS, pad_token_id=tok.pad_token_id)
        probs = torch.softmax(logits, -1).cpu().numpy()[:len(classes["raw"])]
        shown = joins.editor_insert(tok.decode(greedy[0, len(ids):], skip_special_tokens=True))
        out.append({"p": float(probs[joins.right_first_tokens(classes, prompt.text, prompt.truth)].sum()),
                    "greedy": joins.joins_right(shown, prompt.truth, prompt.text), "shown": shown})
    return out


def measure_model(model, tok, val, train_for_gap, prompts, other_prompts, ev, sampling, bar,
                  join_set, classes, openings, seed_prompt):
    """Everything stage 4 needs from one model, so only one model is loaded at a time."""
    result = {"val_nll": [completion_token_nll(model, tok, c) for c in val],
              "openings_nll": [completion_token_nll(model, tok, c, ends_turn=False) for c in openings],
              "train_nll": [completion_token_nll(model, tok, c) for c in train_for_gap]}
    bar.set_description("continuations")
    result["continuations"] = generate(model, tok, prompts, ev, sampling, lambda: bar.update(1))
    if other_prompts:
        result["other"] = generate(model, tok, other_prompts, ev, sampling, lambda: bar.update(1))
    bar.set_description("joins")
    result["join"] = join_measures(model, tok, join_set, classes)
    result["seed"] = generate(model, tok, [seed_prompt], ev, sampling)[0]
    return result


def training_base_nll(cfg, placement: Placement, tok, val, say):
    """Held-out NLL of the base as QLoRA training saw it (4-bit NF4): what the adapter
    was trained against, so a short rehearsal is not read as "tuned worse" for the
    rounding alone. None when the config trains without quantisation."""
    if not models.is_qlora(cfg):
        return None
    say("base model as training saw it (4-bit NF4): loading")
    model = models.load_training_base(cfg, placement.device_map, placement.dtype, quantized=True)
    nll = [completion_token_nll(model, tok, c) for c in val]
    free(model)
    return nll


def joins_summary(join_set, runs) -> dict:
    """Per kind of prompt and model: the mean probability of a right first token and
    the share of greedy continuations that join right in the editor."""
    out = {}
    for kind in sorted({p.kind for p in join_set}, key=joins.ROWS.index):
        idx = [i for i, p in enumerate(join_set) if p.kind == kind]
        out[kind] = {"prompts": len(idx),
                     **{n: {"first_token": float(np.mean([runs[n]["join"][i]["p"] for i in idx])),
                            "greedy": float(np.mean([runs[n]["join"][i]["greedy"] for i in idx]))}
                        for n in runs}}
    return out


def check_tuned(tuned_dir: Path | None, adapter: Path | None) -> None:
    """The model to compare with the base is there: a merged folder, or an adapter."""
    if adapter is not None and not (adapter / adapters.ADAPTER_CONFIG).is_file():
        raise EvaluationError(f"no adapter at {paths.shown(adapter)} (an adapter folder holds "
                              "adapter_config.json): name stage 2's output_dir or one of its "
                              "checkpoint-N folders")
    if adapter is None and not (tuned_dir / "config.json").is_file():
        raise EvaluationError(f"no merged model at {paths.shown(tuned_dir)}: run 3_merge_adapter.py "
                              "--auto first, or compare base + adapter with --adapter PATH")


def tuned_checkpoint(tuned_dir: Path | None, adapter: Path | None) -> dict:
    """Which checkpoint the tuned model is, and among how many evaluations the validation
    loss picked it (0: not picked by it): stage 3's manifest, or for --adapter the
    training folder's own record, as stage 3 reads it."""
    if adapter is None:
        path = tuned_dir / MERGE_MANIFEST
        m = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
        return {"step": m.get("checkpoint_step"), "validation_loss": m.get("validation_loss"),
                "picked_among": m.get("picked_among_evaluations", 0)}
    trained = checkpoints(adapter, holding=adapters.ADAPTER_FILE)
    choice = adapters.choose_adapter(adapter) if trained else adapters.adapter_by_hand(adapter)
    return {"step": choice.step, "validation_loss": choice.eval_loss, "picked_among": choice.picked_among}


def evaluate(cfg, tuned_dir: Path | None, adapter: Path | None, placement: Placement, say=print) -> dict:
    """Both models on the validation set; returns the report (without the PNG)."""
    from tqdm import tqdm
    from transformers import AutoTokenizer


    ev, sampling = cfg.pipeline.evaluation, cfg.pipeline.sampling
    train = read_conversations(cfg.train_path, "training data")
    val = read_conversations(cfg.validation_path, "validation data")
    openings = read_conversations(cfg.validation_path, "validation data", ending=False)
    check_tuned(tuned_dir, adapter)
    tok = load_tokenizer(cfg, adapter) if adapter else AutoTokenizer.from_pretrained(str(tuned_dir))
    # the author's chunks as written (the editor's path line is no part of the book)
    texts = [without_path_line(c[0]["content"]) + c[1]["content"] for c in train]
    punkt, _ = build_punkt(texts)
    names, folder = example_chunk_names(cfg, "validation", len(val)), trained_book(cfg).name
    # every prompt as the editor's autocomplete sends it (Continue's path line first),
    # each row of the Joins table with both files (in_the_editor after the rows are known)
    plain = spread(validation_prompts(val, punkt, ev, names), ev["max_prompts"])
    prompts = in_the_editor(plain, folder)
    # training prompts, with the author's own continuation: the base's continuations are the
    # classifier's "not the author" class; both models' show whether tuning learnt them by heart
    # spread across the book, as the validation prompts are (the first rows are its opening chapter)
    named_train = list(zip(train, example_chunk_names(cfg, "train", len(train))))
    other_prompts = in_the_editor([Prompt(name, "example", without_path_line(c[0]["content"]), c[1]["content"])
                                   for c, name in spread(named_train, int(ev["train_prompts"]))], folder)
    join_set = in_the_editor(join_prompts(plain, val, ev, names, stops.words_of(texts),
                                          chat.configured_system_message(cfg)), folder)
    seed_prompt = in_the_editor([Prompt("writer", joins.SEED, SEED_PROMPT, " ")], folder)[0]
    classes = joins.token_classes(tok.batch_decode([[i] for i in range(len(tok))]), set(tok.all_special_ids))
    gap_set = spread(train, int(ev["train_examples_for_gap"]))
    say(f"{len(val)} validation example(s), {len(prompts)} prompts, "
        f"{int(ev['generation_tokens'])} tokens each; device_map {placement.device_map}, {placement.dtype}")

    runs = {}
    for name in ("base", "tuned"):
        say(f"{name} model: loading")
        if name == "base":
            model = load_model(cfg.base_model, placement)
        else:
            model = load_model(cfg.base_model if adapter else str(tuned_dir), placement, adapter)
        say(f"{name} model: loaded {where_loaded(model)}")
        with tqdm(total=len(prompts) + len(other_prompts), desc="perplexity", unit="prompt", leave=False) as bar:
            runs[name] = measure_model(model, tok, val, gap_set, prompts, other_prompts, ev, sampling, bar,
                                       join_set, classes, openings, seed_prompt)
        free(model)
    nf4_nll = training_base_nll(cfg, placement, tok, val, say)

    n_boot, seed = int(ev["bootstrap"]), int(ev["seed"])
    ppl = {n: perplexity(runs[n]["val_nll"], n_boot, seed) for n in runs}
    ppl.update({f"{n}_train": perplexity(runs[n]["train_nll"], n_boot, seed) for n in runs})
    ppl["ratio"] = perplexity_ratio(runs["tuned"]["val_nll"], runs["base"]["val_nll"], n_boot, seed)
    if nf4_nll is not None:
        ppl["base_nf4"] = perplexity(nf4_nll, n_boot, seed)
        ppl["ratio_nf4"] = perplexity_ratio(runs["tuned"]["val_nll"], nf4_nll, n_boot, seed)
    if openings:
        ppl.update({f"{n}_openings": perplexity(runs[n]["openings_nll"], n_boot, seed) for n in runs})
        ppl["openings_ratio"] = perplexity_ratio(runs["tuned"]["openings_nll"], runs["base"]["openings_nll"],
                                                 n_boot, seed)
    ppl["verdicts"] = style_report.perplexity_verdicts(ppl, ev)

    say("style measures")
    pools = {"base": [c["text"] for c in runs["base"]["continuations"]],
             "tuned": [c["text"] for c in runs["tuned"]["continuations"]],
             "author": [p.truth for p in prompts]}
    reference = "\n\n".join(texts)
    style = style_report.style_figures(reference, pools, [c["text"] for c in runs["base"]["other"]],
                                       texts, ev, groups=[p.chunk for p in prompts])
    health = style_report.health(pools, {n: runs[n]["continuations"] for n in runs}, reference, ev,
                                 {n: [(c["text"], p.truth) for c, p in zip(runs[n]["other"], other_prompts)]
                                  for n in runs})
    return {
        "base_model": cfg.axolotl.base_model,
        "tuned_model": paths.shown(adapter) if adapter else paths.shown(tuned_dir),
        "tuned_checkpoint": tuned_checkpoint(tuned_dir, adapter),
        "config": paths.shown(cfg.path), "config_sha256": cfg.sha256(),
        "settings": {**{k: v for k, v in ev.items() if k != "report_dir"}, "sampling": sampling},
        "counts": {"validation_examples": len(val), "validation_openings": len(openings),
                   "prompts": len(prompts), "training_prompts": len(other_prompts),
                   "generation_tokens": int(ev["generation_tokens"]),
                   "reference_words": len(reference.split())},
        "perplexity": ppl, "style": style, "health": health,
        "joins": joins_summary(join_set, runs),
        "seed_prompt": {"prompt": SEED_PROMPT,
                        **{n: joins.editor_insert(runs[n]["seed"]["raw"]) for n in runs}},
        "prompts": [p.__dict__ for p in prompts],
        "continuations": {n: runs[n]["continuations"] for n in runs},
    }


REPORT_FILES = ("style_report.md", "style_report.json", "style_report.png", "continuations.md")

# What the stage script runs (its parser is in fine-tuning/training/4_evaluate_style.py).
def run(args) -> int:
    cfg = load_config(paths.resolve_cli(args.config))
    ev = cfg.pipeline.evaluation
    tuned = paths.resolve_cli(args.model) if args.model else cfg.pipeline.merged_dir
    adapter = paths.resolve_cli(args.adapter) if args.adapter else None
    out = ev["report_dir"]
    existing = [out / f for f in REPORT_FILES if (out / f).exists()]
    read_conversations(cfg.validation_path, "validation data")
    placement = resources.placement_for(cfg, args.device, error=EvaluationError)
    print(f"config: {paths.shown(cfg.path)}\nbase: {cfg.axolotl.base_model}\n"
          f"tuned: {paths.shown(adapter or tuned)}\ndevice: {placement.device_map} ({placement.why}); "
          f"{placement.dtype}\nreport: {paths.shown(out)}")
    if existing and not args.force:
        raise EvaluationError(f"a report is already in {paths.shown(out)}: add --force to replace it")
    check_tuned(tuned, adapter)
    if args.dry_run:
        print("dry run: nothing loaded or written")
        return 0
    report = evaluate(cfg, tuned, adapter, placement)
    prompts = [Prompt(**p) for p in report["prompts"]]
    files = {"style_report.md": style_report.markdown(report).encode(),
             "style_report.json": style_report.json_bytes(report),
             "style_report.png": style_report.png(report),
             "continuations.md": style_report.continuations_markdown(prompts, report["continuations"]).encode()}
    for name, data in files.items():
        write_atomic(out / name, data)
    print()
    print(files["style_report.md"].decode())
    print(f"wrote {paths.shown(out / 'style_report.md')} (+ .json, .png, continuations.md)")
    return 0
