"""Stage 5: the files that put the merged model in the writer's editor: an Ollama
Modelfile whose TEMPLATE renders what training rendered, the llama-server and vLLM
commands (both serve the training chat template), and Continue model entries plus
a rules file with the writer's system prompt.

How Continue reaches the model (read in Continue's source, commit d0a3c0b6):
- Chat (Chat mode): messages = [system: chatOptions.baseSystemMessage + rules,
  user: the writer's text]; the server renders them with its template.
- Autocomplete: Continue renders promptTemplates.autocomplete (Handlebars) with
  {{{prefix}}} = a blank line, the file's path line, then the text before the
  cursor, and sends the result raw. Stage 1 trains on that header too.

Ollama's TEMPLATE is Go text/template, not Jinja, so it is written by hand per
training template and tested for parity with Axolotl's rendering (text and
token ids; tests/test_serving.py). Ollama adds BOS itself where the merged
tokenizer_config.json says add_bos_token (stage 3 states it), so the TEMPLATE leaves
it out where the Jinja writes it.

Which export fits the writer's card: deploy/fit.py estimates, for the merged model
and each GGUF type, the file, the KV cache at serve_context_length and the runtime
against cards of 16-80 GB; stage 5 prints that table, writes it into SERVE.md, and
warns, with what does fit, when the chosen export needs more than one 32 GB RTX 5090
(the llama-server command then carries fit's estimated -ngl), and when the type that
fits is q2_K, a large loss of quality.
"""
import json
import shlex
import shutil
import sys
from pathlib import Path

from styletune import chat, paths
from styletune.config import EVERY, Reads, load_config
from styletune.data import tokens
from styletune.deploy import continue_files, fit, llamacpp, templates
from styletune.errors import ServeError
from styletune.fileio import write_outputs
from styletune.stage import Files, Stage, merged_model, rules_file, trained_book
from styletune.train import models
from styletune.train.gpu_plan import LLAMA31_8B
from styletune.train.merge_output import MANIFEST, NF4_METHOD, special_tokens_added
from styletune.train.model_size import parameter_count

# Stage 5's settings: the template and every serving key.
READS = tokens.READS + Reads(pipeline=(EVERY,), but=("evaluation",))
STAGE = Stage("5", "5_configure_continue.py", "set up Continue and the local server", READS,
              # the validation file it checks a GGUF with changes only with a new merged model
              inputs=lambda cfg, book: [merged_model(cfg), rules_file(cfg)],
              outputs=lambda cfg, book: [Files(cfg.pipeline.serve_dir,
                                               what="Continue's config, a checked GGUF, the serving commands")])

# What `ollama create --quantize` accepts (case-insensitive), read in Ollama's source
# (github.com/ollama/ollama, commit fb30760, 2026-08-21): server/create.go upper-cases
# the level and calls fs/ggml/type.go's ParseFileType, which takes F32, F16, BF16,
# Q8_0, Q4_K_S and Q4_K_M (alias Q4_K) and refuses every other level; F32/F16/BF16
# are not quantisations. Smaller types (q3_K_M, q2_K): --backend llamacpp --gguf.
BACKENDS = ("ollama", "llamacpp", "vllm")
# The server stage 5 (and make book) sets Continue up for unless told otherwise, and the
# GGUF it writes for llama.cpp: 8 bits keep NF4's rounding alone (a 4-bit file adds its own).
DEFAULT_BACKEND = "ollama"
DEFAULT_GGUF = "q8_0"
QUANTIZE_LEVELS = ("q8_0", "q4_K_M", "q4_K_S")


def merged_model_info(cfg, model_dir: Path) -> dict:
    manifest = model_dir / MANIFEST
    if not manifest.is_file():
        raise ServeError(f"no merged model at {paths.shown(model_dir)} (no {MANIFEST}): "
                         "run 3_merge_adapter.py --auto first")
    info = json.loads(manifest.read_text(encoding="utf-8"))
    if info.get("chat_template") != cfg.chat_template:
        raise ServeError(f"{paths.shown(model_dir)} was merged with chat_template "
                         f"{info.get('chat_template')!r}, the config says {cfg.chat_template!r}: "
                         "use the config that trained it")
    return info


def modelfile(cfg, model_dir: Path, eos_token: str) -> str:
    s, p = cfg.pipeline.sampling, cfg.pipeline
    template = templates.ollama_template(cfg)
    if '"""' in template:
        raise ServeError("the TEMPLATE contains triple quotes, which a Modelfile cannot hold")
    lines = [f"# Ollama Modelfile for {p.serve_model_name}, written by 5_configure_continue.py.",
             "# TEMPLATE renders exactly what training rendered (Axolotl's "
             f"'{cfg.chat_template}' template); BOS, where tokenizer_config.json's add_bos_token "
             "asks for one, is added by Ollama.",
             f"FROM {model_dir}",
             f'TEMPLATE """{template}"""']
    lines += [f'PARAMETER stop "{t}"' for t in templates.stop_tokens(cfg, eos_token)]
    lines += [f"PARAMETER num_ctx {p.serve_context_length}",
              f"PARAMETER temperature {s['temperature']}",
              f"PARAMETER top_p {s['top_p']}",
              f"PARAMETER min_p {s['min_p']}",
              f"PARAMETER top_k {s['top_k']}",
              f"PARAMETER repeat_penalty {s['repeat_penalty']}",
              f"PARAMETER repeat_last_n {s['repeat_last_n']}",
              f"PARAMETER num_predict {int(s['max_tokens'])}"]
    return "\n".join(lines) + "\n"


def ollama_create_command(cfg, modelfile_path: Path, quantize: str | None) -> str:
    cmd = f"ollama create {cfg.pipeline.serve_model_name} -f {modelfile_path}"
    return cmd + (f" --quantize {quantize}" if quantize else "")


def vllm_command(cfg, model_dir: Path) -> str:
    # vLLM listens on every interface unless told: the writer's model stays on this machine.
    return (f"vllm serve {model_dir} --served-model-name {cfg.pipeline.serve_model_name} "
            f"--host {continue_files.VLLM_HOST} --port {continue_files.VLLM_PORT} "
            f"--chat-template {model_dir / 'chat_template.jinja'} "
            f"--max-model-len {cfg.pipeline.serve_context_length} --generation-config auto")


def gguf_path(cfg, outtype: str) -> Path:
    return cfg.pipeline.serve_dir / f"{cfg.pipeline.serve_model_name}.{outtype}.gguf"


def server_program() -> str:
    """llama-server as the writer can run it: `make llama-server` builds it into the
    virtual environment, which is not on PATH, so its full path where found."""
    found = llamacpp.find_server()
    return shlex.quote(str(found)) if found else "llama-server"


def llama_server_command(cfg, gguf: Path, ngl: int | None = None) -> str:
    """ngl: the layers on the GPU, fit.server_layers' estimate when the GGUF does not
    fit one RTX 5090; None: all of them (99)."""
    # --jinja: the chat endpoint renders the GGUF's own template, which is training's.
    return (f"{server_program()} -m {gguf} --jinja --host {continue_files.LLAMACPP_HOST} "
            f"--port {continue_files.LLAMACPP_PORT} "
            f"-c {cfg.pipeline.serve_context_length} -ngl {99 if ngl is None else ngl} "
            f"--alias {cfg.pipeline.serve_model_name} "
            + " ".join(llamacpp.sampling_flags(cfg.pipeline.sampling)))


def layers_note(table: fit.FitTable | None, gguf_type: str) -> str:
    """What the -ngl of llama_server_command means, for SERVE.md."""
    ngl = fit.server_layers(table, gguf_type) if table else None
    if ngl is None:
        return "`-ngl 99` puts every layer on the GPU."
    return (f"`-ngl {ngl}` is an estimate (the table below): about {ngl} of "
            f"{table.row(gguf_type).layers} layers on one {fit.WRITER_CARD}, the rest in CPU RAM "
            f"(slower). Lower it if the server runs out of GPU memory; on a card with room, "
            f"`-ngl 99` puts all layers on it.")


_8B_GB = {t: fit.file_bytes(parameter_count(LLAMA31_8B), t) / 1e9 for t in ("bf16", "q8_0", "q4_K_M")}
SERVERS = {
    "ollama": f"Ollama (imports the safetensors folder: about {_8B_GB['bf16']:.0f} GB for an 8B model in "
              f"bf16; `--quantize q8_0` / `q4_K_M` give {_8B_GB['q8_0']:.1f} / {_8B_GB['q4_K_M']:.1f} GB)",
    "llamacpp": "llama.cpp's llama-server (the GGUF this script wrote; `make llama-server` "
                "built it for this machine, or use a CUDA build of llama.cpp on the GPU machine)",
    "vllm": f"vLLM (OpenAI-compatible endpoint at {continue_files.VLLM_URL}; the training chat template)",
}


def export_type(backend: str, quantize: str | None, gguf_type: str | None) -> str:
    """The type the chosen server serves: the GGUF for llama.cpp, Ollama's --quantize
    level, else the merged weights in 16 bits (Ollama's import, vLLM)."""
    if backend == "llamacpp":
        return gguf_type or DEFAULT_GGUF
    if backend == "ollama" and quantize:
        return quantize
    return "bf16"


def rounded_twice(info: dict, chosen: str) -> str | None:
    """A 4-bit or smaller export of weights merged into the NF4-rounded base rounds them
    a second time, onto another grid: say so, and what rounds once."""
    bits = {k.lower(): v for k, v in fit.BITS_PER_WEIGHT.items()}.get(chosen.lower(), 16)
    if info.get("merge_method") != NF4_METHOD or bits >= 5:
        return None
    return (f"these weights are the base as training saw it, rounded to 4 bits (NF4), plus the adapter "
            f"(style_pipeline.merge_into: nf4); {chosen} rounds them again, onto its own grid, and the "
            "two roundings add up. q8_0 or bf16 keep NF4's rounding alone. For a 4-bit file, merging into "
            "the original weights (merge_into: original, then stage 3 with --force) rounds once; "
            "neither has been measured against the other, and stage 4 judged the unquantised weights.")


def fit_section(cfg, table: fit.FitTable | None, chosen: str, warning: list[str]) -> str:
    """SERVE.md's "which GGUF fits which card", with the warnings (Plan.warnings)."""
    warned = "\n**Warning:** " + "\n\n".join(warning) + "\n" if warning else ""
    if table is None:
        return ("No estimate: the merged folder's config.json is missing or is not a Llama-style "
                "decoder's.\n" + warned)
    return (f"Estimates from file sizes, not measured VRAM: the GGUF's size (llama.cpp's bits per "
            f"weight for each type), the f16 KV cache at `serve_context_length` "
            f"({cfg.pipeline.serve_context_length} tokens) and ~{fit.RUNTIME_GIB:g} GiB runtime. "
            f"This export: **{chosen}**.\n\n{fit.format_table(table, markdown=True)}\n{warned}"
            "\nAnother type: rerun stage 5 with `--backend llamacpp --gguf TYPE`.\n")


def instructions(cfg, files: dict, model_dir: Path, backend: str, commands: dict,
                 fits: str = "", server_note: str = "") -> str:
    p = cfg.pipeline
    autocomplete = backend != "vllm" and cfg.template_family in templates.AUTOCOMPLETE
    others = " or ".join(f"`--backend {b}`" for b in BACKENDS if b != backend)
    write = ["- **Chat**, in Continue's *Chat* mode (the mode menu under the input box; "
             "Agent and Plan add tools the model was not trained for): paste or type the last "
             "paragraph or two of your scene, nothing else, and send it with plain Enter "
             "(Cmd/Alt+Enter adds the whole open file; Cmd+L sends a selection as a code "
             "block). The model carries on from the last word. What reaches the model: the "
             "system message below plus your rules file (and any rules of your own Continue "
             "loads, such as an AGENTS.md in the workspace), then your text as Continue's chat "
             "box sends it: its lines joined by single line breaks, blank lines and indents "
             "gone (the chat drills trained on that)."]
    if autocomplete:
        write.append("- **Autocomplete**, in a Markdown (`.md`) or text file: stop typing and the "
                     "continuation appears at the cursor as grey text once it is written; Tab "
                     "accepts it. Continue sends a line with the file's path, then up to ~1,600 "
                     "tokens before the cursor, in the training format (stage 1 trained on that "
                     "path line too).")
    else:
        write.append("- Autocomplete is not set up for this server (see docs/editor.md).")
    return f"""# Serving {p.serve_model_name} in VS Code through Continue

Written by `5_configure_continue.py` for the merged model in `{model_dir}`.

## 1. Serve the model

{SERVERS[backend]}:

    {commands[backend]}
{chr(10) + server_note + chr(10) if server_note else ""}
Other servers: rerun stage 5 with {others}.

## 2. Point Continue at it

Copy the model entries from `{files['continue/config.yaml'].name}` into the `models:`
list of `~/.continue/config.yaml`, and `{files['rules'].name}` into `~/.continue/rules/`;
or let the script do both, with a backup of your config first:

    python fine-tuning/training/5_configure_continue.py --config {paths.typed(cfg.path)} --backend {backend} --install

Then choose it: Continue keeps the models it already uses. Pick
"{p.serve_model_name} (your voice)" in the model menu under the chat box, and as the
autocomplete model in Continue's settings (Models, Autocomplete).

## 3. Write

{chr(10).join(write)}

System message (all three modes): "{chat.BASE_SYSTEM_MESSAGE}"
Rules file: `{paths.shown(cfg.pipeline.system_prompt_file)}`; edit it and rerun this script.

## Which GGUF fits which card

{fits}"""


class Plan:
    """The files stage 5 writes, by name, with their contents."""

    def __init__(self, cfg, model_dir: Path, backend: str, quantize: str | None, gguf_type: str):
        info = merged_model_info(cfg, model_dir)
        eos = info["eos_token"]
        out = cfg.pipeline.serve_dir
        self.files = {"Modelfile": out / "Modelfile",
                      "continue/config.yaml": out / "continue" / "config.yaml",
                      "rules": out / "continue" / "rules" / continue_files.rules_name(cfg),
                      "SERVE.md": out / "SERVE.md"}
        self.gguf = gguf_path(cfg, gguf_type)
        self.fit = fit.model_table(model_dir, cfg.pipeline.serve_context_length)
        self.export_type = export_type(backend, quantize, gguf_type)
        # when the export does not fit one RTX 5090 or loses much, and when it rounds twice
        self.warnings = ((fit.advice(self.fit, self.export_type) if self.fit else [])
                         + [w for w in [rounded_twice(info, self.export_type)] if w])
        self.gpu_layers = fit.server_layers(self.fit, gguf_type) if self.fit else None
        self.commands = {"ollama": ollama_create_command(cfg, self.files["Modelfile"], quantize),
                         "llamacpp": llama_server_command(cfg, self.gguf, self.gpu_layers),
                         "vllm": vllm_command(cfg, model_dir)}
        self.entries = continue_files.continue_models(cfg, eos, backend)
        self.contents = {
            "Modelfile": modelfile(cfg, model_dir, eos),
            "continue/config.yaml": continue_files.dump_yaml(continue_files.continue_config(cfg, eos, backend)),
            "rules": chat.rules_file_text(cfg),
            "SERVE.md": instructions(cfg, self.files, model_dir, backend, self.commands,
                                     fit_section(cfg, self.fit, self.export_type, self.warnings),
                                     layers_note(self.fit, gguf_type) if backend == "llamacpp" else ""),
        }

    def outputs(self) -> dict:
        """{path: bytes}, for fileio.write_outputs."""
        return {self.files[k]: text.encode("utf-8") for k, text in self.contents.items()}


# What the stage script runs (its parser is in fine-tuning/training/5_configure_continue.py).
def run(args) -> int:
    cfg = load_config(paths.resolve_cli(args.config))
    model_dir = paths.resolve_cli(args.model) if args.model else cfg.pipeline.merged_dir
    gguf_type = args.gguf or (DEFAULT_GGUF if args.backend == "llamacpp" else None)
    if args.try_text and not gguf_type:
        raise ServeError(f"--try needs a GGUF to serve: add --backend llamacpp or --gguf {DEFAULT_GGUF}")
    plan = Plan(cfg, model_dir, args.backend, args.quantize, gguf_type or DEFAULT_GGUF)
    if gguf_type:
        check_disk(plan, gguf_type)         # first: it needs no tools, and building them takes minutes
        missing = llamacpp.missing_tools(gguf_type)
        if missing:
            raise llamacpp.LlamaCppError(missing)
    eos = plan.entries[0]["defaultCompletionOptions"]["stop"][0]
    print(f"model: {paths.shown(model_dir)} ({cfg.chat_template} template, EOS {eos})")
    rules = sample_rules_served(cfg)
    if rules:
        print(f"warning: {rules}", file=sys.stderr)
    if args.backend == "ollama" and (unstated := bos_unstated(cfg, model_dir)):
        print(f"warning: {unstated}", file=sys.stderr)
    print_fit(plan)
    if args.dry_run:
        for path in list(plan.files.values()) + ([plan.gguf] if gguf_type else []):
            via = (" (through a temporary bf16 GGUF and llama-quantize)"
                   if path == plan.gguf and gguf_type in llamacpp.QUANTIZER_TYPES else "")
            print(f"would write {paths.shown(path)}{via}")
        if args.install:
            print(f"would merge the model entries into {Path(args.continue_dir).expanduser() / 'config.yaml'}")
        print("dry run: nothing written")
        return 0
    written = write_outputs(plan.outputs(), args.force)
    for path in plan.files.values():
        print(f"{'wrote' if path in written else 'unchanged'} {paths.shown(path)}")
    if gguf_type:
        write_gguf(cfg, model_dir, plan.gguf, gguf_type)
        if args.try_text:
            try_routes(cfg, model_dir, plan, args.try_text)
    if args.install:
        for line in continue_files.install(plan, Path(args.continue_dir).expanduser(), cfg):
            print(line)
        print("note: comments in config.yaml are not kept by the merge; the backup has them")
    print(f"next:  {plan.commands[args.backend]}")
    if args.backend == "llamacpp" and plan.gpu_layers is not None:
        print(f"       (-ngl {plan.gpu_layers}: an estimate of the layers one {fit.WRITER_CARD} holds; "
              "-ngl 99 puts all layers on a card that has room)")
    print(f"       then see {paths.shown(plan.files['SERVE.md'])}")
    return 0


def sample_rules_served(cfg) -> str | None:
    """The warning when the sample book's rules file would reach another book's editor.
    The chat drills trained under it, so the fix is training again, not stage 5 alone."""
    return chat.sample_rules_warning(cfg, trained_book(cfg), then=(
        "run the book again from stage 1 (make book): the model learned its chat joins "
        "under this text, and serving another would give it a system turn it never saw"))


def bos_unstated(cfg, model_dir: Path) -> str | None:
    """The warning for a folder merged before stage 3 stated the BOS its tokenizer adds
    (merge_output.state_special_tokens_added): Ollama's importer reads that key alone."""
    try:
        record = json.loads((model_dir / "tokenizer_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if "add_bos_token" in record:
        return None
    tok = models.load_tokenizer(cfg, model_dir)
    if not special_tokens_added(tok)["add_bos_token"]:
        return None
    return (f"{paths.shown(model_dir / 'tokenizer_config.json')} does not say that the tokenizer adds "
            f"{tok.bos_token} (add_bos_token), and Ollama releases before 2026-05 then import the model "
            "without it, though every training row opens with it: merge again "
            "(3_merge_adapter.py --auto --force states it), then rerun this script")


def print_fit(plan) -> None:
    """The fit table on the terminal, and the plan's warnings (Plan.warnings)."""
    if plan.fit is None:
        print("fit: no estimate of which GGUF fits which card (the merged config.json is "
              "missing or not a Llama-style decoder's)")
    else:
        print(f"which GGUF fits which card (estimates from file sizes, not measured VRAM; "
              f"this export: {plan.export_type}):")
        print(fit.format_table(plan.fit))
    for line in plan.warnings:
        print(f"warning: {line}")


def check_disk(plan, gguf_type: str) -> None:
    """Room in serve_dir for the GGUF (and, for a k-quant, the bf16 GGUF it is made from)."""
    if plan.fit is None:
        return
    need = plan.fit.row(gguf_type).file_bytes
    if gguf_type in llamacpp.QUANTIZER_TYPES:
        need += plan.fit.row("bf16").file_bytes
    folder = plan.gguf.parent
    while not folder.exists():
        folder = folder.parent
    free = shutil.disk_usage(folder).free
    if free < need:
        raise ServeError(f"{paths.shown(plan.gguf.parent)} has {free / fit.GIB:.1f} GiB free; the {gguf_type} "
                         f"GGUF needs ~{need / fit.GIB:.1f} GiB"
                         + (" (with the bf16 GGUF it is quantised from, removed after)"
                            if gguf_type in llamacpp.QUANTIZER_TYPES else "")
                         + ": free some space, or set style_pipeline.serve_dir to a larger disk")


def write_gguf(cfg, model_dir: Path, dest: Path, outtype: str) -> None:
    """Convert (and for a k-quant, quantise), then prove the GGUF serves the training
    format in a real llama-server; only a GGUF that passed (or could not be checked,
    said so) lands at dest."""
    unchecked = dest.with_name(dest.name + ".unchecked")
    for line in llamacpp.export(model_dir, unchecked, outtype):
        print(line)
    try:
        if llamacpp.find_server() is None:
            print("warning: the GGUF was not checked: no llama-server here (`make llama-server` builds one)")
        else:
            tok = models.load_tokenizer(cfg, model_dir)
            conversation = models.probe_conversations(cfg)[0]
            template = templates.AUTOCOMPLETE.get(cfg.template_family)
            for line in llamacpp.check_gguf(unchecked, tok, conversation, template):
                print(f"checked: {line}")
    except BaseException:
        unchecked.unlink(missing_ok=True)
        raise
    unchecked.replace(dest)
    print(f"wrote {paths.shown(dest)}")


def try_routes(cfg, model_dir: Path, plan, text: str) -> None:
    tok = models.load_tokenizer(cfg, model_dir)
    system = chat.chat_system_message(plan.contents["rules"])
    entries = continue_files.continue_models(cfg, tok.eos_token, "llamacpp")
    for route, continuation in llamacpp.try_routes(plan.gguf, tok, entries, system, text,
                                                   sampling=cfg.pipeline.sampling).items():
        print(f"\n{route} (as Continue sends it; ⟨⟩ marks what the model wrote):\n"
              f"  ...{text[-80:]}⟨{continuation}⟩")
