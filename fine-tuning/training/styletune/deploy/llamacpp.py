"""llama.cpp: the GGUF converter, `llama-quantize` and `llama-server`, as stage 5 and
the tests use them.

All three come from the llama.cpp source that PyPI's llama-cpp-python sdist vendors,
built once per virtual environment by build_llama_server.sh (`make llama-server`)
into <venv>/llama.cpp/. $LLAMA_CPP_DIR (a llama.cpp checkout with a build) or PATH
may supply them instead.

`export` writes a GGUF of any type in GGUF_TYPES: bf16 and q8_0 straight from the
converter; the k-quants (q6_K ... q2_K) as llama.cpp makes them, a 16-bit GGUF from
the converter (temporary, removed after) put through llama-quantize.

`Server` starts llama-server on a free loopback port for one GGUF and asks it what
it does with text: /tokenize, /apply-template (the prompt its chat endpoint would
feed the model) and /completion. `check_gguf` uses it to prove a new GGUF loads,
tokenises a training example exactly as training did, renders chat as training
did, and stops at the end-of-turn token.
"""
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from styletune import chat
from styletune.data.examples import continue_path_line
from styletune.data.tokens import tokenizer_turn_texts, training_ids
from styletune.errors import UserError

BUILD_HELP = ("llama.cpp's tools are not built in this environment: run `make llama-server` "
              "(builds llama-server, llama-quantize and the GGUF converter from PyPI's "
              "llama-cpp-python source, 6-7 minutes on 2 cores, once), or set LLAMA_CPP_DIR "
              "to a llama.cpp checkout with a build.")
QUANTIZE_HELP = ("llama.cpp's quantiser (llama-quantize) is not built in this environment: run "
                 "`make llama-server` (it builds llama-quantize beside the server: 11 minutes on 2 "
                 "busy cores, once), set LLAMA_CPP_DIR to a llama.cpp checkout with a build, or choose "
                 "--gguf q8_0 or bf16, which need only the converter.")

# convert_hf_to_gguf's --outtype: straight from the merged safetensors.
CONVERTER_TYPES = ("bf16", "q8_0")
# llama-quantize's types (tools/quantize/quantize.cpp), from a 16-bit GGUF; its
# i-quants (iq2_xs ...) are left out: they want an importance matrix to be any good.
QUANTIZER_TYPES = ("q6_K", "q5_K_M", "q4_K_M", "q4_K_S", "q3_K_M", "q2_K")
GGUF_TYPES = CONVERTER_TYPES + QUANTIZER_TYPES


class LlamaCppError(UserError):
    """llama.cpp's converter, quantiser or server failed; the message says what and how to fix it."""


def _roots() -> list[Path]:
    roots = [Path(sys.prefix) / "llama.cpp"]
    if os.environ.get("LLAMA_CPP_DIR"):
        roots.insert(0, Path(os.environ["LLAMA_CPP_DIR"]))
    return roots


def find_converter() -> Path | None:
    for root in _roots():
        for candidate in (root / "src" / "convert_hf_to_gguf.py", root / "convert_hf_to_gguf.py"):
            if candidate.is_file():
                return candidate
    found = shutil.which("convert_hf_to_gguf.py")
    return Path(found) if found else None


def _find_binary(name: str) -> Path | None:
    for root in _roots():
        for candidate in (root / "bin" / name, root / "build" / "bin" / name):
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return candidate
    found = shutil.which(name)
    return Path(found) if found else None


def find_server() -> Path | None:
    return _find_binary("llama-server")


def find_quantizer() -> Path | None:
    return _find_binary("llama-quantize")


def missing_tools(gguf_type: str) -> str | None:
    """What stops a GGUF of this type being written here, as one line; None if nothing."""
    if find_converter() is None:
        return BUILD_HELP
    if gguf_type in QUANTIZER_TYPES and find_quantizer() is None:
        return QUANTIZE_HELP
    return None


def _run_leaving_nothing(cmd: list[str], partial: Path, **kw) -> subprocess.CompletedProcess:
    """Run a tool that writes partial; interrupted (Ctrl-C), it leaves no half file behind."""
    try:
        return subprocess.run(cmd, capture_output=True, text=True, **kw)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def convert(model_dir: Path, dest: Path, outtype: str) -> None:
    """The merged safetensors folder -> one GGUF file (written beside, then renamed)."""
    converter = find_converter()
    if converter is None:
        raise LlamaCppError(BUILD_HELP)
    partial = dest.with_name(dest.name + ".partial")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        filter(None, [str(converter.parent / "gguf-py"), str(converter.parent),
                      os.environ.get("PYTHONPATH")])))
    cmd = [sys.executable, str(converter), str(model_dir), "--outfile", str(partial),
           "--outtype", outtype]
    proc = _run_leaving_nothing(cmd, partial, env=env)
    if proc.returncode != 0:
        partial.unlink(missing_ok=True)
        tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
        raise LlamaCppError(f"llama.cpp's converter failed on {model_dir} (exit {proc.returncode}):\n"
                            f"{tail}")
    partial.replace(dest)


def quantize(source: Path, dest: Path, gguf_type: str) -> None:
    """A 16-bit GGUF -> one of QUANTIZER_TYPES with llama-quantize (written beside, then renamed)."""
    quantizer = find_quantizer()
    if quantizer is None:
        raise LlamaCppError(QUANTIZE_HELP)
    partial = dest.with_name(dest.name + ".partial")
    proc = _run_leaving_nothing([str(quantizer), str(source), str(partial), gguf_type.upper()], partial)
    if proc.returncode != 0:
        partial.unlink(missing_ok=True)
        tail = "\n".join((proc.stderr + proc.stdout).strip().splitlines()[-5:])
        raise LlamaCppError(f"llama-quantize failed on {source.name} -> {gguf_type} "
                            f"(exit {proc.returncode}):\n{tail}")
    partial.replace(dest)


def export(model_dir: Path, dest: Path, gguf_type: str) -> list[str]:
    """The merged folder -> a GGUF of gguf_type at dest. The k-quants go through a
    bf16 GGUF beside dest, removed whatever happens. Returns what was done."""
    if gguf_type in CONVERTER_TYPES:
        convert(model_dir, dest, gguf_type)
        return [f"converted with llama.cpp's converter to {gguf_type} ({dest.stat().st_size / 1e6:.0f} MB)"]
    if gguf_type not in QUANTIZER_TYPES:
        raise LlamaCppError(f"no GGUF type {gguf_type!r}: choose one of {', '.join(GGUF_TYPES)}")
    missing = missing_tools(gguf_type)
    if missing:
        raise LlamaCppError(missing)
    sixteen = dest.with_name(dest.name + ".bf16")
    try:
        convert(model_dir, sixteen, "bf16")
        size16 = sixteen.stat().st_size
        quantize(sixteen, dest, gguf_type)
    finally:
        sixteen.unlink(missing_ok=True)
    return [f"converted with llama.cpp's converter to bf16 ({size16 / 1e6:.0f} MB, temporary, removed)",
            f"quantised with llama-quantize to {gguf_type} ({dest.stat().st_size / 1e6:.0f} MB)"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sampling_flags(sampling: dict) -> list[str]:
    """The config's sampling as llama-server's defaults for every request: Continue sends
    temperature and top_p itself; without these the rest are llama.cpp's own, the repeat
    penalty off."""
    return ["--temp", str(sampling["temperature"]), "--top-k", str(sampling["top_k"]),
            "--top-p", str(sampling["top_p"]), "--min-p", str(sampling["min_p"]),
            "--repeat-penalty", str(sampling["repeat_penalty"]),
            "--repeat-last-n", str(sampling["repeat_last_n"])]


class Server:
    """llama-server for one GGUF on 127.0.0.1, started on enter and stopped on exit;
    its log goes beside the GGUF (<name>.server.log)."""

    def __init__(self, gguf: Path, context: int = 4096, binary: Path | None = None, log: Path | None = None,
                 sampling: dict | None = None):
        self.binary = binary or find_server()
        self.sampling = sampling
        if self.binary is None:
            raise LlamaCppError(BUILD_HELP)
        self.gguf, self.context, self.port = gguf, context, _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log or gguf.with_name(gguf.name.removesuffix(".unchecked") + ".server.log")

    def command(self) -> list[str]:
        # --jinja: the chat endpoint renders the GGUF's own template (training's).
        return [str(self.binary), "-m", str(self.gguf), "--host", "127.0.0.1", "--port", str(self.port),
                "-c", str(self.context), "--jinja", "-t", "2", "--no-webui",
                *(sampling_flags(self.sampling) if self.sampling else [])]

    def __enter__(self):
        self._log = open(self.log, "w")
        self.proc = subprocess.Popen(self.command(), stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = self._tail()
                self._log.close()
                raise LlamaCppError(f"llama-server exited (code {self.proc.returncode}) loading "
                                    f"{self.gguf.name}: {tail}")
            try:
                if self.get("/health").get("status") == "ok":
                    return self
            except OSError:
                pass
            time.sleep(0.2)
        tail = self._tail()
        self.__exit__()
        raise LlamaCppError(f"llama-server did not come up in 120 s: {tail}")

    def __exit__(self, *exc):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self._log.close()

    def _tail(self) -> str:
        self._log.flush()
        return " | ".join(self.log.read_text(errors="replace").strip().splitlines()[-3:])

    def get(self, path: str) -> dict:
        with urllib.request.urlopen(self.url + path, timeout=30) as resp:
            return json.loads(resp.read())

    def post(self, path: str, body: dict) -> dict:
        req = urllib.request.Request(self.url + path, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=300) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as err:
            raise LlamaCppError(f"llama-server {path}: HTTP {err.code}: {err.read()[:300]!r}") from None

    def tokenize(self, text: str, as_prompt: bool = False) -> list[int]:
        """Token ids of text, special tokens parsed. as_prompt: as /completion tokenises a
        prompt, with the BOS the model's metadata asks for added in front."""
        return self.post("/tokenize", {"content": text, "add_special": as_prompt,
                                       "parse_special": True})["tokens"]

    def apply_template(self, messages: list[dict]) -> str:
        """The prompt /v1/chat/completions would feed the model for these messages."""
        return self.post("/apply-template", {"messages": messages})["prompt"]

    def complete(self, prompt: str, **options) -> dict:
        """/completion, as Continue's llama.cpp provider calls it (stream off)."""
        return self.post("/completion", {"prompt": prompt, "stream": False, **options})



def check_gguf(gguf: Path, tokenizer, conversation: list[dict], autocomplete_template: str | None) -> list[str]:
    """Prove a GGUF serves the training format, in a real llama-server: it loads; it
    tokenises a training example exactly as training did; chat (its template, one
    BOS) feeds the model the example's prompt tokens; an autocomplete prompt (the
    raw template with the example's user turn, BOS added by the server) does too;
    and it stops at the end-of-turn token. Returns what was checked."""
    # training's tokens: the prompt, the continuation and the rest, each tokenised alone
    parts = tokenizer_turn_texts(tokenizer, conversation)
    trained = training_ids(tokenizer, conversation)["input_ids"]
    prompt_text = tokenizer.apply_chat_template(conversation[:1], tokenize=False, add_generation_prompt=True)
    prompt_ids = _ids(tokenizer.apply_chat_template(conversation[:1], tokenize=True,
                                                    add_generation_prompt=True, return_dict=False))
    done = []
    with Server(gguf) as server:
        done.append(f"loads in llama-server ({gguf.stat().st_size / 1e6:.0f} MB)")
        _same(tokenizer, [t for part in parts if part for t in server.tokenize(part)], trained, gguf,
              "tokenises the training example")
        done.append(f"tokenises a training example as training did ({len(trained)} tokens)")
        # The server leaves the template's BOS out of the text and adds it as it tokenises.
        rendered = server.apply_template(conversation[:1])
        _same(tokenizer, server.tokenize(rendered, as_prompt=True), prompt_ids, gguf, "renders the chat prompt")
        fed = server.post("/v1/chat/completions", {"messages": conversation[:1], "max_tokens": 1})
        if fed["usage"]["prompt_tokens"] != len(prompt_ids):
            raise LlamaCppError(f"{gguf.name}: chat feeds the model {fed['usage']['prompt_tokens']} prompt "
                                f"tokens, training's prompt has {len(prompt_ids)} (a BOS added twice?)")
        done.append(f"chat feeds the model training's prompt ({len(prompt_ids)} tokens)")
        if autocomplete_template:
            raw = autocomplete_template.replace("{{{prefix}}}", conversation[0]["content"])
            _same(tokenizer, server.tokenize(raw, as_prompt=True), prompt_ids, gguf,
                  "tokenises the autocomplete prompt")
            done.append("autocomplete's raw prompt is training's prompt, token for token")
        # Push the end-of-turn token to the top: the server must stop there, with nothing shown.
        eos_id = tokenizer.convert_tokens_to_ids(tokenizer.eos_token)
        out = server.complete(prompt_text, n_predict=8, logit_bias=[[eos_id, 100.0]], temperature=0)
        if out.get("stop_type") != "eos" or out.get("content"):
            raise LlamaCppError(f"{gguf.name} does not stop at {tokenizer.eos_token!r}: "
                                f"stop_type {out.get('stop_type')!r}, text {out.get('content')!r}")
        done.append(f"stops at {tokenizer.eos_token}")
    return done


def _ids(out) -> list[int]:
    return list(out["input_ids"] if isinstance(out, dict) else out)


def _same(tokenizer, served: list[int], trained: list[int], gguf: Path, what: str) -> None:
    if served == trained:
        return
    first = next((i for i, (a, b) in enumerate(zip(served, trained)) if a != b), min(len(served), len(trained)))
    raise LlamaCppError(
        f"{gguf.name} {what} differently from training ({len(served)} against {len(trained)} tokens; "
        f"first difference at token {first}, near {tokenizer.decode(trained[max(0, first - 3):first + 3])!r}). "
        "If the converter chose another pre-tokenizer, its output names it ('tokenizer.ggml.pre'); "
        "do not serve this GGUF.")


# What Continue's autocomplete adds to the model's own `stop` list (getStopTokens'
# commonStops, pinned commit d0a3c0b6; BaseLLM's mergeJson joins the two arrays;
# tests/support/continue_port.py).
AUTOCOMPLETE_STOPS = ["/src/", "#- coding: utf-8", "```"]


def try_routes(gguf: Path, tokenizer, entries: list[dict], system: str, text: str,
               path: str = "book/chapter.md", max_tokens: int = 120, seed: int = 0,
               sampling: dict | None = None) -> dict:
    """The writer's text, sent as Continue sends it on each route this server offers:
    autocomplete (the path line + text in the raw template, /completion) and chat
    (system message + text, /v1/chat/completions). Returns {route: continuation}."""
    out = {}
    with Server(gguf, sampling=sampling) as server:   # the writer's server: the config's sampling
        for entry in entries:
            opts = entry["defaultCompletionOptions"]
            sampling = {"temperature": opts["temperature"], "top_p": opts["topP"], "seed": seed}
            if "autocomplete" in entry["roles"]:
                prompt = entry["promptTemplates"]["autocomplete"].replace(
                    "{{{prefix}}}", continue_path_line(path) + text)
                reply = server.complete(prompt, n_predict=max_tokens, stop=opts["stop"] + AUTOCOMPLETE_STOPS,
                                        **sampling)
                out["autocomplete"] = reply["content"]
            if "chat" in entry["roles"]:
                messages = chat.request_turns(system, "", text)
                reply = server.post("/v1/chat/completions", {"messages": messages, "max_tokens": max_tokens,
                                                             "stop": opts["stop"], **sampling})
                out["chat"] = reply["choices"][0]["message"]["content"]
    return out
