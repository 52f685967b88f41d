"""What every stage script shares: its parser with --config, and how it ends:
a problem the user can fix is one `error: ...` line and exit 2, never a traceback."""
import argparse
import errno
import os
import sys

from styletune import paths
from styletune.errors import UserError
from styletune.startup import setup_process

DEFAULT_CONFIG = paths.CONFIG_DIR / "qlora_style_transfer.yaml"
INSTALL_HINT = "run `make install`, then use ~/.venvs/finetune/bin/python (or activate that venv)"


def _one_line_for_a_missing_package(kind, err, tb):
    """The scripts import styletune from beside them, so any Python gets this far; one
    without the pipeline's packages (pydantic, torch, ...) then says so in one line,
    wherever the import happens (building a parser, loading the config, a stage)."""
    if issubclass(kind, ModuleNotFoundError) and err.name and not err.name.startswith("styletune"):
        print(f"error: this Python ({sys.executable}) lacks the package {err.name!r}: {INSTALL_HINT}",
              file=sys.stderr)
    else:
        sys.__excepthook__(kind, err, tb)


sys.excepthook = _one_line_for_a_missing_package


def parser(doc: str, **kwargs) -> argparse.ArgumentParser:
    """A parser described by the script's docstring, its "Run" examples included and its
    sample "Output" left out, with --config."""
    p = argparse.ArgumentParser(description=doc.split("\nOutput ")[0].rstrip(),
                                formatter_class=argparse.RawDescriptionHelpFormatter, **kwargs)
    p.add_argument("--config", default=str(DEFAULT_CONFIG),
                   help="the shared YAML (default: configs/qlora_style_transfer.yaml)")
    return p


def run_main(run, args, interrupted: str = "interrupted: every file written is whole; rerun to finish") -> int:
    """Run a stage as every process of the pipeline starts (startup.py: trackers off,
    no hub code, known-harmless warnings hidden); a UserError is one line on stderr (exit 2)."""
    setup_process()
    try:
        return run(args)
    except UserError as err:
        print(f"{err.label}: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print(interrupted, file=sys.stderr)
        return 130
    except OSError as err:   # a full disk, a folder where a file goes, a broken link, ...
        if err.errno is None or os.environ.get("STYLETUNE_DEBUG"):
            raise            # not the file system's (the hub's errors are OSErrors too)
        print(f"error: {file_system_problem(err)} (STYLETUNE_DEBUG=1 shows where)", file=sys.stderr)
        return 2


def file_system_problem(err: OSError) -> str:
    """An OSError in words with its fix: every file the stage wrote is whole (written
    atomically), so fixing the cause and rerunning finishes the job."""
    where = " -> ".join(str(f) for f in (err.filename, err.filename2) if f) or "a file"
    fix = {errno.ENOSPC: "free some disk space and rerun",
           errno.EACCES: "this user cannot write or read there: choose another folder or fix its permissions",
           errno.EROFS: "that folder is on a read-only disk or mount: choose a folder on a writable one "
                        "(stage 0's --out, or the paths in the config)",
           errno.EEXIST: "that path is a file: give a folder (a new one or an existing one)",
           errno.ENOTDIR: "part of that path is a file, not a folder: give another path",
           errno.ENOENT: "it does not exist (a broken link, or a file moved while running): fix the "
                         "path and rerun"}.get(err.errno, "fix it and rerun")
    return f"{err.strerror or err}: {where}: {fix}; every file already written is whole"
