"""Where runs and results live: one project root (REPRO_HOME, or the nearest folder at or above
the current directory holding runs/ or this project's pyproject.toml), never the bare current
directory; and the test session itself never writes into the checkout."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from repro import paths
from repro.config import ConfigError

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def no_env(monkeypatch):
    for var in ("REPRO_HOME", "REPRO_RUNS_DIR", "REPRO_RESULTS_DIR"):
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


def _rootless(tmp_path) -> Path:
    d = tmp_path / "nowhere" / "deep"
    d.mkdir(parents=True)
    if paths.find_root(d) is not None:
        pytest.skip(f"a folder above {tmp_path} holds runs/ or a moe-repro pyproject.toml")
    return d


def test_the_session_store_is_outside_the_checkout():
    for d in (paths.runs_dir(), paths.results_dir(), paths.cache_dir("tokenizers"),
              Path(os.environ["REPRO_HOME"])):
        assert not d.resolve().is_relative_to(REPO), d


def test_repro_home_wins_over_the_current_directory(no_env, tmp_path):
    home = tmp_path / "home"
    no_env.setenv("REPRO_HOME", str(home))
    no_env.chdir(REPO)  # a project root of its own: REPRO_HOME must still win
    assert paths.project_root() == home
    assert paths.runs_dir() == home / "runs" and paths.results_dir() == home / "results"


def test_repro_home_that_is_a_file_is_refused(no_env, tmp_path):
    f = tmp_path / "afile"
    f.write_text("x")
    no_env.setenv("REPRO_HOME", str(f))
    with pytest.raises(ConfigError, match="REPRO_HOME: .* is a regular file"):
        paths.runs_dir()


def test_nearest_folder_with_a_runs_store_from_a_subfolder(no_env, tmp_path):
    top = _rootless(tmp_path).parent
    (top / "runs").mkdir()
    sub = top / "deep" / "a" / "b"
    sub.mkdir(parents=True)
    no_env.chdir(sub)
    assert paths.runs_dir() == top / "runs" and paths.results_dir() == top / "results"
    inner = top / "deep" / "a"
    (inner / "runs").mkdir()
    assert paths.runs_dir() == inner / "runs"  # the nearest one wins


def test_a_clone_is_found_by_its_pyproject_only_if_it_is_this_project(no_env, tmp_path):
    top = _rootless(tmp_path)
    (top / "pyproject.toml").write_text('[project]\nname = "someone-else"\n')
    no_env.chdir(top)
    with pytest.raises(paths.NoProjectRoot):
        paths.runs_dir()
    (top / "pyproject.toml").write_text(f'[project]\nname = "{paths.PROJECT_NAME}"\n')
    (top / "experiments").mkdir()
    no_env.chdir(top / "experiments")
    assert paths.project_root() == top
    assert paths.find_root(REPO / "repro" / "routers") == REPO  # this checkout, from inside


def test_no_root_is_one_line_naming_the_fixes(no_env, tmp_path):
    d = _rootless(tmp_path)
    no_env.chdir(d)
    for fn in (paths.runs_dir, paths.results_dir, paths.cache_dir):
        with pytest.raises(paths.NoProjectRoot) as e:
            fn()
        msg = str(e.value)
        assert "\n" not in msg and str(d) in msg
        assert "REPRO_HOME" in msg and "mkdir runs" in msg
    assert not (d / "runs").exists() and not (d / "results").exists()


def test_runs_and_results_overrides_still_win(no_env, tmp_path):
    d = _rootless(tmp_path)
    no_env.chdir(d)  # no root at all: the explicit folders are enough
    no_env.setenv("REPRO_RUNS_DIR", str(tmp_path / "r"))
    no_env.setenv("REPRO_RESULTS_DIR", str(tmp_path / "s"))
    no_env.setenv("REPRO_HOME", str(tmp_path / "home"))
    assert paths.runs_dir() == tmp_path / "r" and paths.results_dir() == tmp_path / "s"
    assert paths.cache_dir("x") == tmp_path / "r" / "cache" / "x"


def test_cli_outside_a_project_stops_in_one_line(tmp_path):
    d = _rootless(tmp_path)
    env = {k: v for k, v in os.environ.items()
           if k not in ("REPRO_HOME", "REPRO_RUNS_DIR", "REPRO_RESULTS_DIR")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    out = subprocess.run([sys.executable, "-m", "repro.cli", "report"], cwd=d, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode != 0
    err = out.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("repro: error: no repro project at or above")
    assert list(d.iterdir()) == []  # nothing created in the random folder
