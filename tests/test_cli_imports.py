"""The CLI starts fast: importing it and parsing any command line loads no heavy library
(torch, Lightning, MLflow, Optuna, datasets, matplotlib, scipy); those load inside commands, and
only in commands that train, track or plot: ``ls``, ``show`` and bad-input errors load none."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from repro.routers import METHODS

ROOT = Path(__file__).resolve().parent.parent

HEAVY = ("torch", "lightning", "mlflow", "optuna", "datasets", "matplotlib", "scipy",
         "torchmetrics", "pandas")


def test_cli_import_and_parse_load_no_heavy_library():
    code = (
        "import sys\n"
        "import repro.cli as c\n"
        "p = c.build_parser()\n"
        "for argv in (['run', 'switch-vs-dense', '--seeds', '0,1'], ['show', 'x'], ['ls'],\n"
        "             ['check', 'all'], ['sweep', 'x', '--arm', 'a', '--trials', '3'],\n"
        "             ['bench', '--quick'], ['report'], ['ui'], ['doctor']):\n"
        "    p.parse_args(argv)\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "", f"loaded at parse time: {out}"


# Commands that must answer without a heavy library (issue 13: <= 1.5 s): experiment definition,
# listing, the resolved config with its parameter/FLOP accounting, and bad-input errors (config
# domains, unknown names), each caught before anything heavy loads.
LIGHT_COMMANDS = {
    # the router list comes from the files (repro.routers.METHODS, torch-free), not typed here
    "ls": (["ls"], 0, "routers:    " + ", ".join(METHODS)),
    "show": (["show", "switch-vs-dense", "--scale", "cpu"], 0, "FFN FLOPs/tok"),
    "unknown-experiment": (["run", "nope"], 2, "unknown experiment 'nope'"),
    "bad-domain": (["run", "switch-vs-dense", "--scale", "cpu", "--set", "train.lr=inf"], 2,
                   "train.lr: must be > 0 and finite"),
    "unknown-router": (["run", "shazeer-balance-ablation", "--scale", "cpu", "--set",
                        "model.ffn.router.kind=swich"], 2, "did you mean 'switch'"),
    "bad-router-field": (["show", "shazeer-balance-ablation", "--scale", "cpu", "--set",
                          "model.ffn.router.top_k=0"], 2, "model.ffn.router.top_k: must be >= 1"),
}


@pytest.mark.parametrize("case", list(LIGHT_COMMANDS))
def test_light_commands_load_no_heavy_library(case, tmp_path):
    argv, rc, expect = LIGHT_COMMANDS[case]
    code = (
        "import contextlib, io, sys\n"
        "import repro.cli as c\n"
        "out, err = io.StringIO(), io.StringIO()\n"
        "with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):\n"
        f"    rc = c.main({argv!r})\n"
        f"heavy = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "print(rc, ','.join(heavy) or '-')\n"
        "print(out.getvalue() + err.getvalue())\n")
    env = {**os.environ, "REPRO_HOME": str(tmp_path), "REPRO_RUNS_DIR": str(tmp_path / "runs"),
           "REPRO_RESULTS_DIR": str(tmp_path / "results")}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, cwd=ROOT, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    status, text = res.stdout.split("\n", 1)
    got_rc, heavy = status.split()
    assert int(got_rc) == rc and expect in text, res.stdout[-2000:]
    assert heavy == "-", f"{case}: loaded {heavy}"


def test_bench_flag_errors_are_fast_and_torch_free():
    """`repro bench` checks its flags before importing torch, also via `python -m repro.cli`."""
    import subprocess
    import sys

    code = ("import sys\nfrom repro.cli import main\nrc = main(['bench', '--routers', 'topq'])\n"
            "heavy = [m for m in ('torch', 'lightning', 'mlflow', 'optuna') if m in sys.modules]\n"
            "print(rc, heavy)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "2 []", out.stdout + out.stderr
    assert "unknown router 'topq'; did you mean 'topk'?" in out.stderr
    m = subprocess.run([sys.executable, "-m", "repro.cli", "bench", "--device", "tpu"],
                       capture_output=True, text=True)
    assert m.returncode == 2
    assert m.stderr.strip() == "repro: error: --device: 'tpu' is not cpu or cuda"
