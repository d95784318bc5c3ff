"""`repro ui` / `repro dashboard` stopped by SIGTERM (or SIGINT) stop the server they started and
every process it spawned (process-group kill): nothing is left listening on the port."""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import repro
from repro.procs import pid_alive, process_start_time


def _children(pid: int) -> list[int]:
    kids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rindex(")") + 2:].split()[1]) == pid:
                kids.append(int(d.name))
    return kids


def _descendants(pid: int) -> dict[int, float]:
    """Every process below ``pid`` -> its start time (so that a reused pid reads as gone)."""
    out, todo = {}, [pid]
    while todo:
        for k in _children(todo.pop()):
            out[k] = process_start_time(k) or time.time()
            todo.append(k)
    return out


def _alive(procs: dict[int, float]) -> list[int]:
    return [p for p, t in procs.items() if pid_alive(p, started_before=t)]


def _wait_gone(procs: dict[int, float], seconds: float) -> list[int]:
    end = time.monotonic() + seconds
    while _alive(procs) and time.monotonic() < end:
        time.sleep(0.1)
    return _alive(procs)


def _env() -> dict:
    """This checkout's ``repro`` in the child, whatever its working directory."""
    root = str(Path(repro.__file__).resolve().parents[1])
    return {**os.environ, "OMP_NUM_THREADS": "1",
            "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


# a fake server: one child that sleeps, then the server itself sleeps (optionally deaf to SIGTERM)
FAKE = textwrap.dedent("""
    import signal, subprocess, sys, time
    if sys.argv[1] == "deaf":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    print("up", flush=True)
    time.sleep(120)
""")


@pytest.mark.parametrize("sig,mode,rc", [(signal.SIGTERM, "plain", 128 + signal.SIGTERM),
                                         (signal.SIGINT, "plain", 0),
                                         (signal.SIGTERM, "deaf", 128 + signal.SIGTERM)])
def test_serve_stops_the_whole_server_group(sig, mode, rc, tmp_path):
    script = tmp_path / "fake.py"
    script.write_text(FAKE)
    parent = subprocess.Popen(
        [sys.executable, "-c", "import sys; from repro.serve import serve as _serve; "
         f"sys.exit(_serve([sys.executable, {str(script)!r}, {mode!r}]))"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    try:
        assert parent.stdout.readline().strip() == "up"
        end = time.monotonic() + 10
        while len(kids := _descendants(parent.pid)) < 2 and time.monotonic() < end:
            time.sleep(0.05)
        assert len(kids) == 2  # the server and its own child
        parent.send_signal(sig)
        assert parent.wait(timeout=15) == rc
        assert _wait_gone(kids, 3) == []
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()


@pytest.mark.slow  # mlflow ui takes 30 s to 2 min to come up on a loaded machine
@pytest.mark.skipif(importlib.util.find_spec("mlflow.server") is None
                    or importlib.util.find_spec("uvicorn") is None
                    and importlib.util.find_spec("gunicorn") is None,
                    reason="the MLflow server extra is not installed")
def test_repro_ui_sigterm_leaves_no_server(tmp_runs):
    port = _free_port()
    env = _env()
    log = open(tmp_runs / "ui.log", "w+")  # noqa: SIM115
    parent = subprocess.Popen([sys.executable, "-m", "repro.cli", "ui", "--port", str(port)],
                              env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_runs)
    try:
        end = time.monotonic() + 180
        while not _listening(port):
            if parent.poll() is not None or time.monotonic() > end:
                log.seek(0)
                pytest.fail(f"mlflow ui did not start (rc {parent.poll()}): {log.read()[-2000:]}")
            time.sleep(0.5)
        kids = _descendants(parent.pid)
        assert kids  # the server (and its workers) run below `repro ui`
        parent.send_signal(signal.SIGTERM)
        assert parent.wait(timeout=15) == 128 + signal.SIGTERM
        assert _wait_gone(kids, 5) == [], "server processes outlived `repro ui`"
        assert not _listening(port)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        for p in _alive(locals().get("kids") or {}):
            os.kill(p, signal.SIGKILL)
        log.close()


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("optuna_dashboard") is None,
                    reason="optuna-dashboard is not installed")
def test_repro_dashboard_sigterm_leaves_no_server(tmp_runs):
    port = _free_port()
    parent = subprocess.Popen([sys.executable, "-m", "repro.cli", "dashboard", "--port",
                               str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              cwd=tmp_runs, env=_env())
    try:
        end = time.monotonic() + 120
        while not _listening(port):
            assert parent.poll() is None and time.monotonic() < end, "dashboard did not start"
            time.sleep(0.5)
        kids = _descendants(parent.pid)
        parent.send_signal(signal.SIGTERM)
        assert parent.wait(timeout=15) == 128 + signal.SIGTERM
        assert _wait_gone(kids, 5) == []
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
