"""The `style_pipeline:` block of the YAML: every key once, with its type, default and meaning.

config.py validates the block with `StylePipeline` and hands the stages the result
(`cfg.pipeline`); the Axolotl keys the pipeline reads itself it validates with
`AxolotlKeys` (`cfg.axolotl`), each with Axolotl's default. The YAML's comments document the same keys for the writer;
tests/test_config.py checks that they name every key here and state its default.
"""
import json
import re
from pathlib import Path
from types import UnionType
from typing import Annotated, Literal, Union, get_args, get_origin

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from styletune import paths


def _resolve(value):
    if not isinstance(value, (str, Path)):
        raise ValueError("must be a path")
    return paths.resolve(value)


# How a key is marked as a path: written as a string, resolved against fine-tuning/ on load.
ConfigPath = Annotated[Path, BeforeValidator(_resolve)]


def at_least(low, why=""):
    """A lower bound whose message says what is allowed and, where it helps, why."""
    def check(value):
        if value < low:
            raise ValueError(f"must be {low} or more" + (f": {why}" if why else ""))
        return value
    return AfterValidator(check)


Count = Annotated[int, at_least(1)]


def _prompt_never_trained(value):
    if value:
        raise ValueError("must be false: stage 1's rows train the continuation alone (the "
                         "writer's text before it is the editor's request, styletune.train.turns); "
                         "remove the key")
    return value


def _shares(value):
    """[low, high] as a tuple: YAML has no tuples, and the stages unpack two numbers."""
    ok = (isinstance(value, list) and len(value) == 2
          and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in value)
          and 0 < value[0] <= value[1] < 1)
    if not ok:
        raise ValueError("must be two shares with 0 < low <= high < 1, e.g. [0.05, 0.10]")
    return (float(value[0]), float(value[1]))


def _ollama_name(value):
    # Ollama model names: lower case, digits, - _ . (and one :tag)
    if not re.fullmatch(r"[a-z0-9][a-z0-9._-]*(:[a-z0-9._-]+)?", value):
        raise ValueError("must be a lower-case name such as my-voice (letters, digits, - _ .)")
    return value


# Sections stay plain dicts after validation: the stages index them
# (`ev["report_dir"]`) and stage 4 writes them into its JSON report.
KeptAsDict = AfterValidator(lambda section: section.model_dump())


class Section(BaseModel):
    # strict: YAML's `"8"` or `yes` is not a number; unknown keys are typos;
    # defaults are validated too, so default paths resolve like written ones.
    model_config = ConfigDict(strict=True, extra="forbid", validate_default=True)


class Sampling(Section):
    """Sampling when serving and in stage 4's continuations."""
    temperature: float = Field(0.8, gt=0, description="warm enough to vary word choice")
    top_p: float = Field(0.95, gt=0, le=1, description="nucleus: smallest token set with this probability")
    min_p: float = Field(0.05, ge=0, lt=1, description="drop tokens below this share of the top token's probability")
    top_k: int = Field(40, ge=0, description="sample among this many likeliest tokens (0: all); llama.cpp's and Ollama's default")
    repeat_penalty: float = Field(1.05, gt=0, description="above 1 discourages repeating tokens")
    repeat_last_n: int = Field(64, ge=0, description="the recent tokens the repeat penalty covers, the prompt's included; llama.cpp's and Ollama's default")
    max_tokens: Count = Field(400, description="most tokens per reply")


def shipped_default(key: str) -> Path:
    """A style_pipeline path key's default, resolved: the sample book's files
    (book_dir, system_prompt_file) until the writer names their own."""
    return paths.resolve(StylePipeline.model_fields[key].default)


# stage 0's record in each folder it writes (data/segment.py names it MANIFEST)
SEGMENT_MANIFEST = "segment_manifest.json"


def is_sample_book(book) -> bool:
    """Whether `book` (a manuscript, or a folder of chunks) is the sample book: its
    shipped folder, a file in it, or a folder stage 0 cut from one (its manifest says
    from which manuscript)."""
    sample = shipped_default("book_dir")
    where = paths.resolve(book).resolve()
    if where.is_relative_to(sample):
        return True
    try:
        cut_from = json.loads((where / SEGMENT_MANIFEST).read_text(encoding="utf-8"))["manuscript"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return (paths.REPO_DIR / cut_from).resolve().is_relative_to(sample)


class Evaluation(Section):
    """Stage 4: how base and tuned models are compared on the validation chunks."""
    report_dir: ConfigPath = Field("outputs/style_report", description="style report folder")
    generation_tokens: Count = Field(200, description="tokens generated per prompt by each model")
    prompts_per_chunk: Count = Field(8, description="prompts per validation chunk")
    prompt_words: Count = Field(120, description="words in each later prompt window")
    max_prompts: Count | None = Field(None, description="most prompts of each kind, spread over the "
                                      "validation chunks (null: no cap); keeps a rehearsal quick")
    train_prompts: Annotated[int, at_least(
        1, "stage 4's classifier needs the base model's continuations of training prompts "
           "as its \"not the author\" class")] = Field(
        8, description="training prompts both models continue: the classifier's other class "
                       "(the base's) and the check for a training continuation written back")
    train_examples_for_gap: Count = Field(3, description="training examples in the train/validation perplexity gap")
    mfw: Count = Field(300, description="most frequent words for Cosine Delta")
    segment_words: Count = Field(500, description="words per segment for the distance bootstraps")
    bootstrap: Count = Field(1000, description="bootstrap resamples per confidence interval")
    seed: int = Field(42, description="seeds generation and the bootstraps")
    ppl_ratio_target: float = Field(0.8, gt=0, description="target: tuned/base held-out perplexity at most this")
    overfit_gap: float = Field(1.5, gt=0, description="overfitting: tuned val/train ratio over this x the base's")
    memorisation_margin: float = Field(0.02, ge=0, le=1, description="copied 8-gram share allowed over the author's own")


# The chunk length stage 0 aims at, in example tokens, when neither the config nor the
# writer's own hand-cut chunks say: this share of sequence_len (~2,250 of 4096, a scene).
DEFAULT_TARGET_SHARE = 0.55


class StylePipeline(Section):
    """The pipeline's own keys (Axolotl ignores the block)."""
    book_dir: ConfigPath = Field("data/raw/the_quiet_orbit", description="folder of curated chunk files")
    chunk_glob: str = Field("chunk_*.txt", min_length=1, description="which files in book_dir are chunks")
    prefix_ratio: Annotated[tuple[float, float], BeforeValidator(_shares)] = Field(
        [0.05, 0.10], description="prompt share of each example, in tokens: [low, high]")
    seed: int = Field(42, description="seeds the cut points and the validation choice")
    cuts_per_chunk: Count = Field(1, description="cut points per training chunk")
    validation_share: float = Field(0.10, ge=0, lt=1, description="share of chunks held out for validation")
    editor_header_share: float = Field(0.5, ge=0, le=1, description="share of user turns that start with Continue's path line "
                                       "(examples; drills and openings without the chat system message)")
    typed_join_share: float = Field(0.5, ge=0, le=1, description="share of prompts that keep the space or paragraph break typed after them")
    join_drills_per_chunk: int = Field(4, ge=0, description="short training rows per training chunk that stop mid-flow (data/drills.py)")
    scene_openings: bool = Field(True, description="train each chunk's opening after the end of the chunk before it (data/openings.py)")
    validation_chunks: list[str] = Field([], description="chunk files to hold out instead of the share")
    exclude_chunks: list[str] = Field([], description="chunk files left out of both sets")
    tiktoken_bpe: ConfigPath | None = Field(None, description="Meta's tokenizer.model, for exact counts offline")
    allow_approximate_tokens: bool = Field(False, description="count 4 chars/token when no tokenizer loads")
    report_dir: ConfigPath = Field("data/processed", description="stage 1's report folder")
    train_device: Literal["cuda", "cpu"] = Field("cuda", description="where stage 2 trains")
    log_dir: ConfigPath = Field("logs", description="stage 2's logs and merged config")
    merged_dir: ConfigPath = Field("outputs/merged", description="stage 3's merged model")
    merge_into: Literal["nf4", "original"] = Field(
        "nf4", description="QLoRA: the base weights stage 3 adds the adapter to: the NF4-rounded ones training "
                           "saw (joins as trained), or the original ones (lower perplexity; train/merge.py)")
    merged_dtype: Literal["bfloat16", "float16", "float32"] = Field(
        "bfloat16", description="dtype of the merged weights")
    serve_dir: ConfigPath = Field("outputs/serve", description="stage 5's Modelfile, Continue config, commands")
    serve_model_name: Annotated[str, AfterValidator(_ollama_name)] = Field(
        "my-voice", description="the model's name in Ollama and Continue")
    system_prompt_file: ConfigPath = Field("configs/prompts/scifi_writer.md",
                                           description="the system prompt (a Continue rules file)")
    serve_context_length: Annotated[int, at_least(512)] = Field(8192, description="context window when serving")
    sampling: Annotated[Sampling, KeptAsDict] = Field({}, description="sampling defaults when serving")
    chunk_target_tokens: Annotated[int, at_least(200)] | None = Field(
        None, description="stage 0 and the splitter: the chunk length aimed at, in example tokens "
                          "(null: the median of chunks you cut by hand, else "
                          f"{DEFAULT_TARGET_SHARE:.0%} of sequence_len)")
    segment_min_tokens: Annotated[int, at_least(0)] = Field(
        500, description="stage 0 and the splitter: no shorter chunk unless a whole chapter is")
    evaluation: Annotated[Evaluation, KeptAsDict] = Field({}, description="stage 4's settings and thresholds")

    @model_validator(mode="after")
    def _segment_bounds(self):
        if self.chunk_target_tokens is not None and self.segment_min_tokens >= self.chunk_target_tokens:
            raise ValueError(f"segment_min_tokens ({self.segment_min_tokens}) must be below "
                             f"chunk_target_tokens ({self.chunk_target_tokens})")
        return self


# --- Axolotl's half: the keys the pipeline reads itself ------------------------------

class DatasetEntry(BaseModel):
    """One of `datasets:` / `test_datasets:`; the pipeline reads its `path` (the JSONL
    stage 1 writes) and leaves the rest to Axolotl."""
    model_config = ConfigDict(extra="allow")
    path: str


def _null_is_default(data):
    """Axolotl reads a key set to null as missing: so does the pipeline."""
    return {k: v for k, v in data.items() if v is not None} if isinstance(data, dict) else data


class AxolotlKeys(BaseModel):
    """The keys of Axolotl's half of the YAML that the pipeline reads itself (to count
    tokens, plan memory and time, load and serve the model), typed, each with the
    default Axolotl applies when it is missing or null (lora_r: peft's, which Axolotl
    leaves it to). Every other key goes to Axolotl untouched; tests/test_config.py
    holds these defaults to Axolotl's schema and runs its validate_config on the
    shipped configs."""
    model_config = ConfigDict(extra="ignore")
    _nulls = model_validator(mode="before")(_null_is_default)

    base_model: str = Field(description="a Hugging Face model id or a local folder")
    sequence_len: Annotated[int, at_least(1)] = Field(description="the longest example, in tokens")
    datasets: Annotated[list[DatasetEntry], Field(min_length=1)] = Field(
        description="the first entry's path is stage 1's training file")
    test_datasets: Annotated[list[DatasetEntry], Field(min_length=1)] = Field(
        description="the first entry's path is stage 1's validation file")
    output_dir: str = Field("./model-out", description="where stage 2 writes the adapter")
    chat_template: str = Field("tokenizer_default", description="Axolotl's template name, or jinja")
    chat_template_jinja: str | None = Field(None, description="the template, with chat_template: jinja")
    special_tokens: dict[str, str | None] = Field({}, description="eos_token, pad_token, ... set on the tokenizer")
    tokens: list[str] = Field([], description="tokens added to the vocabulary")
    adapter: str | None = Field(None, description="lora or qlora")
    load_in_4bit: bool = Field(False, description="the base in 4-bit NF4 (QLoRA)")
    bnb_config_kwargs: dict = Field({}, description="bitsandbytes' quantisation settings")
    lora_r: Annotated[int, at_least(1)] = Field(8, description="the LoRA rank")
    micro_batch_size: Annotated[int, at_least(1)] = Field(1, description="examples per forward pass")
    sample_packing: bool | None = Field(None, description="several rows packed into each sequence of up to sequence_len (null: off)")
    gradient_accumulation_steps: Annotated[int, at_least(1)] = Field(1, description="passes per optimizer step")
    num_epochs: float = Field(1.0, gt=0, description="passes over the training rows")
    max_steps: int | None = Field(None, description="optimizer steps, when fewer than the epochs give")
    save_total_limit: int | None = Field(None, description="checkpoints kept (null: all)")
    plugins: list[str] = Field([], description="Axolotl plugins, by import path")
    train_on_inputs: Annotated[bool | None, AfterValidator(_prompt_never_trained)] = Field(
        False, description="loss on the prompt too: never, here (the continuation alone trains)")
    gradient_checkpointing: bool | None = Field(False, description="recompute activations in the backward pass")
    liger_fused_linear_cross_entropy: bool | None = Field(
        None, description="Liger's loss that never holds the whole logits (its plugin's key)")
    fsdp_config: dict | None = Field(None, description="FSDP's settings (the multi-GPU configs)")
    fsdp_version: int | None = Field(None, description="1 or 2")
    fsdp: list[str] | None = Field(None, description="FSDP1's older switch list")
    deepspeed: str | dict | None = Field(None, description="a DeepSpeed config")


def axolotl_default(key: str):
    """The default AxolotlKeys gives `key`: what a missing or null key means."""
    return AxolotlKeys.model_fields[key].get_default(call_default_factory=True)


# --- the config reference (docs/config.md) --------------------------------------------

def _type_name(annotation) -> str:
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        return _type_name(args[0])
    if origin in (Union, UnionType):
        return " or ".join(_type_name(a) for a in args)
    if origin is Literal:
        return " or ".join(f"`{a}`" for a in args)
    if origin in (list, tuple):
        return f"{origin.__name__}[{', '.join(_type_name(a) for a in args)}]"
    if annotation is type(None):
        return "null"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "mapping"
    return "path" if annotation is Path else annotation.__name__


def _rows(model, prefix="") -> list:
    rows = []
    for name, field in model.model_fields.items():
        inner = get_args(field.annotation)[0] if get_origin(field.annotation) is Annotated else field.annotation
        if isinstance(inner, type) and issubclass(inner, Section):
            rows.append(f"| `{prefix}{name}` | mapping | (below) | {field.description} |")
            continue
        default = field.default
        shown = "null" if default is None else list(default) if isinstance(default, tuple) else default
        shown = "(required)" if field.is_required() else f"`{shown}`"
        rows.append(f"| `{prefix}{name}` | {_type_name(field.annotation)} | {shown} | {field.description} |")
    return rows


def reference_markdown() -> str:
    """docs/config.md: every `style_pipeline` key, and every Axolotl key the pipeline
    reads, with its type, default and meaning, from the models above (tests/test_docs.py checks the file is current)."""
    out = ["# The config's keys: `style_pipeline:`, and the Axolotl keys the pipeline reads", "",
           "Generated from `fine-tuning/training/styletune/settings.py` by "
           "`python -m styletune.settings > docs/config.md`; do not edit by hand. The YAML "
           "(`fine-tuning/configs/qlora_style_transfer.yaml`) documents Axolotl's own keys beside "
           "these, each commented. Paths resolve against `fine-tuning/`.", ""]
    for title, model, prefix in (("style_pipeline", StylePipeline, ""),
                                 ("style_pipeline.sampling", Sampling, "sampling."),
                                 ("style_pipeline.evaluation", Evaluation, "evaluation."),
                                 ("Axolotl's keys that the pipeline reads", AxolotlKeys, "")):
        out += [f"## `{title}`" if title.startswith("style") else f"## {title}", "", model.__doc__.strip(), "", "| key | type | default | meaning |",
                "|---|---|---|---|", *_rows(model, prefix), ""]
    return "\n".join(out)


if __name__ == "__main__":
    print(reference_markdown(), end="")
