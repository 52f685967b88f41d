"""Stage 5's "which GGUF fits which card": the estimate (file size from llama.cpp's
bits per weight, f16 KV cache at the serving context, ~1 GiB runtime) for Llama 3.1
8B and 70B, built as transformers' LlamaConfig in this process (nothing downloaded),
and what stage 5 prints, writes into SERVE.md and warns about for a 70B: the -ngl of
its llama-server command, q2_K's loss of quality, the disk a k-quant needs."""
import doctest
import json
import re
from collections import namedtuple
from pathlib import Path

import pytest
from conftest import FT, REPO, load_script
from styletune import paths
from styletune.deploy import fit, llamacpp
from styletune.deploy import serve as serving
from styletune.errors import ServeError
from styletune.train import gpu_plan, merge_output
from styletune.train.model_size import parameter_count

SCRIPT = load_script(FT / "training" / "5_configure_continue.py")
GIB = 1024 ** 3
DiskUsage = namedtuple("DiskUsage", "total used free")      # what shutil.disk_usage returns


def llama_shape(size: str) -> dict:
    """Llama 3.1's published shapes (gpu_plan's), as config.json holds them (LlamaConfig.to_dict)."""
    from transformers import LlamaConfig
    dims = {"8B": gpu_plan.LLAMA31_8B, "70B": gpu_plan.LLAMA31_70B}[size]
    return LlamaConfig(max_position_embeddings=131072, **dims).to_dict()


def test_the_docstrings_8b_and_70b_tables_are_what_the_code_prints():
    result = doctest.testmod(fit, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted >= 5


def test_every_type_stage_5_can_serve_is_priced():
    assert set(fit.BITS_PER_WEIGHT) == set(llamacpp.GGUF_TYPES)
    assert set(serving.QUANTIZE_LEVELS) <= set(fit.BITS_PER_WEIGHT)
    # Ollama's levels, as Ollama's ParseFileType names them (fs/ggml/type.go)
    assert serving.QUANTIZE_LEVELS == ("q8_0", "q4_K_M", "q4_K_S")


@pytest.mark.parametrize("size, params, kv_gib", [("8B", 8_030_261_248, 1.0), ("70B", 70_553_706_496, 2.5)])
def test_the_figures_are_the_formulas(size, params, kv_gib):
    shape = llama_shape(size)
    table = fit.fit_table(shape, 8192)
    assert table.parameters == parameter_count(shape) == params          # Meta's 8.03B / 70.55B
    layers = shape["num_hidden_layers"]
    assert fit.kv_cache_bytes(shape, 8192) == layers * 2 * 8 * 128 * 8192 * 2 == kv_gib * GIB
    assert [r.type for r in table.rows] == list(fit.BITS_PER_WEIGHT)     # largest first
    for row in table.rows:
        assert row.file_bytes == round(params * fit.BITS_PER_WEIGHT[row.type] / 8)
        assert row.total_bytes == row.file_bytes + kv_gib * GIB + GIB
        assert [row.fits(c) for c in fit.CARDS_GB] == [row.total_bytes <= c * GIB for c in fit.CARDS_GB]


def test_the_8b_sizes_are_llama_cpps_own():
    """llama.cpp's tools/quantize/README.md gives each type's size for Llama-3.1-8B in
    GiB; the bits-per-weight figures reproduce them to the hundredth."""
    readme = {"q8_0": 7.95, "q6_K": 6.14, "q5_K_M": 5.33, "q4_K_M": 4.58, "q4_K_S": 4.36,
              "q3_K_M": 3.74, "q2_K": 2.95, "bf16": 14.96}
    table = fit.fit_table(llama_shape("8B"), 8192)
    assert {t: round(table.row(t).file_bytes / GIB, 2) for t in readme} == readme
    # and the same README's 70B in q4_K_M: 43.1 GB
    assert fit.fit_table(llama_shape("70B"), 8192).row("q4_K_M").file_bytes / 1e9 == pytest.approx(43.1, abs=0.1)


def test_8b_what_fits_which_card():
    table = fit.fit_table(llama_shape("8B"), 8192)
    totals = {r.type: round(r.total_gib, 2) for r in table.rows}
    assert totals == {"bf16": 16.96, "q8_0": 9.95, "q6_K": 8.14, "q5_K_M": 7.33, "q4_K_M": 6.58,
                      "q4_K_S": 6.36, "q3_K_M": 5.74, "q2_K": 4.95}
    assert table.row("q8_0").fits(32) and table.row("q8_0").fits(16)
    assert not table.row("bf16").fits(16) and table.row("bf16").fits(24)
    assert table.largest_fitting(32).type == "bf16"        # an 8B fits a 5090 unquantised
    assert fit.advice(table, "q8_0") == fit.advice(table, "bf16") == fit.advice(table, "q3_K_M") == []
    # q2_K fits too, but its loss of quality is said, with the larger types that fit
    assert fit.advice(table, "q2_K") == [
        "q2_K fits one RTX 5090 (~5.0 GiB) but loses much quality (llama.cpp: +3.52 perplexity on "
        "Llama-3-8B; q4_K_M +0.18), and stage 4 judged the unquantised weights. To keep quality: "
        "--gguf q4_K_M or a larger type, up to bf16."]


def test_70b_what_fits_which_card():
    table = fit.fit_table(llama_shape("70B"), 8192)
    totals = {r.type: round(r.total_gib, 2) for r in table.rows}
    assert totals == {"bf16": 134.92, "q8_0": 73.32, "q6_K": 57.41, "q5_K_M": 50.35, "q4_K_M": 43.7,
                      "q4_K_S": 41.83, "q3_K_M": 36.32, "q2_K": 29.45}
    fits_32 = [r.type for r in table.rows if r.fits(32)]
    fits_48 = [r.type for r in table.rows if r.fits(48)]
    assert fits_32 == ["q2_K"]                  # q3_K_M's weights alone are 32.8 GiB
    assert fits_48 == ["q4_K_M", "q4_K_S", "q3_K_M", "q2_K"]
    assert [r.type for r in table.rows if r.fits(80)] == ["q8_0", "q6_K", "q5_K_M"] + fits_48
    assert not any(r.fits(16) or r.fits(24) for r in table.rows)
    assert table.largest_fitting(32).type == "q2_K"
    assert round(table.row("q4_K_M").file_bytes / GIB, 2) == 40.2
    # at 4k tokens of context, q3_K_M still needs more than a 5090
    assert not fit.fit_table(llama_shape("70B"), 4096).row("q3_K_M").fits(32)


def test_70b_advice_names_what_does_fit():
    table = fit.fit_table(llama_shape("70B"), 8192)
    q4 = fit.advice(table, "q4_K_M")
    assert q4[0].startswith("q4_K_M needs ~43.7 GiB (estimate), more than one 32 GB RTX 5090 holds.")
    assert "one 48 GB card, or two 24 GB cards" in q4[0]
    assert "--gguf q2_K" not in q4[1]        # not offered as the way to fit, but with its cost:
    assert q4[2] == ("q2_K fits one RTX 5090 (~29.4 GiB) but loses much quality (llama.cpp: +3.52 "
                     "perplexity on Llama-3-8B; q4_K_M +0.18), and stage 4 judged the unquantised "
                     "weights. To keep quality: q4_K_M with -ngl 58 (slower), one 48 GB card or two "
                     "24 GB cards, or the 8B, which fits unquantised.")
    # -ngl: as many layers as fit in 31 GiB at (file + KV) / 80 layers each
    assert fit.gpu_layers(table.row("q4_K_M")) == 58 == int(31 * GIB // ((43164757634 + 2.5 * GIB) / 80))
    assert "llama-server -ngl 58 (about 58 of 80 layers on the GPU" in q4[1]
    assert "It fits one 80 GB card, or two 48 GB cards" in fit.advice(table, "q8_0")[0]
    assert "It fits two 80 GB cards" in fit.advice(table, "bf16")[0]      # no one card holds it
    ngl = fit.gpu_layers(table.row("bf16"))
    assert ngl == 18 and f"llama-server -ngl {ngl} (about {ngl} of 80 layers" in fit.advice(table, "bf16")[1]
    assert fit.advice(table, "q2_K") == q4[2:]        # chosen, it fits, and the warning stays
    assert fit.advice(table, "q8_0")[2] == fit.advice(table, "bf16")[2] == q4[2]


def test_the_quality_figures_are_llama_cpps_and_only_q2_k_is_a_large_loss():
    """llama-quantize's list of types (tools/quantize/quantize.cpp): "+3.5199 ppl @
    Llama-3-8B" for Q2_K, "+0.1754" for Q4_K_M, ..."""
    assert set(fit.PPL_INCREASE) == set(fit.BITS_PER_WEIGHT) - {"bf16"}
    ppl = list(fit.PPL_INCREASE.values())
    assert ppl == sorted(ppl)                                            # larger types lose less
    assert [t for t in fit.BITS_PER_WEIGHT if fit.large_loss(t)] == ["q2_K"]
    assert fit.PPL_INCREASE["q2_K"] / fit.PPL_INCREASE["q4_K_M"] > 20


def test_a_folder_without_a_llama_config_gets_no_table(tmp_path):
    assert fit.model_table(tmp_path, 8192) is None
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "whisper", "d_model": 512}))
    assert fit.model_table(tmp_path, 8192) is None


def _merged(tmp_path, size: str) -> Path:
    """What stage 5 reads of a merged Llama 3.1 (its config.json and stage 3's manifest),
    without the weights, which the table does not read."""
    merged = tmp_path / "merged"
    merged.mkdir()
    (merged / "config.json").write_text(json.dumps(llama_shape(size)))
    (merged / merge_output.MANIFEST).write_text(json.dumps({"chat_template": "jinja", "eos_token": "<|im_end|>"}))
    return merged


@pytest.fixture
def merged_70b(make_config, tmp_path):
    merged = _merged(tmp_path, "70B")
    return make_config({"merged_dir": str(merged), "serve_dir": str(tmp_path / "serve"),
                        "serve_context_length": 8192})


def test_stage_5_prints_the_table_writes_it_into_serve_md_and_warns_for_a_70b(merged_70b, capsys):
    from styletune.config import load_config
    cfg = load_config(merged_70b)
    assert SCRIPT.main(["--config", str(merged_70b), "--quantize", "q4_K_M"]) == 0
    out = capsys.readouterr().out
    table = fit.format_table(fit.fit_table(llama_shape("70B"), cfg.pipeline.serve_context_length))
    assert "which GGUF fits which card (estimates from file sizes, not measured VRAM; this export: q4_K_M):\n" \
        + table + "\n" in out
    assert "| q2_K * | 3.16 | 25.95 | 29.45 | - | - | fits | fits | fits |" in out
    assert "warning: q4_K_M needs ~43.7 GiB (estimate), more than one 32 GB RTX 5090 holds." in out
    assert "warning: On one RTX 5090: keep q4_K_M with part of the model in CPU RAM: llama-server -ngl 58" in out
    assert "warning: q2_K fits one RTX 5090 (~29.4 GiB) but loses much quality" in out
    assert "* the largest type that fits one 32 GB card (RTX 5090), at a large loss of quality" in out
    serve_md = (cfg.pipeline.serve_dir / "SERVE.md").read_text()
    assert "## Which GGUF fits which card" in serve_md
    assert fit.format_table(fit.fit_table(llama_shape("70B"), 8192), markdown=True) in serve_md
    assert "\n\n| type | bits/weight |" in serve_md and "|\n\n\\* the largest type that fits" in serve_md
    assert "Estimates from file sizes, not measured VRAM" in serve_md and "This export: **q4_K_M**" in serve_md
    assert "**Warning:** q4_K_M needs ~43.7 GiB" in serve_md
    assert "\n\nq2_K fits one RTX 5090 (~29.4 GiB) but loses much quality" in serve_md
    # vLLM serves the merged weights in bf16: no 5090 holds them either
    assert SCRIPT.main(["--config", str(merged_70b), "--backend", "vllm", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "this export: bf16" in out and "warning: bf16 needs ~134.9 GiB" in out


def test_stage_5_does_not_warn_when_the_export_fits(make_config, tmp_path, capsys):
    merged = _merged(tmp_path, "8B")
    cfg = make_config({"merged_dir": str(merged), "serve_dir": str(tmp_path / "serve"),
                       "serve_context_length": 8192})
    assert SCRIPT.main(["--config", str(cfg), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "| bf16 * | 16.00 | 14.96 | 16.96 | - | fits | fits | fits | fits |" in out
    assert "warning" not in out


def test_serve_md_s_llama_server_command_has_the_estimated_layers_when_the_gguf_does_not_fit(
        merged_70b):
    from styletune.config import load_config
    cfg = load_config(merged_70b)
    merged = cfg.pipeline.merged_dir
    plan = serving.Plan(cfg, merged, "llamacpp", None, "q4_K_M")
    gguf = serving.gguf_path(cfg, "q4_K_M")
    assert plan.gpu_layers == 58 == fit.gpu_layers(plan.fit.row("q4_K_M"))
    command = plan.commands["llamacpp"]
    from styletune.deploy import llamacpp
    built = llamacpp.find_server()                           # make test builds it into the venv
    assert command.split()[0] == (str(built) if built else "llama-server")
    assert not built or Path(command.split()[0]).is_absolute()
    assert command == (f"{serving.server_program()} -m {gguf} --jinja --host 127.0.0.1 --port 8080 -c 8192 -ngl 58 "
                       f"--alias {cfg.pipeline.serve_model_name} --temp 0.8 --top-k 40 --top-p 0.95 "
                       "--min-p 0.05 --repeat-penalty 1.05 --repeat-last-n 64")
    serve_md = plan.contents["SERVE.md"]
    assert f"\n\n    {command}\n\n`-ngl 58` is an estimate (the table below): about 58 of 80 layers on " \
        "one RTX 5090, the rest in CPU RAM (slower). Lower it if the server runs out of GPU memory; " \
        "on a card with room, `-ngl 99` puts all layers on it.\n" in serve_md
    assert "-ngl 99 --alias" not in serve_md
    # q2_K fits the 5090: every layer on it, and the warning says what that costs
    plan = serving.Plan(cfg, merged, "llamacpp", None, "q2_K")
    assert plan.gpu_layers is None and " -ngl 99 --alias " in plan.commands["llamacpp"]
    assert "`-ngl 99` puts every layer on the GPU." in plan.contents["SERVE.md"]
    assert "**Warning:** q2_K fits one RTX 5090 (~29.4 GiB) but loses much quality" in plan.contents["SERVE.md"]


def test_an_8b_keeps_every_layer_on_the_gpu(make_config, tmp_path):
    from styletune.config import load_config
    merged = _merged(tmp_path, "8B")
    cfg = load_config(make_config({"merged_dir": str(merged), "serve_dir": str(tmp_path / "serve"),
                                   "serve_context_length": 8192}))
    for gguf_type in ("bf16", "q8_0", "q4_K_M"):
        plan = serving.Plan(cfg, merged, "llamacpp", None, gguf_type)
        assert plan.gpu_layers is None
        assert f" -ngl 99 --alias {cfg.pipeline.serve_model_name} --temp " in plan.commands["llamacpp"]
        assert "`-ngl 99` puts every layer on the GPU." in plan.contents["SERVE.md"]
        assert "estimate (the table below)" not in plan.contents["SERVE.md"]
        assert "Warning" not in plan.contents["SERVE.md"]


def test_a_70b_k_quant_asks_for_the_disk_it_needs_first(merged_70b, tmp_path, monkeypatch, capsys):
    """A merged 70B (its config.json; the table reads nothing else) to q4_K_M needs room
    for the bf16 GGUF (131.4 GiB) and the q4_K_M (40.2 GiB): with 100 GiB free where
    serve_dir will be, stage 5 says so in one line before converting anything, and
    before asking for llama.cpp's tools (so none is needed here)."""
    from styletune.config import load_config
    cfg = load_config(merged_70b)
    table = fit.fit_table(llama_shape("70B"), 8192)
    need = table.row("bf16").file_bytes + table.row("q4_K_M").file_bytes
    asked = []

    def disk_usage(path):                          # the disk's figure, the one thing faked
        asked.append(path)
        return DiskUsage(1000 * GIB, 900 * GIB, 100 * GIB)
    monkeypatch.setattr(serving.shutil, "disk_usage", disk_usage)
    assert SCRIPT.main(["--config", str(merged_70b), "--backend", "llamacpp", "--gguf", "q4_K_M"]) == 2
    err = capsys.readouterr().err
    serve = cfg.pipeline.serve_dir
    assert asked == [serve.parent]                 # serve_dir does not exist yet: the folder it will be in
    assert err == (f"error: {paths.shown(serve)} has 100.0 GiB free; the q4_K_M GGUF needs "
                   f"~{need / GIB:.1f} GiB (with the bf16 GGUF it is quantised from, removed after): "
                   "free some space, or set style_pipeline.serve_dir to a larger disk\n")
    assert f"~{need / GIB:.1f} GiB" == "~171.6 GiB"
    assert not serve.exists()
    # the boundary: exactly what it needs is enough; a byte less is not
    plan = serving.Plan(cfg, cfg.pipeline.merged_dir, "llamacpp", None, "q4_K_M")
    monkeypatch.setattr(serving.shutil, "disk_usage", lambda path: DiskUsage(need, 0, need))
    serving.check_disk(plan, "q4_K_M")
    monkeypatch.setattr(serving.shutil, "disk_usage", lambda path: DiskUsage(need, 1, need - 1))
    with pytest.raises(ServeError, match="the q4_K_M GGUF needs ~171.6 GiB"):
        serving.check_disk(plan, "q4_K_M")


def test_gguf_types_are_taken_however_they_are_typed():
    parser = SCRIPT.build_parser()
    assert parser.parse_args(["--gguf", "Q4_K_M"]).gguf == "q4_K_M"
    assert parser.parse_args(["--gguf", "q2_k"]).gguf == "q2_K"
    assert parser.parse_args(["--gguf", "BF16"]).gguf == "bf16"
    with pytest.raises(SystemExit):
        parser.parse_args(["--gguf", "iq2_xs"])


def test_the_editor_docs_stage_5_table_is_what_the_code_computes():
    readme = (REPO / "docs" / "editor.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| (\w+) \| ([\d.]+) / ([\d.]+) \| ([\d.]+) / ([\d.]+) \| (.+?) \|$", readme, re.M)
    assert [r[0] for r in rows] == list(fit.BITS_PER_WEIGHT)
    small, big = fit.fit_table(llama_shape("8B"), 8192), fit.fit_table(llama_shape("70B"), 8192)
    for name, *figures, where in rows:
        expected = [small.row(name).file_bytes / GIB, small.row(name).total_gib,
                    big.row(name).file_bytes / GIB, big.row(name).total_gib]
        assert [float(f) for f in figures] == [round(x, 2) for x in expected], name
        one, two = fit.cards_for(big.row(name))
        said = re.sub(r"[*()]|RTX 5090", "", where)
        assert (f"one {one} GB card" in said if one else "one" not in said), (name, where)
        assert f"two {two} GB" in said, (name, where)


def test_a_4bit_export_of_a_merge_into_nf4_says_it_rounds_twice():
    """Merged into the NF4-rounded base (the default), the weights are rounded once
    already: q4_K_M rounds them again, and stage 5 says so and what rounds once; q8_0,
    bf16 and a merge into the original weights say nothing."""
    from styletune.deploy.serve import rounded_twice
    from styletune.train.merge_output import NF4_METHOD
    nf4, original = {"merge_method": NF4_METHOD}, {"merge_method": "QLoRA: adapter added to the original"}
    for chosen in ("q4_K_M", "q4_K_S", "q3_K_M", "q2_K"):
        note = rounded_twice(nf4, chosen)
        assert note and f"{chosen} rounds them again" in note and "merge_into: original" in note
        assert rounded_twice(original, chosen) is None
    assert rounded_twice(nf4, "q8_0") is rounded_twice(nf4, "bf16") is rounded_twice(nf4, "Q8_0") is None
