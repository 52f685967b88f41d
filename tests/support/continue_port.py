"""How Continue builds the requests that reach the model, ported line by line from
its source at one commit, for the tests that replay them against a real server.
Where Continue has an npm package (its config schema and rule parser, and the
Handlebars engine its autocomplete templates go through), the tests call that
instead (tests/npm/continue_tools.cjs).

Pinned: github.com/continuedev/continue at CONTINUE_COMMIT (2026-06-18). Re-read
these files when Continue is upgraded:
  core/autocomplete/templating/index.ts        buildPrompt: [snippets, prefix].join("\\n")
  core/autocomplete/templating/formatting.ts   formatSnippets, addCommentMarks
  core/autocomplete/constants/AutocompleteLanguageInfo.ts   comment marks (md: "", else //)
  core/autocomplete/templating/getStopTokens.ts             the stops autocomplete sends
  core/autocomplete/CompletionProvider.ts      transform off: no postprocessCompletion
  core/llm/llms/LlamaCpp.ts                    the /completion request body
  core/llm/rules/getSystemMessageWithRules.ts  system = base + "\\n\\n" + each rule
"""
from styletune.chat import as_chat_sends
from styletune.eval.joins import editor_insert

CONTINUE_COMMIT = "d0a3c0b626b5bebc3bef4742eec05a0242be0bab"

# AutocompleteLanguageInfo.ts: LANGUAGES[ext] || Typescript
COMMENT_MARKS = {"md": "", "py": "#", "txt": "//"}
AUTOCOMPLETE_STOPS = ["/src/", "#- coding: utf-8", "```"]   # getStopTokens' commonStops


def _comment_mark(path: str) -> str:
    return COMMENT_MARKS.get(path.rsplit(".", 1)[-1], "//")


def _add_comment_marks(text: str, mark: str) -> str:
    return "\n".join(f"{mark} {line}" for line in text.strip().split("\n"))


def _last_parts(path: str, n: int = 2) -> str:
    return "/".join(path.split("/")[-n:])


def autocomplete_prefix(text_before_cursor: str, path: str, snippets=()) -> str:
    """buildPrompt's prefix for a string template: formatSnippets(...) then the text.
    `path` is the file's path relative to the workspace; snippets are (path, content)."""
    mark = _comment_mark(path)
    formatted = "\n".join(_add_comment_marks(f"Path: {_last_parts(p)}\n{content}", mark)
                          for p, content in snippets)
    formatted += "\n" + _add_comment_marks(_last_parts(path), mark)
    return "\n".join([formatted, text_before_cursor])


def llamacpp_completion_body(prompt: str, options: dict) -> dict:
    """LlamaCpp._streamComplete's body (undefined options dropped, as JSON.stringify does)."""
    args = {"n_predict": options.get("maxTokens"), "min_p": options.get("minP"),
            "stop": options.get("stop"), "top_k": options.get("topK"),
            "top_p": options.get("topP"), "temperature": options.get("temperature")}
    return {"model": options["model"], "prompt": prompt, "stream": True,
            **{k: v for k, v in args.items() if v is not None}}


def autocomplete_options(entry: dict) -> dict:
    """The completion options an autocomplete request carries: the model's defaults,
    its `stop` list joined by getStopTokens' (BaseLLM._parseCompletionOptions merges
    them with mergeJson, which concatenates arrays; the template sets none)."""
    defaults = entry.get("defaultCompletionOptions", {})
    return {**defaults, "model": entry["model"], "stop": list(defaults.get("stop", [])) + AUTOCOMPLETE_STOPS}


def chat_messages(base_system_message: str, rules: list[str], text: str) -> list[dict]:
    """Chat mode: getSystemMessageWithRules, then the writer's message as the chat input
    sends it (processEditorContent, ported once in styletune.chat.as_chat_sends)."""
    system = base_system_message
    for rule in rules:
        system += ("\n\n" if system else "") + rule
    return [{"role": "system", "content": system}, {"role": "user", "content": as_chat_sends(text)}]


def insert_completion(text_before_cursor: str, completion: str) -> str:
    """What the document holds once the writer accepts the completion (ported once in
    styletune.eval.joins.editor_insert: with `transform: false` CompletionProvider
    skips postprocessCompletion, so the completion goes in as it came)."""
    return text_before_cursor + editor_insert(completion)
