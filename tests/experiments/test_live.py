"""`repro run --jobs N` as a person sees it: the live display, Ctrl-C and the resume.

The display's numbers come from the progress files the children write
(``repro.lit.progress.ProgressFile``); the end-to-end test drives the real command under a
pseudo-terminal, presses Ctrl-C on it (the terminal sends SIGINT to the whole foreground group,
parent and children, as a real one does) and reruns the printed resume command.
"""

from __future__ import annotations

import fcntl
import io
import json
import os
import pty
import re
import select
import shlex
import struct
import sys
import termios
import time
from pathlib import Path

import pytest

from repro.experiments.live import ChildState, GridClock, GridDisplay
from repro.experiments.parallel import stop_line


def _child(tmp: Path, name: str, total: int = 100, info: dict | None = None) -> ChildState:
    """A child of the grid; ``info``: the progress file it has written (none: not started)."""
    c = ChildState(f"{name} · seed 0", total, name, tmp / f"{name}.progress.json")
    if info:
        c.progress.write_text(json.dumps({"total": total, **info}))
    return c


def test_grid_eta_from_measured_rates(tmp_path):
    """Running children at their own rate; queued runs at their arm's rate plus the measured
    start-up; spread over the processes, never before the slowest running child ends."""
    a = _child(tmp_path, "a", 100, {"state": "training", "step": 50, "rate": 10.0})
    a.started, a.first_seen = 0.0, 4.0
    a.refresh(4.0)
    b = _child(tmp_path, "b", total=100)  # queued, same group as nothing measured: mean rate
    clock = GridClock(width=2)
    # a: 50 steps at 10/s = 5 s; b: 4 s start-up + 100 / 10 = 14 s; (5 + 14) / 2 = 9.5
    assert clock.eta([a, b], now=10.0) == pytest.approx(9.5)
    assert GridClock(width=1).eta([a, b], now=10.0) == pytest.approx(19.0)
    assert GridClock(width=4).eta([a], now=10.0) == pytest.approx(5.0)
    assert clock.eta([b], now=0.0) is None  # no rate measured yet: unknown, not a guess


def test_plain_lines_when_not_a_terminal(tmp_path):
    """Into a file: a block of lines every ``every_s`` seconds, one per running child with its
    step, rate, ETA and resumed-from step, and the grid's line with its ETA."""
    now = [0.0]
    a = _child(tmp_path, "dense", 400, {"state": "training", "step": 187, "start_step": 120,
                                        "rate": 11.7, "eta": 18.0})
    q = _child(tmp_path, "moe", total=400)
    out = io.StringIO()
    disp = GridDisplay({"a": a, "q": q}, width=1, out=out, every_s=30, clock=lambda: now[0])
    assert not disp.tty
    with disp:
        disp.start("a", pid=123)
        disp.poll()
        assert out.getvalue() == ""  # not yet: every 30 s
        now[0] = 31.0
        disp.poll()
    text = out.getvalue()
    assert ("dense · seed 0 · 187/400 steps · 11.7 steps/s · ETA 0:18 · resumed from step 120"
            in text)
    # queued moe: 400 steps at dense's 11.7/s (its own arm has no rate yet), one process
    assert "grid: 0/2 runs done, 1 running, 1 queued · 0:31 elapsed · ETA 0:52" in text


def test_stop_line_names_step_and_checkpoint(tmp_path):
    c = _child(tmp_path, "dense", 400, {"state": "stopped", "step": 187, "start_step": 0,
                                        "checkpoint": "runs/checkpoints/k/last.ckpt"})
    assert stop_line(c, Path("x.log")) == ("[repro] stopped dense · seed 0 at step 187/400; "
                                           "checkpoint runs/checkpoints/k/last.ckpt written "
                                           "(log x.log)")
    fresh = _child(tmp_path, "moe")
    assert "before its first step" in stop_line(fresh, Path("y.log"))


def _pty_run(argv: list[str], env: dict, until=None, timeout: float = 240.0):
    """Run ``repro ARGV`` on a pseudo-terminal; once ``until(screen_so_far)`` is true, press
    Ctrl-C. Returns (exit code, screen text without escape sequences, Ctrl-C pressed)."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: its own session, with the pty as its controlling terminal
        # a wide terminal, so that rich does not wrap the lines the test reads
        fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 250, 0, 0))
        os.environ.update(env)
        os.execv(sys.executable, [sys.executable, "-c", "import sys; from repro.cli import main;"
                                  " sys.exit(main(sys.argv[1:]))", *argv])
    raw, pressed, end = b"", False, time.monotonic() + timeout
    while time.monotonic() < end:
        r, _, _ = select.select([fd], [], [], 0.2)
        if r:
            try:
                data = os.read(fd, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            raw += data
        if until is not None and not pressed and until(_plain(raw)):
            os.write(fd, b"\x03")  # Ctrl-C: SIGINT to the terminal's foreground group
            pressed = True
    else:
        os.kill(pid, 9)
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), _plain(raw), pressed


def _plain(raw: bytes) -> str:
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", raw.decode(errors="replace")).replace("\r", "\n")


@pytest.mark.slow  # two rounds of two child processes: 70-150 s on the loaded 2-core machine
def test_jobs_live_display_ctrl_c_and_resume(tmp_path):
    """On a terminal, `repro run NAME --scale smoke --jobs 2` shows a line per child (step/total,
    rate, ETA) and the grid's ETA; Ctrl-C prints one line per stopped run (step reached,
    checkpoint) and the command to resume; that command resumes both runs ("resumed from step
    N") and appends to their logs."""
    (tmp_path / "runs").mkdir()
    env = {"REPRO_HOME": str(tmp_path), "REPRO_RUNS_DIR": str(tmp_path / "runs"),
           "REPRO_RESULTS_DIR": str(tmp_path / "results"),
           "COLUMNS": "250", "LINES": "50"}  # rich reads these first (pytest sets COLUMNS=80)
    argv = ["run", "switch-vs-dense", "--scale", "smoke", "--arm", "dense", "--seeds", "0,1",
            "--jobs", "2", "--threads", "1", "--set", "train.max_steps=400",
            "train.eval_every=100"]
    step_line = r"dense · seed {} · (\d+)/400 steps · [\d.]+ steps/s · ETA \d+:\d\d"

    def both_training(screen: str) -> bool:
        return all(int(m) >= 20 for s in (0, 1) for m in re.findall(step_line.format(s), screen)
                   [-1:]) and all(re.search(step_line.format(s), screen) for s in (0, 1))

    rc, screen, pressed = _pty_run(argv, env, until=both_training)
    assert pressed, screen[-2000:]
    assert rc == 130, screen[-2000:]
    assert re.search(r"grid: 0/2 runs done, 2 running, 0 queued · \d+:\d\d elapsed · ETA \d+:\d\d",
                     screen), screen[-2000:]
    stops = {int(s): int(n) for s, n in re.findall(
        r"\[repro\] stopped dense · seed (\d) at step (\d+)/400; checkpoint \S+last\.ckpt "
        r"written", screen)}
    assert set(stops) == {0, 1} and all(n >= 20 for n in stops.values()), screen[-2000:]
    resume = re.search(r"to resume: (repro .*)", screen).group(1).strip()
    assert shlex.split(resume)[1:] == argv

    rc, screen, _ = _pty_run(shlex.split(resume)[1:], env)
    assert rc == 0, screen[-2000:]
    for seed, step in stops.items():
        assert re.search(rf"dense · seed {seed} -> trained: .*resumed from step {step}\)",
                         screen), screen[-2000:]
        log = (tmp_path / "runs" / "logs" / "switch-vs-dense" / "smoke" / f"dense-s{seed}.log")
        assert log.read_text().count(": started =====") == 2  # appended, not overwritten
