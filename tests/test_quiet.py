"""A first run looks finished, not noisy: no Lightning INFO lines or third-party deprecation
warnings unless --verbose."""

import logging
import os
import subprocess
import sys

RUN = ["run", "moe-vs-dense", "--scale", "smoke", "--arm", "dense", "--seeds", "0",
       "--no-progress", "--set", "train.max_steps=4", "--set", "train.eval_every=2"]
NOISE = ("GPU available", "TPU available", "litlogger", "DeprecationWarning", "LeafSpec")


def test_run_is_quiet_by_default(tmp_runs):
    """A real process (Lightning's log handler writes to the process's own stderr)."""
    env = {k: v for k, v in os.environ.items() if k != "REPRO_VERBOSE"}
    p = subprocess.run([sys.executable, "-m", "repro.cli", *RUN], capture_output=True,
                       text=True, env=env, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "-> trained" in p.stdout
    assert not [n for n in NOISE if n in p.stdout + p.stderr], (p.stdout + p.stderr)[-2000:]


def test_verbose_keeps_lightning_info(monkeypatch):
    from repro.experiments.runner import VERBOSE_ENV, quiet_third_party

    lg = logging.getLogger("lightning.pytorch")
    old = lg.level
    try:
        lg.setLevel(logging.INFO)
        monkeypatch.setenv(VERBOSE_ENV, "1")
        quiet_third_party()
        assert lg.level == logging.INFO
        monkeypatch.delenv(VERBOSE_ENV)
        quiet_third_party()
        assert lg.level == logging.WARNING
    finally:
        lg.setLevel(old)
