"""The package's layering is a contract that the tests run (import-linter, configured under
``[tool.importlinter]`` in pyproject.toml): the CLI on top, the service wing (experiments, sweeps,
tracking, bench, lit) in the middle, the model wing (models, layers, routers) at the bottom and
never importing the service wing, and no import circle between siblings (the experiments loader,
``repro.experiments.base`` -> ``experiments`` -> ``repro.experiments.base``, crosses packages and
is the one circle left by design). A new circle or an upward import fails here."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINT = shutil.which("lint-imports", path=os.path.dirname(sys.executable)) or shutil.which(
    "lint-imports")


def _lint(root: Path) -> subprocess.CompletedProcess:
    assert LINT, "lint-imports is missing: pip install -e '.[dev]' (import-linter)"
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([LINT, str(root / "pyproject.toml"), "--no-cache"],
                          cwd=root, env=env, capture_output=True, text=True, timeout=120)


def test_the_import_contracts_hold():
    p = _lint(ROOT)
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-2000:]
    assert "Contracts: 4 kept, 0 broken." in p.stdout


@pytest.fixture
def copy_of_the_package(tmp_path):
    """The package's source (Python files only) and its contracts, in a folder of its own."""
    for pkg in ("repro", "experiments"):
        shutil.copytree(ROOT / pkg, tmp_path / pkg,
                        ignore=lambda d, names: [n for n in names if not n.endswith(".py")
                                                 and not (Path(d) / n).is_dir()
                                                 or n == "__pycache__"])
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    return tmp_path


def _append(path: Path, line: str) -> None:
    path.write_text(path.read_text() + f"\n\ndef _injected():\n    {line}\n")


def test_an_upward_import_from_the_model_wing_is_reported(copy_of_the_package):
    root = copy_of_the_package
    assert _lint(root).returncode == 0  # the copy itself is clean
    _append(root / "repro" / "routers" / "switch.py", "from repro.tracking import store  # noqa")
    p = _lint(root)
    assert p.returncode != 0
    assert "repro.routers is not allowed to import repro.tracking" in p.stdout
    assert "repro.routers.switch -> repro.tracking.store" in p.stdout


def test_an_import_circle_is_reported(copy_of_the_package):
    root = copy_of_the_package
    # runner -> parallel exists; parallel -> runner closes a circle inside repro.experiments
    _append(root / "repro" / "experiments" / "parallel.py",
            "from repro.experiments import runner  # noqa")
    p = _lint(root)
    assert p.returncode != 0
    assert "No cycles are allowed in repro.experiments." in p.stdout
