"""Stage 3's streamed merge (shard by shard, for a base too big to load): real bitsandbytes,
PEFT and safetensors, nothing downloaded. It must write what the in-memory merge writes, one
shard at a time, verify a sample of layers independently, refuse what it cannot reproduce,
and be chosen by itself only when the whole model does not fit."""
import json
import shutil

import pytest
from conftest import FT, SMOL, base_with_two_adapters, build_adapter, load_script
from styletune import errors
from styletune.config import load_config
from styletune.train import adapter, merge_check, merge_output, merge_streamed, models, resources
from styletune.train import shards as shard_files
from styletune.train.gpu_plan import LLAMA31_8B, LLAMA31_70B
from styletune.train.model_size import parameter_count

SCRIPT = load_script(FT / "training" / "3_merge_adapter.py")

# Llama-3.1-70B-Instruct and -8B-Instruct, from their config.json
LLAMA_70B, LLAMA_8B = LLAMA31_70B, LLAMA31_8B


def tensors_of(folder):
    from safetensors.torch import load_file
    out = {}
    for path in sorted(folder.glob("*.safetensors")):
        out.update(load_file(str(path)))
    return out


def max_abs_diff(a, b) -> float:
    assert a.keys() == b.keys()
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)


def merge_both_routes(cfg_path, tmp_path):
    """(in-memory folder, streamed folder, streamed stdout) for one config, via the stage script."""
    memory, streamed = tmp_path / "in_memory", tmp_path / "streamed"
    assert SCRIPT.main(["--config", str(cfg_path), "--auto", "--output", str(memory)]) == 0
    assert SCRIPT.main(["--config", str(cfg_path), "--auto", "--output", str(streamed), "--streamed"]) == 0
    return memory, streamed


# --- the rehearsal model: SmolLM2-135M, a LoRA adapter on every linear layer -------------

@pytest.fixture(scope="module")
def smol_adapter(tmp_path_factory):
    """A LoRA adapter for the rehearsal model with random A and B (as if trained), saved by PEFT."""
    folder = tmp_path_factory.mktemp("smol") / "adapter"
    build_adapter(SMOL, folder, seed=3)
    return folder


@pytest.mark.slow
def test_streamed_merge_writes_what_the_in_memory_merge_writes(make_config, smol_adapter, tmp_path, capsys):
    cfg = make_config({"merge_into": "nf4"}, output_dir=str(smol_adapter))
    memory, streamed = merge_both_routes(cfg, tmp_path)
    out = capsys.readouterr().out
    assert "route: in memory (the in-memory merge needs ~" in out
    assert "route: streamed, shard by shard: asked for with --streamed" in out
    assert "shard 1/1 model.safetensors: 272 tensors, 210 with the adapter added" in out

    a, b = tensors_of(memory), tensors_of(streamed)
    diff = max_abs_diff(a, b)
    print(f"SmolLM2-135M, float32: max |streamed - in memory| over {len(a)} tensors = {diff:.3e}")
    # same bitsandbytes quantisation, same float32 arithmetic in the same order: bit for bit
    assert diff == 0.0
    assert json.loads((memory / "config.json").read_text()) == json.loads((streamed / "config.json").read_text())
    for name in ("generation_config.json", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        assert (memory / name).read_bytes() == (streamed / name).read_bytes(), name

    manifest = json.loads((streamed / merge_output.MANIFEST).read_text())
    v = manifest["verification"]
    assert manifest["merge_route"].startswith("streamed")
    assert v["method"].startswith("logits") and "per-layer" in v["method"]
    assert v["passed"] and v["mean_abs_diff"] <= v["tolerance"]
    assert {c["weight"].split(".")[2] for c in v["layers"]} == {"0", "15", "29"}
    assert len(v["layers"]) == 3 * 7 and all(c["passed"] for c in v["layers"])
    assert all(c["mismatched"] == 0 and c["max_abs_diff"] == 0 for c in v["layers"])
    print(f"per-layer check, float32: no merged value differs from NF4 + delta (a lost adapter: "
          f"{min(c['lost_mismatched'] for c in v['layers']):.1%} at least); logits: mean diff "
          f"{v['mean_abs_diff']:.2e} (in memory "
          f"{json.loads((memory / merge_output.MANIFEST).read_text())['verification']['mean_abs_diff']:.2e})")

    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(str(streamed))
    shape = json.loads((SMOL / "config.json").read_text())
    assert sum(p.numel() for p in model.parameters()) == parameter_count(shape)


@pytest.mark.slow
def test_streamed_merge_in_bfloat16_matches_the_in_memory_merge(make_config, smol_adapter, tmp_path, capsys):
    cfg = make_config({"merged_dtype": "bfloat16", "merge_into": "nf4"}, output_dir=str(smol_adapter))
    memory, streamed = merge_both_routes(cfg, tmp_path)
    diff = max_abs_diff(tensors_of(memory), tensors_of(streamed))
    print(f"SmolLM2-135M, bfloat16: max |streamed - in memory| = {diff:.3e}")
    assert diff == 0.0
    v = json.loads((streamed / merge_output.MANIFEST).read_text())["verification"]
    assert v["passed"] and all(c["passed"] for c in v["layers"])
    print(f"per-layer check, bf16: at most {max(c['mismatched'] for c in v['layers']):.2%} of values "
          f"differ from NF4 + delta rounded to bf16 (a lost adapter: at least "
          f"{min(c['lost_mismatched'] for c in v['layers']):.1%}); max |merged - unrounded| "
          f"{max(c['max_abs_diff'] for c in v['layers']):.2e}")


# --- several shards: a tiny random Llama saved in small pieces ---------------------------

@pytest.fixture(scope="module")
def sharded(tmp_path_factory):
    """A 4-layer Llama saved in several shards with an index, and two adapters."""
    return base_with_two_adapters(tmp_path_factory.mktemp("sharded"), layers=4, tied=False,
                                  max_shard_size="120KB")


def sharded_config(make_config, sharded, tmp_path, adapter="adapter", **pipeline):
    return make_config({"merged_dir": str(tmp_path / "merged"), **pipeline},
                       base_model=str(sharded / "base"), output_dir=str(sharded / adapter))


class ShardLog:
    """Wraps safetensors' own safe_open and save_file (the real ones do the work) to record
    when each base shard is opened and closed and each output shard written."""

    def __init__(self, monkeypatch, base_dir):
        import safetensors
        import safetensors.torch
        self.events, self.base_dir = [], str(base_dir)
        real_open, real_save = safetensors.safe_open, safetensors.torch.save_file
        log = self

        class Logged:
            def __init__(self, path, *args, **kwargs):
                self.path, self.inner = str(path), real_open(path, *args, **kwargs)

            def __getattr__(self, name):    # used without `with` (the adapter's file)
                return getattr(self.inner, name)

            def __enter__(self):
                log.note("open", self.path)
                return self.inner.__enter__()

            def __exit__(self, *exc):
                log.note("close", self.path)
                return self.inner.__exit__(*exc)

        def save(tensors, path, *args, **kwargs):
            log.events.append(("write", path.rsplit("/", 1)[-1]))
            return real_save(tensors, path, *args, **kwargs)

        monkeypatch.setattr(safetensors, "safe_open", Logged)
        monkeypatch.setattr(safetensors.torch, "save_file", save)

    def note(self, what, path):
        if path.startswith(self.base_dir):
            self.events.append((what, path.rsplit("/", 1)[-1]))


def test_a_sharded_base_is_merged_one_shard_at_a_time(make_config, sharded, tmp_path, monkeypatch, capsys):
    base = sharded / "base"
    index = json.loads((base / shard_files.INDEX_FILE).read_text())["weight_map"]
    files = sorted(set(index.values()))
    assert len(files) >= 4
    log = ShardLog(monkeypatch, base)
    cfg = sharded_config(make_config, sharded, tmp_path)
    assert SCRIPT.main(["--config", str(cfg), "--auto", "--streamed"]) == 0
    merged = tmp_path / "merged"

    # each base shard is opened, read, closed and its output written before the next is opened
    writing = log.events[:3 * len(files)]
    assert writing == [e for name in files for e in (("open", name), ("close", name), ("write", name))]
    # the output keeps the base's layout: the same files, each with the same tensors
    out_index = json.loads((merged / shard_files.INDEX_FILE).read_text())
    assert out_index["weight_map"] == index
    base_meta = json.loads((base / shard_files.INDEX_FILE).read_text())["metadata"]
    assert out_index["metadata"] == {"total_parameters": base_meta["total_parameters"],
                                     "total_size": 2 * base_meta["total_size"]}   # bf16 in, float32 out
    for name in files:
        assert shard_files.read_header(merged / name).keys() == shard_files.read_header(base / name).keys()
    out = capsys.readouterr().out
    assert f"shard {len(files)}/{len(files)}" in out

    manifest = json.loads((merged / merge_output.MANIFEST).read_text())
    assert manifest["verification"]["passed"]
    from transformers import AutoModelForCausalLM
    AutoModelForCausalLM.from_pretrained(str(merged))


@pytest.mark.parametrize("merge_into", ["original", "nf4"])
def test_sharded_streamed_merge_equals_in_memory(make_config, sharded, tmp_path, merge_into):
    cfg = sharded_config(make_config, sharded, tmp_path, merge_into=merge_into)
    memory, streamed = merge_both_routes(cfg, tmp_path)
    merged = tensors_of(streamed)
    diff = max_abs_diff(tensors_of(memory), merged)
    print(f"tiny sharded Llama, float32: max |streamed - in memory| = {diff:.3e}")
    assert diff == 0.0
    # training left lm_head (and the embeddings) in 16 bits: copied, not put through NF4
    base = tensors_of(sharded / "base")
    assert all(merged[k].equal(base[k].float()) for k in ("lm_head.weight", "model.embed_tokens.weight"))
    assert not merged["model.layers.1.mlp.up_proj.weight"].equal(base["model.layers.1.mlp.up_proj.weight"].float())


@pytest.mark.parametrize("lora, top", [
    # PEFT's own scaling rules: alpha / sqrt(r), and per-module rank and alpha
    ({"use_rslora": True, "rank_pattern": {"q_proj": 8}, "alpha_pattern": {"down_proj": 32},
      "target_modules": ["q_proj", "v_proj", "down_proj"]}, {}),
    # a plain LoRA run: no 4-bit base, the adapter added to the unquantised weights
    ({}, {"adapter": "lora", "load_in_4bit": False}),
])
def test_streamed_merge_follows_the_adapter_and_the_config(make_config, sharded, tmp_path, lora, top):
    adapter_with(sharded / "base", tmp_path / "adapter", **lora)
    cfg = make_config({"merged_dir": str(tmp_path / "merged")}, base_model=str(sharded / "base"),
                      output_dir=str(tmp_path / "adapter"), **top)
    memory, streamed = merge_both_routes(cfg, tmp_path)
    diff = max_abs_diff(tensors_of(memory), tensors_of(streamed))
    print(f"{lora or top}: max |streamed - in memory| = {diff:.3e}")
    assert diff == 0.0
    assert json.loads((streamed / merge_output.MANIFEST).read_text())["verification"]["passed"]


@pytest.mark.parametrize("merge_into", ["original", "nf4"])
def test_a_model_too_big_to_load_is_verified_layer_by_layer(make_config, sharded, tmp_path, capsys, merge_into):
    """The route a 70B takes on a machine that cannot load it: no logit check, no sample;
    the manifest says the per-layer check is what ran."""
    cfg = load_config(sharded_config(make_config, sharded, tmp_path, merge_into=merge_into))
    choice = adapter.choose_adapter(cfg.output_dir)
    out = tmp_path / "merged"
    manifest = merge_streamed.merge_streamed(cfg, choice, out, "cpu", "float32", full_check=False)
    v = manifest["verification"]
    assert v["method"].startswith("per-layer") and "logits" not in v["method"]
    assert "mean_abs_diff" not in v and v["passed"] and len(v["layers"]) == 3 * 7
    assert manifest["merge_route"].startswith("streamed")
    assert json.loads((out / merge_output.MANIFEST).read_text()) == manifest
    assert "sample (greedy" not in capsys.readouterr().out
    from transformers import AutoModelForCausalLM
    AutoModelForCausalLM.from_pretrained(str(out))


def test_the_layer_check_fails_for_the_wrong_adapter(make_config, sharded, tmp_path):
    """A folder merged with another adapter, checked against this one, fails every sampled weight."""
    cfg_path = sharded_config(make_config, sharded, tmp_path, adapter="other_adapter")
    assert SCRIPT.main(["--config", str(cfg_path), "--auto", "--streamed"]) == 0
    cfg = load_config(cfg_path)
    shards = shard_files.base_shards(cfg.base_model)
    adapter = shard_files.StreamedAdapter(sharded / "adapter")
    tok = models.load_tokenizer(cfg, adapter.folder)
    merger = merge_streamed.prepare_merger(cfg, tok, adapter, shards, "cpu", "float32")
    checks = merge_check.verify_layers(cfg, adapter, merger, shards, tmp_path / "merged",
                                          "float32", "float32", "cpu", say=print)
    assert checks and not any(c.passed for c in checks)
    assert min(c.mismatched for c in checks) > 0.9           # float32: nearly every value is off


def test_sampled_layers_are_first_middle_and_last():
    targets = {f"model.layers.{i}.mlp.up_proj.weight": None for i in range(80)}
    picked = merge_check.sample_weights(targets, 80)
    assert [int(k.split(".")[2]) for k in picked] == [0, 40, 79]


# --- refusals ------------------------------------------------------------------------------

def adapter_with(base_dir, folder, **lora):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM
    torch.manual_seed(4)
    model = AutoModelForCausalLM.from_pretrained(str(base_dir))
    lora = {"target_modules": ["q_proj", "v_proj"], **lora}
    config = LoraConfig(r=4, lora_alpha=8, init_lora_weights=False, **lora)
    get_peft_model(model, config).save_pretrained(folder)
    return folder


@pytest.mark.parametrize("lora, said", [
    ({"modules_to_save": ["lm_head"]}, "modules_to_save (whole modules"),
    ({"use_dora": True}, "use_dora (DoRA"),
])
def test_what_the_streamed_merge_cannot_reproduce_is_refused(make_config, sharded, tmp_path, capsys,
                                                             lora, said):
    adapter_with(sharded / "base", tmp_path / "adapter", **lora)
    cfg = make_config({"merged_dir": str(tmp_path / "merged")}, base_model=str(sharded / "base"),
                      output_dir=str(tmp_path / "adapter"))
    assert SCRIPT.main(["--config", str(cfg), "--auto", "--streamed", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert said in err and "handles only plain LoRA" in err
    assert SCRIPT.main(["--config", str(cfg), "--auto", "--streamed"]) == 2
    assert not (tmp_path / "merged").exists() and not (tmp_path / "merged.partial").exists()


def test_an_adapter_holding_other_tensors_is_refused(sharded, tmp_path):
    import torch
    from safetensors.torch import load_file, save_file
    folder = tmp_path / "adapter"
    shutil.copytree(sharded / "adapter", folder)
    tensors = load_file(str(folder / adapter.ADAPTER_FILE))
    tensors["base_model.model.model.embed_tokens.lora_embedding_A"] = torch.zeros(4, 49152)
    save_file(tensors, str(folder / adapter.ADAPTER_FILE))
    with pytest.raises(errors.MergeError, match="not LoRA A/B pairs on linear layers .*embed_tokens"):
        shard_files.StreamedAdapter(folder)


# --- where the base comes from --------------------------------------------------------------

def test_the_base_is_read_from_the_hugging_face_cache_never_downloaded(sharded, tmp_path, monkeypatch):
    from huggingface_hub import constants
    cache = tmp_path / "hub"
    snapshot = cache / "models--someone--tiny-llama" / "snapshots" / ("ab" * 20)
    shutil.copytree(sharded / "base", snapshot)
    (cache / "models--someone--tiny-llama" / "refs").mkdir()
    (cache / "models--someone--tiny-llama" / "refs" / "main").write_text("ab" * 20)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    shards = shard_files.base_shards("someone/tiny-llama")
    assert shards.folder == snapshot and shards.indexed and len(shards.files) >= 4
    with pytest.raises(errors.MergeError, match="not in the Hugging Face cache"):
        shard_files.base_shards("someone/absent-model")


# --- a damaged base: one line naming the file and the fix ------------------------------------

def saved_safetensors(path):
    """A real safetensors file, as save_pretrained writes a shard: returns its size in bytes."""
    import torch
    from safetensors.torch import save_file
    save_file({"model.embed_tokens.weight": torch.ones(64, 32, dtype=torch.bfloat16),
               "model.norm.weight": torch.ones(32, dtype=torch.bfloat16)}, str(path), metadata={"format": "pt"})
    return path.stat().st_size


@pytest.mark.parametrize("keep, said", [
    (0.5, None),                                                # cut in the tensors' data
    ("header", "its header claims"),                            # cut inside the JSON header
    (5, "5 bytes, shorter than a safetensors header"),
    ("garbage", "its header is not a safetensors header"),
    ("longer", "its header describes"),
])
def test_a_truncated_or_damaged_shard_is_one_line_naming_it(tmp_path, keep, said):
    path = tmp_path / "model-00002-of-00004.safetensors"
    size = saved_safetensors(path)
    assert shard_files.read_header(path).keys() == {"model.embed_tokens.weight", "model.norm.weight"}
    data = path.read_bytes()
    header_end = 8 + int.from_bytes(data[:8], "little")
    if keep == 0.5:
        path.write_bytes(data[:size // 2])
        said = f"is damaged or truncated ({size // 2} bytes, its header describes {size})"
    elif keep == "header":
        path.write_bytes(data[:header_end // 2])
    elif keep == "garbage":
        path.write_bytes(data[:8] + b"{not json" + data[17:])
    elif keep == "longer":
        path.write_bytes(data + b"\0" * 10)
    else:
        path.write_bytes(data[:keep])
    with pytest.raises(errors.MergeError) as err:
        shard_files.read_header(path)
    message = str(err.value)
    assert said in message and "model-00002-of-00004.safetensors" in message and "\n" not in message
    assert "re-download the base model: replace" in message and "in the local folder" in message


def copy_of_base(sharded, tmp_path):
    base = tmp_path / "base"
    shutil.copytree(sharded / "base", base)
    names = sorted(set(json.loads((base / shard_files.INDEX_FILE).read_text())["weight_map"].values()))
    return base, names


def test_a_truncated_shard_is_refused_by_the_plan(make_config, sharded, tmp_path, capsys):
    """As a download cut short leaves it: the plan (--dry-run) refuses, naming the shard."""
    base, names = copy_of_base(sharded, tmp_path)
    shard = base / names[1]
    shard.write_bytes(shard.read_bytes()[:shard.stat().st_size - 1000])
    cfg = make_config({"merged_dir": str(tmp_path / "merged")}, base_model=str(base),
                      output_dir=str(sharded / "adapter"))
    assert SCRIPT.main(["--config", str(cfg), "--auto", "--streamed", "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("error: ")
    assert f"{names[1]} is damaged or truncated (" in err and "re-download the base model" in err


@pytest.mark.parametrize("index_text, said", [
    ('{"metadata": {}, "weight_map": {"lm_head.weight": "model-0', "not the JSON index"),
    ('{"metadata": {}}', "not the JSON index"),
])
def test_a_damaged_index_is_one_line_naming_it(sharded, tmp_path, index_text, said):
    base, _ = copy_of_base(sharded, tmp_path)
    (base / shard_files.INDEX_FILE).write_text(index_text)
    with pytest.raises(errors.MergeError) as err:
        shard_files.base_shards(str(base))
    assert f"{shard_files.INDEX_FILE} is damaged or truncated ({said}" in str(err.value)
    assert "re-download the base model" in str(err.value)


def test_a_damaged_file_in_the_hugging_face_cache_names_its_blob(sharded, tmp_path, monkeypatch):
    """In the cache a snapshot's files are links to blobs: the fix names both and the repo."""
    from huggingface_hub import constants
    repo_dir = tmp_path / "hub" / "models--someone--tiny-llama"
    snapshot = repo_dir / "snapshots" / ("cd" * 20)
    shutil.copytree(sharded / "base", snapshot)
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text("cd" * 20)
    name = json.loads((snapshot / shard_files.INDEX_FILE).read_text())["weight_map"]["lm_head.weight"]
    blob = repo_dir / "blobs" / ("e" * 64)
    blob.parent.mkdir()
    blob.write_bytes((snapshot / name).read_bytes()[:-4096])       # an interrupted download
    (snapshot / name).unlink()
    (snapshot / name).symlink_to(blob)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(errors.MergeError) as err:
        shard_files.base_shards("someone/tiny-llama")
    message = str(err.value)
    assert f"snapshots/{'cd' * 20}/{name} is damaged or truncated" in message
    assert f"and the blob it links to, {blob.resolve()}" in message
    assert "from the Hugging Face cache, then run `hf download someone/tiny-llama`" in message


# --- which route --------------------------------------------------------------------------

@pytest.mark.parametrize("shape, device, dtype, ram, streamed", [
    (LLAMA_70B, "cpu", "bfloat16", 64.0, True),      # 70.6e9 x 2 bytes x 1.5 = 197 GiB
    (LLAMA_70B, "cpu", "bfloat16", 256.0, False),
    (LLAMA_8B, "cpu", "bfloat16", 64.0, False),      # 22.4 GiB
    (LLAMA_8B, "cpu", "bfloat16", 16.0, True),
    (LLAMA_8B, "cuda", "bfloat16", 16.0, False),     # choose_placement found the GPU room
])
def test_the_route_is_in_memory_when_it_fits_streamed_when_not(shape, device, dtype, ram, streamed):
    route = resources.decide_route(parameter_count(shape), device, dtype, ram, force_streamed=False)
    assert route.streamed is streamed and route.fits is not streamed
    assert route.why.startswith("streamed, shard by shard: the in-memory merge needs ~" if streamed else "in memory")
    forced = resources.decide_route(parameter_count(shape), device, dtype, ram, force_streamed=True)
    assert forced.streamed and forced.fits is (not streamed) and "asked for with --streamed" in forced.why


def test_the_plan_for_the_streamed_route_prices_one_shard_at_a_time(make_config, sharded, tmp_path, capsys):
    cfg = sharded_config(make_config, sharded, tmp_path)
    assert SCRIPT.main(["--config", str(cfg), "--auto", "--streamed", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "route: streamed, shard by shard: asked for with --streamed (the in-memory merge needs ~" in out
    # the tiny model fits, so the end-to-end logit check runs as well as the sampled layers
    assert "verify: the logits of the whole merged model, and a sample of merged weights" in out
    assert "the streamed merge needs ~" in out and "one layer at a time)" in out
    assert not (tmp_path / "merged").exists()
