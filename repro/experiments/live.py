"""The live display of `repro run --jobs N`: a line per running child and one for the grid.

Each child's line: arm, seed, step/total, its rate and ETA, and the step it resumed from; the
grid's line: runs done / running / queued, elapsed time and the ETA of the whole grid from the
step rates the children measured (``GridClock``, pure logic, unit-tested). The numbers come from
the progress files the children rewrite (``repro.lit.progress.ProgressFile``); the parent never
parses a child's printed output.

On a terminal the lines are redrawn in place by rich's ``Progress`` (lines printed meanwhile,
such as a run's closing line, scroll above it); into a file or pipe the same lines are printed
as a block every ``every_s`` seconds.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from repro.lit.progress import fmt_duration, read_progress, resumed_text

PLAIN_EVERY_S = 30.0  # not a terminal: one block of lines this often


@dataclass
class ChildState:
    """One (experiment, arm, seed) of the grid as the parent sees it."""

    label: str  # "dense · seed 0" (or "EXP / dense · seed 0")
    total: int  # planned optimizer steps (the arm's train.max_steps)
    group: str  # runs of one group share a step-rate estimate (the arm)
    progress: Path | None = None
    pid: int | None = None
    started: float | None = None  # parent clock when the child started
    first_seen: float | None = None  # parent clock when its first progress appeared
    ended: bool = False
    info: dict = field(default_factory=dict)  # its latest progress file

    @property
    def running(self) -> bool:
        return self.started is not None and not self.ended

    def refresh(self, now: float) -> None:
        d = read_progress(self.progress)
        if d is not None:
            self.info = d
            if self.first_seen is None:
                self.first_seen = now
            self.total = int(d.get("total") or self.total)

    @property
    def step(self) -> int:
        return int(self.info.get("step", 0))

    @property
    def rate(self) -> float | None:
        r = self.info.get("rate")
        return float(r) if r else None

    def text(self) -> str:
        """``dense · seed 0 · 187/400 steps · 11.7 steps/s · ETA 0:18 · resumed from step 120``."""
        return f"{self.label} · {self.detail()}"

    def detail(self) -> str:
        """The line after the label (rich shows the label and a bar before it)."""
        if not self.info:
            return f"starting (pid {self.pid})"
        parts = [f"{self.step}/{self.total} steps",
                 f"{self.rate:.3g} steps/s" if self.rate else "-- steps/s",
                 f"ETA {fmt_duration(self.info.get('eta'))}"]
        if self.info.get("start_step"):
            parts.append(resumed_text(int(self.info["start_step"])))
        return " · ".join(parts)


class GridClock:
    """The time the unfinished runs of a grid need over ``width`` processes.

    A running child needs ``(total - step) / rate`` at its own measured rate; a queued run needs
    its steps at the mean rate measured for its group (its arm; all runs' mean when the arm has
    none yet) plus the mean start-up time measured so far (process start to first step). The
    work is spread over ``width`` processes, and the grid cannot end before its slowest running
    child. None until some child has measured a rate."""

    def __init__(self, width: int):
        self.width = max(1, int(width))

    def eta(self, children: list[ChildState], now: float) -> float | None:
        rates = [c.rate for c in children if c.rate]
        if not rates:
            return None
        by_group: dict[str, list[float]] = {}
        for c in children:
            if c.rate:
                by_group.setdefault(c.group, []).append(c.rate)
        mean_all = sum(rates) / len(rates)
        ups = [c.first_seen - c.started for c in children
               if c.first_seen is not None and c.started is not None]
        startup = sum(ups) / len(ups) if ups else 0.0
        running, queued = [], []
        for c in children:
            if c.ended:
                continue
            g = by_group.get(c.group)
            rate = c.rate or (sum(g) / len(g) if g else mean_all)
            if c.started is None:
                queued.append(startup + c.total / rate)
            else:
                up = 0.0 if c.first_seen is not None else max(startup - (now - c.started), 0.0)
                running.append(up + max(c.total - c.step, 0) / rate)
        if not running and not queued:
            return 0.0
        spread = (sum(running) + sum(queued)) / min(self.width, len(running) + len(queued))
        return max(spread, max(running, default=0.0))


class GridDisplay:
    """The display of one `--jobs` grid; use as a context manager around the pool.

    ``start(key, pid, progress)`` / ``end(key)`` follow the pool's events, ``poll()`` rereads
    the progress files and redraws (every pool poll). ``tty`` defaults to whether ``out`` is a
    terminal."""

    def __init__(self, children: dict[tuple, ChildState], width: int, out=None,
                 tty: bool | None = None, every_s: float = PLAIN_EVERY_S,
                 clock=time.monotonic):
        self.children = children
        self.clock = GridClock(width)
        self.out = out if out is not None else sys.stdout
        self.tty = bool(getattr(self.out, "isatty", lambda: False)()) if tty is None else tty
        self.every_s = every_s
        self._now = clock
        self._t0 = clock()
        self._last_plain = clock()
        self._progress = None  # rich.progress.Progress on a terminal
        self._tasks: dict[tuple, int] = {}
        self._grid_task = None
        self.failed = 0

    # --- the lines
    def grid_text(self) -> str:
        """``grid: 3 done, 2 running, 7 queued · 4:10 elapsed · ETA 20:00``."""
        now = self._now()
        cs = list(self.children.values())
        done = sum(c.ended for c in cs)
        running = sum(c.running for c in cs)
        queued = len(cs) - done - running
        eta = self.clock.eta(cs, now)
        failed = f" ({self.failed} failed)" if self.failed else ""
        return (f"grid: {done}/{len(cs)} runs done{failed}, {running} running, {queued} queued "
                f"· {fmt_duration(now - self._t0)} elapsed · ETA {fmt_duration(eta)}")

    def lines(self) -> list[str]:
        return [f"  {c.text()}" for c in self.children.values() if c.running] + [
            f"  {self.grid_text()}"]

    # --- events
    def start(self, key: tuple, pid: int) -> None:
        c = self.children[key]
        c.pid, c.started = pid, self._now()
        if self._progress is not None:
            self._tasks[key] = self._progress.add_task(c.text(), total=c.total)

    def end(self, key: tuple, failed: bool = False) -> None:
        c = self.children[key]
        c.refresh(self._now())
        c.ended = True
        self.failed += failed
        if self._progress is not None and key in self._tasks:
            self._progress.remove_task(self._tasks.pop(key))
        self.poll(draw_plain=False)

    def poll(self, draw_plain: bool = True) -> None:
        now = self._now()
        for c in self.children.values():
            if c.running:
                c.refresh(now)
        if self._progress is not None:
            for key, task in self._tasks.items():
                c = self.children[key]
                self._progress.update(task, completed=c.step, total=c.total,
                                      description=c.text())
            self._progress.update(self._grid_task, description=self.grid_text(),
                                  completed=sum(c.ended for c in self.children.values()))
        elif draw_plain and now - self._last_plain >= self.every_s:
            self._last_plain = now
            print("\n".join(self.lines()), file=self.out, flush=True)

    # --- on a terminal: rich redraws the lines in place
    def __enter__(self):
        if self.tty:
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn

            console = Console(file=self.out, force_terminal=True)
            # the same text as the plain lines; a bar after it where it still fits
            bar = [BarColumn(bar_width=16)] if console.width >= 120 else []
            self._progress = Progress(TextColumn("  {task.description}"), *bar, console=console,
                                      refresh_per_second=4, redirect_stdout=True,
                                      redirect_stderr=True)
            self._grid_task = self._progress.add_task(self.grid_text(), total=len(self.children))
            self._progress.start()
        return self

    def __exit__(self, *exc):
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        return False
