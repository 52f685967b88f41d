"""Stage 5's k-quants, for real: the rehearsal model (SmolLM2-135M with a LoRA adapter,
merged by stage 3) converted to a bf16 GGUF by llama.cpp's converter, quantised to
q4_K_M by llama.cpp's own llama-quantize (both built by `make llama-server`), and
checked in a real llama-server as q8_0 is. Nothing is downloaded."""
import json
import subprocess
import sys

import pytest
from conftest import FT, build_adapter, load_script, write_config
from styletune.config import load_config
from styletune.deploy import llamacpp
from styletune.deploy import serve as serving
from styletune.train import models

# A merge, a conversion, a quantisation and a real server: a minute or more.
pytestmark = pytest.mark.slow

MERGE = load_script(FT / "training" / "3_merge_adapter.py")
STAGE5 = FT / "training" / "5_configure_continue.py"
LLAMA_FTYPE_MOSTLY_Q4_K_M = 15          # llama.h's llama_ftype, as general.file_type holds it


@pytest.fixture(scope="module")
def merged(tmp_path_factory):
    """The rehearsal model with a random LoRA adapter, merged by stage 3."""
    assert llamacpp.find_server(), f"no llama-server: {llamacpp.BUILD_HELP}"
    assert llamacpp.find_quantizer(), f"no llama-quantize: {llamacpp.QUANTIZE_HELP}"
    tmp = tmp_path_factory.mktemp("quantize")
    cfg_path = write_config(tmp, {"serve_context_length": 8192})
    cfg = load_config(cfg_path)
    build_adapter(cfg.base_model, cfg.output_dir, seed=5)
    assert MERGE.main(["--config", str(cfg_path), "--auto", "--force"]) == 0
    return cfg


def stage5(cfg, *args):
    return subprocess.run([sys.executable, str(STAGE5), "--config", str(cfg.path), *args],
                          capture_output=True, text=True)


def gguf_field(path, key):
    import gguf
    field = gguf.GGUFReader(path).fields[key]
    return field.parts[field.data[0]].tolist()[0]


def test_q4_k_m_through_llama_quantize_passes_the_server_checks(merged):
    run = stage5(merged, "--backend", "llamacpp", "--gguf", "q4_K_M")
    assert run.returncode == 0, run.stderr
    out = run.stdout
    dest = serving.gguf_path(merged, "q4_K_M")
    assert dest.is_file()
    assert "converted with llama.cpp's converter to bf16 (" in out and "temporary, removed)" in out
    assert f"quantised with llama-quantize to q4_K_M ({dest.stat().st_size / 1e6:.0f} MB)" in out
    # check_gguf in a real llama-server, exactly as for q8_0: loads, tokenises, chat, autocomplete, stop
    assert out.count("checked: ") == 5, out
    assert "checked: stops at <|im_end|>" in out
    assert [line for line in out.splitlines() if line.startswith("wrote ") and line.endswith(dest.name)]
    # llama.cpp's own type, and the tokenizer the converter recognised
    assert gguf_field(dest, "general.file_type") == LLAMA_FTYPE_MOSTLY_Q4_K_M
    import gguf
    types = {t.tensor_type.name for t in gguf.GGUFReader(dest).tensors}
    assert {"Q4_K", "Q6_K"} <= types, types   # q4_K_M: most in Q4_K, a share in Q6_K
    # nothing left beside it: no bf16 intermediate, no partial or unchecked file
    left = sorted(p.name for p in merged.pipeline.serve_dir.iterdir() if p.is_file())
    assert left == ["Modelfile", "SERVE.md", f"{merged.pipeline.serve_model_name}.q4_K_M.gguf",
                    f"{merged.pipeline.serve_model_name}.q4_K_M.gguf.server.log"], left
    # smaller than the q8_0 the converter writes, which the same model gets next
    run = stage5(merged, "--backend", "llamacpp", "--gguf", "q8_0", "--force")
    assert run.returncode == 0, run.stderr
    q8 = serving.gguf_path(merged, "q8_0")
    assert dest.stat().st_size < 0.8 * q8.stat().st_size
    print(f"\nrehearsal q4_K_M GGUF: {dest.stat().st_size} bytes ({dest.stat().st_size / 1e6:.1f} MB); "
          f"q8_0: {q8.stat().st_size} bytes")


def test_the_q4_k_m_gguf_continues_text_in_a_real_server(merged):
    dest = serving.gguf_path(merged, "q4_K_M")
    if not dest.is_file():
        assert stage5(merged, "--backend", "llamacpp", "--gguf", "q4_K_M").returncode == 0
    tok = models.load_tokenizer(merged, merged.pipeline.merged_dir)
    with llamacpp.Server(dest) as server:
        out = server.complete("The station turned slowly above the clouds.", n_predict=16,
                              temperature=0, seed=1)
        assert out["tokens_predicted"] > 0 and out["content"]
        assert server.tokenize("Haji said,") == tok("Haji said,", add_special_tokens=False)["input_ids"]


def test_a_failed_quantisation_leaves_nothing_and_says_why(merged, tmp_path):
    """llama-quantize on a file that is not a GGUF: one error with llama-quantize's own
    last lines; no partial file; the bf16 intermediate of export() removed too."""
    bogus = tmp_path / "not.gguf"
    bogus.write_bytes(b"not a gguf")
    with pytest.raises(llamacpp.LlamaCppError, match=r"llama-quantize failed on not\.gguf -> q4_K_M"):
        llamacpp.quantize(bogus, tmp_path / "out.gguf", "q4_K_M")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["not.gguf"]
    # export() of a folder the converter cannot read: its bf16 step fails, nothing is left
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text(json.dumps({"architectures": ["NoSuchModel"]}))
    with pytest.raises(llamacpp.LlamaCppError, match="converter failed"):
        llamacpp.export(broken, tmp_path / "x.q4_K_M.gguf", "q4_K_M")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken", "not.gguf"]

