"""The editor route, against a real llama.cpp `llama-server` (built once per venv by
`make llama-server` from PyPI's llama-cpp-python source) serving the GGUF that
stage 5 itself wrote for the rehearsal model (SmolLM2-135M, merged by stage 3).

The requests are the ones Continue builds (tests/continue_port.py, pinned to a
Continue commit; its config and rule parsers and its Handlebars engine from npm,
tests/continue_js). What the server feeds the model (/apply-template for chat,
/tokenize for every prompt) is compared with the training example, token for token.
"""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import continue_port as cp
from conftest import FT, SAMPLE_BOOK, build_adapter, load_script, write_config
from styletune import llamacpp, merge, serving
from styletune.config import load_config

STAGE1 = load_script(FT / "training" / "1_prepare_data.py")
MERGE = load_script(FT / "training" / "3_merge_adapter.py")
STAGE5 = load_script(FT / "training" / "5_configure_continue.py")
CONTINUE_JS = Path(sys.prefix) / "continue-js" / "node_modules"
TOOLS = Path(__file__).parent / "continue_js" / "continue_tools.cjs"
SEED_PROMPT = ("Haji and Alan walked along the street. It was night, Alan was worried about "
               "his future. Haji said,")


def continue_js(*args, stdin=None) -> dict:
    """Run Continue's own npm packages (make continue-js installs them)."""
    assert CONTINUE_JS.is_dir(), f"{CONTINUE_JS} is missing: run `make continue-js`"
    out = subprocess.run(["node", str(TOOLS), *args], input=stdin, capture_output=True, text=True,
                         env={"NODE_PATH": str(CONTINUE_JS), "PATH": "/usr/bin:/bin:/usr/local/bin"})
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.fixture(scope="module")
def route(tmp_path_factory):
    """Stage 1 on the sample book, a LoRA adapter on the rehearsal model, stage 3's
    merge, stage 5 with --backend llamacpp (GGUF written and checked), and the
    server running on that GGUF."""
    assert llamacpp.find_server(), f"no llama-server: {llamacpp.BUILD_HELP}"
    tmp = tmp_path_factory.mktemp("route")
    cfg_path = write_config(tmp, {"validation_share": 0.2})
    cfg = load_config(cfg_path)
    assert STAGE1.main(["--config", str(cfg_path), "--force"]) == 0
    build_adapter(cfg.base_model, cfg.output_dir, seed=3)
    assert MERGE.main(["--config", str(cfg_path), "--auto", "--force"]) == 0
    checked = subprocess.run([sys.executable, str(FT / "training" / "5_configure_continue.py"),
                              "--config", str(cfg_path), "--backend", "llamacpp"],
                             capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    gguf = serving.gguf_path(cfg, "q8_0")
    tok = merge.load_tokenizer(cfg, cfg.pipeline.merged_dir)
    examples = [json.loads(line)["messages"] for path in (cfg.train_path, cfg.validation_path)
                for line in path.read_text(encoding="utf-8").splitlines()]
    entries = yaml.safe_load((cfg.pipeline.serve_dir / "continue" / "config.yaml").read_text())["models"]
    with llamacpp.Server(gguf) as server:
        yield {"cfg": cfg, "tok": tok, "server": server, "gguf": gguf, "examples": examples,
               "entries": {e["roles"][0]: e for e in entries}, "stage5_out": checked.stdout}


def training_ids(tok, conversation) -> list[int]:
    ids = tok.apply_chat_template(conversation, tokenize=True, return_dict=False)
    return list(ids["input_ids"] if isinstance(ids, dict) else ids)


def server_ids(route, prompt: str) -> list[int]:
    """The ids the server feeds the model for a raw prompt (BOS added where the GGUF says)."""
    return route["server"].tokenize(prompt)


def test_stage_5_wrote_a_gguf_that_serves_the_training_format(route):
    import gguf
    out = route["stage5_out"]
    assert f"wrote {route['gguf'].name}" in out.replace(str(route["gguf"].parent) + "/", "")
    assert out.count("checked: ") == 4, out
    fields = gguf.GGUFReader(route["gguf"]).fields
    meta = {k: bytes(fields[k].parts[fields[k].data[0]]).decode() for k in
            ("tokenizer.ggml.model", "tokenizer.ggml.pre", "tokenizer.chat_template")}
    # SmolLM2's own pre-tokenizer, recognised by the converter (not SentencePiece's "llama")
    assert meta["tokenizer.ggml.model"] == "gpt2" and meta["tokenizer.ggml.pre"] == "smollm"
    assert meta["tokenizer.chat_template"] == (route["cfg"].pipeline.merged_dir / "chat_template.jinja").read_text()


def test_the_server_tokenises_every_training_example_as_training_did(route):
    tok, mismatched = route["tok"], []
    for conversation in route["examples"]:
        text = tok.apply_chat_template(conversation, tokenize=False)
        if server_ids(route, text) != training_ids(tok, conversation):
            mismatched.append(conversation[0]["content"][:60])
    assert not mismatched and len(route["examples"]) >= 8


def test_continue_reads_every_entry_stage_5_writes(route, tmp_path):
    """Continue's own config package: no errors, no key dropped, for every backend."""
    cfg, tok = route["cfg"], route["tok"]
    for backend in serving.BACKENDS:
        path = tmp_path / f"{backend}.yaml"
        path.write_text(serving.dump_yaml(serving.continue_config(cfg, tok.eos_token, backend)))
        result = continue_js("validate", str(path))
        assert result == {"errors": [], "dropped": []}, (backend, result)
    rule = continue_js("rule", str(cfg.pipeline.serve_dir / "continue" / "rules" / "scifi_writer.md"))
    assert rule["alwaysApply"] is True and rule["rule"].startswith("You are continuing")


def test_chat_renders_the_training_format_token_for_token(route):
    """Chat mode: Continue's system message (ours + the rules file), then a training
    example's prompt. The server's rendering is the training template's, and from
    the user turn on, its tokens are the training example's."""
    tok, entry = route["tok"], route["entries"]["chat"]
    rule = continue_js("rule", str(route["cfg"].pipeline.serve_dir / "continue" / "rules" / "scifi_writer.md"))
    for conversation in [c for c in route["examples"] if not c[0]["content"].startswith("\n")][:3]:
        messages = cp.chat_messages(entry["chatOptions"]["baseSystemMessage"], [rule["rule"]],
                                    conversation[0]["content"])
        prompt = route["server"].apply_template(messages)
        assert prompt == tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        ids = server_ids(route, prompt)
        assert ids == tok(prompt, add_special_tokens=False)["input_ids"]
        trained = training_ids(tok, conversation)
        system_turn = len(server_ids(route, tok.apply_chat_template(messages[:1], tokenize=False)))
        assert ids[system_turn:] == trained[:len(ids) - system_turn]


@pytest.mark.parametrize("form", ["md", "txt"])
def test_autocomplete_is_the_training_example_token_for_token(route, form):
    """A writer's file holding a training example's prompt, cursor at its end:
    Continue's prefix (path line + text) is stage 1's header + prefix, and the
    prompt it sends is the training example's first tokens, the completion's
    first token next."""
    tok, entry = route["tok"], route["entries"]["autocomplete"]
    conversation, *_ = [c for c in route["examples"] if c[0]["content"].startswith("\n")
                        and c[0]["content"].split("\n", 2)[1].endswith(f".{form}")]
    user = conversation[0]["content"]
    _, path, text = user.split("\n", 2)
    path = path.removeprefix("//").strip()
    assert cp.autocomplete_prefix(text, path) == user
    prompt = continue_js("render", stdin=json.dumps({
        "template": entry["promptTemplates"]["autocomplete"],
        "vars": {"prefix": cp.autocomplete_prefix(text, path), "suffix": "\n",
                 "filename": path.split("/")[-1], "reponame": "book", "language": "Markdown"}}))["prompt"]
    ids, trained = server_ids(route, prompt), training_ids(tok, conversation)
    assert ids == trained[:len(ids)]
    completion_first = tok(conversation[1]["content"], add_special_tokens=False)["input_ids"][0]
    assert trained[len(ids)] == completion_first


def test_the_seed_prompt_is_continued_in_place_on_both_routes(route, capsys):
    """The writer types the seed prompt (it ends mid-sentence) in book/chapter_01.md;
    autocomplete goes through the llama.cpp provider's /completion, chat through
    the OpenAI endpoint. Both stop by themselves; what they return is inserted
    after the writer's text as Continue inserts it."""
    tok, server = route["tok"], route["server"]
    auto = route["entries"]["autocomplete"]
    prompt = continue_js("render", stdin=json.dumps({
        "template": auto["promptTemplates"]["autocomplete"],
        "vars": {"prefix": cp.autocomplete_prefix(SEED_PROMPT, "book/chapter_01.md")}}))["prompt"]
    assert prompt.endswith(SEED_PROMPT + "<|im_end|>\n<|im_start|>assistant\n")
    body = cp.llamacpp_completion_body(prompt, cp.autocomplete_options(auto))
    out = server.complete(body.pop("prompt"), **{**body, "stream": False, "seed": 7})
    assert out["stop_type"] in ("eos", "limit", "word") and out["content"]
    chat = route["entries"]["chat"]
    messages = cp.chat_messages(chat["chatOptions"]["baseSystemMessage"], [], SEED_PROMPT)
    reply = server.post("/v1/chat/completions", {"messages": messages, "seed": 7,
                                                 "max_tokens": chat["defaultCompletionOptions"]["maxTokens"],
                                                 "temperature": chat["defaultCompletionOptions"]["temperature"],
                                                 "stop": chat["defaultCompletionOptions"]["stop"]})
    assert reply["choices"][0]["finish_reason"] in ("stop", "length")
    with capsys.disabled():
        for name, text in (("autocomplete", out["content"]), ("chat", reply["choices"][0]["message"]["content"])):
            print(f"\n[{name}] {cp.insert_completion(SEED_PROMPT, text)!r}")
