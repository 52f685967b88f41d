"""What Continue's chat sends before the writer's text: the system message stage 5
configures for every chat mode, then the writer's rules file (its body, the front
matter left out), as Continue joins them. Stage 5 writes both into Continue's files;
stage 4 measures the join of the writer's seed prompt under them, as the chat route
renders it."""

import re

import yaml

BASE_SYSTEM_MESSAGE = ("Continue the author's manuscript in the author's own voice. "
                       "Write only the prose that comes next.")


def as_chat_sends(text: str) -> str:
    """The writer's text as Continue's chat input sends it: pasted or typed, each line
    becomes a paragraph of its editor, and processEditorContent drops the empty ones,
    trims each one's start and joins them with one line break. So a blank line between
    paragraphs and an indent never reach the model by chat; a typed space at the end
    does. The chat drills are trained on it, and --try and stage 4 send it."""
    return "\n".join(line.lstrip() for line in text.split("\n") if line.strip())


def request_turns(system: str, header: str, text: str) -> list[dict]:
    """What a route sends before the model goes on: on the chat route (a system message),
    that and the text as the chat box sends it; on autocomplete, the path line (or none)
    and the text as typed. Training rows and stage 4's prompts are built so alike."""
    if system:
        return [{"role": "system", "content": system}, {"role": "user", "content": as_chat_sends(text)}]
    return [{"role": "user", "content": header + text}]


def sample_rules_warning(cfg, book, then="rerun with --force") -> str | None:
    """A warning when the rules file is still the sample book's and the book (a
    manuscript or a folder of chunks: settings.is_sample_book) is another:
    its description would train (the chat drills carry it) and reach the editor (stage 5)."""
    from styletune import paths
    from styletune.config import root_config
    from styletune.settings import is_sample_book, shipped_default
    if (cfg.pipeline.system_prompt_file.resolve() != shipped_default("system_prompt_file")
            or is_sample_book(book)):
        return None
    root = root_config(cfg.path)
    where = paths.shown(cfg.path) + (f" (or in {paths.shown(root)}, which it extends, for every config "
                                     "built on it)" if root != cfg.path.resolve() else "")
    return (f"{paths.shown(cfg.pipeline.system_prompt_file)} describes the sample book (a "
            "science-fiction novel), and the chat drills and stage 5's Continue rules carry it: "
            "write a few lines about your own book in fine-tuning/configs/prompts/<name>.md, set "
            f"style_pipeline.system_prompt_file: configs/prompts/<name>.md in {where} "
            f"(a path there counts from fine-tuning/), and {then}")


# A line of three dashes alone, as Continue's parseMarkdownRule splits a rules file
_DASHES_LINE = re.compile(r"^---\s*$", re.MULTILINE)


def _rules_parts(rules_file_text: str) -> tuple[str, list[str], yaml.Node | None]:
    """The file with Windows line ends made \\n, its pieces between `---` lines, and
    the piece between the first two as YAML where Continue takes it for front matter
    (None where it does not)."""
    text = rules_file_text.replace("\r\n", "\n")
    parts = _DASHES_LINE.split(text)
    return text, parts, _front_matter(parts[1]) if len(parts) >= 3 else None


def _front_matter(piece: str) -> yaml.Node | None:
    """`piece` composed as YAML, or None where Continue's parser (the npm yaml package)
    refuses it: no YAML, or a key twice in one mapping (a second `description:` line),
    which PyYAML would take. Composed, not loaded, since a tag it does not know (`!x`)
    is only a warning there."""
    try:
        node = yaml.compose(piece, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return None
    return None if _repeats_a_key(node) else (node or yaml.ScalarNode("tag:yaml.org,2002:null", ""))


def _repeats_a_key(node) -> bool:
    if isinstance(node, yaml.MappingNode):
        keys = [k.value for k, _ in node.value if isinstance(k, yaml.ScalarNode)]
        return len(keys) != len(set(keys)) or any(_repeats_a_key(v) for _, v in node.value)
    return isinstance(node, yaml.SequenceNode) and any(_repeats_a_key(v) for v in node.value)


def rules_body(rules_file_text: str) -> str:
    """The rule Continue appends to the system message from a rules file, as its
    parseMarkdownRule (@continuedev/config-yaml) reads one: split at lines of `---`
    alone; with three parts or more, the second is front matter and what follows the
    second `---` line is the rule, trimmed (what stands before the first is dropped);
    otherwise, or where the front matter is no YAML, the whole file as it is. A `---`
    inside a line (an em dash typed as three hyphens) is text."""
    text, parts, front_matter = _rules_parts(rules_file_text)
    # rejoined with bare dashes, as Continue does: a later --- line loses its line end
    return "---".join(parts[2:]).strip() if front_matter is not None else text


def dropped_rules_warning(cfg) -> str | None:
    """A warning when Continue would drop some of the writer's own text from the rules
    file: text before a `---` line that a second one follows (read as what comes before
    front matter), or lines between the two that are no `key: value` settings (prose
    under a --- used as a divider), since neither reaches the model."""
    from styletune import paths
    _, parts, front_matter = _rules_parts(rules_file_text(cfg))
    if front_matter is None:
        return None
    dropped = " ".join(parts[0].split()) or (
        "" if isinstance(front_matter, yaml.MappingNode) else " ".join(parts[1].split()))
    if not dropped:
        return None
    shown = " ".join(dropped.split()[:6]) + ("..." if len(dropped.split()) > 6 else "")
    return (f"{paths.shown(cfg.pipeline.system_prompt_file)}: Continue reads the lines between its first two "
            "lines of --- as the rule's settings and leaves them, and any text before them, out of what "
            f"it sends ('{shown}'). Open the file with a --- block of key: value settings (as "
            "configs/prompts/scifi_writer.md does) or remove the --- lines, then rerun with --force")


def rules_file_text(cfg) -> str:
    """The writer's rules file (`system_prompt_file`), or a ConfigError naming the path
    it resolved to: a path in the config counts from fine-tuning/, and a file missing
    there would otherwise leave the chat drills without the rules the editor sends."""
    from styletune import paths
    from styletune.errors import ConfigError
    from styletune.fileio import read_text
    path = cfg.pipeline.system_prompt_file
    if not path.is_file():
        raise ConfigError(f"style_pipeline.system_prompt_file: no file at {paths.shown(path)} (a path "
                          "in the config counts from fine-tuning/, e.g. configs/prompts/my_book.md). "
                          "Write a few lines about your book there (configs/prompts/scifi_writer.md "
                          "is the sample book's), or correct the path")
    # fileio's reader, as for the chunks: a byte-order mark is dropped, as VS Code's
    # decoder drops it before Continue reads the file, and a file saved in another
    # encoding gets the same clear error
    return read_text(path)


def configured_system_message(cfg) -> str:
    """The chat route's system message for this config: ours, then its rules file."""
    return chat_system_message(rules_file_text(cfg))


def chat_system_message(rules_file_text: str | None) -> str:
    """The system message Continue's chat sends: ours, then the writer's rules."""
    if not rules_file_text:
        return BASE_SYSTEM_MESSAGE
    return BASE_SYSTEM_MESSAGE + "\n\n" + rules_body(rules_file_text)
