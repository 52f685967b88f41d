import os
import re

import pytest
import yaml
from conftest import FT, MAIN_CONFIG, REHEARSAL_CONFIG
from pydantic import BaseModel
from styletune.config import effective_yaml, load_config, merge_yaml
from styletune.errors import ConfigError
from styletune.settings import StylePipeline

# What a CPU and the 135M model force the rehearsal to change, and nothing else.
REHEARSAL_MAY_CHANGE = {
    "base_model", "chat_template", "chat_template_jinja", "special_tokens", "datasets", "test_datasets",
    "dataset_prepared_path", "output_dir", "bf16", "tf32", "optimizer",
    "lora_mlp_kernel", "lora_qkv_kernel", "lora_o_kernel", "style_pipeline",
    # few steps on CPU, evaluated and saved at the last one, at a rate that lets so
    # few move the small model enough for stage 4 to see
    "max_steps", "learning_rate", "gradient_accumulation_steps", "eval_strategy", "save_strategy",
    "eval_steps", "save_steps", "evals_per_epoch", "saves_per_epoch", "max_grad_norm",
    # CPU only: 4-bit layers kept trainable on AVX512-BF16 CPUs; no pinned memory
    "plugins", "dataloader_pin_memory",
}


def test_main_config_names_the_writers_files():
    cfg = load_config(MAIN_CONFIG)
    assert cfg.train_path == FT / "data" / "processed" / "training.jsonl"
    assert cfg.validation_path == FT / "data" / "processed" / "validation.jsonl"
    assert cfg.data["base_model"] == "meta-llama/Llama-3.1-8B-Instruct"
    assert cfg.sequence_len == 4096
    assert cfg.pipeline.prefix_ratio == (0.05, 0.10)


def test_relative_paths_resolve_against_fine_tuning_from_any_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = load_config(MAIN_CONFIG)
    assert cfg.pipeline.book_dir == FT / "data" / "raw" / "the_quiet_orbit"
    assert cfg.output_dir.is_relative_to(FT)
    # a config path relative to fine-tuning/ also works from elsewhere
    assert load_config("configs/cpu_rehearsal.yaml").path == REHEARSAL_CONFIG


def test_rehearsal_differs_from_main_only_where_it_must():
    main, rehearsal = load_config(MAIN_CONFIG).data, load_config(REHEARSAL_CONFIG).data
    changed = {k for k in set(main) | set(rehearsal) if main.get(k) != rehearsal.get(k)}
    assert changed <= REHEARSAL_MAY_CHANGE, changed - REHEARSAL_MAY_CHANGE
    # the dataset entries keep every training setting; only the file moves
    for key in ("datasets", "test_datasets"):
        m, r = dict(main[key][0]), dict(rehearsal[key][0])
        assert m.pop("path") != r.pop("path")
        assert m == r
    assert rehearsal["sequence_len"] == main["sequence_len"]
    assert rehearsal["lora_r"] == main["lora_r"]


def test_merge_rules():
    base = {"a": {"x": 1, "y": 2}, "l": [{"p": 1, "q": 2}, {"p": 3}], "s": [1, 2]}
    over = {"a": {"y": 5}, "l": [{"p": 9}], "s": [7]}
    assert merge_yaml(base, over) == {"a": {"x": 1, "y": 5}, "l": [{"p": 9, "q": 2}, {"p": 3}], "s": [7]}


def test_effective_yaml_has_no_extends_and_round_trips():
    text = effective_yaml(load_config(REHEARSAL_CONFIG))
    data = yaml.safe_load(text)
    assert "extends" not in data and data["chat_template"] == "jinja"
    assert load_config(REHEARSAL_CONFIG).template_family == "chatml-continuation"
    # the rehearsal's own values over the main config's, the rest inherited
    assert data["learning_rate"] == 0.001 != load_config(MAIN_CONFIG).data["learning_rate"]
    assert data["lora_r"] == load_config(MAIN_CONFIG).data["lora_r"]


@pytest.mark.parametrize("block, message", [
    ({"prefix_ratio": [0.2, 0.1]}, "prefix_ratio` must be two shares"),
    ({"prefix_ratio": 0.1}, "prefix_ratio` must be two shares"),
    ({"prefix_ration": [0.05, 0.1]}, "unknown key `style_pipeline.prefix_ration`; did you mean prefix_ratio"),
    ({"evaluation": {"mfww": 3}}, "unknown key `style_pipeline.evaluation.mfww`"),
    ({"cuts_per_chunk": 0}, "cuts_per_chunk` must be 1 or more; got 0"),
    ({"validation_chunks": "chunk_002_x.txt"}, "validation_chunks` must be a list; got 'chunk_002_x.txt'"),
    ({"validation_chunks": ["a.txt", 3]}, r"validation_chunks\[1\]` must be a valid string"),
    ({"seed": "forty-two"}, "seed` must be a whole number; got 'forty-two'"),
    ({"seed": True}, "seed` must be a whole number"),
    ({"allow_approximate_tokens": "yes"}, "true or false"),
    ({"train_device": "gpu"}, "train_device` must be 'cuda' or 'cpu'"),
    ({"book_dir": 3}, "book_dir` must be a path"),
    ({"sampling": {"top_p": 2}}, "sampling.top_p` must be less than or equal to 1; got 2"),
    ({"evaluation": "fast"}, "evaluation` must be a mapping of keys"),
    ({"segment_min_tokens": 3000, "chunk_target_tokens": 2000},
     "segment_min_tokens \\(3000\\) must be below chunk_target_tokens"),
])
def test_bad_pipeline_values_are_named(tmp_path, block, message):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"extends": str(MAIN_CONFIG), "style_pipeline": block}))
    with pytest.raises(ConfigError, match=message) as err:
        load_config(path)
    assert "\n" not in str(err.value)   # one line, never pydantic's dump


def test_no_training_prompts_is_refused_before_stage_4(make_config):
    """Stage 4's classifier needs base-model continuations of training prompts as its
    "not the author" class; with none it would crash after loading both models."""
    with pytest.raises(ConfigError, match="train_prompts` must be 1 or more: .*not the author"):
        load_config(make_config({"evaluation": {"train_prompts": 0}}))
    assert load_config(make_config({"evaluation": {"train_prompts": 1}})).pipeline.evaluation["train_prompts"] == 1


def test_settings_defaults_fill_in_and_paths_resolve(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"extends": str(MAIN_CONFIG), "style_pipeline": None}))
    p = load_config(path).pipeline
    assert p.merged_dir == FT / "outputs" / "merged" and p.tiktoken_bpe is None
    assert p.evaluation["report_dir"] == FT / "outputs" / "style_report"
    assert p.evaluation["train_prompts"] == 8 and p.sampling["max_tokens"] == 400
    assert p.prefix_ratio == (0.05, 0.10) and isinstance(p.validation_share, float)


@pytest.mark.parametrize("top, message", [
    ({"sequence_len": "four thousand"}, "sequence_len` must be a whole number"),
    ({"datasets": {"path": "x.jsonl"}}, "datasets` must be a list"),
    ({"test_datasets": "validation.jsonl"}, "test_datasets` must be a list"),
    ({"train_on_inputs": True}, "train_on_inputs` must be false: stage 1's rows train the continuation alone"),
])
def test_bad_axolotl_keys_fail_on_load(tmp_path, top, message):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"extends": str(MAIN_CONFIG), **top}))
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_missing_config_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="config not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


@pytest.mark.slow
def test_axolotl_validates_the_main_config_unchanged():
    """Axolotl's own schema accepts the writer's YAML as it is on disk."""
    from axolotl.utils.config import validate_config
    from axolotl.utils.dict import DictDefault

    raw = yaml.safe_load(MAIN_CONFIG.read_text())
    out = validate_config(DictDefault(raw))
    assert out["adapter"] == "qlora" and out["load_in_4bit"] is True
    assert str(out["chat_template"].value) == "jinja" and "<|start_header_id|>" in out["chat_template_jinja"]
    assert [ds["type"] for ds in out["datasets"] + out["test_datasets"]] == ["styletune.train.turns"] * 2
    assert out["bnb_config_kwargs"]["bnb_4bit_quant_type"] == "nf4"
    assert out["sequence_len"] == 4096
    assert os.path.basename(out["test_datasets"][0]["path"]) == "validation.jsonl"


def test_main_config_training_choices():
    """What issue 4 asks of the YAML, as the file states it."""
    d = load_config(MAIN_CONFIG).data
    assert d["bnb_config_kwargs"] == {"bnb_4bit_quant_type": "nf4", "bnb_4bit_use_double_quant": True,
                                      "llm_int8_has_fp16_weight": False}
    assert d["adapter"] == "qlora" and d["load_in_4bit"] and d["lora_target_linear"]
    assert d["lora_alpha"] == 2 * d["lora_r"] and 0 < d["lora_dropout"] <= 0.1
    # Llama 3's tokens in the continuation layout: the writer's text opens the assistant's turn
    assert d["chat_template"] == "jinja" and load_config(MAIN_CONFIG).template_family == "llama3-continuation"
    assert d["special_tokens"]["eos_token"] == "<|eot_id|>"
    for ds in d["datasets"] + d["test_datasets"]:   # prompt and continuation tokenised apart
        assert ds["type"] == "styletune.train.turns"
    assert "val_set_size" not in d
    # both set, so Axolotl passes load_best_model_at_end on (tests/test_train.py trains so)
    assert d["evals_per_epoch"] == d["saves_per_epoch"] >= 2 and "eval_strategy" not in d
    assert d["load_best_model_at_end"] and d["metric_for_best_model"] == "eval_loss"
    assert d["sample_packing"] is False           # reasoned in the comment
    assert d["attn_implementation"] == "sdpa" and d["gradient_checkpointing"]
    assert d["optimizer"] == "paged_adamw_8bit" and d["lr_scheduler"] == "cosine"
    assert 0 < d["warmup_ratio"] <= 0.2
    assert d["bf16"] == "auto"
    assert not d["use_wandb"] and not d["use_mlflow"] and not d["use_comet"]


def test_a_missing_rehearsal_model_names_make_model(make_config, tmp_path, monkeypatch):
    from styletune import paths
    cfg = load_config(make_config())
    cfg.axolotl.base_model = str(paths.REHEARSAL_MODEL) + "-not-built"
    with pytest.raises(ConfigError, match="no model folder at"):
        cfg.base_model
    monkeypatch.setattr(paths, "REHEARSAL_MODEL", tmp_path / "SmolLM2-135M-Instruct")
    cfg.axolotl.base_model = str(paths.REHEARSAL_MODEL)
    with pytest.raises(ConfigError, match="run `make model`"):
        cfg.base_model
    cfg.axolotl.base_model = "meta-llama/Llama-3.1-8B-Instruct"
    assert cfg.base_model == "meta-llama/Llama-3.1-8B-Instruct"   # a Hub id stays one


# --- the YAML's comments: every key documented, style_pipeline as settings.py defines it ---

KEY_LINE = re.compile(r"^( *)(- )?([A-Za-z_]\w*):")
# Keys settings.py defines that the main config deliberately leaves out (none today).
NOT_IN_MAIN_CONFIG = set()


def comments_by_key(text) -> dict:
    """Each key's path (("style_pipeline", "seed"), ...) -> the comment that documents
    it, or None: the comment directly above the key, or the comment above its group
    of keys when that comment names it."""
    lines, out, parents = text.splitlines(), {}, []
    for i, line in enumerate(lines):
        m = KEY_LINE.match(line)
        if not m:
            continue
        indent, key = len(m.group(1)) + len(m.group(2) or ""), m.group(3)
        while parents and parents[-1][0] >= indent:
            parents.pop()
        out[tuple(k for _, k in parents) + (key,)] = _comment_above(lines[:i], indent, key)
        parents.append((indent, key))
    return out


def _comment_above(above, indent, key):
    comment, sibling_between = [], False
    for prev in reversed(above):
        depth = len(prev) - len(prev.lstrip())
        if not prev.strip() or depth < indent:
            break
        if prev.lstrip().startswith("#") and depth == indent:
            comment.insert(0, prev.strip().lstrip("# "))
        elif comment:
            break
        else:
            sibling_between |= depth == indent
    text = " ".join(comment)
    return text if comment and (not sibling_between or re.search(rf"\b{key}\b", text)) else None


def settings_fields(model, prefix=("style_pipeline",)):
    """path -> pydantic field, for every key the settings define (sections included)."""
    out = {}
    for name, info in model.model_fields.items():
        out[prefix + (name,)] = info
        if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel):
            out |= settings_fields(info.annotation, prefix + (name,))
    return out


def stated_default(comment):
    """The value after "default " in a comment, read as YAML (None if none is stated)."""
    m = re.search(r"\bdefault (\[[^\]]*\]|\"[^\"]*\"|[^\s,;]+?)(?=[.,;]?(\s|$))", comment)
    return yaml.safe_load(m.group(1)) if m else None


def test_every_top_level_key_of_the_main_config_has_a_comment():
    """The docs promise every key is commented (what, why, default)."""
    found = comments_by_key(MAIN_CONFIG.read_text())
    bare = [path[0] for path, comment in found.items() if len(path) == 1 and comment is None]
    assert not bare, f"no comment above (or naming) these keys: {bare}"


def test_style_pipeline_comments_match_the_settings():
    """Every key settings.py defines is in the main config with a comment, and every
    setting's comment states the default settings.py gives it."""
    found = {p: c for p, c in comments_by_key(MAIN_CONFIG.read_text()).items()
             if p[0] == "style_pipeline" and len(p) > 1}
    fields = settings_fields(StylePipeline)
    assert set(fields) - NOT_IN_MAIN_CONFIG == set(found), "keys differ between settings.py and the YAML"
    for path, comment in found.items():
        key = ".".join(path)
        assert comment, f"{key}: no comment"
        if path[-1] not in ("sampling", "evaluation"):   # sections: their keys state defaults
            assert "default " in comment, f"{key}: the comment states no default"
            assert stated_default(comment) == fields[path].default, f"{key}: the comment's default " \
                f"{stated_default(comment)!r} is not settings.py's {fields[path].default!r}"


def test_the_comment_checks_can_fail():
    """The checks above catch a key without a comment and a wrong default."""
    text = "# int, default 3. Documented.\na: 3\nb: 4\n# int, default 5. c, and d too.\nc: 1\nd: 2\n"
    assert comments_by_key(text) == {("a",): "int, default 3. Documented.", ("b",): None,
                                     ("c",): "int, default 5. c, and d too.",
                                     ("d",): "int, default 5. c, and d too."}
    assert stated_default("str, default data/processed. Stage 1.") == "data/processed"
    assert stated_default("float, default 0.10. Share.") == 0.10
    assert stated_default("[float, float], default [0.05, 0.10]. The") == [0.05, 0.10]


def test_axolotl_keys_have_axolotls_own_defaults():
    """One default each for the Axolotl keys the pipeline reads, and it is the one
    Axolotl applies (its schema's, or its Liger plugin's), so a missing key means the
    same to both."""
    from axolotl.integrations.liger.args import LigerArgs
    from axolotl.utils.schemas.config import AxolotlInputConfig
    from peft import LoraConfig
    from styletune.settings import AxolotlKeys, axolotl_default
    ours = AxolotlKeys.model_fields
    theirs = {**AxolotlInputConfig.model_fields, **LigerArgs.model_fields}   # a plugin's keys are its own
    required_here = {"base_model", "sequence_len", "datasets", "test_datasets"}   # we ask; no guess
    for key, field in ours.items():
        assert key in theirs, f"{key} is not an Axolotl key"
        if key in required_here:
            assert field.is_required()
        elif key == "lora_r":       # Axolotl leaves the rank to peft
            assert theirs[key].default is None and axolotl_default(key) == LoraConfig().r
        elif key == "chat_template":   # null: the tokenizer's own template
            assert theirs[key].default is None and axolotl_default(key) == "tokenizer_default"
        else:
            mine, axolotls = axolotl_default(key), theirs[key].default
            assert mine == axolotls or (axolotls is None and mine in ({}, [])), (key, mine, axolotls)


def test_axolotl_keys_are_typed_on_load_and_null_means_default(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"extends": str(MAIN_CONFIG), "lora_r": None, "micro_batch_size": None}))
    keys = load_config(path).axolotl
    assert keys.lora_r == 8 and keys.micro_batch_size == 1 and keys.num_epochs == 3
    assert keys.special_tokens["eos_token"] == "<|eot_id|>"
    path.write_text(yaml.safe_dump({"extends": str(MAIN_CONFIG), "micro_batch_size": 0}))
    with pytest.raises(ConfigError, match="micro_batch_size` must be 1 or more"):
        load_config(path)
    data = yaml.safe_load(MAIN_CONFIG.read_text())
    del data["base_model"]
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="missing `base_model`"):
        load_config(path)


def test_a_copied_config_finds_the_shipped_one_it_extends(tmp_path):
    """A writer copies cpu_rehearsal.yaml out of the repository: its `extends:` still
    reads the shipped config; a name found nowhere is an error that says `extends:`."""
    copy = tmp_path / "mine.yaml"
    copy.write_text(REHEARSAL_CONFIG.read_text(encoding="utf-8"), encoding="utf-8")
    assert load_config(copy).data == load_config(REHEARSAL_CONFIG).data
    copy.write_text("extends: nothere.yaml\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"`extends: nothere.yaml` names no file"):
        load_config(copy)


def test_the_extends_chain_ends_at_its_root_and_a_loop_is_an_error(tmp_path):
    """root_config: where a key reaches every config built on it (the rules-file warning
    names it); a chain that comes back on itself is a ConfigError, not a hang."""
    from styletune.config import root_config
    assert root_config(REHEARSAL_CONFIG) == MAIN_CONFIG.resolve() == root_config(MAIN_CONFIG)
    (tmp_path / "a.yaml").write_text("extends: b.yaml\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\n")
    with pytest.raises(ConfigError, match="loops back on itself"):
        load_config(tmp_path / "a.yaml")
