"""The network guard the training and preprocessing tests run under: it refuses
and records any attempt to leave the machine, in every Python process, also
behind the pipeline's own start-up file, and leaves loopback alone."""
import subprocess
import sys

from conftest import FT
from support.network_guard import attempts, guarded_env

STARTUP = FT / "training" / "startup"

REACH_OUT = """
import socket, urllib.request
for reach in (lambda: socket.create_connection(("192.0.2.1", 80), timeout=2),
              lambda: urllib.request.urlopen("http://example.com/", timeout=2)):
    try:
        reach()
    except OSError as err:
        print("refused:", err)
"""

LOOPBACK = """
import socket
server = socket.create_server(("127.0.0.1", 0))
client = socket.create_connection(server.getsockname(), timeout=2)
peer, _ = server.accept()
client.sendall(b"ok")
print(peer.recv(2).decode())
"""


def run_guarded(code, log, pythonpath=None):
    env = guarded_env(log)
    if pythonpath:  # a folder in front of the guard's, as 2_train_lora.sh puts startup/
        env["PYTHONPATH"] = f"{pythonpath}:{env['PYTHONPATH']}"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=60)


def test_connections_out_are_refused_and_recorded(tmp_path):
    log = tmp_path / "net.log"
    proc = run_guarded(REACH_OUT, log)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("refused:") == 2
    record = attempts(log)
    assert "192.0.2.1" in record and "example.com" in record


def test_loopback_stays_open(tmp_path):
    log = tmp_path / "net.log"
    proc = run_guarded(LOOPBACK, log)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr
    assert attempts(log) == ""


def test_guard_still_runs_behind_the_pipelines_startup_file(tmp_path):
    """Python runs only the first sitecustomize.py on the path; the pipeline's
    (fine-tuning/training/startup/) runs the next one after its own work."""
    log = tmp_path / "net.log"
    # setup_process() leaves its hook for the `kernels` package on sys.meta_path
    ran = "print('startup ran:', any(getattr(f, 'name', '') == 'kernels' for f in sys.meta_path))"
    proc = run_guarded("import sys\n" + REACH_OUT + ran, log, STARTUP)
    assert proc.returncode == 0, proc.stderr
    assert "192.0.2.1" in attempts(log)
    assert "startup ran: True" in proc.stdout
