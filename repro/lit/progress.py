"""Progress as a person sees it: one line per run, a step bar with total and ETA, a suite total.

* ``RunCounter`` prints one line before each run of a command: ``run 3/12 · ARM · seed S``
  (``EXPERIMENT / ARM`` when the command spans experiments, ``repro run all``), with how many
  runs are done and, once one has trained, an estimate of the time the remaining runs need.
* ``StepBar`` replaces Lightning's bar (``Training: 187/? [..., 11.7it/s]``: no total, no ETA,
  and a resumed run's rate counted the steps of the interrupted process). It shows
  ``step/max_steps``, the rate over the steps trained *in this process* only, and the ETA from
  that rate (``StepClock``, pure logic, unit-tested). On a terminal it redraws one line; into a
  file or pipe it writes a line every 10%. It always ends its line before anything else prints
  (a Python warning during training clears the bar line first), so no message is glued onto it.
* With ``repro run --jobs N`` the parent prints the same run lines from the process pool's
  start and finish events (``RunCounter.start`` / ``finished``), with the suite's totals and
  the time left over N processes.
* ``ProgressFile`` is how a ``--jobs`` child tells the parent where it is: the pool names a file
  per child (``REPRO_PROGRESS_FILE``, beside its log); the child rewrites it atomically (step,
  total, resumed-from step, its rate and ETA, and at the end ``done`` or ``stopped`` with the
  step and checkpoint). The parent's live display (``repro.experiments.live``) reads these
  files; it never parses a child's printed output.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
import warnings
from pathlib import Path

from lightning.pytorch.callbacks import Callback
from lightning.pytorch.callbacks.progress.progress_bar import ProgressBar

from repro.pool import PROGRESS_ENV  # noqa: F401 - re-exported: the pool names the file
from repro.tracking.names import M_TRAIN_LOSS


def fmt_duration(seconds: float | None) -> str:
    """``0:07``, ``12:05``, ``1:02:03``; ``?`` when unknown."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "?"
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class StepClock:
    """Rate and ETA of one training run from the steps trained in this process.

    ``start_step`` is where this process began (the checkpoint's step after a resume): those
    steps were trained by an earlier process and count toward the bar's position, never toward
    the rate. The clock starts at the first completed step of this process (``mark``), so
    start-up (data, model build, checkpoint load) does not dilute the rate.
    """

    def __init__(self, total: int, start_step: int = 0, clock=time.monotonic):
        self.total = int(total)
        self.start_step = int(start_step)
        self.step = int(start_step)
        self._clock = clock
        self._t0: float | None = None
        self._step0 = int(start_step)

    def mark(self, step: int) -> None:
        """``step`` optimizer steps are done (the trainer's global step)."""
        now = self._clock()
        if self._t0 is None:  # first step of this process: the clock starts after it
            self._t0, self._step0 = now, int(step)
        self.step = int(step)
        self._now = now

    @property
    def trained_here(self) -> int:
        return self.step - self.start_step

    @property
    def rate(self) -> float | None:
        """Steps per second over this process's steps (None before two marks)."""
        if self._t0 is None:
            return None
        dt, ds = self._now - self._t0, self.step - self._step0
        return ds / dt if dt > 0 and ds > 0 else None

    @property
    def eta(self) -> float | None:
        """Seconds until ``total`` at the current rate; 0 when done, None when unknown."""
        if self.step >= self.total:
            return 0.0
        r = self.rate
        return (self.total - self.step) / r if r else None


def resumed_text(step: int) -> str:
    """What every screen says about a resumed run (the step bar, the ``--jobs`` display)."""
    return f"resumed from step {step}"


def bar_text(clock: StepClock, width: int = 24, loss: float | None = None) -> str:
    """``  [#########.......]  187/400 steps · 11.7 steps/s · ETA 0:18 · loss 3.214``."""
    total = max(clock.total, 1)
    frac = min(max(clock.step / total, 0.0), 1.0)
    filled = int(frac * width)
    bar = "#" * filled + "." * (width - filled)
    n = len(str(clock.total))
    parts = [f"  [{bar}] {clock.step:>{n}d}/{clock.total} steps"]
    r = clock.rate
    parts.append(f"{r:.3g} steps/s" if r else "-- steps/s")
    parts.append(f"ETA {fmt_duration(clock.eta)}")
    if clock.start_step:
        parts.append(resumed_text(clock.start_step))
    if loss is not None and math.isfinite(loss):
        parts.append(f"loss {loss:.4g}")
    return " · ".join(parts)


class StepBar(ProgressBar):
    """Lightning progress bar with ``max_steps`` as its total and an ETA from ``StepClock``."""

    def __init__(self, stream=None, refresh_s: float = 0.2, tty: bool | None = None):
        super().__init__()
        self.stream = stream
        self.refresh_s = refresh_s
        self._tty = tty
        self._enabled = True
        self.clock: StepClock | None = None
        self._line_open = False  # a bar line is on screen without its newline
        self._last_draw = 0.0
        self._next_pct = 10
        self._showwarning = None

    # --- Lightning's ProgressBar interface
    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    @property
    def out(self):
        return self.stream if self.stream is not None else sys.stderr

    @property
    def tty(self) -> bool:
        if self._tty is not None:
            return self._tty
        return bool(getattr(self.out, "isatty", lambda: False)())

    def _active(self, trainer) -> bool:
        return self._enabled and trainer.is_global_zero

    def on_train_start(self, trainer, pl_module):
        if not self._active(trainer):
            return
        self.clock = StepClock(trainer.max_steps, trainer.global_step)
        self._next_pct = (100 * trainer.global_step // max(trainer.max_steps, 1)) // 10 * 10 + 10
        bar = self
        self._showwarning = warnings.showwarning

        def showwarning(*a, **k):  # a warning during training starts on its own line
            bar.end_line()
            bar._showwarning(*a, **k)

        warnings.showwarning = showwarning

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self.clock is None or not self._active(trainer):
            return
        self.clock.mark(trainer.global_step)
        now = time.monotonic()
        if self.tty:
            if now - self._last_draw >= self.refresh_s or self.clock.step >= self.clock.total:
                self._last_draw = now
                self._draw(trainer, "\r")
        else:
            pct = 100 * self.clock.step // max(self.clock.total, 1)
            if pct >= self._next_pct:
                self._next_pct = pct // 10 * 10 + 10
                self._draw(trainer, "")
                self.end_line()

    def _draw(self, trainer, prefix: str) -> None:
        loss = trainer.callback_metrics.get(M_TRAIN_LOSS)
        text = bar_text(self.clock, loss=float(loss) if loss is not None else None)
        # pad over a longer previous line; \x1b[K would leave garbage on dumb terminals
        self.out.write(f"{prefix}{text:<100s}" if prefix else text)
        self.out.flush()
        self._line_open = True

    def end_line(self) -> None:
        """Finish the bar's line, so that the next message starts on a line of its own."""
        if self._line_open:
            self.out.write("\n")
            self.out.flush()
            self._line_open = False

    def _finish(self) -> None:
        self.end_line()
        if self._showwarning is not None:
            warnings.showwarning = self._showwarning
            self._showwarning = None

    def on_train_end(self, trainer, pl_module):
        self._finish()

    def on_exception(self, trainer, pl_module, exception):
        self._finish()

    def teardown(self, trainer, pl_module, stage):
        self._finish()


class RunCounter:
    """The line before each run: ``run 3/12 · ARM · seed S`` (``EXP / ARM`` across experiments)
    and, after the first, the command's totals: runs done and the estimated time left (the mean
    wall time of the runs *trained* so far, times the runs to go; reused runs take ~0 s).

    Runs may overlap (``repro run --jobs N``: ``width`` runs at a time): each is then started
    and ended by its ``(exp, arm, seed)`` key (``start`` / ``done(status, key)``), ``finished``
    gives its closing line, and the estimate counts what the running ones still need and
    spreads the work over ``width`` processes."""

    def __init__(self, grid: list, clock=time.monotonic, width: int = 1):
        self.grid = list(grid)
        self.n = len(self.grid)
        self.multi = len({getattr(e, "name", e) for e, _, _ in self.grid}) > 1
        self.width = max(1, int(width))
        self.i = 0
        self.trained: list[float] = []
        self.reused = 0
        self.failed = 0
        self._clock = clock
        self._t0 = clock()
        self._open: dict[tuple, tuple[int, float]] = {}  # running: key -> (run number, start)
        self._current: tuple | None = None  # the latest started run (one at a time: the run)

    @staticmethod
    def key(exp, arm: str, seed: int) -> tuple:
        return (getattr(exp, "name", exp), arm, seed)

    def _name(self, exp, arm: str) -> str:
        return f"{exp.name} / {arm}" if self.multi else arm

    def start(self, exp, arm: str, seed: int, note: str = "") -> str:
        """The run's opening line (``note``, e.g. ``started (pid N)``, before the totals)."""
        self.i += 1
        k = self.key(exp, arm, seed)
        self._open[k] = (self.i, self._clock())
        self._current = k
        line = f"[repro] run {self.i}/{self.n} · {self._name(exp, arm)} · seed {seed}"
        if not self.multi:
            line += f"  ({exp.name}, {exp.scale})"
        if note:
            line += f" {note}"
        if self.i > 1:
            line += f"  [{self.totals()}]"
        return line

    def done(self, status: str, key: tuple | None = None) -> None:
        """A run ended (``key``, default the latest started): ``trained``, ``reused`` or
        ``failed``."""
        _, t0 = self._open.pop(key if key is not None else self._current, (0, self._t0))
        secs = self._clock() - t0
        if status == "trained":
            self.trained.append(secs)
        elif status == "reused":
            self.reused += 1
        else:
            self.failed += 1

    def finished(self, exp, arm: str, seed: int, status: str, what: str = "") -> str:
        """``done`` for one of overlapping runs, and its closing line: ``run 3/12 · ARM · seed S
        -> trained: WHAT  [so far: ...]``."""
        k = self.key(exp, arm, seed)
        number = self._open.get(k, (0, 0.0))[0]
        self.done(status, k)
        return (f"[repro] run {number}/{self.n} · {self._name(exp, arm)} · seed {seed} -> "
                f"{status}{': ' + what if what else ''}  [{self.totals()}]")

    def eta(self) -> float | None:
        """Seconds the unfinished runs need, at the mean wall time of the runs trained so far
        (a running one: that mean less its time so far), over ``width`` processes; None before
        the first trained run."""
        if not self.trained:
            return None
        mean = sum(self.trained) / len(self.trained)
        now = self._clock()
        running = [max(mean - (now - t0), 0.0) for _, t0 in self._open.values()]
        queued = self.n - len(self.trained) - self.reused - self.failed - len(running)
        work = max(queued, 0) * mean + sum(running)
        return work / max(1, min(self.width, max(queued, 0) + len(running)))

    def totals(self) -> str:
        """``suite: 2 trained, 1 reused, 0 failed; 4:10 elapsed, ~8:20 left for 9 runs``."""
        done = len(self.trained) + self.reused + self.failed
        left = self.n - done
        eta = self.eta()
        head = "suite" if self.multi else "so far"
        return (f"{head}: {len(self.trained)} trained, {self.reused} reused, {self.failed} "
                f"failed; {fmt_duration(self._clock() - self._t0)} elapsed, "
                + (f"~{fmt_duration(eta)} left for {left} run(s)" if eta is not None
                   else f"{left} run(s) to go"))


# ------------------------------------------------------------------ progress file of a child
STATE_TRAINING, STATE_DONE, STATE_STOPPED, STATE_FAILED = "training", "done", "stopped", "failed"


def write_progress(path: Path, payload: dict) -> None:
    """Replace ``path`` with ``payload`` as JSON, atomically (a reader never sees half a file)."""
    from repro.paths import atomic_write_text

    atomic_write_text(path, json.dumps(payload) + "\n")


def read_progress(path: Path | None) -> dict | None:
    """A child's latest progress (None when it has written none yet, or the file is unreadable)."""
    if path is None:
        return None
    try:
        from repro.paths import read_owned_bytes

        d = json.loads(read_owned_bytes(Path(path)))  # a link or FIFO planted there: no read
    except (OSError, ValueError):
        return None
    return d if isinstance(d, dict) else None


class ProgressFile(Callback):
    """In a ``--jobs`` child: the training progress as a JSON file the parent reads.

    Written at the start of training, at most every ``every_s`` seconds after it, and at the
    end: ``state`` (training / done / stopped / failed), ``step``, ``total``, ``start_step``
    (the checkpoint's step after a resume, else 0), ``rate`` (steps/s over this process's steps,
    ``StepClock``), ``eta`` (s), ``pid``; a stopped run adds ``checkpoint`` (the file written,
    or null). Rank 0 only."""

    def __init__(self, path: Path, every_s: float = 1.0, clock=time.monotonic):
        self.path = Path(path)
        self.every_s = every_s
        self.clock_fn = clock
        self.clock: StepClock | None = None
        self._last = -math.inf

    def _write(self, state: str, **extra) -> None:
        c = self.clock
        write_progress(self.path, {
            "state": state, "pid": os.getpid(), "step": c.step, "total": c.total,
            "start_step": c.start_step, "rate": c.rate, "eta": c.eta, "time": time.time(),
            **extra})
        self._last = self.clock_fn()

    def on_train_start(self, trainer, pl_module):
        if trainer.is_global_zero:
            self.clock = StepClock(trainer.max_steps, trainer.global_step, clock=self.clock_fn)
            self._write(STATE_TRAINING)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self.clock is None:
            return
        self.clock.mark(trainer.global_step)
        if self.clock_fn() - self._last >= self.every_s:
            self._write(STATE_TRAINING)

    def on_train_end(self, trainer, pl_module):
        if self.clock is not None:
            self.clock.mark(trainer.global_step)
            self._write(STATE_DONE)

    def on_exception(self, trainer, pl_module, exception):
        if self.clock is None:
            return
        from repro.lit.checkpoint import RunInterrupted

        if isinstance(exception, RunInterrupted):  # a stop: the step and checkpoint it saved
            self.clock.step = exception.step
            ck = exception.checkpoint
            self._write(STATE_STOPPED, checkpoint=str(ck) if ck is not None else None)
        else:
            self._write(STATE_FAILED, error=f"{type(exception).__name__}: {exception}"[:300])
