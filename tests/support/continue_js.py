"""Continue's own npm packages, run by node (`make test-npm` installs them, pinned in
tests/npm/package.json): what Continue itself makes of stage 5's files."""
import json
import subprocess
import sys
from pathlib import Path

TEST_NPM = Path(sys.prefix) / "test-npm" / "node_modules"
TOOLS = Path(__file__).parent.parent / "npm" / "continue_tools.cjs"


def run_continue_js(*args, stdin=None) -> dict:
    """Run tests/npm/continue_tools.cjs with Continue's packages on NODE_PATH."""
    assert TEST_NPM.is_dir(), f"{TEST_NPM} is missing: run `make test-npm`"
    out = subprocess.run(["node", str(TOOLS), *args], input=stdin, capture_output=True, text=True,
                         env={"NODE_PATH": str(TEST_NPM), "PATH": "/usr/bin:/bin:/usr/local/bin"})
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)
