"""Stage 5: the files that put the merged model in the writer's editor: an Ollama
Modelfile whose TEMPLATE renders what training rendered, the vLLM command with
the training chat template, and a Continue model entry plus a rules file with
the writer's system prompt.

Ollama's TEMPLATE is Go text/template, not Jinja, so it is written by hand per
training template and tested for parity with Axolotl's rendering (text and
token ids; tests/test_serving.py). Ollama's tokenizer adds BOS itself, so the
TEMPLATE leaves it out where the Jinja writes it.
"""
import json
import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import yaml

from . import paths
from .errors import UserError
from .fileio import write_atomic

# Go templates for Ollama, one per Axolotl chat template they match. Every message
# is rendered, system messages included (Ollama keeps them in .Messages), and the
# assistant header is always opened, like add_generation_prompt=True.
OLLAMA_TEMPLATES = {
    "chatml": ("{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n"
               "{{ end }}<|im_start|>assistant\n"),
    "llama3": ("{{- range .Messages }}<|start_header_id|>{{ .Role }}<|end_header_id|>\n\n"
               "{{ .Content }}<|eot_id|>{{ end }}<|start_header_id|>assistant<|end_header_id|>\n\n"),
}
# Where a new turn would begin: generation must stop before it as well as at the end token.
TURN_STARTS = {"chatml": ["<|im_start|>"], "llama3": ["<|start_header_id|>"]}
# Continue's autocomplete sends Ollama a raw prompt: the training format, with the
# text before the cursor as the user turn (Continue fills {{{prefix}}}).
AUTOCOMPLETE = {
    "chatml": "<|im_start|>user\n{{{prefix}}}<|im_end|>\n<|im_start|>assistant\n",
    "llama3": ("<|start_header_id|>user<|end_header_id|>\n\n{{{prefix}}}<|eot_id|>"
               "<|start_header_id|>assistant<|end_header_id|>\n\n"),
}
BASE_SYSTEM_MESSAGE = ("Continue the author's manuscript in the author's own voice. "
                       "Write only the prose that comes next.")
OLLAMA_URL = "http://localhost:11434"
VLLM_URL = "http://localhost:8000/v1"
QUANTIZE_LEVELS = ("q8_0", "q4_K_M", "q4_K_S")


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (the autocomplete template) as readable literal blocks."""


_Dumper.add_representer(str, lambda dumper, text: dumper.represent_scalar(
    "tag:yaml.org,2002:str", text, style="|" if "\n" in text else None))


def dump_yaml(data) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)


class ServeError(UserError):
    """Stage 5 cannot go on; the message says why and what to do."""


def merged_model_info(cfg, model_dir: Path) -> dict:
    manifest = model_dir / "merge_manifest.json"
    if not manifest.is_file():
        raise ServeError(f"no merged model at {paths.shown(model_dir)} (no merge_manifest.json): "
                         "run 3_merge_adapter.py --auto first")
    info = json.loads(manifest.read_text(encoding="utf-8"))
    if info.get("chat_template") != cfg.chat_template:
        raise ServeError(f"{paths.shown(model_dir)} was merged with chat_template "
                         f"{info.get('chat_template')!r}, the config says {cfg.chat_template!r}: "
                         "use the config that trained it")
    return info


def ollama_template(cfg) -> str:
    if cfg.chat_template not in OLLAMA_TEMPLATES:
        raise ServeError(f"no Ollama TEMPLATE is written for chat_template {cfg.chat_template!r} "
                         f"(there are: {', '.join(OLLAMA_TEMPLATES)}); serve with vLLM, which reads "
                         "the merged folder's chat_template.jinja")
    return OLLAMA_TEMPLATES[cfg.chat_template]


def stop_tokens(cfg, eos_token: str) -> list[str]:
    return [eos_token] + [t for t in TURN_STARTS.get(cfg.chat_template, []) if t != eos_token]


def modelfile(cfg, model_dir: Path, eos_token: str) -> str:
    s, p = cfg.pipeline.sampling, cfg.pipeline
    template = ollama_template(cfg)
    if '"""' in template:
        raise ServeError("the TEMPLATE contains triple quotes, which a Modelfile cannot hold")
    lines = [f"# Ollama Modelfile for {p.serve_model_name}, written by 5_configure_continue.py.",
             "# TEMPLATE renders exactly what training rendered (Axolotl's "
             f"'{cfg.chat_template}' template); BOS, where the tokenizer wants one, is added by Ollama.",
             f"FROM {model_dir}",
             f'TEMPLATE """{template}"""']
    lines += [f'PARAMETER stop "{t}"' for t in stop_tokens(cfg, eos_token)]
    lines += [f"PARAMETER num_ctx {p.serve_context_length}",
              f"PARAMETER temperature {s['temperature']}",
              f"PARAMETER top_p {s['top_p']}",
              f"PARAMETER min_p {s['min_p']}",
              f"PARAMETER repeat_penalty {s['repeat_penalty']}",
              f"PARAMETER num_predict {int(s['max_tokens'])}"]
    return "\n".join(lines) + "\n"


def ollama_create_command(cfg, modelfile_path: Path, quantize: str | None) -> str:
    cmd = f"ollama create {cfg.pipeline.serve_model_name} -f {modelfile_path}"
    return cmd + (f" --quantize {quantize}" if quantize else "")


def vllm_command(cfg, model_dir: Path) -> str:
    return (f"vllm serve {model_dir} --served-model-name {cfg.pipeline.serve_model_name} "
            f"--chat-template {model_dir / 'chat_template.jinja'} "
            f"--max-model-len {cfg.pipeline.serve_context_length} --generation-config auto")


def continue_model(cfg, eos_token: str, backend: str) -> dict:
    """One entry for the `models:` list of Continue's config.yaml."""
    s, p = cfg.pipeline.sampling, cfg.pipeline
    entry = {"name": f"{p.serve_model_name} (your voice)",
             "provider": "ollama" if backend == "ollama" else "openai",
             "model": p.serve_model_name,
             "apiBase": OLLAMA_URL if backend == "ollama" else VLLM_URL,
             "roles": ["chat", "edit", "apply", "autocomplete"],
             "defaultCompletionOptions": {"contextLength": p.serve_context_length,
                                          "maxTokens": int(s["max_tokens"]),
                                          "temperature": s["temperature"], "topP": s["top_p"],
                                          "stop": stop_tokens(cfg, eos_token)},
             # Continue's default system message is about code; this one does not fight the style.
             "chatOptions": {"baseSystemMessage": BASE_SYSTEM_MESSAGE}}
    if backend == "ollama" and cfg.chat_template in AUTOCOMPLETE:
        entry["promptTemplates"] = {"autocomplete": AUTOCOMPLETE[cfg.chat_template]}
    return entry


def continue_config(cfg, eos_token: str, backend: str) -> dict:
    return {"name": f"{cfg.pipeline.serve_model_name} writing", "version": "0.0.1", "schema": "v1",
            "models": [continue_model(cfg, eos_token, backend)]}


def rules_name(cfg) -> str:
    return cfg.pipeline.system_prompt_file.name


def system_prompt(cfg) -> str:
    path = cfg.pipeline.system_prompt_file
    if not path.is_file():
        raise ServeError(f"style_pipeline.system_prompt_file: no file at {paths.shown(path)}; write "
                         "a few lines about your book there (see configs/prompts/scifi_writer.md)")
    return path.read_text(encoding="utf-8")


def find_gguf_converter() -> Path | None:
    """llama.cpp's convert_hf_to_gguf.py: $LLAMA_CPP_DIR, or on PATH."""
    import os
    root = os.environ.get("LLAMA_CPP_DIR")
    if root and (Path(root) / "convert_hf_to_gguf.py").is_file():
        return Path(root) / "convert_hf_to_gguf.py"
    found = shutil.which("convert_hf_to_gguf.py") or shutil.which("convert-hf-to-gguf")
    return Path(found) if found else None


GGUF_HELP = ("--gguf needs llama.cpp's converter, which was not found: clone "
             "https://github.com/ggml-org/llama.cpp, `pip install -r requirements.txt` there, and set "
             "LLAMA_CPP_DIR to the clone (or put convert_hf_to_gguf.py on PATH). A GGUF is optional: "
             "`ollama create` imports the merged safetensors folder directly.")


def export_gguf(converter: Path, model_dir: Path, dest: Path, outtype: str) -> None:
    cmd = [sys.executable, str(converter), str(model_dir), "--outfile", str(dest), "--outtype", outtype]
    proc = subprocess.run(cmd)
    if proc.returncode != 0:
        raise ServeError(f"llama.cpp's converter failed (exit {proc.returncode}): {' '.join(cmd)}")


def instructions(cfg, files: dict, model_dir: Path, quantize: str | None, backend: str) -> str:
    p = cfg.pipeline
    create = ollama_create_command(cfg, files["Modelfile"], quantize)
    return f"""# Serving {p.serve_model_name} in VS Code through Continue

Written by `5_configure_continue.py` for the merged model in `{model_dir}`.

## 1. Serve the model (one of the two)

Ollama (simplest; imports the safetensors folder, about 16 GB for an 8B model in
bf16, or pass `--quantize q8_0` / `q4_K_M` for 8.5 / 4.9 GB):

    {create}
    ollama run {p.serve_model_name} "The station turned slowly above the clouds."

vLLM (OpenAI-compatible endpoint at {VLLM_URL}; uses the training chat template):

    {vllm_command(cfg, model_dir)}

## 2. Point Continue at it

Copy the model entry from `{files['continue/config.yaml'].name}` into the `models:`
list of `~/.continue/config.yaml`, and `{files['rules'].name}` into `~/.continue/rules/`;
or let the script do both, with a backup of your config first:

    python fine-tuning/training/5_configure_continue.py --config {paths.shown(cfg.path)} --install

The entry targets {'Ollama' if backend == 'ollama' else 'vLLM'}; rerun with
`--backend {'vllm' if backend == 'ollama' else 'ollama'}` for the other server.

## 3. Write

- Chat: paste the last paragraph or two of your scene as the message, nothing else;
  the model carries on from where it stops (that is what it was trained on).
- Autocomplete: type in a Markdown or text file; the text before the cursor is sent
  in the training format.
- The rules file carries the system prompt; edit `{paths.shown(cfg.pipeline.system_prompt_file)}`
  and rerun this script to change it.
"""


class Plan:
    """The files stage 5 writes, by name, with their contents."""

    def __init__(self, cfg, model_dir: Path, backend: str, quantize: str | None):
        info = merged_model_info(cfg, model_dir)
        eos = info["eos_token"]
        out = cfg.pipeline.serve_dir
        self.files = {"Modelfile": out / "Modelfile",
                      "continue/config.yaml": out / "continue" / "config.yaml",
                      "rules": out / "continue" / "rules" / rules_name(cfg),
                      "SERVE.md": out / "SERVE.md"}
        config_yaml = dump_yaml(continue_config(cfg, eos, backend))
        self.contents = {
            "Modelfile": modelfile(cfg, model_dir, eos),
            "continue/config.yaml": config_yaml,
            "rules": system_prompt(cfg),
            "SERVE.md": instructions(cfg, self.files, model_dir, quantize, backend),
        }
        self.entry = continue_model(cfg, eos, backend)
        self.commands = {"ollama": ollama_create_command(cfg, self.files["Modelfile"], quantize),
                         "vllm": vllm_command(cfg, model_dir)}

    def outputs(self) -> dict:
        """{path: bytes}, for fileio.write_outputs."""
        return {self.files[k]: text.encode("utf-8") for k, text in self.contents.items()}


# --- installing into the writer's Continue folder ------------------------------------

def _backup(path: Path) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    dest = path.with_name(f"{path.name}.bak-{stamp}")
    n = 1
    while dest.exists():
        dest = path.with_name(f"{path.name}.bak-{stamp}-{n}")
        n += 1
    shutil.copy2(path, dest)
    return dest


def install(plan: Plan, continue_dir: Path, cfg) -> list[str]:
    """Merge the model entry into continue_dir/config.yaml (replacing an entry of the
    same name, keeping every other model and setting) and add the rules file; each
    file that would change is backed up first. Returns what was done, line by line."""
    done = []
    config_path = continue_dir / "config.yaml"
    if config_path.exists():
        try:
            current = yaml.safe_load(config_path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as err:
            raise ServeError(f"{config_path} is not valid YAML ({str(err).splitlines()[0]}): fix it "
                             "or move it away; nothing was changed") from None
        if not isinstance(current, dict):
            raise ServeError(f"{config_path}: expected a mapping at the top level; nothing was changed")
    else:
        current = {"name": "Local config", "version": "0.0.1", "schema": "v1"}
    models = [m for m in current.get("models") or [] if not
              (isinstance(m, dict) and m.get("name") == plan.entry["name"])]
    replaced = len(models) < len(current.get("models") or [])
    current["models"] = models + [plan.entry]
    new_text = dump_yaml(current)
    rules_path = continue_dir / "rules" / plan.files["rules"].name
    for path, text, what in ((config_path, new_text, "model entry " + ("replaced" if replaced else "added")),
                             (rules_path, plan.contents["rules"], "rules file")):
        if path.exists() and path.read_text(encoding="utf-8") == text:
            done.append(f"unchanged {path} ({what} already there)")
            continue
        if path.exists():
            done.append(f"backed up {path} -> {_backup(path).name}")
        write_atomic(path, text.encode("utf-8"))
        done.append(f"wrote {path} ({what})")
    return done
