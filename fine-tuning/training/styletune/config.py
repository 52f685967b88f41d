"""The one YAML that drives every stage: loading, the `extends:` overlay, and path resolution.

A config may start with `extends: other.yaml` and override only what differs
(the CPU rehearsal config does). Mappings merge key by key; a list of mappings
merges item by item (so `datasets: [{path: x}]` changes only the first
dataset's path); any other value replaces. `effective_yaml()` writes the merged
result for Axolotl, which knows nothing of `extends:`.
"""
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from . import paths
from .errors import ConfigError

PIPELINE_KEY = "style_pipeline"
PIPELINE_DEFAULTS = {
    "book_dir": "data/raw/the_quiet_orbit",
    "chunk_glob": "chunk_*.txt",
    "prefix_ratio": [0.05, 0.10],
    "seed": 42,
    "cuts_per_chunk": 1,
    "validation_share": 0.10,
    "validation_chunks": [],
    "exclude_chunks": [],
    "tiktoken_bpe": None,
    "allow_approximate_tokens": False,
    "report_dir": "data/processed",
}


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
    validation_chunks: list
    exclude_chunks: list
    tiktoken_bpe: Path | None
    allow_approximate_tokens: bool
    report_dir: Path


@dataclass
class Config:
    path: Path
    data: dict
    pipeline: Pipeline = field(init=False)

    def __post_init__(self):
        self.pipeline = _parse_pipeline(self.path, self.data.get(PIPELINE_KEY) or {})

    def _require(self, key):
        if key not in self.data:
            raise ConfigError(f"{self.path}: missing `{key}`")
        return self.data[key]

    def _dataset_path(self, key) -> Path:
        entries = self._require(key)
        if not entries or "path" not in entries[0]:
            raise ConfigError(f"{self.path}: `{key}[0].path` must name the JSONL file stage 1 writes")
        return paths.resolve(entries[0]["path"])

    @property
    def train_path(self) -> Path:
        return self._dataset_path("datasets")

    @property
    def validation_path(self) -> Path:
        return self._dataset_path("test_datasets")

    @property
    def sequence_len(self) -> int:
        return int(self._require("sequence_len"))

    @property
    def base_model(self) -> str:
        """A local folder (resolved against fine-tuning/) when one exists, else the Hub id."""
        name = str(self._require("base_model"))
        local = paths.resolve(name)
        return str(local) if local.exists() else name

    @property
    def chat_template(self) -> str:
        return str(self.data.get("chat_template", "tokenizer_default"))

    @property
    def output_dir(self) -> Path:
        return paths.resolve(self._require("output_dir"))

    def sha256(self) -> str:
        """Hash of the merged settings, so later stages can tell the config changed."""
        return hashlib.sha256(effective_yaml(self).encode()).hexdigest()


def _parse_pipeline(path, block) -> Pipeline:
    unknown = set(block) - set(PIPELINE_DEFAULTS)
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) in `{PIPELINE_KEY}`: {', '.join(sorted(unknown))}")
    s = {**PIPELINE_DEFAULTS, **block}
    lo, hi = (float(x) for x in s["prefix_ratio"])
    if not 0 < lo <= hi < 1:
        raise ConfigError(f"{path}: `{PIPELINE_KEY}.prefix_ratio` must be two shares with "
                          f"0 < low <= high < 1, e.g. [0.05, 0.10]; got {s['prefix_ratio']}")
    if not 0 <= float(s["validation_share"]) < 1:
        raise ConfigError(f"{path}: `{PIPELINE_KEY}.validation_share` must be in [0, 1)")
    if int(s["cuts_per_chunk"]) < 1:
        raise ConfigError(f"{path}: `{PIPELINE_KEY}.cuts_per_chunk` must be 1 or more")
    return Pipeline(
        book_dir=paths.resolve(s["book_dir"]),
        chunk_glob=str(s["chunk_glob"]),
        prefix_ratio=(lo, hi),
        seed=int(s["seed"]),
        cuts_per_chunk=int(s["cuts_per_chunk"]),
        validation_share=float(s["validation_share"]),
        validation_chunks=list(s["validation_chunks"] or []),
        exclude_chunks=list(s["exclude_chunks"] or []),
        tiktoken_bpe=paths.resolve(s["tiktoken_bpe"]) if s["tiktoken_bpe"] else None,
        allow_approximate_tokens=bool(s["allow_approximate_tokens"]),
        report_dir=paths.resolve(s["report_dir"]),
    )


def load_config(path) -> Config:
    """Load a config given on the command line (relative to the current directory,
    or failing that to fine-tuning/, so `--config configs/x.yaml` works from both)."""
    path = Path(path).expanduser()
    if not path.exists() and paths.resolve(path).exists():
        path = paths.resolve(path)
    path = path.resolve()
    return Config(path=path, data=_read_yaml(path))


def effective_yaml(config: Config) -> str:
    """The merged config as Axolotl should read it (no `extends:`)."""
    return yaml.safe_dump(config.data, sort_keys=False, allow_unicode=True)
