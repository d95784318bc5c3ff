"""`repro run NAME --jobs N`: train an experiment's (arm, seed) grid in N worker processes.

Each (arm, seed) runs as its own ``repro run NAME --arm A --seeds S`` child process with
``threads`` intra-op threads (default: cores // N). Nothing new is needed for safety: the store
already takes one process per run key (``runs/locks``), reuses finished runs and resumes
interrupted ones, so the children behave exactly like N users typing ``repro run`` at once.
On the 2-core box, two 1-thread cpu-scale runs at a time took 238 s each on average (61 runs,
122 min wall); a single multi-thread run was not timed against that.

Each child's output goes to ``runs/logs/NAME/SCALE/ARM-sSEED.log``. SIGINT / SIGTERM are passed on:
the children checkpoint, mark their runs KILLED and the same command resumes them.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from repro.experiments.base import Experiment

_OUTCOME = re.compile(r"-> (trained|reused): val loss (\S+), ([\d,]+|nan) tok/s, (\d+)s "
                      r"\(run (\w+)\)")


def child_command(exp: Experiment, arm: str, seed: int, overrides: list[str], uri: str,
                  force: bool) -> list[str]:
    cmd = [sys.executable, "-c", "import sys; from repro.cli import main; "
           "sys.exit(main(sys.argv[1:]))", "run", exp.name, "--scale", exp.scale, "--arm", arm,
           "--seeds", str(seed), "--no-progress", "--tracking-uri", uri]
    if force:
        cmd.append("--force")
    if overrides:
        cmd += ["--set", *overrides]
    return cmd


def log_path(exp: Experiment, arm: str, seed: int) -> Path:
    from repro.paths import runs_dir

    return runs_dir() / "logs" / exp.name / exp.scale / f"{arm}-s{seed}.log"


def run_parallel(grid: list[tuple[Experiment, str, int]], overrides: list[str], uri: str,
                 jobs: int, threads: int | None = None, force: bool = False, echo=print):
    """Run every (experiment, arm, seed) of ``grid`` in at most ``jobs`` child processes.

    Returns ``(outcomes, failed)``: a RunOutcome per successful child (parsed from its last
    outcome line) and one message per failed child (non-zero exit, with its log path)."""
    from repro.experiments.runner import RunOutcome

    threads = threads or max(1, (os.cpu_count() or 1) // jobs)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
               PYTHONUNBUFFERED="1")
    pending = list(grid)
    running: dict[subprocess.Popen, tuple[Experiment, str, int, Path, float]] = {}
    outcomes, failed = [], []
    names = sorted({e.name for e, _, _ in grid})
    echo(f"[repro] {', '.join(names) if len(names) < 4 else f'{len(names)} experiments'}: "
         f"{len(grid)} runs in {jobs} processes x {threads} thread(s); logs in "
         f"{log_path(grid[0][0], 'ARM', 0).parent.parent.parent if grid else 'runs/logs'}")

    def reap(p: subprocess.Popen) -> None:
        exp, arm, seed, log, t0 = running.pop(p)
        text = log.read_text(errors="replace") if log.exists() else ""
        found = list(_OUTCOME.finditer(text))
        m = found[-1] if found else None
        if p.returncode == 0 and m is not None:
            o = RunOutcome(arm, seed, m.group(5), m.group(1), float(m.group(2)),
                           float(m.group(3).replace(",", "")), time.time() - t0)
            outcomes.append(o)
            echo(f"[repro] {exp.name} {arm} seed {seed} -> {o.status}: val loss "
                 f"{o.final_val_loss:.4f}, {o.seconds:.0f}s (run {o.run_id})")
        else:
            last = ([ln for ln in text.splitlines() if ln.strip()] or ["(no output)"])[-1]
            failed.append(f"{exp.name} arm={arm} seed={seed}: exit {p.returncode}: {last[:200]} "
                          f"(log {log})")
            echo(f"[repro] {exp.name} {arm} seed {seed} -> FAILED (exit {p.returncode}); log {log}")

    def on_term(signum, frame):
        raise SystemExit(128 + signum)

    old_term = signal.signal(signal.SIGTERM, on_term)
    try:
        while pending or running:
            while pending and len(running) < jobs:
                exp, arm, seed = pending.pop(0)
                log = log_path(exp, arm, seed)
                log.parent.mkdir(parents=True, exist_ok=True)
                with open(log, "w") as fh:
                    p = subprocess.Popen(child_command(exp, arm, seed, overrides, uri, force),
                                         env=env, stdout=fh, stderr=subprocess.STDOUT)
                running[p] = (exp, arm, seed, log, time.time())
                echo(f"[repro] {exp.name} arm={arm} seed={seed} scale={exp.scale} started "
                     f"(pid {p.pid})")
            time.sleep(0.5)
            for p in [p for p in running if p.poll() is not None]:
                reap(p)
    except BaseException:
        # Ctrl-C / SIGTERM / error: stop the children the way a user would (they checkpoint and
        # mark their runs KILLED), then let the caller report the interruption
        for p in running:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in running:
            try:
                p.wait(timeout=120)
            except subprocess.TimeoutExpired:
                p.kill()
        raise
    finally:
        signal.signal(signal.SIGTERM, old_term)
    return outcomes, failed

