#!/usr/bin/env python3
"""Check that the lock installs on the writer's machine: Linux x86_64 with an NVIDIA
GPU, where `pip install torch==2.13.0` brings the CUDA build and its own exact pins
(triton, cuda-toolkit, nvidia-*), not the CPU build this project's tests run on.

Why: a lock frozen from a CPU install says nothing about the packages only the CUDA
build needs, and may pin one of them (triton) at a version the CUDA torch refuses;
`make install` then fails on the GPU machine at its first step. pip resolves here,
for that platform, without installing anything (`pip install --dry-run`).

Reads   requirements.txt, constraints.txt (the project's root)
Asks    the package index pip uses by default, ignoring this machine's pip settings
        (its local wheels may be CPU builds). Nothing is installed.
Run:    python fine-tuning/training/lock_for_gpu.py               # exit 1 if the lock cannot install there
        python fine-tuning/training/lock_for_gpu.py --torch-pins  # torch's own CUDA pins (triton, nvidia-*)
        python fine-tuning/training/lock_for_gpu.py --gpu-only --constraints FILE
                                                                  # what that machine adds to FILE
        (`make lock-check` runs the first; `make lock` the other two, then the first)

Output: the lock installs on Linux x86_64 + CUDA for Python 3.11 (268 packages)
"""
import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from styletune.fileio import write_atomic

ROOT = Path(__file__).resolve().parents[2]
PYTHONS = ("3.11", "3.12")
# glibc 2.17 (manylinux2014) to 2.39 (Ubuntu 24.04): the wheel tags such a machine accepts
PLATFORMS = [f"manylinux_2_{minor}_x86_64" for minor in range(39, 16, -1)] + [
    "manylinux2014_x86_64", "linux_x86_64"]
# pip with no settings of this machine's (config files, PIP_* variables): its local wheels
# and indexes hold CPU builds
PLAIN_PIP = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")} | {"PIP_CONFIG_FILE": os.devnull}
# how pip names a package it found no wheel of: within a conflict (constrained), or alone
# what a passing check leaves, so an offline test can tell the lock changed since
CHECKED = ROOT / "constraints.checked"
CHECKED_HEADER = ("# `make lock-check` found that the pins of requirements.txt and constraints.txt with this sha256 "
                  "install on Linux x86_64 + CUDA (Python " + ", ".join(PYTHONS) + ")")
GPU_ONLY_HEADER = ("# Below: what only the CUDA build of torch installs (Linux x86_64), resolved by "
                   "`lock_for_gpu.py --gpu-only`")
MISSING = (re.compile(r"no matching distributions available for your environment:\s*\n\s*(\S+)()"),
           re.compile(r"No matching distribution found for ([A-Za-z0-9_.-]+)(\S*)"))


def dry_run(python: str, constraints: Path | None, wheels: Path) -> tuple[int, str, dict]:
    """pip's answer for a Linux CUDA machine with this Python: (exit code, its
    output, {name: version} it would install)."""
    report = wheels / "report.json"
    report.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed",
           "--progress-bar", "off", "--report", str(report), "--python-version", python, "--only-binary=:all:",
           "--find-links", str(wheels), "-r", str(ROOT / "requirements.txt")]
    cmd += [arg for p in PLATFORMS for arg in ("--platform", p)]
    if constraints:
        cmd += ["-c", str(constraints)]
    done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=PLAIN_PIP)
    out = done.stdout
    if done.returncode or not report.exists():
        return done.returncode or 1, out, {}
    installs = json.loads(report.read_text())["install"]
    return 0, out, {i["metadata"]["name"]: i["metadata"]["version"] for i in installs}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pinned(name: str, constraints: Path | None) -> str:
    """`name==version` from the constraints, or the bare name (pip picks)."""
    for line in constraints.read_text().splitlines() if constraints else []:
        if "==" in line and canonical(line.split("==")[0].strip()) == canonical(name):
            return line.strip()
    return name


def resolve(python: str, constraints: Path | None, wheels: Path) -> tuple[int, str, dict]:
    """dry_run, first building here the pure-Python wheels of the packages PyPI serves
    only as source (langdetect, rouge_score, ...): --platform admits wheels alone."""
    built = set()
    while True:
        code, out, found = dry_run(python, constraints, wheels)
        missing = next((m for pattern in MISSING if (m := pattern.search(out))), None)
        if not code or not missing:
            return code, out, found
        name, asked = missing.groups()
        if name in built or conflicts(name, out, constraints):
            return code, out, found
        built.add(name)
        requirement = pinned(name, constraints) if constraints else name + asked
        if subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(wheels),
                           requirement], env=PLAIN_PIP).returncode:
            return 1, f"ERROR: pip could not build a wheel of {requirement} (above): is the index reachable?", {}


def conflicts(name: str, out: str, constraints: Path | None) -> bool:
    """Whether a package asks for `name` at a version the constraints rule out (a real
    conflict), rather than `name` having no wheel at all."""
    try:
        from packaging.specifiers import SpecifierSet
    except ImportError:   # `make lock` runs this from a bare venv: pip carries its own copy
        from pip._vendor.packaging.specifiers import SpecifierSet

    pin = pinned(name, constraints).partition("==")[2]
    asked = re.findall(rf"depends on {re.escape(name)}\s*([<>=!~][^;\s]*)", out, re.IGNORECASE)
    return bool(pin) and any(pin not in SpecifierSet(spec) for spec in asked)


def why(out: str) -> str:
    """pip's error and its explanation, without the list of what it collected."""
    start = out.find("ERROR")
    return out[start if start >= 0 else 0:].strip()


def torch_pins(python: str, wheels: Path) -> list[str]:
    """The exact pins torch's CUDA build declares on Linux (triton==..., nvidia-...==...):
    `make lock` installs the CPU build under them, so the lock agrees with the GPU's."""
    try:
        from packaging.markers import Marker
        from packaging.requirements import Requirement
    except ImportError:
        from pip._vendor.packaging.markers import Marker  # noqa: F401
        from pip._vendor.packaging.requirements import Requirement
    torch = next(line for line in (ROOT / "requirements.txt").read_text().splitlines()
                 if line.startswith("torch=="))
    report = wheels / "torch.json"
    subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--no-deps",
                    "--quiet", "--report", str(report), "--python-version", python, "--only-binary=:all:",
                    *[arg for p in PLATFORMS for arg in ("--platform", p)], torch], check=True, env=PLAIN_PIP)
    linux = {"platform_system": "Linux", "sys_platform": "linux", "python_version": python, "extra": ""}
    pins = []
    for line in json.loads(report.read_text())["install"][0]["metadata"].get("requires_dist", []):
        req = Requirement(line)
        if (not req.marker or req.marker.evaluate(linux)) and str(req.specifier).startswith("=="):
            pins.append(f"{req.name}{req.specifier}")
    return pins


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--constraints", type=Path, default=ROOT / "constraints.txt")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--torch-pins", action="store_true",
                      help="print the exact pins of torch's CUDA build on Linux")
    mode.add_argument("--gpu-only", action="store_true",
                      help="print name==version of what the GPU machine installs beyond --constraints")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        if args.torch_pins:
            print("\n".join(torch_pins(PYTHONS[0], Path(tmp))))
            return 0
        for python in PYTHONS[:1] if args.gpu_only else PYTHONS:
            code, out, found = resolve(python, args.constraints, Path(tmp))
            if code:
                print(f"error: {args.constraints.name} cannot install on Linux x86_64 + CUDA for Python "
                      f"{python}; pip says:\n{why(out)}\nFix: `make lock` (it installs under torch's CUDA "
                      "pins), or pin the package pip names at the version torch asks for.", file=sys.stderr)
                return 1
            if args.gpu_only:
                have = {canonical(line.split("==")[0]) for line in args.constraints.read_text().splitlines()
                        if "==" in line and not line.startswith("#")}
                print(GPU_ONLY_HEADER)
                print("\n".join(f"{n}=={v}" for n, v in sorted(found.items(), key=lambda nv: nv[0].lower())
                                if canonical(n) not in have))
            else:
                print(f"the lock installs on Linux x86_64 + CUDA for Python {python} ({len(found)} packages)")
    if not args.gpu_only and args.constraints == ROOT / "constraints.txt":
        write_atomic(CHECKED, f"{CHECKED_HEADER}\n{lock_digest()}\n".encode())
        print(f"recorded in {CHECKED.name}: the tests check the lock has not changed since")
    return 0


def lock_digest() -> str:
    """sha256 of what requirements.txt and constraints.txt ask pip for (their comments
    and blank lines aside: rewording one changes nothing installed)."""
    lines = [line.strip() for f in ("requirements.txt", "constraints.txt")
             for line in (ROOT / f).read_text().splitlines()]
    return hashlib.sha256("\n".join(x for x in lines if x and not x.startswith("#")).encode()).hexdigest()


if __name__ == "__main__":
    sys.exit(main())
