"""One pool of child processes for `repro run --jobs N` and `repro sweep --workers N`.

Each job is a command line with its own log file (stdout and stderr; appended to, so a rerun
keeps the interrupted attempt's lines above a dated header) and, optionally, a JSON result file
the child writes atomically when it is done (:func:`write_result`) and a progress file it
rewrites while it trains (``repro.lit.progress.ProgressFile``); the parent reads those files,
never the child's printed text. The pool keeps at most ``width`` children running.

Stopping: Ctrl-C or SIGTERM in the parent (SIGTERM is turned into ``SystemExit`` while the pool
runs, main thread only) sends SIGTERM to every running child, the way a user would stop them
(training children checkpoint and mark their runs KILLED), waits up to ``stop_timeout`` seconds,
kills what is left, and re-raises.

Two ways a stop used to be missed, both closed here:

* A child that *exits from an interruption* (status 130 / 143 / 129, or killed by SIGINT /
  SIGTERM / SIGHUP) means someone stopped it: a Ctrl-C that reached the whole process group, or
  a signal sent to the children. The pool then starts nothing more, stops the other children
  and raises :class:`ChildInterrupted` (a ``KeyboardInterrupt``: the CLI exits 130). Before, the
  parent counted the child as one failed run and started the next ones.
* A parent started in the background by a non-interactive shell (``nohup repro run ... &`` in a
  script) inherits SIGINT *ignored*, while the training children install their own handler: a
  ``kill -INT`` to the parent did nothing. While the pool runs, SIGINT raises
  ``KeyboardInterrupt`` in the parent whatever it inherited (main thread only).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from repro.paths import atomic_write_text, open_owned, read_owned_bytes

RESULT_ENV = "REPRO_RESULT_FILE"  # where a child writes its JSON result (set by the pool)
PROGRESS_ENV = "REPRO_PROGRESS_FILE"  # where it writes its progress (repro.lit.progress)

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
# the exit statuses of a child stopped by one of them: 128 + N by a handler (the CLI's 130 on
# Ctrl-C, 128 + N for an interrupted training run), -N when the signal killed it
INTERRUPT_EXITS = frozenset([128 + s for s in _STOP_SIGNALS] + [-s for s in _STOP_SIGNALS])


class ChildInterrupted(KeyboardInterrupt):
    """A child of the pool exited from SIGINT / SIGTERM / SIGHUP: the pool stopped as if the
    parent itself had been interrupted."""


@dataclass
class Job:
    cmd: list[str]
    log: Path
    env: dict | None = None
    result: Path | None = None  # the child's JSON result file (passed as REPRO_RESULT_FILE)
    progress: Path | None = None  # the child's progress file (passed as REPRO_PROGRESS_FILE)
    data: object = None  # the caller's, handed back in Done


@dataclass
class Done:
    job: Job
    pid: int
    returncode: int
    seconds: float
    result: dict | None = field(default=None)  # the child's result file (read, then removed)


def write_result(payload: dict) -> bool:
    """In a child: write ``payload`` as the JSON result the pool asked for (atomically); False
    when this process was not started with a result file."""
    path = os.environ.get(RESULT_ENV)
    if not path:
        return False
    atomic_write_text(Path(path), json.dumps(payload) + "\n")
    return True


def _take_result(path: Path | None) -> dict | None:
    """The child's result, read and removed (None when it wrote none)."""
    if path is None:
        return None
    try:
        return json.loads(read_owned_bytes(path))
    except (OSError, ValueError):  # NotOwnedError too: a link or FIFO is no result
        return None
    finally:
        path.unlink(missing_ok=True)


def run_pool(jobs: Iterable[Job], width: int, *, on_start: Callable[[Job, int], None] | None = None,
             on_done: Callable[[Done], None] | None = None,
             on_poll: Callable[[], None] | None = None, poll_s: float = 0.5,
             stop_timeout: float = 120.0) -> list[Done]:
    """Run every job in at most ``width`` child processes; return their ``Done`` records in
    completion order (``on_start(job, pid)`` and ``on_done(done)`` are called as they happen,
    ``on_poll()`` every ``poll_s`` seconds, e.g. to redraw a display)."""
    pending = list(jobs)
    running: dict[subprocess.Popen, tuple[Job, float, object]] = {}
    finished: list[Done] = []

    def start(job: Job) -> None:
        job.log.parent.mkdir(parents=True, exist_ok=True)
        env = dict(job.env if job.env is not None else os.environ)
        for var, path in ((RESULT_ENV, job.result), (PROGRESS_ENV, job.progress)):
            env.pop(var, None)  # never a parent's: each child writes only its own
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.unlink(missing_ok=True)  # a stale file must not pass for this child's
                env[var] = str(path)
        # appended: a resumed run's log keeps the interrupted attempt above it
        # never through a link or into a FIFO: the log is the store's own file
        fh = os.fdopen(open_owned(job.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644), "a")
        fh.write(f"===== {time.strftime('%Y-%m-%d %H:%M:%S')}: started =====\n")
        fh.flush()
        p = subprocess.Popen(job.cmd, env=env, stdout=fh, stderr=subprocess.STDOUT)
        running[p] = (job, time.time(), fh)
        if on_start is not None:
            on_start(job, p.pid)

    def reap(p: subprocess.Popen) -> Done:
        job, t0, fh = running.pop(p)
        fh.close()
        d = Done(job, p.pid, p.returncode, time.time() - t0, _take_result(job.result))
        finished.append(d)
        if on_done is not None:
            on_done(d)
        return d

    def on_term(signum, frame):
        raise SystemExit(128 + signum)

    main = threading.current_thread() is threading.main_thread()
    old_term = signal.signal(signal.SIGTERM, on_term) if main else None
    # the terminal closed: stop the children cleanly (as SIGTERM), unless under nohup
    old_hup = signal.getsignal(signal.SIGHUP) if main else None
    if main and old_hup != signal.SIG_IGN:
        signal.signal(signal.SIGHUP, on_term)
    # a background parent may have inherited SIGINT ignored (module doc): take it back
    old_int = signal.signal(signal.SIGINT, signal.default_int_handler) if main else None
    try:
        while pending or running:
            while pending and len(running) < width:
                start(pending.pop(0))
            time.sleep(poll_s)
            if on_poll is not None:
                on_poll()
            ended = [reap(p) for p in [p for p in running if p.poll() is not None]]
            stopped = [d for d in ended if d.returncode in INTERRUPT_EXITS]
            if stopped:  # every child that ended this round is reaped (and reported) first
                d = stopped[0]
                raise ChildInterrupted(f"a child (pid {d.pid}, log {d.job.log}) exited "
                                       f"{d.returncode}, stopped by a signal; stopping the others "
                                       "and starting no more")
    except BaseException:
        stop_all(list(running), stop_timeout)
        for _, _, fh in running.values():
            with contextlib.suppress(OSError):
                fh.close()
        raise
    finally:
        if main:
            signal.signal(signal.SIGTERM, old_term)
            signal.signal(signal.SIGINT, old_int)
            signal.signal(signal.SIGHUP, old_hup)
    return finished


def stop_all(procs: list[subprocess.Popen], timeout: float) -> None:
    """SIGTERM every live process, wait up to ``timeout`` seconds in all, SIGKILL the rest."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.time() + timeout
    for p in procs:
        try:
            p.wait(timeout=max(0.0, deadline - time.time()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
