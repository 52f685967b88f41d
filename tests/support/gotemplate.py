"""A faithful Python port of the part of Go's text/template that Ollama TEMPLATEs
use here, and of Ollama's message collation, so tests can render a Modelfile's
TEMPLATE exactly as `ollama` would without Ollama installed.

Supported: text, `{{ .Field }}`, `{{ range .Field }}...{{ end }}` (dot becomes
each item; `range $i, $_ := .Field` too), `{{ if .Field }}...{{ else }}...{{ end }}` (Go truthiness: empty
string, empty list, zero, nil are false), `{{ if eq .Field "text" }}`, `{{ else if ... }}`
(an if nested in the else branch, sharing its `{{ end }}`), `{{ $.Field }}` (the root), and the
trim markers `{{- ` / ` -}}`, which remove all whitespace (space, tab, CR, LF)
before / after the action. Anything else raises ValueError rather than guess.
"""
import re

ACTION = re.compile(r"\{\{(- )?\s*(.*?)\s*( -)?\}\}", re.S)
GO_SPACE = " \t\r\n"


def _lex(source: str):
    """[('text', s) | ('action', s)], with trim markers applied to the text around them."""
    items, pos = [], 0
    for m in ACTION.finditer(source):
        items.append(["text", source[pos:m.start()]])
        if m.group(1):
            items[-1][1] = items[-1][1].rstrip(GO_SPACE)
        items.append(["action", m.group(2), bool(m.group(3))])
        pos = m.end()
    items.append(["text", source[pos:]])
    for i, item in enumerate(items):
        if item[0] == "action" and item[2]:
            items[i + 1][1] = items[i + 1][1].lstrip(GO_SPACE)
    return [(kind, value) for kind, value, *_ in items]


def _check_field(expr: str) -> None:
    if not re.fullmatch(r"\$?(\.[A-Za-z_]\w*)+|\.", expr):
        raise ValueError(f"template action not supported by this port: {{{{ {expr} }}}}")


def _parse(tokens, i=0, stop=("end",), single=False):
    """A node list up to one of `stop`; returns (nodes, index of the stop token, its word).
    single: parse one if-block only and return at its {{ end }} (for else if)."""
    nodes = []
    while i < len(tokens):
        kind, value = tokens[i]
        if kind == "text":
            nodes.append(("text", value))
            i += 1
            continue
        word = value.split()[0] if value else ""
        if word in stop:
            return nodes, i, word
        if word in ("range", "if"):
            body, i, ended = _parse(tokens, i + 1, ("end", "else"))
            other = []
            if ended == "else" and tokens[i][1].split()[1:2] == ["if"]:
                tokens[i] = ("action", tokens[i][1].split(None, 1)[1])   # else if: a nested if
                other, i, _ = _parse(tokens, i, ("end",), single=True)
            elif ended == "else":
                other, i, _ = _parse(tokens, i + 1, ("end",))
            arg = value.split(None, 1)[1]
            arg = arg.split(":=", 1)[1].strip() if word == "range" and ":=" in arg else arg
            _check_condition(arg) if word == "if" else _check_field(arg)
            nodes.append((word, arg, body, other))
            if single:
                return nodes, i, "end"
            i += 1
            continue
        _check_field(value)
        nodes.append(("field", value))
        i += 1
    if stop != ("end",) or i < len(tokens):
        raise ValueError("template ends inside a block: missing {{ end }}")
    return nodes, i, None


EQ = re.compile(r'eq (\S+) "([^"\\]*)"')


def _check_condition(expr: str) -> None:
    m = EQ.fullmatch(expr)
    _check_field(m.group(1) if m else expr)


def _condition(expr: str, dot, root) -> bool:
    m = EQ.fullmatch(expr)
    if m:
        return _lookup(m.group(1), dot, root) == m.group(2)
    return _truthy(_lookup(expr, dot, root))


def _lookup(expr: str, dot, root):
    value = root if expr.startswith("$") else dot
    for name in filter(None, expr.lstrip("$").split(".")):
        value = value.get(name) if isinstance(value, dict) else getattr(value, name, None)
    return value


def _truthy(value) -> bool:
    return value not in (None, "", 0, False) and not (hasattr(value, "__len__") and len(value) == 0)


def _render(nodes, dot, root, out):
    for node in nodes:
        if node[0] == "text":
            out.append(node[1])
        elif node[0] == "field":
            value = _lookup(node[1], dot, root)
            out.append("" if value is None else str(value))  # missingkey=zero
        elif node[0] == "if":
            _render(node[2] if _condition(node[1], dot, root) else node[3], dot, root, out)
        elif node[0] == "range":
            items = _lookup(node[1], dot, root) or []
            for item in items:
                _render(node[2], item, root, out)
            if not items:
                _render(node[3], dot, root, out)


def collate(messages):
    """Ollama's template.collate: system messages joined as .System (and kept in
    .Messages); consecutive messages of one role merged with a blank line."""
    system, collated = [], []
    for msg in messages:
        if msg["role"] == "system":
            system.append(msg["content"])
        if collated and collated[-1]["Role"] == msg["role"]:
            collated[-1]["Content"] += "\n\n" + msg["content"]
        else:
            collated.append({"Role": msg["role"], "Content": msg["content"]})
    return "\n\n".join(system), collated


def render_ollama(template: str, messages) -> str:
    """The prompt text Ollama builds for a /api/chat request with these messages."""
    system, collated = collate(messages)
    nodes, _, _ = _parse(_lex(template))
    root = {"System": system, "Messages": collated, "Response": ""}
    out = []
    _render(nodes, root, root, out)
    return "".join(out)
