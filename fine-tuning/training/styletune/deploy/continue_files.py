"""Continue's side of stage 5: the model entries for Continue's config.yaml (chat and
autocomplete, per backend), the rules file with the writer's system prompt, and
their installation into the writer's Continue folder (backed up first)."""
import shutil
from datetime import datetime
from pathlib import Path

import yaml

from styletune.chat import BASE_SYSTEM_MESSAGE
from styletune.deploy.templates import AUTOCOMPLETE, stop_tokens
from styletune.errors import ServeError
from styletune.fileio import write_atomic

# Where each server listens (this machine only: the servers' commands bind there too)
# and where Continue finds it. Ollama listens on 127.0.0.1:11434 by itself.
OLLAMA_URL = "http://localhost:11434"
VLLM_HOST, VLLM_PORT = "127.0.0.1", 8000
VLLM_URL = f"http://{VLLM_HOST}:{VLLM_PORT}/v1"
LLAMACPP_HOST, LLAMACPP_PORT = "127.0.0.1", 8080
LLAMACPP_URL = f"http://{LLAMACPP_HOST}:{LLAMACPP_PORT}"
# Continue's autocomplete is built for code; these make it serve prose.
AUTOCOMPLETE_OPTIONS = {
    # Off: the code filters (stop at a blank line, drop lines that look like paths or
    # comments, cut at 2.5 x modelTimeout) and single-line guesses. On: whole paragraphs.
    # Off also skips postprocessCompletion: the completion is inserted as it came, a
    # space after a typed one included (eval/joins.editor_insert, which the Joins use).
    # (modelTimeout is read only with transform on: nothing cuts a completion short.)
    "transform": False,
    "debounceDelay": 600,       # ms after the last keystroke; a writer pauses to think
    # The text before the cursor, cut by whole lines from the top (pruneLinesFromTop): a
    # line longer than the budget leaves nothing but the path line, and in a Markdown
    # file a paragraph is one line. 0.8 x 2048: a paragraph of ~1,200 words still fits.
    "maxPromptTokens": 2048,
    "prefixPercentage": 0.8,
    # No snippets of other files before the text: only the one path line stays, which
    # Continue always sends and stage 1 trains on.
    "useRecentlyEdited": False, "useRecentlyOpened": False, "useImports": False,
    "experimental_includeClipboard": False, "experimental_includeRecentlyVisitedRanges": False,
    "experimental_includeRecentlyEditedRanges": False, "experimental_includeDiff": False,
}


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (the autocomplete template) as readable literal blocks;
    shared values written out in full (no &anchors a writer would have to follow)."""

    def ignore_aliases(self, data):
        return True


_Dumper.add_representer(str, lambda dumper, text: dumper.represent_scalar(
    "tag:yaml.org,2002:str", text, style="|" if "\n" in text else None))


def dump_yaml(data) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)


def _chat_entry(cfg, eos_token: str, provider: str, api_base: str) -> dict:
    s, p = cfg.pipeline.sampling, cfg.pipeline
    return {"name": f"{p.serve_model_name} (your voice)",
            "provider": provider, "model": p.serve_model_name, "apiBase": api_base,
            "roles": ["chat"],
            "defaultCompletionOptions": {"contextLength": p.serve_context_length,
                                         "maxTokens": int(s["max_tokens"]),
                                         "temperature": s["temperature"], "topP": s["top_p"],
                                         "stop": stop_tokens(cfg, eos_token)},
            # Continue's own system messages are about code and tools, one per mode;
            # each is replaced (the writer's rules file is added to it; Agent and Plan
            # still add their tool instructions, so the writer uses Chat mode).
            "chatOptions": {"baseSystemMessage": BASE_SYSTEM_MESSAGE,
                            "baseAgentSystemMessage": BASE_SYSTEM_MESSAGE,
                            "basePlanSystemMessage": BASE_SYSTEM_MESSAGE}}


def _with_autocomplete(cfg, entry: dict) -> dict:
    if cfg.template_family not in AUTOCOMPLETE:
        return entry
    return {**entry, "roles": entry["roles"] + ["autocomplete"],
            "promptTemplates": {"autocomplete": AUTOCOMPLETE[cfg.template_family]},
            "autocompleteOptions": dict(AUTOCOMPLETE_OPTIONS)}


def continue_models(cfg, eos_token: str, backend: str) -> list[dict]:
    """The entries for the `models:` list of Continue's config.yaml. Roles: chat and
    autocomplete only (edit and apply send code-editing instructions the model was
    never trained on)."""
    if backend == "ollama":
        return [_with_autocomplete(cfg, _chat_entry(cfg, eos_token, "ollama", OLLAMA_URL))]
    if backend == "llamacpp":
        # Chat through llama-server's OpenAI endpoint, which renders the GGUF's own
        # template (training's); Continue's llama.cpp provider would use its own
        # templates instead. Autocomplete through the llama.cpp provider's raw /completion.
        chat = _chat_entry(cfg, eos_token, "openai", LLAMACPP_URL + "/v1")
        auto = _with_autocomplete(cfg, {**chat, "name": f"{cfg.pipeline.serve_model_name} "
                                        "(your voice, autocomplete)", "provider": "llama.cpp",
                                        "apiBase": LLAMACPP_URL + "/", "roles": []})
        auto.pop("chatOptions")
        return [chat, auto] if auto["roles"] else [chat]
    # vLLM: chat only. Its autocomplete route (Continue's openai provider, /completions)
    # was not run here, so it is not offered.
    return [_chat_entry(cfg, eos_token, "openai", VLLM_URL)]


def continue_config(cfg, eos_token: str, backend: str) -> dict:
    return {"name": f"{cfg.pipeline.serve_model_name} writing", "version": "0.0.1", "schema": "v1",
            "models": continue_models(cfg, eos_token, backend)}


def rules_name(cfg) -> str:
    return cfg.pipeline.system_prompt_file.name


def _backup(path: Path) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    dest = path.with_name(f"{path.name}.bak-{stamp}")
    n = 1
    while dest.exists():
        dest = path.with_name(f"{path.name}.bak-{stamp}-{n}")
        n += 1
    shutil.copy2(path, dest)
    return dest


def install(plan, continue_dir: Path, cfg) -> list[str]:
    """Merge `plan`'s model entries (serve.Plan) into continue_dir/config.yaml (replacing an entry of the
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
    names = {entry["name"] for entry in plan.entries}
    models = [m for m in current.get("models") or [] if not
              (isinstance(m, dict) and m.get("name") in names)]
    replaced = len(models) < len(current.get("models") or [])
    current["models"] = models + plan.entries
    new_text = dump_yaml(current)
    rules_path = continue_dir / "rules" / plan.files["rules"].name
    for path, text, what in ((config_path, new_text, "model entries " + ("replaced" if replaced else "added")),
                             (rules_path, plan.contents["rules"], "rules file")):
        if path.exists() and path.read_text(encoding="utf-8") == text:
            done.append(f"unchanged {path} ({what} already there)")
            continue
        if path.exists():
            done.append(f"backed up {path} -> {_backup(path).name}")
        write_atomic(path, text.encode("utf-8"))
        done.append(f"wrote {path} ({what})")
    return done
