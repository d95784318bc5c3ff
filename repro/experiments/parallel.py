"""`repro run NAME --jobs N`: train an experiment's (arm, seed) grid in N worker processes.

Each (arm, seed) runs as its own ``repro run NAME --arm A --seeds S`` child process with
``threads`` intra-op threads (default: cores // N), through the one process pool of
``repro.pool``. Nothing new is needed for safety: the store already takes one process per run
key (``runs/locks``), reuses finished runs and resumes interrupted ones, so the children behave
exactly like N users typing ``repro run`` at once. Runs already finished are skipped by the
parent before any child starts (``runner.run_experiment``).
On the 2-core box, two 1-thread runs at a time took 238 s each on average at `cpu-v1` (61 runs,
122 min wall) and take 5-11 min each at the calibrated `cpu` scale (results/cpu-rerun.md); a
single multi-thread run was not timed against that.

Each child's output goes to ``runs/logs/NAME/SCALE/ARM-sSEED.log``; it reports its outcome in
``ARM-sSEED.result.json`` beside the log (written atomically by the child, see
``runner._report_to_parent``; removed once read), never through its printed text. SIGINT /
SIGTERM are passed on: the children checkpoint, mark their runs KILLED and the same command
resumes them; a child stopped by a signal stops the whole pool (``repro.pool``).

The parent prints the in-process path's run lines (``repro.lit.progress.RunCounter``: run i/N,
arm, seed, the command's totals and the time left over N processes) when the pool starts a
child and when it reaps one, from the pool's events and the child's result file; between them
the live display (``repro.experiments.live``) shows each running child's step, rate, ETA and
resumed-from step, and the whole grid's ETA, from the progress file each child rewrites
(``ARM-sSEED.progress.json``). On Ctrl-C it prints one line per stopped run (the step reached,
the checkpoint written) and the CLI the command that resumes them.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from repro.experiments.base import Experiment
from repro.experiments.live import ChildState, GridDisplay
from repro.experiments.outcome import RunOutcome
from repro.lit.progress import STATE_DONE, STATE_STOPPED


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


def progress_path(exp: Experiment, arm: str, seed: int) -> Path:
    """Where the child rewrites its progress (``repro.lit.progress.ProgressFile``)."""
    return log_path(exp, arm, seed).with_suffix(".progress.json")


def run_parallel(grid: list[tuple[Experiment, str, int]], overrides: list[str], uri: str,
                 jobs: int, threads: int | None = None, force: bool = False, echo=print):
    """Run every (experiment, arm, seed) of ``grid`` in at most ``jobs`` child processes.

    Returns ``(outcomes, failed)``: the RunOutcome each child wrote to its result file, and one
    message per failed run (a failure the child reported, or a non-zero exit with its log)."""
    from repro.lit.progress import RunCounter, resumed_text
    from repro.pool import INTERRUPT_EXITS, Job, run_pool

    def log_path_of(key: tuple) -> Path:
        return next(log_path(e, a, s) for e, a, s in grid if (e.name, a, s) == key)

    threads = threads or max(1, (os.cpu_count() or 1) // jobs)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
               PYTHONUNBUFFERED="1")
    outcomes, failed = [], []
    names = sorted({e.name for e, _, _ in grid})
    echo(f"[repro] {', '.join(names) if len(names) < 4 else f'{len(names)} experiments'}: "
         f"{len(grid)} runs in {jobs} processes x {threads} thread(s); logs in "
         f"{log_path(grid[0][0], 'ARM', 0).parent.parent.parent if grid else 'runs/logs'}")

    # the run lines of the in-process path (run i/N, totals, time left), from the pool's events
    counter = RunCounter(grid, width=jobs)
    children = {(e.name, arm, seed): ChildState(
        f"{e.name} / {arm} · seed {seed}" if len(names) > 1 else f"{arm} · seed {seed}",
        e.run_config(arm, overrides).train.max_steps, f"{e.name}/{arm}",
        progress_path(e, arm, seed)) for e, arm, seed in grid}
    display = GridDisplay(children, jobs)
    stopped: set[tuple] = set()  # children that exited from a stop signal

    def started(job: Job, pid: int) -> None:
        exp, arm, seed = job.data
        display.start((exp.name, arm, seed), pid)
        echo(counter.start(exp, arm, seed, f"started (pid {pid})"))

    def done(d) -> None:
        exp, arm, seed = d.job.data
        key = (exp.name, arm, seed)
        if d.returncode in INTERRUPT_EXITS:  # its stop line comes with the others' (below)
            stopped.add(key)
            return
        res = d.result or {}
        mine = [RunOutcome(**o) for o in res.get("outcomes", [])]
        display.end(key, failed=not (d.returncode == 0 and mine))
        progress_path(exp, arm, seed).unlink(missing_ok=True)  # read: the log is what stays
        resumed = children[key].info.get("start_step")
        if d.returncode == 0 and mine:
            for o in mine:
                o.seconds = d.seconds  # the child's wall time, start-up included
                outcomes.append(o)
                echo(counter.finished(exp, arm, seed, o.status, f"val loss "
                                      f"{o.final_val_loss:.4f}, {o.seconds:.0f}s (run "
                                      f"{o.run_id[:8]}"
                                      f"{'; ' + resumed_text(resumed) if resumed else ''})"))
            return
        why = "; ".join(res.get("failed", [])) or _last_line(d.job.log)
        failed.append(f"{exp.name} arm={arm} seed={seed}: exit {d.returncode}: {why[:200]} "
                      f"(log {d.job.log})")
        echo(counter.finished(exp, arm, seed, "FAILED", f"exit {d.returncode}; log {d.job.log}"))

    try:
        with display:
            run_pool([Job(child_command(exp, arm, seed, overrides, uri, force),
                          log_path(exp, arm, seed), env=env,
                          result=log_path(exp, arm, seed).with_suffix(".result.json"),
                          progress=progress_path(exp, arm, seed), data=(exp, arm, seed))
                      for exp, arm, seed in grid],
                     jobs, on_start=started, on_done=done, on_poll=display.poll)
    except (KeyboardInterrupt, SystemExit):
        # the pool has stopped every running child (each checkpoints and exits): say where
        # each one stopped, from its progress file; the CLI then prints the command to resume
        for key, c in children.items():
            if c.started is not None and (not c.ended or key in stopped):
                echo(stop_line(c, log_path_of(key)))
                c.progress.unlink(missing_ok=True)
        raise
    return outcomes, failed


def stop_line(c: ChildState, log: Path) -> str:
    """``[repro] stopped dense · seed 0 at step 187/400; checkpoint PATH written (log LOG)``."""
    c.refresh(0.0)
    d = c.info
    if d.get("state") == STATE_STOPPED:
        ck = d.get("checkpoint")
        where = (f"checkpoint {ck} written" if ck else "no checkpoint written (it starts over)")
        return f"[repro] stopped {c.label} at step {d['step']}/{c.total}; {where} (log {log})"
    if d.get("state") == STATE_DONE:
        return (f"[repro] stopped {c.label} after its last step ({d['step']}/{c.total}) while it "
                f"saved its results; the rerun finishes it from its last checkpoint (log {log})")
    if d:
        return (f"[repro] stopped {c.label} near step {d.get('step', 0)}/{c.total}; it resumes "
                f"from its last checkpoint (log {log})")
    return f"[repro] stopped {c.label} before its first step; it starts over (log {log})"


def _last_line(log: Path) -> str:
    """The log's last non-empty line, to show with a child that died without a result."""
    text = log.read_text(errors="replace") if log.exists() else ""
    return ([ln for ln in text.splitlines() if ln.strip()] or ["(no output)"])[-1]
