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


# ------------------------------------------------ stale temp files and folders swapped whole
def test_stale_temps_of_killed_writers_are_cleaned_live_ones_never(tmp_path, monkeypatch):
    """A kill -9 during ``atomic_write_bytes`` leaves ``.NAME.XXXXXXXX.tmp``: the next write into
    that folder removes it once it is older than STALE_TEMP_S; a younger one, or an old one
    whose writer is alive (it holds the temp's flock), is kept."""
    import fcntl
    import time

    monkeypatch.setattr(paths, "_swept", set())
    old = time.time() - paths.STALE_TEMP_S - 60
    dead, young, held, other = (tmp_path / n for n in (
        ".final.pt.k3x_9abc.tmp", ".claims.md.zz81ab0c.tmp", ".last.pt.q1w2e3r4.tmp",
        ".notes.tmp"))
    for p in (dead, young, held, other):
        p.write_bytes(b"half")
    for p in (dead, held, other):
        os.utime(p, (old, old))
    writer = subprocess.Popen([sys.executable, "-c", "import fcntl, sys, time; f = open(sys.argv[1]"
                               ", 'rb'); fcntl.flock(f, fcntl.LOCK_EX); print('held', flush=True);"
                               " time.sleep(60)", str(held)], stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "held"
        paths.atomic_write_bytes(tmp_path / "last.pt", b"new")
        assert not dead.exists() and young.exists() and held.exists() and other.exists()
        assert (tmp_path / "last.pt").read_bytes() == b"new"
        # the sweep is once per folder and process; the next process (here: a reset) cleans the
        # held one after its writer died
        writer.kill()
        writer.wait()
        paths._swept.clear()
        paths.atomic_write_bytes(tmp_path / "last.pt", b"newer")
        assert not held.exists() and young.exists()
    finally:
        writer.kill()
        writer.wait()
    # an atomic write's own temp holds the lock while it is written
    seen = []
    real = os.fdopen

    def spy(fd, *a, **k):
        f = real(fd, *a, **k)
        probe = os.open(f"/proc/self/fd/{fd}", os.O_RDONLY)
        try:
            fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
            seen.append("free")
        except BlockingIOError:
            seen.append("held")
        finally:
            os.close(probe)
        return f

    monkeypatch.setattr(os, "fdopen", spy)
    paths.atomic_write_bytes(tmp_path / "x.bin", b"1")
    assert seen == ["held"]


def _tree(d: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir())}


def _beside(target: Path) -> list[str]:
    return sorted(p.name for p in target.parent.iterdir() if p != target)


def test_staged_dir_swaps_whole_keeps_foreign_files_and_names_the_target_on_errors(tmp_path):
    import errno

    target = tmp_path / "res" / "smoke"
    target.mkdir(parents=True)
    for name, data in {"claims.md": b"old md", "old-only.png": b"stale", "sweep-a.json": b"{}",
                       ".claims.md.abcd1234.tmp": b"x"}.items():
        (target / name).write_bytes(data)
    before = _tree(target)
    owned = lambda n: n.endswith((".md", ".png"))  # noqa: E731
    with pytest.raises(OSError) as e, paths.staged_dir(target, owned) as stage:
        paths.atomic_write_bytes(stage / "claims.md", b"new md")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(stage / "plot.png"))
    assert e.value.filename == str(target / "plot.png")  # the user's file, not the staging one
    assert _tree(target) == before and _beside(target) == []
    with paths.staged_dir(target, owned) as stage:
        paths.atomic_write_bytes(stage / "claims.md", b"new md")
    # new outputs only (old-only.png was the writer's: gone), foreign files kept, no temp
    assert _tree(target) == {"claims.md": b"new md", "sweep-a.json": b"{}"}
    assert _beside(target) == []


_KILLER = """
import os, shutil, signal, sys
from pathlib import Path
from repro import paths
target, point = Path(sys.argv[1]), sys.argv[2]
die = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)
if point.startswith("fallback"):
    paths._exchange = lambda a, b: False
renames = []
real_rename = os.rename
def rename(a, b):
    renames.append(a)
    if point == "fallback-between" and len(renames) == 2:
        die()
    real_rename(a, b)
os.rename = rename
with paths.staged_dir(target) as stage:
    (stage / "a.txt").write_text("new a")
    if point == "writing":
        die()
    (stage / "b.txt").write_text("new b")
    if point in ("after-swap", "fallback-after"):
        shutil.rmtree = die
"""


@pytest.mark.parametrize("point,result", [("writing", "old"), ("after-swap", "new"),
                                          ("fallback-between", "old"),
                                          ("fallback-after", "new")])
def test_staged_dir_survives_kill_9_at_any_point(tmp_path, point, result):
    """kill -9 while staging, right after the swap, and between / after the fallback's two
    renames: the target is the old complete folder or the new one, never a mix, and the next
    ``staged_dir`` of the target (here ``clean_swap_leftovers``, which it calls first) removes
    what was left or puts the old folder back."""
    target = tmp_path / "smoke"
    target.mkdir()
    (target / "a.txt").write_text("old a")
    (target / "b.txt").write_text("old b")
    old = _tree(target)
    rc = subprocess.run([sys.executable, "-c", _KILLER, str(target), point],
                        cwd=REPO).returncode
    assert rc == -9
    assert _beside(target)  # something was left behind
    paths.clean_swap_leftovers(target)
    assert _beside(target) == []
    assert _tree(target) == (old if result == "old" else {"a.txt": b"new a", "b.txt": b"new b"})


def test_swap_leftovers_of_a_live_process_are_kept(tmp_path):
    target = tmp_path / "smoke"
    target.mkdir()
    mine = tmp_path / f"smoke.staging-{os.getpid()}-abc"
    mine.mkdir()
    assert paths.clean_swap_leftovers(target) == [] and mine.exists()
