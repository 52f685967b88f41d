"""Each stage declares the settings it reads and the files it writes (its module's
STAGE), and make book's freshness check hashes exactly those. Here every stage that
runs in-process runs on a small config whose every key read is noted; a key the
stage did not declare fails the test, and so does a file it wrote outside its
declared outputs, so a stage cannot read a setting or write a file behind make
book's back."""
import pytest
import yaml
from conftest import FT, SAMPLE_BOOK, load_script
from styletune.config import EVERY, PIPELINE_KEY, Config, load_config
from styletune.settings import AxolotlKeys, StylePipeline
from styletune.stage import Book, declarations
from yaml.representer import SafeRepresenter

SEGMENT = load_script(FT / "training" / "0_segment_manuscript.py")
PREPARE = load_script(FT / "training" / "1_prepare_data.py")
MERGE = load_script(FT / "training" / "3_merge_adapter.py")
EVALUATE = load_script(FT / "training" / "4_evaluate_style.py")
SERVE = load_script(FT / "training" / "5_configure_continue.py")
QUICK = {"generation_tokens": 8, "prompts_per_chunk": 2, "prompt_words": 40, "train_prompts": 2,
         "train_examples_for_gap": 1, "segment_words": 20, "bootstrap": 20, "mfw": 50, "max_prompts": 2}


def _noting_every(name: str):
    """dict's method `name`, noting first that every key is read."""
    def method(self):
        self._note(EVERY)
        return getattr(dict, name)(self)
    return method


class Noted(dict):
    """A config section that notes each key read ((section, key) into `log`);
    reading them all (items, keys, iteration) notes EVERY."""

    def __init__(self, data, log, section):
        super().__init__(data)
        self.log, self.section = log, section

    def _note(self, key):
        if not self.log.paused:
            self.log.add((self.section, key))

    def __getitem__(self, key):
        self._note(key)
        value = super().__getitem__(key)
        return Noted(value, self.log, "pipeline") if key == PIPELINE_KEY and isinstance(value, dict) else value

    def get(self, key, default=None):
        return self[key] if key in self else default

    def __contains__(self, key):
        self._note(key)
        return super().__contains__(key)

    # reading them all notes EVERY
    items, keys, values, __iter__ = (_noting_every(name) for name in ("items", "keys", "values", "__iter__"))

class Log(set):
    paused = False


@pytest.fixture
def noted(monkeypatch):
    """Every Config made from here on notes what is read of it; its validation and its
    own hash (provenance in reports, not a setting) read unnoted."""
    log = Log()
    init, sha, field = Config.__post_init__, Config.sha256, StylePipeline.__getattribute__
    axolotl_field = AxolotlKeys.__getattribute__

    def post_init(self):   # loading checks every key (validation, not a stage's reading)
        log.paused = True
        try:
            init(self)
        finally:
            log.paused = False
        self.data = Noted(self.data, log, "axolotl")

    def unnoted_sha(self):
        log.paused = True
        try:
            return sha(self)
        finally:
            log.paused = False

    def pipeline_field(self, name):
        if name in StylePipeline.model_fields and not log.paused:
            log.add(("pipeline", name))
        return field(self, name)

    def axolotl_key(self, name):
        if name in AxolotlKeys.model_fields and not log.paused:
            log.add(("axolotl", name))
        return axolotl_field(self, name)

    from styletune.deploy import continue_files
    for dumper in (yaml.SafeDumper, yaml.Dumper, continue_files._Dumper):   # YAML writes a noted section as a dict
        monkeypatch.setitem(dumper.yaml_representers, Noted, SafeRepresenter.represent_dict)
    monkeypatch.setattr(Config, "__post_init__", post_init)
    monkeypatch.setattr(Config, "sha256", unnoted_sha)
    monkeypatch.setattr(StylePipeline, "__getattribute__", pipeline_field)
    monkeypatch.setattr(AxolotlKeys, "__getattribute__", axolotl_key)
    return log


def undeclared(log, stage: str) -> list:
    reads = declarations()[int(stage)].reads
    return sorted((s, k) for s, k in log if k != PIPELINE_KEY and not reads.declares(s, k))


def files_under(root) -> dict:
    return {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


def undeclared_files(stage: str, config, book: Book, root, before: dict) -> list:
    """The files under `root` the stage wrote (new or changed since `before`) that none
    of its declared outputs holds."""
    declared = declarations()[int(stage)].outputs(load_config(config), book)
    after = files_under(root)
    written = [p for p in after if before.get(p) != after[p]]
    return sorted(str(p) for p in written if not any(f.holds(p) for f in declared))


def test_stages_0_and_1_read_and_write_only_what_they_declare(make_config, tmp_path, noted):
    cfg = make_config()
    manuscript = SAMPLE_BOOK / "the_quiet_orbit_full_manuscript.txt"
    before = files_under(tmp_path)
    assert SEGMENT.main([str(manuscript), "--config", str(cfg), "--out", str(tmp_path / "cut")]) == 0
    assert noted and undeclared(noted, "0") == []
    assert undeclared_files("0", cfg, Book(manuscript, tmp_path / "cut"), tmp_path, before) == []
    noted.clear()
    before = files_under(tmp_path)
    assert PREPARE.main(["--config", str(cfg), "--force"]) == 0
    assert noted and undeclared(noted, "1") == []
    assert undeclared_files("1", cfg, Book(None, SAMPLE_BOOK), tmp_path, before) == []


def test_stages_3_to_5_read_and_write_only_what_they_declare(make_config, tiny, tmp_path, noted):
    cfg = make_config({"evaluation": {**QUICK, "report_dir": str(tmp_path / "report")}},
                      base_model=str(tiny / "base"), output_dir=str(tiny / "adapter"))
    assert PREPARE.main(["--config", str(cfg), "--force"]) == 0
    for stage, script, args in (("3", MERGE, ["--auto"]), ("4", EVALUATE, []), ("5", SERVE, [])):
        noted.clear()
        before = files_under(tmp_path)
        assert script.main(["--config", str(cfg), *args]) == 0, stage
        assert noted and undeclared(noted, stage) == [], stage
        assert undeclared_files(stage, cfg, Book(None, SAMPLE_BOOK), tmp_path, before) == [], stage


def test_make_books_dry_run_lists_what_each_stage_reads(make_config, capsys):
    run = load_script(FT / "training" / "book_to_editor.py")
    assert run.main([str(SAMPLE_BOOK), "--config", str(make_config()), "--dry-run"]) == 0
    out = capsys.readouterr().out
    for stage in ("1", "2", "3", "4", "5"):
        assert f"  reads: {declarations()[int(stage)].reads}\n" in out
    assert "reads: every Axolotl key, style_pipeline.train_device" in out
