"""Scale-out on existing engines: Lightning DDP (2 CPU processes, gloo), Optuna sweeps with 2
workers on a real PostgreSQL, and a real ``mlflow server`` as the tracking store.

PostgreSQL comes from ``.ci/run`` (``.ci/postgres-up``: Debian's package on loopback), which
exports ``REPRO_TEST_POSTGRES_URL``; without it the PostgreSQL test skips with the reason.
"""

from __future__ import annotations

import math
import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from repro.config import ConfigError, apply_overrides
from repro.lit.config import RunConfig

EXP = "switch-vs-dense"
ARM = "switch-e4"
STEPS = ["train.max_steps=8", "train.eval_every=4"]
DDP2 = ["trainer.devices=2", "trainer.strategy=ddp", "trainer.accelerator=cpu"]


def _env(**extra) -> dict:
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    env.update({k: str(v) for k, v in extra.items()})
    return env


def _repro(args: list[str], env: dict, timeout: float = 240) -> subprocess.CompletedProcess:
    p = subprocess.run([sys.executable, "-m", "repro.cli", *args], env=env, capture_output=True,
                       text=True, timeout=timeout)
    assert p.returncode == 0, f"repro {' '.join(args)} failed:\n{p.stdout[-3000:]}\n" \
                              f"{p.stderr[-3000:]}"
    return p


# ------------------------------------------------------------------------------- unit: dist
def test_per_rank_batch_and_refusals():
    from repro.dist import check_run, per_rank_batch

    run = apply_overrides(RunConfig(), ["train.batch_size=8", "trainer.devices=2",
                                        "trainer.num_nodes=2"])
    assert per_rank_batch(run) == 2
    bad = apply_overrides(RunConfig(), ["train.batch_size=8", "trainer.devices=3"])
    with pytest.raises(ConfigError, match=r"train.batch_size: global batch 8 is not divisible "
                                          r"by the world size 3.*use 6, 9"):
        per_rank_batch(bad)
    with pytest.raises(ConfigError, match="trainer.strategy: 'ddp_spawn' is not supported"):
        check_run(apply_overrides(RunConfig(), ["trainer.strategy=ddp_spawn"]))
    with pytest.raises(ConfigError, match="trainer.devices: sweep trials train in one process"):
        check_run(apply_overrides(RunConfig(), ["trainer.devices=2", "train.batch_size=8"]),
                  role="trial")


@pytest.mark.parametrize("env, devices, rank", [
    ({}, 2, 0),
    ({"RANK": "3", "LOCAL_RANK": "1"}, 2, 3),                        # torchrun
    ({"LOCAL_RANK": "1", "WORLD_SIZE": "2"}, 2, 1),                  # Lightning's re-launch
    ({"NODE_RANK": "1"}, 4, 4),                                      # first process of node 1
    ({"NODE_RANK": "1", "LOCAL_RANK": "2"}, 4, 6),
    ({"SLURM_PROCID": "5", "SLURM_NTASKS": "8"}, 4, 5),              # srun, one task per device
    ({"SLURM_PROCID": "0", "SLURM_NTASKS": "1"}, 2, 0),              # one task: Lightning launches
    ({"SLURM_PROCID": "0", "SLURM_NTASKS": "8", "LOCAL_RANK": "1"}, 2, 1),
])
def test_global_rank_from_launcher_env(env, devices, rank):
    from repro.dist import global_rank

    assert global_rank(devices, env) == rank


# ---------------------------------------------------------------------------- DDP, 2 processes
def _history(uri, run_id, key):
    from repro.tracking import store as ts

    return ts.metric_history(uri, run_id, key)


def test_ddp_two_cpu_processes_match_single_process(tmp_runs):
    """2 gloo ranks x 4 sequences == 1 process x 8 sequences: same windows, same steps, same
    logged train and validation losses; rank 1 creates no MLflow run.

    Both arms in ONE command (Lightning re-launches the command for rank 1, which then meets rank
    0 in each arm's fit). The dense arm must match to float noise. The Switch arm's balance and
    z losses and its capacity are computed per rank (local batch, see repro/dist.py), so it only
    matches closely; its routing statistics come from the synced torchmetrics state.
    """
    from repro.experiments.base import get_experiment
    from repro.experiments.options import RunOptions
    from repro.experiments.runner import run_experiment
    from repro.tracking import store as ts

    arms = ["dense", ARM]
    exp = get_experiment(EXP, "smoke")
    single = run_experiment(exp, RunOptions(overrides=STEPS, progress=False,
                                            echo=lambda *a: None), arms=arms, seeds=[0])
    assert [o.status for o in single] == ["trained", "trained"]
    p = _repro(["run", EXP, "--scale", "smoke", "--arm", ",".join(arms), "--seeds", "0",
                "--no-progress", "--verbose", *[x for o in STEPS + DDP2 for x in ("--set", o)]],
               _env())
    assert "GLOBAL_RANK: 1" in p.stdout + p.stderr  # really two processes (a Lightning INFO line)
    uri = ts.resolve_uri()
    runs = ts.search_runs(uri, EXP)
    assert len(runs) == 4, [r.data.params.get("trainer.devices") for r in runs]  # rank 1: none
    report = []
    for o, tol in zip(single, (2e-4, 2e-3)):
        (ddp,) = [r for r in runs if r.data.params["trainer.devices"] == "2"
                  and r.data.tags[ts.T_ARM] == o.arm]
        assert ddp.info.status == "FINISHED" and ddp.data.tags[ts.T_PID] != str(os.getpid())
        assert math.isfinite(ddp.data.metrics[ts.M_TOKENS_PER_S])
        for key in ("val/loss", "train/loss"):
            a, b = _history(uri, o.run_id, key), _history(uri, ddp.info.run_id, key)
            assert [s for s, _ in a] == [s for s, _ in b] and a, (a, b)
            diff = max(abs(x - y) for (_, x), (_, y) in zip(a, b))
            report.append(f"{o.arm} {key}: single {a[-1][1]:.6f} ddp {b[-1][1]:.6f} "
                          f"max|diff| {diff:.2e}")
            assert diff < tol, f"{o.arm} {key}: single {a} vs ddp {b}"
    moe = [r for r in runs if r.data.params["trainer.devices"] == "2"
           and r.data.tags[ts.T_ARM] == ARM][0]
    for k in ("val_routing/load_cv", "val_routing/drop_frac", "train_routing/max_mean_load"):
        assert _history(uri, moe.info.run_id, k), k
    print("\n[ddp-equivalence] " + "; ".join(report))


# ----------------------------------------------------------------------- PostgreSQL sweep
@pytest.fixture
def pg_url():
    url = os.environ.get("REPRO_TEST_POSTGRES_URL")
    if not url:
        pytest.skip(os.environ.get("REPRO_TEST_POSTGRES_SKIP") or
                    "no PostgreSQL: set REPRO_TEST_POSTGRES_URL (`.ci/run` starts one with "
                    ".ci/postgres-up)")
    pytest.importorskip("psycopg", reason="psycopg[binary] (dev extra) is not installed")
    import sqlalchemy

    eng = sqlalchemy.create_engine(url)
    try:
        with eng.begin() as c:  # a clean database for every run of the test
            c.exec_driver_sql("DROP SCHEMA public CASCADE; CREATE SCHEMA public;")
    except Exception as e:  # noqa: BLE001
        pytest.skip(f"PostgreSQL at {url} is not usable: {str(e).splitlines()[0]}")
    finally:
        eng.dispose()
    return url


def _spec(url, **kw):
    from repro.sweeps import SweepSpec

    base = dict(experiment=EXP, arm=ARM, trials=3, space="capacity", scale="smoke",
                overrides=("train.max_steps=4", "train.eval_every=2"), pruner="none",
                storage=url)
    base.update(kw)
    return SweepSpec(**base)


def test_postgres_sweep_two_workers_resume_and_dead_worker(pg_url, tmp_runs, monkeypatch):
    import optuna
    from optuna.trial import TrialState

    from repro.sweeps import study as st
    from repro.sweeps import sweep
    from repro.tracking import store as ts

    s = sweep(_spec(pg_url, workers=2), echo=lambda *a: None)
    assert s["counts"]["complete"] == 3, s["counts"]
    name = st.study_name(EXP, ARM, "capacity", "smoke", ("train.max_steps=4",
                                                         "train.eval_every=2"))
    storage = optuna.storages.RDBStorage(pg_url)
    trials = optuna.load_study(study_name=name, storage=storage).get_trials()
    assert len(trials) == 3 and len({t.number for t in trials}) == 3
    assert all(t.state == TrialState.COMPLETE for t in trials)
    pids = {t.user_attrs[st.A_PID] for t in trials} - {os.getpid()}  # run by worker processes
    assert pids
    run_ids = {t.user_attrs[st.A_RUN] for t in trials}
    assert len(run_ids) == 3
    uri = ts.resolve_uri()
    (parent,) = [r for r in ts.search_runs(uri, EXP) if r.data.tags.get(ts.T_KIND) == "sweep"]
    children = [r for r in ts.search_runs(uri, EXP) if r.data.tags.get(ts.T_KIND) == "trial"]
    assert {r.info.run_id for r in children} == run_ids
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parent.info.run_id}

    # resumable: the same command runs nothing new; a larger --trials runs only the difference
    s = sweep(_spec(pg_url, workers=2), echo=lambda *a: None)
    assert s["counts"]["complete"] == 3
    assert len(optuna.load_study(study_name=name, storage=storage).get_trials()) == 3

    # a worker on another machine claims a trial, beats once, dies: after the grace period its
    # trial is FAILED by the heartbeat check and a retry with the same params runs
    monkeypatch.setattr(st, "HEARTBEAT_S", 1)
    monkeypatch.setattr(st, "GRACE_S", 2)
    ctx = st.SweepContext(_spec(pg_url, trials=4))
    assert st.top_up(ctx, 4) == 1
    tid = st.claim(ctx.study)
    ctx.study._storage.set_trial_user_attr(tid, st.A_HOST, "another-machine")
    ctx.study._storage.record_heartbeat(tid)
    time.sleep(3.5)
    s = sweep(_spec(pg_url, trials=4), echo=lambda *a: None)
    assert s["counts"]["complete"] == 4 and s["counts"]["retried"] == 1, s["counts"]
    trials = optuna.load_study(study_name=name, storage=storage).get_trials()
    dead = storage.get_trial(tid)
    assert dead.state == TrialState.FAIL
    assert len(trials) == 5 and sum(t.state == TrialState.COMPLETE for t in trials) == 4
    children = [r for r in ts.search_runs(uri, EXP) if r.data.tags.get(ts.T_KIND) == "trial"]
    assert len({r.info.run_id for r in children}) == 4
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parent.info.run_id}
    print(f"\n[postgres-sweep] 2 workers: 3 trials by {len(pids)} worker process(es); resume: "
          f"+0; dead worker: {len(trials)} trial records (4 COMPLETE, 1 FAILED by heartbeat and "
          f"retried), {len(children)} MLflow children under parent {parent.info.run_id[:8]}")
    storage.engine.dispose()


# ------------------------------------------------------------------------- mlflow server
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def mlflow_server(tmp_path):
    port = _free_port()
    log = open(tmp_path / "mlflow-server.log", "w")  # noqa: SIM115
    cmd = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
           "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
           "--artifacts-destination", str(tmp_path / "server-artifacts"), "--workers", "1"]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=_env(),
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 150
        while True:
            try:
                with urllib.request.urlopen(url + "/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                log.flush()
                pytest.fail("mlflow server did not start: "
                            + (tmp_path / "mlflow-server.log").read_text()[-2000:])
            time.sleep(0.5)
        yield url, tmp_path / "server-artifacts"
    finally:
        import signal

        try:
            os.killpg(proc.pid, signal.SIGTERM)  # the server and its uvicorn workers
            proc.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def test_mlflow_tracking_server_run_check_report(mlflow_server, tmp_runs, monkeypatch, capsys):
    from repro.cli import main
    from repro.tracking import store as ts

    url, artifacts = mlflow_server
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    ts.client.cache_clear()
    fast = ["--set", "train.max_steps=4", "--set", "train.eval_every=2"]
    assert main(["run", EXP, "--scale", "smoke", "--arm", ARM, "--seeds", "0",
                 "--no-progress", *fast]) == 0
    assert not (tmp_runs / "runs" / "mlflow.db").exists()  # nothing went to the local store
    runs = [r for r in ts.search_runs(url, EXP) if r.data.tags.get(ts.T_KIND) == "train"]
    assert [r.data.tags[ts.T_ARM] for r in runs] == [ARM]
    c = ts.client(url)
    for r in runs:
        assert r.info.status == "FINISHED"
        assert r.data.params["train.max_steps"] == "4"
        assert ts.metric_history(url, r.info.run_id, ts.M_VAL_LOSS)
        assert r.info.artifact_uri.startswith("mlflow-artifacts:")  # proxied by the server
        names = {a.path for a in c.list_artifacts(r.info.run_id)}
        assert {"config.json", "loss_curve.png"} <= names, names
    # the artifacts really live in the server's --artifacts-destination
    assert any(p.name == "config.json" for p in artifacts.rglob("config.json"))
    capsys.readouterr()
    assert main(["check", EXP, "--scale", "smoke", "--seeds", "0", *fast]) == 0
    out = capsys.readouterr().out
    assert "speedup-e4" in out and "[repro] wrote" in out
    assert (tmp_runs / "results" / EXP / "smoke" / "claims.md").exists()
    summary = [r for r in ts.search_runs(url, EXP) if r.data.tags.get(ts.T_KIND) == "summary"]
    assert summary and c.list_artifacts(summary[0].info.run_id)
    assert main(["report"]) == 0
    ts.client.cache_clear()
