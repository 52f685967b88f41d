"""What each serving route renders, per training template (config.template_family):
Ollama's Go TEMPLATE, Continue's autocomplete template, and the tokens generation
stops at. Each is tested for parity with the training template's rendering
(tests/test_serving.py, tests/test_llama_server.py)."""
from styletune.errors import ServeError

# Go templates for Ollama, one per training template they match (config.template_family).
# Every message is rendered, system messages included (Ollama keeps them in .Messages).
# The turn layouts always open the assistant header, like add_generation_prompt=True;
# the continuation layouts open the assistant's turn with the writer's text, so the
# model goes on from the last character typed.
OLLAMA_TEMPLATES = {
    "chatml": ("{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n"
               "{{ end }}<|im_start|>assistant\n"),
    "llama3": ("{{- range .Messages }}<|start_header_id|>{{ .Role }}<|end_header_id|>\n\n"
               "{{ .Content }}<|eot_id|>{{ end }}<|start_header_id|>assistant<|end_header_id|>\n\n"),
    "chatml-continuation": (
        "{{- range .Messages }}{{ if eq .Role \"user\" }}<|im_start|>assistant\n{{ .Content }}"
        "{{ else if eq .Role \"assistant\" }}{{ .Content }}<|im_end|>\n"
        "{{ else }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}{{ end }}"),
    "llama3-continuation": (
        "{{- range .Messages }}{{ if eq .Role \"user\" }}<|start_header_id|>assistant<|end_header_id|>\n\n"
        "{{ .Content }}{{ else if eq .Role \"assistant\" }}{{ .Content }}<|eot_id|>"
        "{{ else }}<|start_header_id|>{{ .Role }}<|end_header_id|>\n\n{{ .Content }}<|eot_id|>"
        "{{ end }}{{ end }}"),
}
# Where a new turn would begin: generation must stop before it as well as at the end token.
TURN_STARTS = {"chatml": ["<|im_start|>"], "llama3": ["<|start_header_id|>"]}
TURN_STARTS.update({f"{k}-continuation": v for k, v in list(TURN_STARTS.items())})
# Continue's autocomplete sends a raw prompt: the training format, with its prefix
# (header line + text before the cursor) as the user turn, or, in the continuation
# layouts, opening the assistant's turn. The server adds BOS.
AUTOCOMPLETE = {
    "chatml": "<|im_start|>user\n{{{prefix}}}<|im_end|>\n<|im_start|>assistant\n",
    "llama3": ("<|start_header_id|>user<|end_header_id|>\n\n{{{prefix}}}<|eot_id|>"
               "<|start_header_id|>assistant<|end_header_id|>\n\n"),
    "chatml-continuation": "<|im_start|>assistant\n{{{prefix}}}",
    "llama3-continuation": "<|start_header_id|>assistant<|end_header_id|>\n\n{{{prefix}}}",
}


def ollama_template(cfg) -> str:
    if cfg.template_family not in OLLAMA_TEMPLATES:
        raise ServeError(f"no Ollama TEMPLATE is written for chat_template {cfg.chat_template!r} "
                         f"(there are: {', '.join(OLLAMA_TEMPLATES)}); serve with vLLM, which reads "
                         "the merged folder's chat_template.jinja")
    return OLLAMA_TEMPLATES[cfg.template_family]


def stop_tokens(cfg, eos_token: str) -> list[str]:
    return [eos_token] + [t for t in TURN_STARTS.get(cfg.template_family, []) if t != eos_token]
