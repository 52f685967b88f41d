"""The agent file, the README and docs/ name only scripts, flags and paths that
exist; the config reference is the settings schema's, and the README's pipeline
table is the stages' declarations'."""
import re
import subprocess
import sys

import pytest
from conftest import FT, REPO, load_script

AGENT = REPO / ".github" / "agents" / "fine-tuning-trainer.md"
README = REPO / "README.md"
DOCS = [AGENT, README, *sorted((REPO / "docs").glob("*.md"))]
GENERATED = ("fine-tuning/data/processed/", "fine-tuning/outputs/", "fine-tuning/logs")


def backticked(path):
    return re.findall(r"`([^`]+)`", path.read_text())


def test_agent_file_front_matter():
    text = AGENT.read_text()
    front = text.split("---")[1]
    for key in ("name: fine-tuning-trainer", "description:", "tools:"):
        assert key in front


def test_named_paths_exist():
    for doc in DOCS:
        for token in backticked(doc):
            for path in re.findall(r"(fine-tuning/[\w./-]+|\.github/[\w./-]+)", token):
                if path.startswith(GENERATED) or "<" in token:
                    continue
                assert (REPO / path.rstrip(".")).exists(), f"{doc.name} names {path}"


def test_the_pipeline_table_is_written_from_the_stages_declarations():
    from styletune.stage import readme_table
    table = readme_table()
    assert table in README.read_text(), "the README's pipeline table is stale: python -m styletune.stage"
    scripts = {p.name for p in (FT / "training").iterdir()}
    assert re.findall(r"^\| (\d) \| `([^`]+)`", table, re.M) == [
        (str(n), name) for n, name in enumerate(sorted(s for s in scripts if re.match(r"\d_", s)))]


def test_named_scripts_exist():
    scripts = {p.name for p in (FT / "training").iterdir()}
    for doc in DOCS:
        for name in set(re.findall(r"\b(\d_\w+\.(?:py|sh))", doc.read_text())):
            assert name in scripts, f"{doc.name} names {name}"


def test_named_flags_exist():
    options = {flag for script in (FT / "training").glob("*.py") if "def build_parser" in script.read_text()
               for flag in load_script(script).build_parser()._option_string_actions}
    shell_usage = set().union(*(script_flags()[s.name] for s in SHELL_SCRIPTS))  # "--re" is no flag
    bench_flags = {f for p in (FT / "benchmarks").glob("*.py")
                   for f in re.findall(r'add_argument\("(--[a-z-]+)"', p.read_text())}
    for doc in DOCS:
        for line in doc.read_text().splitlines():
            for flag in re.findall(r"(?<![\w-])(--[a-z][a-z-]+)", line):
                if flag in ("--learning-rate", "--no-deps", "--only-binary", "--python-version", "--chat-template", "--jinja"):
                    continue  # Axolotl's, pip's, vLLM's and llama-server's own
                assert flag in options or flag in shell_usage or flag in bench_flags, \
                    f"{doc.name} names {flag}, which no stage or benchmark script has"


SHELL_SCRIPTS = (FT / "training" / "2_train_lora.sh", FT / "benchmarks" / "gpu_check.sh")


def script_flags() -> dict:
    """{script name: its flags}: the stage scripts' parsers, the shell scripts' usage text."""
    flags = {script.name: set(load_script(script).build_parser()._option_string_actions)
             for script in (FT / "training").glob("*.py") if "def build_parser" in script.read_text()}
    for script in SHELL_SCRIPTS:
        usage = script.read_text().split("\nset -")[0]   # the header, before the code
        flags[script.name] = set(re.findall(r"--[a-z][a-z-]+", usage))
    return flags


def test_a_command_shown_uses_its_own_scripts_flags():
    """`3_merge_adapter.py --backend` would pass the check above (another script has
    --backend); a command in backticks must use flags of the script it runs."""
    flags = script_flags()
    checked = 0
    for doc in DOCS:
        for token in backticked(doc):
            m = re.search(r"([\w]+\.(?:py|sh))\b(.*)", token)
            if not m or m.group(1) not in flags:
                continue
            for flag in re.findall(r"(?<![\w-])(--[a-z][a-z-]+)", m.group(2)):
                if flag in ("--learning-rate",):  # passed through to axolotl train
                    continue
                assert flag in flags[m.group(1)], f"{doc.name}: `{token}`: {m.group(1)} has no {flag}"
                checked += 1
    assert checked > 10  # the docs show commands with flags: a regex that found none is broken


def test_a_command_the_code_prints_names_a_script_and_flags_that_exist():
    """The stages print the next command to run ('python fine-tuning/training/1_prepare_data.py
    --config ... --book ...'): a renamed script or flag would leave them pointing at
    nothing, so each names an existing script, and only its flags."""
    flags = script_flags()
    checked = 0
    for source in sorted((FT / "training" / "styletune").rglob("*.py")):
        for m in re.finditer(r"fine-tuning/training/(\w+\.(?:py|sh))([^\"\n]*)", source.read_text()):
            script, rest = m.groups()
            assert (FT / "training" / script).exists(), f"{source.name} names {script}"
            for flag in re.findall(r"(?<![\w-])(--[a-z][a-z-]+)", rest):
                assert flag in flags.get(script, ()), f"{source.name}: {script} has no {flag}"
                checked += 1
    assert checked >= 8  # the stages print commands with flags: a regex that found none is broken


def test_make_targets_exist():
    makefile = (REPO / "Makefile").read_text()
    for doc in DOCS:
        for target in set(re.findall(r"`make ([\w-]+)", doc.read_text())):
            assert re.search(rf"^{target}:", makefile, re.MULTILINE), target


def test_the_makefiles_offline_environment_is_privacys():
    """make demo and make test run with every hub and tracker off: the Makefile's OFFLINE
    holds exactly styletune/privacy.py's variables, so a tracker added there is off here."""
    from styletune.privacy import OFFLINE_AND_UNTRACKED
    makefile = (REPO / "Makefile").read_text()
    block = re.search(r"^OFFLINE := (.*?)\n(?!\t)", makefile, re.MULTILINE | re.DOTALL).group(1)
    assert dict(pair.split("=", 1) for pair in block.replace("\\", " ").split()) == OFFLINE_AND_UNTRACKED


def test_output_dir_named_in_the_agent_file_is_the_configs():
    from conftest import MAIN_CONFIG
    from styletune.config import load_config
    out = load_config(MAIN_CONFIG).output_dir.relative_to(REPO)
    assert f"`{out}`" in AGENT.read_text()


@pytest.mark.parametrize("script", ["1_prepare_data.py", "5_configure_continue.py", "book_to_editor.py"])
def test_a_python_without_the_packages_gets_one_line_naming_make_install(script):
    """`-S` leaves site-packages out, as the system Python a writer may type lacks them:
    the script still finds styletune beside it, then says in one line what to do."""
    done = subprocess.run([sys.executable, "-S", str(FT / "training" / script), "--help"],
                          capture_output=True, text=True)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith("error: this Python (") and "lacks the package" in done.stderr
    assert "run `make install`" in done.stderr and "Traceback" not in done.stderr
    assert done.stderr.count("\n") == 1


def test_the_readme_is_one_a_writer_finishes_and_points_at_every_doc():
    text = README.read_text()
    assert len(text.splitlines()) <= 250
    for doc in (REPO / "docs").glob("*.md"):
        assert f"docs/{doc.name}" in text, f"the README does not point at docs/{doc.name}"


def test_the_config_reference_is_generated_from_the_settings_schema():
    from styletune.settings import reference_markdown
    assert (REPO / "docs" / "config.md").read_text() == reference_markdown(), \
        "docs/config.md is stale: python -m styletune.settings > docs/config.md"


WORDS_FOR_SHARES = {"quarter": 0.25, "half": 0.5}


def prose_claims():
    """(pattern, the owner's value) for each default the prose states in words: each
    match's groups, read as numbers or WORDS_FOR_SHARES, must be the owner's."""
    from styletune.data.drills import CHAT_SHARE, CONTINUATION_WORDS, PROMPT_WORDS
    from styletune.settings import DEFAULT_TARGET_SHARE, StylePipeline
    default = lambda key: StylePipeline.model_fields[key].default  # noqa: E731
    claims = {
        r"(\d+)% of `?sequence_len": (round(DEFAULT_TARGET_SHARE * 100),),
        r"join_drills_per_chunk`?[^.(]{0,40}\(default (\d+)": (default("join_drills_per_chunk"),),
        r"(\d+)-(\d+) words": PROMPT_WORDS,
        r"next (\d+) words": (CONTINUATION_WORDS,),
        r"\b(quarter) (?:of (?:them|these rows|the (?:join )?drills|stage 1's join drills)|open with)": (CHAT_SHARE,),
        r"first (\d+)-(\d+)%": tuple(round(100 * x) for x in default("prefix_ratio")),
        r"`typed_join_share` of the examples \(default (half)\)": (default("typed_join_share"),),
        r"`editor_header_share` of the examples \(default (half)\)": (default("editor_header_share"),),
    }
    # a space may be a line break, in a YAML comment or a docstring alike
    return {pattern.replace(" ", r"[\s#]+"): owner for pattern, owner in claims.items()}


def test_the_defaults_the_prose_states_are_their_owners():
    """A default said in words (a script's --help, the docs, the config's comments) is the
    value its owner holds (settings.py, drills.py): change one and this names the rest.
    Each claim is found at least once, so the test cannot pass by matching nothing."""
    files = [*DOCS, *sorted((FT / "training").glob("*.py")), *sorted((FT / "configs").glob("*.yaml")),
             *sorted((FT / "training" / "styletune").rglob("*.py"))]
    texts = {path: path.read_text(encoding="utf-8") for path in files}
    for pattern, owner in prose_claims().items():
        found = [(path, m) for path, text in texts.items() for m in re.finditer(pattern, text)]
        assert found, f"no prose states {pattern!r}: update the claim"
        for path, m in found:
            said = tuple(WORDS_FOR_SHARES.get(g, None) or float(g) for g in m.groups())
            line = texts[path][:m.start()].count("\n") + 1
            assert said == tuple(float(x) for x in owner), \
                f"{path.relative_to(REPO)}:{line} says {m.group()!r}; the owner holds {owner}"


def test_a_config_key_named_with_its_default_states_the_schemas_default():
    """'`style_pipeline.merged_dir` (default outputs/merged/)' in a script's --help or a
    doc is the settings schema's default for that key: change the schema and this names
    every place that still says the old one."""
    from styletune.settings import Evaluation, StylePipeline
    sections = {"style_pipeline": StylePipeline, "style_pipeline.evaluation": Evaluation}
    files = [*DOCS, *sorted((FT / "training").glob("*.py"))]
    checked = 0
    for path in files:
        text = path.read_text(encoding="utf-8")
        for m in re.finditer(r"`(style_pipeline(?:\.evaluation)?)\.(\w+)`\s+\(default\s+([^)\s:;,]+)", text):
            section, key, said = m.groups()
            owner = sections[section].model_fields[key].default
            assert said.rstrip("/") == str(owner).rstrip("/"), \
                f"{path.relative_to(REPO)}: {m.group()!r}; the schema's default is {owner!r}"
            checked += 1
    assert checked >= 4
