"""The lock (constraints.txt) must install on the writer's Linux + CUDA machine, not only
on the CPU machines the tests run on: `make lock-check` asks pip, for that platform, and
records what it checked; these tests need no network."""
from conftest import FT, load_script

LOCK = load_script(FT / "training" / "lock_for_gpu.py")

# pip 26's words, as `make lock-check` met them on 2026-12-06
TRITON_CONFLICT = """ERROR: Cannot install -r requirements.txt (line 5) because these package versions have conflicting dependencies.

The conflict is caused by:
    torch 2.13.0 depends on triton==3.7.1; platform_system == "Linux" and python_version < "3.15"
    The user requested (constraint) triton==3.9.0

Additionally, some packages in these conflicts have no matching distributions available for your environment:
    triton
"""
SOURCE_ONLY = """The conflict is caused by:
    axolotl 0.19.0 depends on langdetect==1.0.9
    The user requested (constraint) langdetect==1.0.9

Additionally, some packages in these conflicts have no matching distributions available for your environment:
    langdetect
"""


def test_the_lock_was_checked_for_a_gpu_machine_since_it_last_changed():
    recorded = LOCK.CHECKED.read_text().splitlines() if LOCK.CHECKED.exists() else []
    assert recorded[-1:] == [LOCK.lock_digest()], (
        "requirements.txt or constraints.txt changed since `make lock-check` last passed: run it "
        "(it asks pip whether the lock installs on Linux + CUDA, where torch's CUDA build pins "
        "triton and nvidia-* itself) and commit constraints.checked")


def test_a_version_torch_refuses_is_a_conflict_and_a_package_without_wheels_is_not(tmp_path):
    pins = tmp_path / "constraints.txt"
    pins.write_text("triton==3.9.0\nlangdetect==1.0.9\n")
    assert LOCK.conflicts("triton", TRITON_CONFLICT, pins)
    assert not LOCK.conflicts("langdetect", SOURCE_ONLY, pins)
    assert [m.group(1) for p in LOCK.MISSING if (m := p.search(SOURCE_ONLY))] == ["langdetect"]
    alone = "ERROR: No matching distribution found for langdetect==1.0.9 (from axolotl)"
    assert [m.groups() for p in LOCK.MISSING if (m := p.search(alone))] == [("langdetect", "==1.0.9")]
    assert LOCK.pinned("LangDetect", pins) == "langdetect==1.0.9"
    assert "The conflict is caused by" in LOCK.why("Collecting torch\n" + TRITON_CONFLICT)
