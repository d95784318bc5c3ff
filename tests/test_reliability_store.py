"""Reliability, round three (issue 29): one test (or a few) per class of mishandled case.

1. concurrent start-up of a fresh sweep storage      5. damaged inputs of the reporting side
2. files in the store the store does not own         6. data the user did not mean to publish
3. a run reopened without a checkpoint               7. signals and settings
4. a copied or moved store                           8. messages that point the right way

Real processes (``os.fork``), real signals, symlinks, FIFOs and device files; nothing under test
is mocked. Smoke scale: a few training steps at most.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import time
from pathlib import Path

import pytest

from repro.cli import main
from tests._forkcli import fork_cli, seed_store
from tests._store import point_at

EXP, ARM = "shazeer-balance-ablation", "imp0.1-load0.1"
RUN = ["run", EXP, "--scale", "smoke", "--arm", ARM, "--seeds", "0", "--no-progress", "--set",
       "train.max_steps=12", "--set", "train.eval_every=6", "--set", "train.log_every=1"]


def _use(path: Path, monkeypatch) -> str:
    seed_store(path / "runs")
    return point_at(path, monkeypatch)


def _train_runs(uri):
    from repro.tracking import store

    return [r for r in store.search_runs(uri, None) if r.data.tags.get(store.T_KIND) == "train"]


def _key(argv_set: list[str] | None = None) -> str:
    """The run key of RUN's (arm, seed 0)."""
    from repro.experiments.base import get_experiment
    from repro.experiments.resolve import prepare_data, resolve_run

    overrides = [a for a in (argv_set or RUN)[RUN.index("--set"):] if a != "--set"]
    exp = get_experiment(EXP, "smoke")
    dm = prepare_data(exp.run_config(ARM, overrides), 0)
    return resolve_run(exp, ARM, 0, overrides, dm).key


def _last_error(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln.startswith("repro:")]
    assert lines and "Traceback" not in err, err[-3000:]
    return lines[-1]


# ---------------------------------------------------------------- 1. concurrent sweep start-up
def test_fresh_sqlite_sweep_storage_opened_by_eight_processes_at_once(tmp_path):
    """Eight processes open one fresh optuna.db in the same instant: every one succeeds (on
    main, two to five of them died with "UNIQUE constraint failed: alembic_version" or "table
    studies already exists")."""
    from repro.sweeps.study import open_storage

    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    go = time.time() + 1.0
    kids = []
    for _ in range(8):
        pid = os.fork()
        if pid == 0:  # child: spin to the common start, open, report by exit code
            rc = 3
            try:
                while time.time() < go:
                    pass
                open_storage(url)
                rc = 0
            finally:
                os._exit(rc)
        kids.append(pid)
    rcs = [os.waitstatus_to_exitcode(os.waitpid(p, 0)[1]) for p in kids]
    assert rcs == [0] * 8
    assert len(open_storage(url).get_all_studies()) == 0  # one sound, empty storage


# ---------------------------------------------------------------- 2. files the store does not own
def test_lock_file_symlink_is_never_written_through(tmp_path, monkeypatch, capsys):
    """A symlink at runs/locks/<key>.lock pointing at a user's file: `repro run` refuses with
    one line and the file keeps its bytes (on main it was overwritten with "pid ... on ...")."""
    _use(tmp_path, monkeypatch)
    victim = tmp_path / "precious.txt"
    victim.write_text("the user's data\n")
    lock = tmp_path / "runs" / "locks" / f"{_key()}.lock"
    lock.parent.mkdir(parents=True)
    lock.symlink_to(victim)
    capsys.readouterr()
    assert main(RUN) == 2
    err = capsys.readouterr().err
    assert "symbolic link" in _last_error(err) and str(lock) in err
    assert victim.read_text() == "the user's data\n"
    assert lock.is_symlink()


@pytest.mark.parametrize("kind", ["fifo", "link-to-dev-zero", "link-to-file"])
def test_store_writers_refuse_links_fifos_and_devices(kind, tmp_path, monkeypatch):
    """Every writer of the store's own files (lock, pool log, bench CSV) refuses a FIFO (no
    hang), a device and a link; a checkpoint read refuses them too (no endless /dev/zero)."""
    from repro.bench.run import write_csv
    from repro.lit.checkpoint import CheckpointError, load_checkpoint_file
    from repro.paths import NotOwnedError, atomic_write_text
    from repro.pool import Job, run_pool
    from repro.procs import file_lock

    victim = tmp_path / "victim.txt"
    victim.write_text("keep\n")

    def plant(p: Path) -> None:
        p.parent.mkdir(parents=True, exist_ok=True)
        if kind == "fifo":
            os.mkfifo(p)
        elif kind == "link-to-dev-zero":
            p.symlink_to("/dev/zero")
        else:
            p.symlink_to(victim)

    lock, log, csv, ckpt = (tmp_path / n for n in ("a.lock", "w.log", "b.csv", "last.ckpt"))
    for p in (lock, log, csv, ckpt):
        plant(p)
    t0 = time.time()
    with pytest.raises(NotOwnedError), file_lock(lock):
        pass
    with pytest.raises(NotOwnedError):
        run_pool([Job(["true"], log)], 1)
    with pytest.raises(NotOwnedError):
        write_csv([], csv)
    with pytest.raises(CheckpointError, match="not a file repro wrote"):
        load_checkpoint_file(ckpt)
    assert time.time() - t0 < 10  # nothing blocked on a FIFO or read /dev/zero forever
    assert victim.read_text() == "keep\n"
    # atomic writers replace what is there (the link itself), never write through it
    out = tmp_path / "result.json"
    out.symlink_to(victim)
    atomic_write_text(out, "{}\n")
    assert victim.read_text() == "keep\n" and not out.is_symlink() and out.read_text() == "{}\n"


def test_mlflow_db_that_is_a_fifo_is_refused_in_one_line(tmp_path, monkeypatch, capsys):
    point_at(tmp_path, monkeypatch)
    (tmp_path / "runs").mkdir(exist_ok=True)
    os.mkfifo(tmp_path / "runs" / "mlflow.db")
    assert main(["doctor"]) == 2
    assert "FIFO" in _last_error(capsys.readouterr().err)


# ---------------------------------------------------------------- 3. reopened without checkpoint
def test_killed_before_first_checkpoint_logs_every_metric_step_once(tmp_path, monkeypatch):
    """kill -9 at step 3 (the first checkpoint is at step 6), then the same command: a fresh run
    trains from step 0 and every (metric, step) is in MLflow once; the old run is marked as
    superseded and deleted (on main: the same run reopened, steps 1-3 logged twice)."""
    from repro.tracking import store

    uri = _use(tmp_path, monkeypatch)
    rc, _, err = fork_cli(RUN, env={"REPRO_FAULT": "kill@3"})
    assert rc == -signal.SIGKILL, err[-2000:]
    (killed,) = _train_runs(uri)
    assert main(RUN) == 0
    (r,) = _train_runs(uri)  # the only active run of the key
    assert r.info.status == "FINISHED" and r.info.run_id != killed.info.run_id
    c = store.client(uri)
    keys = [k for k in r.data.metrics if not k.startswith("perf/")]
    assert "train/loss" in keys
    for k in keys:
        steps = [m.step for m in c.get_metric_history(r.info.run_id, k)]
        assert len(steps) == len(set(steps)), (k, steps)
    assert [s for s, _ in store.metric_history(uri, r.info.run_id, "train/loss")] == \
        list(range(12))
    old = c.get_run(killed.info.run_id)
    assert old.info.lifecycle_stage == "deleted"
    assert old.data.tags[store.T_SUPERSEDED] == r.info.run_id


# ---------------------------------------------------------------- 4. a copied or moved store
def _store_with_one_run(root: Path, monkeypatch) -> tuple[str, object]:
    uri = _use(root, monkeypatch)
    assert main([*RUN[:RUN.index("--set")], "--set", "train.max_steps=2", "--set",
                 "train.eval_every=2"]) == 0
    (r,) = _train_runs(uri)
    return uri, r


def test_moved_store_keeps_weights_and_artifacts_in_itself(tmp_path, monkeypatch, capsys):
    """A store moved elsewhere: its weights tag resolves inside it, its artifact locations are
    rewritten to it, and a new artifact lands in it (on main: absolute paths into the old
    place, gone after a move)."""
    from repro.tracking import store

    _, r = _store_with_one_run(tmp_path / "a", monkeypatch)
    tag = r.data.tags[store.T_WEIGHTS]
    assert not Path(tag).is_absolute() and tag.startswith("checkpoints/")
    shutil.move(tmp_path / "a", tmp_path / "b")
    uri = point_at(tmp_path / "b", monkeypatch)
    capsys.readouterr()
    c = store.client(uri)
    assert "copied or moved from" in capsys.readouterr().err
    (r2,) = _train_runs(uri)
    assert store.weights_path(r2.data.tags[store.T_WEIGHTS]) == \
        tmp_path / "b" / "runs" / tag
    assert store.weights_path(r2.data.tags[store.T_WEIGHTS]).exists()
    root = str(tmp_path / "b" / "runs" / "mlartifacts")
    assert root in r2.info.artifact_uri
    assert {a.path for a in c.list_artifacts(r2.info.run_id)} >= {"config.json",
                                                                   "loss_curve.png"}
    note = tmp_path / "note.txt"
    note.write_text("x")
    c.log_artifact(r2.info.run_id, str(note))
    assert list((tmp_path / "b" / "runs" / "mlartifacts").rglob("note.txt"))


def test_copied_store_writes_new_artifacts_into_the_copy_not_the_original(tmp_path,
                                                                          monkeypatch):
    from repro.tracking import store

    _, r = _store_with_one_run(tmp_path / "orig", monkeypatch)
    store.client.cache_clear()
    shutil.copytree(tmp_path / "orig", tmp_path / "copy")
    uri = point_at(tmp_path / "copy", monkeypatch)
    c = store.client(uri)
    note = tmp_path / "late.txt"
    note.write_text("x")
    c.log_artifact(r.info.run_id, str(note))
    assert list((tmp_path / "copy" / "runs" / "mlartifacts").rglob("late.txt"))
    assert not list((tmp_path / "orig" / "runs" / "mlartifacts").rglob("late.txt"))


def test_old_absolute_weights_tag_resolves_in_the_store_it_is_read_from(tmp_path, monkeypatch):
    """Stores written before tags were relative: the absolute tag is mapped into this store."""
    from repro.tracking import store

    point_at(tmp_path / "new", monkeypatch)
    mine = tmp_path / "new" / "runs" / "checkpoints" / "k1" / "final.pt"
    mine.parent.mkdir(parents=True)
    mine.write_bytes(b"w")
    assert store.weights_path("/gone/old/runs/checkpoints/k1/final.pt") == mine


def test_missing_weights_stop_an_analysis_instead_of_dropping_its_figure(tmp_path):
    """An eval-time analysis that cannot find a run's weights says so (on main it skipped the
    run and `repro check` drew the figure without it, exit 0)."""
    from repro.experiments.analyses import _models
    from repro.experiments.claims import Results, RunRecord
    from repro.lit.checkpoint import CheckpointError

    rec = RunRecord("a", 0, "abcdef123456", [], {}, {}, str(tmp_path / "final.pt"))
    with pytest.raises(CheckpointError, match="final weights of a seed 0"):
        list(_models(Results({("a", 0): rec}), ["a"]))


# ---------------------------------------------------------------- 5. damaged reporting inputs
@pytest.mark.parametrize("text, why", [
    ('{"experiment": "x", "scale": "cpu", "se', "not valid JSON"),
    ("", "empty"),
    ("[1, 2]", "a JSON list"),
    ('{"experiment": "x", "scale": "cpu", "env": "e", "seeds": NaN, "claims": []}', "seeds"),
    ('{"experiment": "x", "scale": "cpu", "env": "e", "seeds": {}, "claims": [{"verdict": 1}]}',
     "claim 0"),
])
def test_report_names_a_damaged_claims_json_and_the_fix(text, why, tmp_runs, capsys):
    f = tmp_runs / "results" / "x" / "cpu" / "claims.json"
    f.parent.mkdir(parents=True)
    f.write_text(text)
    assert main(["report"]) == 2
    line = _last_error(capsys.readouterr().err)
    assert str(f) in line and why in line and "repro check" in line


def test_checkpoint_of_another_run_is_refused_not_resumed(tmp_path, monkeypatch, capsys):
    """A SIGTERM-stopped run's folder gets another run's (or model's) last.ckpt: the rerun
    refuses in one line naming the file (on main: resumed silently, or "Error(s) in loading
    state_dict")."""
    import torch

    uri = _use(tmp_path, monkeypatch)
    rc, _, err = fork_cli(RUN, env={"REPRO_FAULT": "term@7"})
    assert rc == 128 + signal.SIGTERM, err[-2000:]
    ckpt = tmp_path / "runs" / "checkpoints" / _key() / "last.ckpt"
    blob = torch.load(ckpt, weights_only=True)
    assert blob["repro_run_key"] == _key()
    blob["repro_run_key"] = "0123456789abcdef"  # what another run's checkpoint carries
    torch.save(blob, ckpt)
    capsys.readouterr()
    assert main(RUN) == 2
    line = _last_error(capsys.readouterr().err)
    assert str(ckpt) in line and "0123456789abcdef" in line and "delete" in line
    (r,) = _train_runs(uri)
    assert r.info.status != "RUNNING"
    del blob["repro_run_key"]  # a checkpoint some other tool wrote
    torch.save(blob, ckpt)
    assert main(RUN) == 2


def test_results_folder_that_is_a_symlink_is_refused_and_left_alone(tmp_path):
    from repro.paths import NotOwnedError, staged_dir

    elsewhere = tmp_path / "mine"
    elsewhere.mkdir()
    (elsewhere / "notes.md").write_text("mine\n")
    link = tmp_path / "results" / "exp" / "cpu"
    link.parent.mkdir(parents=True)
    link.symlink_to(elsewhere)
    with pytest.raises(NotOwnedError, match="symbolic link"), staged_dir(link):
        pass
    assert link.is_symlink() and sorted(p.name for p in link.parent.iterdir()) == ["cpu"]
    assert (elsewhere / "notes.md").read_text() == "mine\n"


# ---------------------------------------------------------------- 6. data not meant to publish
SMALL = ["--set", "data.vocab_size=300", "--set", "train.max_steps=2", "--set",
         "train.eval_every=2"]


def _run_source(source: str) -> list[str]:
    return ["run", "switch-vs-dense", "--scale", "smoke", "--arm", "dense", "--seeds", "0",
            "--no-progress", "--set", f"data.source={source}", *SMALL]


def test_refused_local_source_leaves_nothing_in_the_cache(tmp_path, monkeypatch, capsys):
    _use(tmp_path, monkeypatch)
    one = tmp_path / "secret.txt"
    one.write_text("one private document\n")
    one.chmod(0o600)
    assert main(_run_source(f"text:{one}")) == 2
    assert "cannot be carved" in _last_error(capsys.readouterr().err)
    left = [p for p in (tmp_path / "runs" / "cache").rglob("*") if not p.is_dir()]
    assert left == []  # on main: the arrow build of the file, 0644, under runs/cache/hf_datasets


def test_local_source_caches_are_private(tmp_path, monkeypatch):
    _use(tmp_path, monkeypatch)
    docs = tmp_path / "docs"
    docs.mkdir()
    words = ["alpha", "beta", "gamma", "delta"]
    for i in range(6):
        (docs / f"d{i}.txt").write_text(" ".join(words[(i + j) % 4] for j in range(400)))
    from repro.data.config import DataConfig
    from repro.data.tokens import build_token_splits

    build_token_splits(DataConfig(source=f"text:{docs}", vocab_size=300, seq_len=8,
                                  val_windows=2))
    cache = tmp_path / "runs" / "cache"
    files = [p for p in cache.rglob("*") if p.is_file()]
    assert files and all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in files), \
        [(p, oct(p.stat().st_mode)) for p in files]
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o700 for p in [cache, *cache.rglob("*")]
               if p.is_dir())


# ---------------------------------------------------------------- 7. signals and settings
def test_sighup_stops_like_sigterm_with_a_checkpoint(tmp_path, monkeypatch):
    """The terminal closes (a real SIGHUP from outside, mid-training): a checkpoint, the run
    KILLED with the reason, exit 129; the same command resumes it (on main: killed outright
    by the signal, no checkpoint, the run left RUNNING)."""
    from repro.lit.checkpoint import load_checkpoint_file
    from repro.tracking import store
    from tests._forkcli import reap

    uri = _use(tmp_path, monkeypatch)
    argv = [*RUN[:RUN.index("--set")], "--set", "train.max_steps=24", "--set",
            "train.eval_every=12", "--set", "train.log_every=1"]
    pid, out, err = fork_cli(argv, wait=False)
    deadline, c = time.time() + 120, store.client(uri)
    while time.time() < deadline:  # wait until training has logged a step, then hang up
        runs = _train_runs(uri)
        if runs and c.get_metric_history(runs[0].info.run_id, "train/loss"):
            break
        time.sleep(0.05)
    os.kill(pid, signal.SIGHUP)
    rc, _, err = reap(pid, out, err)
    assert rc == 128 + signal.SIGHUP, err[-2000:]
    assert "interrupted by SIGHUP at step" in _last_error(err)
    (r,) = _train_runs(uri)
    assert r.info.status == "KILLED" and "SIGHUP" in r.data.tags[store.T_FAIL]
    ckpt = tmp_path / "runs" / "checkpoints" / r.data.tags[store.T_KEY] / "last.ckpt"
    step = load_checkpoint_file(ckpt)["global_step"]
    assert 1 <= step < 24
    assert main(argv) == 0
    (r2,) = _train_runs(uri)
    assert r2.info.run_id == r.info.run_id and r2.info.status == "FINISHED"
    assert [s for s, _ in store.metric_history(uri, r2.info.run_id, "train/loss")] == \
        list(range(24))


def test_second_sweep_with_another_pruner_is_refused(tmp_runs, capsys):
    from repro.sweeps import SweepSpec
    from repro.sweeps.study import SweepContext

    SweepContext(SweepSpec(experiment="switch-vs-dense", arm="switch-e4", trials=2,
                           space="capacity", scale="smoke", pruner="none"))
    argv = ["sweep", "switch-vs-dense", "--arm", "switch-e4", "--space", "capacity", "--scale",
            "smoke", "--trials", "2"]
    capsys.readouterr()
    assert main([*argv, "--pruner", "median"]) == 2
    line = _last_error(capsys.readouterr().err)
    assert "--pruner" in line and "'none'" in line and "'median'" in line


def test_explicit_seed_list_is_capped(tmp_runs, capsys):
    seeds = ",".join(map(str, range(20000)))
    t0 = time.time()
    assert main(["run", "switch-vs-dense", "--scale", "smoke", "--seeds", seeds]) == 2
    line = _last_error(capsys.readouterr().err)
    assert "20000 seeds" in line and "at most 100" in line and time.time() - t0 < 5
    assert not (tmp_runs / "runs" / "mlflow.db").exists()  # refused before the store opens


# ---------------------------------------------------------------- 8. messages
def test_corrupt_mlflow_db_says_corrupt_not_unreachable(tmp_path, monkeypatch, capsys):
    point_at(tmp_path, monkeypatch)
    db = tmp_path / "runs" / "mlflow.db"
    db.parent.mkdir(exist_ok=True)
    db.write_bytes(os.urandom(4096))
    assert main(["doctor"]) == 2
    line = _last_error(capsys.readouterr().err)
    assert "corrupt" in line and "unreachable" not in line and "server" not in line
    assert str(db) in line


def test_corrupt_optuna_db_says_corrupt(tmp_path):
    from repro.config import ConfigError
    from repro.sweeps.study import open_storage

    db = tmp_path / "optuna.db"
    db.write_bytes(os.urandom(4096))
    with pytest.raises(ConfigError, match="is corrupt or not an Optuna database") as e:
        open_storage(f"sqlite:///{db}")
    assert "reachable" not in str(e.value) and f"mv {db}" in str(e.value)


@pytest.mark.parametrize("what", ["fifo", "/dev/zero"])
def test_fifo_or_device_source_says_what_it_is(what, tmp_path, monkeypatch, capsys):
    point_at(tmp_path, monkeypatch)
    if what == "fifo":
        what = str(tmp_path / "pipe")
        os.mkfifo(what)
    assert main(_run_source(f"text:{what}")) == 2
    line = _last_error(capsys.readouterr().err)
    assert ("FIFO" in line or "character device" in line) and "no files match" not in line


def test_json_source_with_numbers_for_text_says_so(tmp_path, monkeypatch, capsys):
    point_at(tmp_path, monkeypatch)
    f = tmp_path / "n.jsonl"
    f.write_text("".join(json.dumps({"text": i}) + "\n" for i in range(20)))
    assert main(_run_source(f"json:{f}")) == 2
    line = _last_error(capsys.readouterr().err)
    assert "'text' is an integer (0), not text" in line and "add files" not in line
    g = tmp_path / "whole.json"
    g.write_text(json.dumps([{"text": 1.5}, {"text": "x"}]))
    assert main(_run_source(f"json:{g}")) == 2
    assert "'text' is a number (1.5)" in _last_error(capsys.readouterr().err)


def test_huge_set_value_is_clipped_in_the_message(tmp_runs, capsys):
    value = "x" * 100_000
    assert main(["show", "switch-vs-dense", "--scale", "smoke", "--set",
                 f"train.lr={value}"]) == 2
    line = _last_error(capsys.readouterr().err)
    assert len(line) < 400 and "characters)" in line and "train.lr" in line
