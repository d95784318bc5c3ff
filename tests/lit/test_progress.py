"""Progress as a person sees it (repro.lit.progress): the bar's total and ETA (rate over this
process's steps only, never the resumed ones), one line per run with the command's totals, and
no message glued onto a bar line. Pure logic with fake clocks and a fake trainer: no training."""

from __future__ import annotations

import io
import warnings
from types import SimpleNamespace

import pytest

from repro.lit.progress import RunCounter, StepBar, StepClock, bar_text, fmt_duration


class FakeClock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def test_fmt_duration():
    assert fmt_duration(7) == "0:07" and fmt_duration(725) == "12:05"
    assert fmt_duration(3723) == "1:02:03"
    assert fmt_duration(None) == fmt_duration(float("nan")) == fmt_duration(-1) == "?"


def test_clock_rate_and_eta_fresh_run():
    t = FakeClock()
    c = StepClock(400, 0, clock=t)
    assert c.rate is None and c.eta is None  # nothing trained yet: unknown, not 0 or inf
    t.t += 5.0  # start-up (data, model build) is not counted
    c.mark(1)
    assert c.rate is None
    t.t += 2.0
    c.mark(21)
    assert c.rate == pytest.approx(10.0)  # 20 steps in 2 s
    assert c.eta == pytest.approx((400 - 21) / 10.0)
    t.t += 1.0
    c.mark(400)
    assert c.eta == 0.0


def test_clock_rate_ignores_resumed_steps():
    """Resumed at step 300 of 400: the 300 steps trained by the interrupted process count for
    the bar's position, never for the rate (Lightning's bar reported 300+ steps in seconds)."""
    t = FakeClock()
    c = StepClock(400, start_step=300, clock=t)
    assert c.step == 300 and c.trained_here == 0
    t.t += 3.0
    c.mark(301)
    t.t += 4.0
    c.mark(311)
    assert c.trained_here == 11
    assert c.rate == pytest.approx(10 / 4.0)
    assert c.eta == pytest.approx(89 / 2.5)
    text = bar_text(c, loss=3.21)
    assert "311/400 steps" in text and "2.5 steps/s" in text and "resumed from step 300" in text
    assert f"ETA {fmt_duration(89 / 2.5)}" in text and "loss 3.21" in text


def _trainer(max_steps=100, step=0):
    return SimpleNamespace(max_steps=max_steps, global_step=step, is_global_zero=True,
                           callback_metrics={})


def _steps(bar, tr, upto):
    while tr.global_step < upto:
        tr.global_step += 1
        bar.on_train_batch_end(tr, None, None, None, tr.global_step)


def test_bar_into_a_file_writes_a_line_every_10_percent():
    out = io.StringIO()
    bar, tr = StepBar(stream=out, tty=False), _trainer(100, 40)  # resumed at 40
    bar.on_train_start(tr, None)
    _steps(bar, tr, 100)
    bar.on_train_end(tr, None)
    lines = out.getvalue().splitlines()
    assert [ln.split("]")[1].split()[0] for ln in lines] == \
        [f"{p}/100" for p in range(50, 101, 10)]
    assert "\r" not in out.getvalue() and out.getvalue().endswith("\n")
    assert all("/100 steps" in ln and "ETA" in ln for ln in lines)


def test_bar_on_a_terminal_redraws_one_line_and_ends_it():
    out = io.StringIO()
    bar, tr = StepBar(stream=out, tty=True, refresh_s=0.0), _trainer(20)
    bar.on_train_start(tr, None)
    _steps(bar, tr, 20)
    assert out.getvalue().count("\r") == 20 and "\n" not in out.getvalue()
    bar.on_train_end(tr, None)
    assert out.getvalue().endswith("\n") and out.getvalue().count("\n") == 1
    assert "20/20 steps" in out.getvalue().rsplit("\r", 1)[1]


def test_no_message_is_glued_onto_the_bar():
    """A warning during training, and an exception, start on a line of their own."""
    out = io.StringIO()
    bar, tr = StepBar(stream=out, tty=True, refresh_s=0.0), _trainer(10)
    seen = []
    old = warnings.showwarning
    warnings.showwarning = lambda *a, **k: (seen.append(out.getvalue()), out.write("W\n"))
    try:
        bar.on_train_start(tr, None)
        _steps(bar, tr, 3)
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.showwarning("boom", UserWarning, "x.py", 1)
        assert seen[0].endswith("\n")  # the bar line was ended before the warning printed
        _steps(bar, tr, 5)
        bar.on_exception(tr, None, RuntimeError("x"))
        assert out.getvalue().endswith("\n")
        assert warnings.showwarning is not None and bar._showwarning is None  # restored
    finally:
        warnings.showwarning = old


def test_bar_is_silent_off_rank_zero_and_when_disabled():
    out = io.StringIO()
    bar, tr = StepBar(stream=out, tty=False), _trainer(10)
    tr.is_global_zero = False
    bar.on_train_start(tr, None)
    _steps(bar, tr, 10)
    bar.on_train_end(tr, None)
    bar2, tr2 = StepBar(stream=out, tty=False), _trainer(10)
    bar2.disable()
    bar2.on_train_start(tr2, None)
    _steps(bar2, tr2, 10)
    assert out.getvalue() == ""


def test_lightning_takes_the_bar_as_its_progress_bar():
    import lightning as L

    from repro.lit.progress import StepBar

    trainer = L.Trainer(max_steps=5, callbacks=[StepBar()], logger=False,
                        enable_checkpointing=False, enable_model_summary=False)
    assert isinstance(trainer.progress_bar_callback, StepBar)


def _exp(name, scale="cpu"):
    return SimpleNamespace(name=name, scale=scale)


def test_run_lines_and_eta_of_one_experiment():
    t = FakeClock()
    e = _exp("switch-vs-dense")
    grid = [(e, arm, s) for arm in ("dense", "switch-e4") for s in (0, 1)]
    c = RunCounter(grid, clock=t)
    first = c.start(e, "dense", 0)
    assert first == "[repro] run 1/4 · dense · seed 0  (switch-vs-dense, cpu)"
    t.t += 60
    c.done("trained")
    second = c.start(e, "dense", 1)
    assert second.startswith("[repro] run 2/4 · dense · seed 1")
    assert "1 trained, 0 reused, 0 failed; 1:00 elapsed, ~3:00 left for 3 run(s)" in second
    c.done("reused")  # reused runs take no time and do not change the per-run estimate
    t.t += 1
    third = c.start(e, "switch-e4", 0)
    assert "1 trained, 1 reused" in third and "~2:00 left for 2 run(s)" in third


def test_suite_lines_name_the_experiment_and_give_a_suite_total():
    t = FakeClock()
    a, b = _exp("moe-vs-dense"), _exp("switch-vs-dense")
    c = RunCounter([(a, "dense", 0), (b, "switch-e4", 0), (b, "switch-e8", 0)], clock=t)
    assert c.start(a, "dense", 0) == "[repro] run 1/3 · moe-vs-dense / dense · seed 0"
    t.t += 30
    c.done("failed")
    line = c.start(b, "switch-e4", 0)
    assert line.startswith("[repro] run 2/3 · switch-vs-dense / switch-e4 · seed 0  [suite: ")
    assert "0 trained, 0 reused, 1 failed" in line and "2 run(s) to go" in line  # no estimate


def test_overlapping_runs_end_by_key_and_share_the_time_left_over_the_processes():
    """`--jobs 2`: runs overlap; each ends by its key, with its own wall time, and the time
    left counts what the running ones still need, spread over 2 processes."""
    t = FakeClock()
    e = _exp("switch-vs-dense")
    grid = [(e, "dense", s) for s in range(5)]
    c = RunCounter(grid, clock=t, width=2)
    c.start(e, "dense", 0)
    t.t += 10
    c.start(e, "dense", 1)
    t.t += 50
    line = c.finished(e, "dense", 0, "trained", "val loss 3.0")  # 60 s
    assert line.startswith("[repro] run 1/5 · dense · seed 0 -> trained: val loss 3.0  [so far: "
                           "1 trained, 0 reused, 0 failed; 1:00 elapsed, ~")
    # run 1 has run 50 s of its expected 60; 3 queued x 60 s; over 2 processes: 95 s
    assert "~1:35 left for 4 run(s)" in line
    c.start(e, "dense", 2)
    t.t += 20
    line = c.finished(e, "dense", 1, "trained")  # started 70 s ago, not 20
    assert c.trained == [60.0, 70.0] and line.endswith("left for 3 run(s)]")
    assert c.finished(e, "dense", 2, "failed").startswith("[repro] run 3/5 · dense · seed 2 -> "
                                                         "failed  [so far: 2 trained, 0 reused, "
                                                         "1 failed")


def test_a_real_run_shows_run_line_and_total_steps_bar(tmp_runs):
    """One real (tiny) run with progress on, stdout and stderr into one pipe as a person's
    terminal would interleave them: the run line, a bar with the total and an ETA, Lightning's
    own bar gone, and no message sharing a line with the bar."""
    import os
    import subprocess
    import sys

    run = ["run", "moe-vs-dense", "--scale", "smoke", "--arm", "dense", "--seeds", "0",
           "--set", "train.max_steps=20", "--set", "train.eval_every=10"]
    p = subprocess.run([sys.executable, "-m", "repro.cli", *run], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=600,
                       env={**os.environ, "PYTHONUNBUFFERED": "1"})
    out = p.stdout
    assert p.returncode == 0, out[-2000:]
    lines = out.splitlines()
    assert "[repro] run 1/1 · dense · seed 0  (moe-vs-dense, smoke)" in lines
    bars = [ln for ln in lines if "/20 steps" in ln]
    assert [b.split("]")[1].split()[0] for b in bars] == [f"{s}/20" for s in range(2, 21, 2)]
    assert all("ETA" in b and "[repro]" not in b and "->" not in b for b in bars)
    assert "Training" not in out and "it/s" not in out  # Lightning's bar is replaced
    assert any(ln.startswith("  -> trained") for ln in lines)


def test_progress_file_tells_the_parent_step_rate_resume_and_stop(tmp_path):
    """A --jobs child's progress file (the parent's display reads it): written at the start,
    at most every ``every_s`` after it, and at the stop with the step and checkpoint."""
    import signal

    from repro.lit.checkpoint import RunInterrupted
    from repro.lit.progress import ProgressFile, read_progress

    clock, path = FakeClock(), tmp_path / "d-s0.progress.json"
    pf, tr = ProgressFile(path, every_s=1.0, clock=clock), _trainer(400, 120)  # resumed at 120
    pf.on_train_start(tr, None)
    assert read_progress(path)["state"] == "training"
    assert read_progress(path)["start_step"] == 120 and read_progress(path)["step"] == 120
    for _ in range(20):  # 20 steps in 2 s: 10 steps/s
        clock.t += 0.1
        tr.global_step += 1
        pf.on_train_batch_end(tr, None, None, None, 0)
    d = read_progress(path)
    assert d["step"] in (129, 130, 139, 140) and d["total"] == 400  # throttled to every 1 s
    assert d["rate"] == pytest.approx(10.0) and d["eta"] == pytest.approx((400 - d["step"]) / 10)
    pf.on_exception(tr, None, RunInterrupted(signal.SIGINT, 140, tmp_path / "last.ckpt"))
    d = read_progress(path)
    assert (d["state"], d["step"], d["checkpoint"]) == ("stopped", 140,
                                                         str(tmp_path / "last.ckpt"))
    assert read_progress(tmp_path / "missing.json") is None
