"""What Continue's chat sends before the writer's text: the system message stage 5
configures for every chat mode, then the writer's rules file (its body, the front
matter left out), as Continue joins them. Stage 5 writes both into Continue's files;
stage 4 measures the join of the writer's seed prompt under them, as the chat route
renders it."""

BASE_SYSTEM_MESSAGE = ("Continue the author's manuscript in the author's own voice. "
                       "Write only the prose that comes next.")


def sample_rules_warning(cfg, book_dir) -> str | None:
    """A warning when the rules file is still the sample book's and the book is another:
    its description would train (the chat drills carry it) and reach the editor (stage 5)."""
    from styletune import paths
    from styletune.settings import shipped_default
    if (cfg.pipeline.system_prompt_file.resolve() != shipped_default("system_prompt_file")
            or paths.resolve(book_dir).resolve() == shipped_default("book_dir")):
        return None
    return (f"{paths.shown(cfg.pipeline.system_prompt_file)} describes the sample book (a "
            "science-fiction novel), and the chat drills and stage 5's Continue rules carry it: "
            "write a few lines about your own book in configs/prompts/<name>.md, set "
            "style_pipeline.system_prompt_file to it, and rerun with --force")


def rules_body(rules_file_text: str) -> str:
    """A Continue rules file without its `---` front matter."""
    return rules_file_text.split("---", 2)[-1].strip()


def configured_system_message(cfg) -> str:
    """The chat route's system message for this config: its rules file
    (`system_prompt_file`) when written, else ours alone (stage 5 asks for the file)."""
    rules = cfg.pipeline.system_prompt_file
    return chat_system_message(rules.read_text(encoding="utf-8") if rules.is_file() else None)


def chat_system_message(rules_file_text: str | None) -> str:
    """The system message Continue's chat sends: ours, then the writer's rules."""
    if not rules_file_text:
        return BASE_SYSTEM_MESSAGE
    return BASE_SYSTEM_MESSAGE + "\n\n" + rules_body(rules_file_text)
