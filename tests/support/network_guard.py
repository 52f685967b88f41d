"""Runs a subprocess with the network guard (tests/support/netguard/sitecustomize.py) in
every Python process it starts, and reads back what the guard refused."""
import os
from pathlib import Path

GUARD_DIR = Path(__file__).resolve().parent / "netguard"
LOG_ENV = "STYLETUNE_NETGUARD_LOG"


def guarded_env(log: Path, env=None) -> dict:
    """`env` (default: this process's) with the guard on PYTHONPATH, recording to `log`."""
    env = dict(os.environ if env is None else env)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (env.get("PYTHONPATH"), str(GUARD_DIR)) if p)
    env[LOG_ENV] = str(log)
    log.unlink(missing_ok=True)
    return env


def attempts(log: Path) -> str:
    """Every connection the guard refused (with the stack that tried), or ''."""
    return log.read_text(encoding="utf-8") if log.is_file() else ""
