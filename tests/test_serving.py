"""Stage 5: the files that put the model in Continue, and template parity: what
Ollama (its TEMPLATE, evaluated by a port of Go's text/template and Ollama's
collation) and vLLM (the merged folder's chat_template.jinja) render must be
what Axolotl rendered in training, text and token ids."""
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import FT, SAMPLE_BOOK, llama_like_model, load_script
from styletune import chat
from styletune.config import load_config
from styletune.deploy import continue_files, templates
from styletune.deploy import serve as serving
from styletune.train import merge_output, models
from support.continue_js import run_continue_js
from support.gotemplate import collate, render_ollama

SCRIPT = load_script(FT / "training" / "5_configure_continue.py")
MERGE = load_script(FT / "training" / "3_merge_adapter.py")

PASSAGE = (SAMPLE_BOOK / "chunk_002_the_infirmary.txt").read_text(encoding="utf-8").split("\n\n")
CONVERSATIONS = {
    "user only (the training format)": [{"role": "user", "content": PASSAGE[0]}],
    "system + user": [{"role": "system", "content": "You continue the author's novel."},
                      {"role": "user", "content": PASSAGE[1]}],
    "multi-turn": [{"role": "system", "content": "Continue the manuscript."},
                   {"role": "user", "content": PASSAGE[0]},
                   {"role": "assistant", "content": PASSAGE[1] + "\n\n" + PASSAGE[2]},
                   {"role": "user", "content": "“Again,” she said. ‘Once more — from the top.’"}],
}


def test_go_template_port_matches_ollamas_own_test_case():
    # Ollama's template_test.go, TestExecuteWithMessages, "chatml" / "messages".
    template = ("\n{{- range $index, $_ := .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}"
                "<|im_end|>\n{{ end }}<|im_start|>assistant\n")
    messages = [{"role": "system", "content": "You are a helpful assistant!"},
                {"role": "user", "content": "Hello friend!"},
                {"role": "assistant", "content": "Hello human!"},
                {"role": "user", "content": "What is your name?"}]
    assert render_ollama(template, messages) == (
        "<|im_start|>system\nYou are a helpful assistant!<|im_end|>\n<|im_start|>user\nHello friend!"
        "<|im_end|>\n<|im_start|>assistant\nHello human!<|im_end|>\n<|im_start|>user\n"
        "What is your name?<|im_end|>\n<|im_start|>assistant\n")


def test_go_template_port_trim_markers_conditionals_and_collation():
    assert render_ollama("a  \n{{- .System -}}  \n b", [{"role": "system", "content": "S"}]) == "aSb"
    assert render_ollama("{{ if .System }}yes{{ else }}no{{ end }}", [{"role": "user", "content": "u"}]) == "no"
    # Ollama merges consecutive messages of one role with a blank line
    two_users = [{"role": "user", "content": "A"}, {"role": "user", "content": "B"}]
    assert render_ollama("{{ range .Messages }}[{{ .Content }}]{{ end }}", two_users) == "[A\n\nB]"
    chain = ('{{ range .Messages }}{{ if eq .Role "user" }}U{{ else if eq .Role "assistant" }}A'
             '{{ else }}S{{ end }}{{ end }}')
    mixed = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"},
             {"role": "assistant", "content": "a"}]
    assert render_ollama(chain, mixed) == "SUA"
    with pytest.raises(ValueError, match="not supported"):
        render_ollama('{{ if ne .Role "user" }}x{{ end }}', two_users)


def ollama_ids(merged, tok, text) -> list:
    """The ids Ollama feeds the model for a rendered TEMPLATE: BOS first only where the
    merged tokenizer_config.json says add_bos_token: true. Its importer reads that key
    alone (convert/tokenizer.go), and releases before 2026-05 took a missing one for
    false; the tokenizer.json post-processor, which transformers follows, it ignores."""
    stated = json.loads((merged / "tokenizer_config.json").read_text()).get("add_bos_token") is True
    return [tok.bos_token_id] * stated + tok(text, add_special_tokens=False)["input_ids"]


def axolotl_rendering(tok, cfg, conversation):
    """Axolotl's template, applied the way Axolotl's chat_template strategy applies it."""
    from axolotl.utils.chat_templates import get_chat_template
    template = get_chat_template(cfg.chat_template, jinja_template=cfg.data.get("chat_template_jinja"))
    text = tok.apply_chat_template(conversation, chat_template=template, tokenize=False,
                                   add_generation_prompt=True)
    ids = tok.apply_chat_template(conversation, chat_template=template, tokenize=True,
                                  add_generation_prompt=True, return_dict=False)
    return text, list(ids["input_ids"] if isinstance(ids, dict) else ids)


def modelfile_template(path):
    return re.search(r'^TEMPLATE """(.*?)"""$', path.read_text(), re.S | re.M).group(1)


@pytest.fixture(scope="module", params=["chatml-continuation", "chatml", "llama3-continuation"])
def served(request, tmp_path_factory, tiny):
    """A merged tiny model and stage 5's files for it: tokenizer and template as for
    SmolLM2 (the rehearsal config's continuation layout, or Axolotl's own `chatml`,
    a turn of its own for the writer's text), or a Llama-3-like tokenizer that adds
    BOS itself with the main config's template."""
    from conftest import write_config
    tmp = tmp_path_factory.mktemp(request.param)
    top = {"base_model": str(tiny / "base"), "output_dir": str(tiny / "adapter")}
    if request.param == "chatml":
        top.update(chat_template="chatml", chat_template_jinja=None)
    if request.param == "llama3-continuation":
        base = llama_like_model(tmp / "llama_like")
        for f in (tiny / "base").iterdir():
            if f.name.startswith(("model", "config")):
                (base / f.name).unlink(missing_ok=True)
                (base / f.name).symlink_to(f)
        main = load_config(FT / "configs" / "qlora_style_transfer.yaml").data
        top = {"base_model": str(base), "output_dir": str(tiny / "adapter"), "chat_template": "jinja",
               "chat_template_jinja": main["chat_template_jinja"],
               "special_tokens": {"pad_token": "<|im_end|>", "eos_token": "<|eot_id|>"}}
    cfg_path = write_config(tmp, {"merged_dir": str(tmp / "merged"), "serve_dir": str(tmp / "serve"),
                                  "merged_dtype": "bfloat16"}, **top)
    cfg = load_config(cfg_path)
    assert cfg.template_family == request.param
    if request.param == "llama3-continuation":
        # What stage 3 writes for rendering (tokenizer, template, manifest): the
        # tiny adapter was trained on another vocabulary, so no weights are merged.
        tok = models.load_tokenizer(cfg, tmp / "no_adapter")
        tok.save_pretrained(tmp / "merged")
        merge_output.state_special_tokens_added(tok, tmp / "merged")
        (tmp / "merged" / merge_output.MANIFEST).write_text(json.dumps({"chat_template": "jinja",
                                                                 "eos_token": tok.eos_token}))
    else:
        assert MERGE.main(["--config", str(cfg_path), "--auto"]) == 0
    assert SCRIPT.main(["--config", str(cfg_path)]) == 0
    from transformers import AutoTokenizer
    return request.param, cfg, AutoTokenizer.from_pretrained(str(tmp / "merged"))


@pytest.mark.parametrize("case", list(CONVERSATIONS))
def test_ollama_and_vllm_render_what_training_rendered(served, case):
    name, cfg, tok = served
    conversation = CONVERSATIONS[case]
    train_text, train_ids = axolotl_rendering(tok, cfg, conversation)

    # Ollama: the Modelfile's TEMPLATE; BOS added where stage 3's tokenizer_config says so.
    ollama_text = render_ollama(modelfile_template(cfg.pipeline.serve_dir / "Modelfile"), conversation)
    bos = tok.bos_token if name.startswith("llama3") else ""
    assert bos + ollama_text == train_text
    assert ollama_ids(cfg.pipeline.merged_dir, tok, ollama_text) == train_ids

    # vLLM: the merged folder's chat_template.jinja, prompt tokenised without added specials.
    jinja = (cfg.pipeline.merged_dir / "chat_template.jinja").read_text()
    vllm_text = tok.apply_chat_template(conversation, chat_template=jinja, tokenize=False,
                                        add_generation_prompt=True)
    assert vllm_text == train_text
    assert tok(vllm_text, add_special_tokens=False)["input_ids"] == train_ids
    assert f"--chat-template {cfg.pipeline.merged_dir / 'chat_template.jinja'}" in \
        serving.vllm_command(cfg, cfg.pipeline.merged_dir)
    # vLLM binds every interface by default: this one listens where Continue looks, locally
    assert "--host 127.0.0.1 --port 8000 " in serving.vllm_command(cfg, cfg.pipeline.merged_dir)
    assert continue_files.VLLM_URL == "http://127.0.0.1:8000/v1"


def test_whitespace_at_the_turn_edges_reaches_the_model_as_trained(served):
    """Stage 1 ends a prompt with a paragraph break, or starts a completion with a
    space. Training (the untrimmed llama3 template, or chatml), Ollama and vLLM
    all keep that whitespace, so the model sees in the editor what it learned."""
    name, cfg, tok = served
    conversation = [{"role": "user", "content": "\n book/chapter_02.md\n" + PASSAGE[0] + "\n\n"},
                    {"role": "assistant", "content": " " + PASSAGE[1]}]
    train_text, train_ids = axolotl_rendering(tok, cfg, conversation)
    assert conversation[0]["content"] in train_text and conversation[1]["content"] in train_text
    ollama_text = render_ollama(modelfile_template(cfg.pipeline.serve_dir / "Modelfile"), conversation)
    assert (tok.bos_token if name.startswith("llama3") else "") + ollama_text == train_text
    jinja = (cfg.pipeline.merged_dir / "chat_template.jinja").read_text()
    assert tok.apply_chat_template(conversation, chat_template=jinja, tokenize=False,
                                   add_generation_prompt=True) == train_text


def test_files_name_the_model_stop_tokens_and_sampling(served):
    name, cfg, tok = served
    serve = cfg.pipeline.serve_dir
    modelfile = (serve / "Modelfile").read_text()
    assert f"FROM {cfg.pipeline.merged_dir}\n" in modelfile
    assert f'PARAMETER stop "{tok.eos_token}"' in modelfile
    assert f"PARAMETER num_ctx {cfg.pipeline.serve_context_length}" in modelfile
    assert "PARAMETER temperature 0.8" in modelfile
    continue_cfg = yaml.safe_load((serve / "continue" / "config.yaml").read_text())
    assert continue_cfg["schema"] == "v1"
    (entry,) = continue_cfg["models"]
    assert entry["provider"] == "ollama" and entry["model"] == cfg.pipeline.serve_model_name
    assert entry["roles"] == ["chat", "autocomplete"]         # no edit/apply: code prompts
    assert entry["defaultCompletionOptions"]["stop"][0] == tok.eos_token
    # Continue's coding prompts replaced in every mode
    assert set(entry["chatOptions"].values()) == {chat.BASE_SYSTEM_MESSAGE}
    assert len(entry["chatOptions"]) == 3
    assert "{{{prefix}}}" in entry["promptTemplates"]["autocomplete"]
    assert entry["autocompleteOptions"]["transform"] is False
    rules = (serve / "continue" / "rules" / "scifi_writer.md").read_text()
    assert rules == (FT / "configs" / "prompts" / "scifi_writer.md").read_text()
    assert f"ollama create {cfg.pipeline.serve_model_name} -f {serve / 'Modelfile'}" in \
        (serve / "SERVE.md").read_text()


def test_install_merges_into_an_existing_continue_config_with_a_backup(served, tmp_path, capsys):
    name, cfg, tok = served
    home = tmp_path / ".continue"
    home.mkdir()
    original = ("# my settings\nname: Mine\nversion: 1.0.0\nschema: v1\nmodels:\n"
                "  - name: Other\n    provider: openai\n    model: gpt-4o\n"
                "rules:\n  - Be brief\n")
    (home / "config.yaml").write_text(original)
    args = ["--config", str(cfg.path), "--install", "--continue-dir", str(home)]
    assert SCRIPT.main(args + ["--force"]) == 0
    merged = yaml.safe_load((home / "config.yaml").read_text())
    assert [m["name"] for m in merged["models"]] == ["Other", f"{cfg.pipeline.serve_model_name} (your voice)"]
    assert merged["rules"] == ["Be brief"] and merged["name"] == "Mine"
    (backup,) = home.glob("config.yaml.bak-*")
    assert backup.read_text() == original
    assert (home / "rules" / "scifi_writer.md").is_file()
    # rerun: same entry replaced, not duplicated; nothing to back up
    assert SCRIPT.main(args) == 0
    assert len(yaml.safe_load((home / "config.yaml").read_text())["models"]) == 2
    assert len(list(home.glob("config.yaml.bak-*"))) == 1
    assert "unchanged" in capsys.readouterr().out


def test_broken_continue_config_is_left_alone(served, tmp_path, capsys):
    name, cfg, tok = served
    home = tmp_path / ".continue"
    home.mkdir()
    (home / "config.yaml").write_text("models: [unclosed\n")
    assert SCRIPT.main(["--config", str(cfg.path), "--install", "--continue-dir", str(home)]) == 2
    assert "not valid YAML" in capsys.readouterr().err
    assert (home / "config.yaml").read_text() == "models: [unclosed\n"
    assert not list(home.glob("*.bak-*"))


def test_stage_5_needs_a_merged_model_and_explains_gguf(make_config, tmp_path, capsys, monkeypatch):
    cfg = make_config({"merged_dir": str(tmp_path / "none"), "serve_dir": str(tmp_path / "serve")})
    assert SCRIPT.main(["--config", str(cfg)]) == 2
    assert "run 3_merge_adapter.py --auto first" in capsys.readouterr().err
    assert SCRIPT.main(["--config", str(cfg), "--try", "Haji said,"]) == 2
    assert "--try needs a GGUF to serve" in capsys.readouterr().err
    from styletune.deploy import llamacpp
    monkeypatch.delenv("LLAMA_CPP_DIR", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(llamacpp.sys, "prefix", str(tmp_path))
    assert llamacpp.find_converter() is None and llamacpp.find_server() is None
    assert llamacpp.find_quantizer() is None


@pytest.mark.parametrize("backend", serving.BACKENDS)
def test_each_backend_registers_chat_and_autocomplete_only_where_measured(served, backend):
    name, cfg, tok = served
    entries = continue_files.continue_models(cfg, tok.eos_token, backend)
    roles = [r for e in entries for r in e["roles"]]
    assert sorted(roles) == (["chat"] if backend == "vllm" else ["autocomplete", "chat"])
    assert not {"edit", "apply"} & set(roles)
    for e in entries:
        if "autocomplete" in e["roles"]:
            assert e["promptTemplates"]["autocomplete"] == templates.AUTOCOMPLETE[cfg.template_family]
            assert e["provider"] == ("ollama" if backend == "ollama" else "llama.cpp")
        else:
            assert "promptTemplates" not in e and "autocompleteOptions" not in e


GO = shutil.which("go")
GO_RENDER = Path(__file__).parent / "go_template" / "render.go"


@pytest.mark.skipif(not GO, reason="Go is not installed here (Debian: apt-get install golang-go; "
                    ".ci/run installs it); the Python port of text/template covered these cases")
@pytest.mark.parametrize("case", list(CONVERSATIONS) + ["edge whitespace"])
def test_gos_own_text_template_renders_the_modelfile_as_training_did(served, case, tmp_path):
    """Ollama's engine itself, Go's text/template, on the Modelfile's TEMPLATE."""
    name, cfg, tok = served
    conversation = CONVERSATIONS.get(case) or [
        {"role": "user", "content": "\n// book/chapter_02.txt\n" + PASSAGE[0] + "\n\n"}]
    _, collated = collate(conversation)
    request = json.dumps({"template": modelfile_template(cfg.pipeline.serve_dir / "Modelfile"),
                          "messages": [{"role": m["Role"], "content": m["Content"]} for m in collated]})
    go = subprocess.run([GO, "run", str(GO_RENDER)], input=request, capture_output=True, text=True,
                        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "GOFLAGS": "-mod=mod",
                             "GO111MODULE": "off", "GOCACHE": str(tmp_path / "gocache")})
    assert go.returncode == 0, go.stderr
    train_text, _ = axolotl_rendering(tok, cfg, conversation)
    assert go.stdout == render_ollama(modelfile_template(cfg.pipeline.serve_dir / "Modelfile"), conversation)
    assert (tok.bos_token if name.startswith("llama3") else "") + go.stdout == train_text


def test_llamacpp_backend_without_a_build_says_how_to_get_one(served, monkeypatch, tmp_path, capsys):
    from styletune.deploy import llamacpp
    name, cfg, tok = served
    monkeypatch.delenv("LLAMA_CPP_DIR", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(llamacpp.sys, "prefix", str(tmp_path))
    before = sorted(p.name for p in cfg.pipeline.serve_dir.rglob("*"))
    assert SCRIPT.main(["--config", str(cfg.path), "--backend", "llamacpp", "--force"]) == 2
    assert "make llama-server" in capsys.readouterr().err
    assert sorted(p.name for p in cfg.pipeline.serve_dir.rglob("*")) == before   # nothing written


def test_a_k_quant_without_llama_quantize_is_one_line_naming_make_llama_server(served, monkeypatch,
                                                                              tmp_path, capsys):
    """LLAMA_CPP_DIR: a llama.cpp checkout with its converter script and nothing built
    (the venv's build and PATH out of reach). q8_0 needs only the converter; q4_K_M
    needs llama-quantize too, and says so before anything is written."""
    from styletune.deploy import llamacpp
    name, cfg, tok = served
    checkout = tmp_path / "llama.cpp"
    checkout.mkdir()
    (checkout / "convert_hf_to_gguf.py").write_text("# llama.cpp's converter script\n")
    monkeypatch.setenv("LLAMA_CPP_DIR", str(checkout))
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(llamacpp.sys, "prefix", str(tmp_path))
    assert llamacpp.find_converter() == checkout / "convert_hf_to_gguf.py"
    assert llamacpp.find_quantizer() is None
    assert llamacpp.missing_tools("q8_0") is None
    before = {p: p.read_bytes() for p in cfg.pipeline.serve_dir.rglob("*") if p.is_file()}
    for gguf_type in ("q4_K_M", "q2_K", "q6_K"):
        for backend in (["--backend", "llamacpp"], []):
            args = ["--config", str(cfg.path), *backend, "--gguf", gguf_type, "--force"]
            assert SCRIPT.main(args) == 2
            err = capsys.readouterr().err
            assert err.count("\n") == 1, err
            assert err.startswith("error: llama.cpp's quantiser (llama-quantize) is not built in this "
                                  "environment: run `make llama-server`")
            assert "--gguf q8_0 or bf16" in err
    assert {p: p.read_bytes() for p in cfg.pipeline.serve_dir.rglob("*") if p.is_file()} == before
    with pytest.raises(llamacpp.LlamaCppError, match="make llama-server"):
        llamacpp.quantize(tmp_path / "model.bf16.gguf", tmp_path / "model.q4_K_M.gguf", "q4_K_M")
    assert not list(tmp_path.glob("model*"))


def test_stage_5_warns_when_the_sample_books_rules_would_reach_another_books_editor(make_config, tmp_path):
    """Stage 5 reads which book trained from stage 1's manifest (make book passes the book
    to stage 1 alone), and warns while the rules file is still the sample book's."""
    cfg = load_config(make_config())
    manifest = cfg.data_manifest_path
    manifest.parent.mkdir(parents=True, exist_ok=True)
    assert serving.trained_book(cfg) == cfg.pipeline.book_dir               # no manifest yet
    manifest.write_text(json.dumps({"book_dir": str(tmp_path / "my_novel")}))
    assert serving.trained_book(cfg) == tmp_path / "my_novel"
    warning = serving.sample_rules_served(cfg)
    assert "describes the sample book" in warning and "again from stage 1" in warning
    manifest.write_text(json.dumps({"book_dir": "fine-tuning/data/raw/the_quiet_orbit"}))
    assert serving.trained_book(cfg).resolve() == SAMPLE_BOOK.resolve()
    assert serving.sample_rules_served(cfg) is None


def test_stage_5_warns_when_a_merged_folder_does_not_state_the_bos_its_tokenizer_adds(served, tmp_path, capsys):
    """A folder merged before stage 3 stated add_bos_token: the Ollama route says to
    merge again (Ollama would import it without BOS); once stated, nothing is said."""
    name, cfg, _ = served
    merged = cfg.pipeline.merged_dir
    stated = json.loads((merged / "tokenizer_config.json").read_text())
    assert stated["add_bos_token"] is name.startswith("llama3")
    assert serving.bos_unstated(cfg, merged) is None
    old = tmp_path / "old_merge"
    shutil.copytree(merged, old)
    (old / "tokenizer_config.json").write_text(json.dumps({k: v for k, v in stated.items()
                                                           if k not in ("add_bos_token", "add_eos_token")}))
    warning = serving.bos_unstated(cfg, old)
    if not name.startswith("llama3"):          # SmolLM2's tokenizer adds no BOS: nothing to state
        assert warning is None
        return
    assert "does not say that the tokenizer adds <|im_start|> (add_bos_token)" in warning
    assert "3_merge_adapter.py --auto --force" in warning
    assert SCRIPT.main(["--config", str(cfg.path), "--model", str(old), "--dry-run"]) == 0
    assert warning in capsys.readouterr().err


RULES_FILES = {
    "front matter": "---\nname: My book\nalwaysApply: true\n---\n\nWrite in the past tense.\n",
    "none": "Write in the past tense.\nKeep the names.\n",
    "an em dash typed as ---": "Write tersely.\nThe years 1990---2000 matter.\n",
    "a rule between paragraphs": "Write tersely.\n\n---\n\nThe book: a thriller.\n",
    "text before front matter": "Write tersely.\n\n---\nname: x\n---\nThe book: a thriller.\n---\nMore.\n",
    "no YAML between": "Intro.\n---\n: : [unclosed\n---\nThe rest.\n",
    "Windows line ends": "---\r\nname: x\r\n---\r\n\r\nWrite in the past tense.\r\n",
    "dashes with spaces after": "---  \nname: x\n---\t\nBody.\n",
    "a byte-order mark": "\ufeff---\nname: x\n---\n\nYou are continuing a novel.\n",
    "a key twice": "---\nname: x\ndescription: one\ndescription: two\n---\nBody.\n",
    "a tag": "---\nname: !mine x\n---\nBody.\n",
    "empty front matter": "---\n---\nBody.\n",
    "prose under a divider": "---\nThe book is a thriller.\n---\nWrite tersely.\n",
}


def read_rules(path):
    """The rules file as stages 1 and 5 read it."""
    from types import SimpleNamespace
    return chat.rules_file_text(SimpleNamespace(pipeline=SimpleNamespace(system_prompt_file=path)))


@pytest.mark.parametrize("shape", RULES_FILES)
def test_the_rule_trained_under_is_the_rule_continue_reads(shape, tmp_path):
    """chat.rules_body of the file as stage 1 reads it, which the chat drills train
    under, equals the rule Continue's own markdownToRule reads from the same file as
    VS Code decodes it, whatever its --- lines (an em dash typed as three hyphens, a
    rule between paragraphs, text before front matter), its line ends, a byte-order
    mark, or YAML the two parsers might read apart (a key twice, a tag)."""
    path = tmp_path / "rules.md"
    path.write_bytes(RULES_FILES[shape].encode("utf-8"))
    assert chat.rules_body(read_rules(path)) == run_continue_js("rule", str(path))["rule"]


def test_stage1_warns_when_continue_would_drop_the_writers_text_from_the_rules_file(tmp_path):
    """Text before a pair of --- lines, or prose between them, never reaches the model:
    the writer hears so, with the words, the file and the fix; a file that opens with
    its settings block, or has no such pair, does not."""
    from types import SimpleNamespace
    path = tmp_path / "rules.md"
    cfg = SimpleNamespace(pipeline=SimpleNamespace(system_prompt_file=path))
    for shape, words in (("text before front matter", "('Write tersely.')"),
                         ("prose under a divider", "('The book is a thriller.')")):
        path.write_text(RULES_FILES[shape], encoding="utf-8")
        warning = chat.dropped_rules_warning(cfg)
        assert "rules.md" in warning and words in warning and "--force" in warning, shape
    for shape in ("front matter", "none", "a rule between paragraphs", "an em dash typed as ---",
                  "a byte-order mark", "a key twice", "empty front matter"):
        path.write_text(RULES_FILES[shape], encoding="utf-8")
        assert chat.dropped_rules_warning(cfg) is None, shape


def test_a_rules_file_in_another_encoding_gets_the_chunks_clear_error(tmp_path):
    """Read by fileio's reader, as the chunks are: a Windows-1252 rules file is named,
    with its line and the fix, not a UnicodeDecodeError."""
    from styletune.errors import InputError
    path = tmp_path / "rules.md"
    path.write_bytes("---\nname: x\n---\nCafé au lait.\n".encode("cp1252"))
    with pytest.raises(InputError, match=r"rules.md: not valid UTF-8 at byte \d+, line 4.*Windows-1252"):
        read_rules(path)
