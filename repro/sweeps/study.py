"""One Optuna study per (experiment, arm, space, scale): resumable, parallel, tracked in MLflow.

Exact trial counts with any number of workers
---------------------------------------------
``--trials N`` means N trials in the study in total. The launcher tops the study up to N
*slots* (``enqueue_trial({})`` placeholders: WAITING trials with no fixed params, so the sampler
still chooses every value) under a file lock, and workers only ever run a trial they claimed
atomically (WAITING -> RUNNING through the storage, the same compare-and-set Optuna's own queue
uses). A worker never creates a trial, so W workers cannot overshoot N, and no trial is run twice.

Counted toward N: COMPLETE, PRUNED, and FAILED trials that failed *in the objective* (NaN loss,
infeasible config; marked with the ``repro.failure`` user attr), plus RUNNING and WAITING. A trial
whose worker died (heartbeat stale, or its local process gone) is FAILED without that attr and a
WAITING copy with the same params is enqueued (``RetryHeartbeatStaleTrialCallback``), so it is
neither lost nor double-counted. Re-running the same command resumes: finished trials are kept,
only the remainder runs.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import os
import socket
import sys
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import optuna
from optuna.trial import TrialState

from repro.config import ConfigError, apply_overrides  # noqa: F401 (apply_overrides: docs)
from repro.paths import NotOwnedError, runs_dir
from repro.procs import pid_alive
from repro.sweeps.pruning import PRUNERS, StepPruningCallback, make_pruner
from repro.sweeps.record import state_counts
from repro.sweeps.spaces import SearchSpace, default_space, get_space
from repro.sweeps.storage import default_storage, redact
from repro.tracking.names import (  # Optuna trial user attributes
    A_FAILURE,
    A_HOST,
    A_LOST,
    A_PID,
    A_RUN,
    A_SECONDS,
    A_SLOT,
    A_STEPS,
    ROLE_TRIAL,
)

HEARTBEAT_S = 20
GRACE_S = 60
MAX_RETRY = 2


@dataclass
class SweepSpec:
    experiment: str
    arm: str
    trials: int = 20
    space: str | None = None
    scale: str = "cpu"
    overrides: tuple[str, ...] = ()
    workers: int = 1
    storage: str | None = None
    timeout: float | None = None
    pruner: str = "median"
    seed: int = 0
    tracking_uri: str | None = None
    progress: bool = False
    extra: dict = field(default_factory=dict)


def open_storage(url: str | None) -> optuna.storages.RDBStorage:
    url = url or default_storage()
    if "://" not in url:
        raise ConfigError("--storage", f"{url!r} is not a database URL; use e.g. "
                          "sqlite:///runs/optuna.db or postgresql://user@host/db")
    kwargs = {}
    if url.startswith("sqlite:///"):
        path = Path(url[len("sqlite:///"):])
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigError("--storage", f"cannot create the directory {path.parent} of the "
                              f"sqlite storage ({e.strerror or type(e).__name__}: a file is in "
                              "the way or it is not writable); give a path under a writable "
                              "directory") from None
        from repro.paths import check_owned

        check_owned(Path(str(path).split("?", 1)[0]), follow=True)  # a FIFO / device: refused
        kwargs = {"connect_args": {"timeout": 120}}
    from optuna.storages import RetryHeartbeatStaleTrialCallback

    try:
        # RDBStorage creates the tables and stamps the schema version on first use, unguarded:
        # processes opening a fresh sqlite file together collide ("UNIQUE constraint failed:
        # alembic_version", "table studies already exists"). One at a time, per file.
        with _init_lock(url), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return optuna.storages.RDBStorage(
                url, engine_kwargs=kwargs, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S,
                heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(MAX_RETRY))
    except NotOwnedError:
        raise
    except Exception as e:  # noqa: BLE001 - any failure: the storage is unusable
        msg = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
        from repro.tracking.store import CORRUPT_SQLITE

        if url.startswith("sqlite:///") and any(m in msg for m in CORRUPT_SQLITE):
            db = url[len("sqlite:///"):].split("?", 1)[0]  # a local file: corrupt, not unreachable
            raise ConfigError("--storage", f"sqlite storage {db} is corrupt or not an Optuna "
                              f"database ({msg}); move it aside (mv {db} {db}.corrupt) to start "
                              "a new one, or restore it from a backup") from None
        raise ConfigError("--storage", f"cannot open Optuna storage {redact(url)!r} ({msg}); "
                          "check the URL and that the database is reachable") from None


@contextlib.contextmanager
def _init_lock(url: str):
    """Serialise creating / upgrading a sqlite storage (``.NAME.init.lock`` beside the file, as
    ``tracking.store.client`` does for mlflow.db); server RDBs: no lock (Optuna's own)."""
    if not url.startswith("sqlite:///"):
        yield
        return
    from repro.procs import file_lock

    db = Path(url[len("sqlite:///"):].split("?", 1)[0])
    with file_lock(db.parent / f".{db.name}.init.lock"):
        yield


def study_name(experiment: str, arm: str, space: str, scale: str,
               overrides: tuple[str, ...] = ()) -> str:
    name = f"{experiment}.{arm}.{space}.{scale}"
    if overrides:  # a different objective: its own study
        name += "." + hashlib.sha256("\n".join(sorted(overrides)).encode()).hexdigest()[:8]
    return name


def _sampler(seed: int, n_trials: int):
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(3, min(10, n_trials // 3)))


class SweepContext:
    """Everything a launcher or worker needs: experiment, arm, space, base config, study."""

    def __init__(self, spec: SweepSpec, create: bool = True):
        from repro.experiments.base import get_experiment

        self.spec = spec
        self.exp = get_experiment(spec.experiment, spec.scale)
        self.exp.arm(spec.arm)  # unknown arm -> one line with close matches
        self.space: SearchSpace = get_space(spec.space or default_space(self.exp))
        self.overrides = tuple(spec.overrides)
        self.base = self.exp.run_config(spec.arm, list(self.overrides))
        self.params = self.space.params_for(self.base, spec.arm)
        self.seed = self.exp.seeds[0]
        self.name = study_name(self.exp.name, spec.arm, self.space.name, spec.scale,
                               self.overrides)
        self.url = spec.storage or default_storage()
        PRUNERS.get(spec.pruner, field="--pruner")
        self.storage = open_storage(self.url)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        pruner = make_pruner(spec.pruner, self.base.train.max_steps, self.base.train.eval_every,
                             spec.trials)
        sampler = _sampler(spec.seed, spec.trials)
        if create:
            self.study = optuna.create_study(storage=self.storage, study_name=self.name,
                                             direction="minimize", load_if_exists=True,
                                             sampler=sampler, pruner=pruner)
            attrs = self.study.user_attrs
            if "experiment" not in attrs:
                for k, v in self.describe().items():
                    self.study.set_user_attr(k, v)
            elif attrs.get("pruner", spec.pruner) != spec.pruner:
                # one pruner per study: a second one would prune some trials by another rule
                # while the study's record names the first
                raise ConfigError("--pruner", f"study {self.name!r} in {redact(self.url)} prunes "
                                  f"with {attrs['pruner']!r}, not {spec.pruner!r}; rerun with "
                                  f"--pruner {attrs['pruner']}, or start a new study for "
                                  f"{spec.pruner!r} with another --storage (e.g. "
                                  f"sqlite:///runs/optuna-{spec.pruner}.db)")
            elif "pruner" not in attrs:  # a study from before the pruner was recorded
                self.study.set_user_attr("pruner", spec.pruner)
        else:
            try:
                self.study = optuna.load_study(study_name=self.name, storage=self.storage,
                                               sampler=sampler, pruner=pruner)
            except KeyError:
                raise ConfigError("--show", f"no study {self.name!r} in {redact(self.url)}; run "
                                  f"`repro sweep {self.exp.name} --arm {spec.arm} --scale "
                                  f"{spec.scale}` first (same --space/--set/--storage)") from None

    def describe(self) -> dict:
        return {"experiment": self.exp.name, "version": self.exp.version, "arm": self.spec.arm,
                "space": self.space.name, "scale": self.spec.scale,
                "overrides": list(self.overrides), "seed": self.seed, "pruner": self.spec.pruner,
                "params": [p.describe() for p in self.params]}

    @property
    def uri(self) -> str:
        from repro.tracking.store import resolve_uri

        return resolve_uri(self.spec.tracking_uri)


# ------------------------------------------------------------------------------- trial counts
def counts_toward_n(t) -> bool:
    if t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING,
                   TrialState.WAITING):
        return True
    return t.state == TrialState.FAIL and A_FAILURE in t.user_attrs


@contextlib.contextmanager
def storage_lock(url: str):
    """A file lock beside a sqlite store (same machine); other RDBs: no lock (see module doc)."""
    if not url.startswith("sqlite:///"):
        yield
        return
    from repro.procs import file_lock

    with file_lock(Path(url[len("sqlite:///"):] + ".lock")):
        yield


def top_up(ctx: SweepContext, n_total: int) -> int:
    """Enqueue empty slots so the study holds ``n_total`` counted trials; returns how many."""
    with storage_lock(ctx.url):
        have = sum(counts_toward_n(t) for t in ctx.study.get_trials(deepcopy=False))
        add = max(0, n_total - have)
        for _ in range(add):
            ctx.study.enqueue_trial({}, user_attrs={A_SLOT: True})
    return add


def claim(study) -> int | None:
    """Atomically move one WAITING trial to RUNNING; its trial id, or None if none is left.

    Optuna's compare-and-set (``set_trial_state_values(RUNNING)`` succeeds only on a WAITING
    trial) reads the state with ``SELECT ... FOR UPDATE``, which SQLite ignores: two workers can
    both read WAITING and both "claim" the same trial, and the second to finish it dies with
    ``UpdateFinishedTrialError``. On a sqlite storage the read-and-set therefore runs under the
    storage's file lock (the one ``top_up`` takes); server RDBs honour FOR UPDATE."""
    storage = study._storage
    rdb = getattr(storage, "_backend", storage)  # optuna wraps an RDBStorage in _CachedStorage
    with storage_lock(getattr(rdb, "url", "")):
        for t in storage.get_all_trials(study._study_id, deepcopy=False,
                                        states=(TrialState.WAITING,)):
            try:
                if storage.set_trial_state_values(t._trial_id, state=TrialState.RUNNING):
                    return t._trial_id
            except optuna.exceptions.UpdateFinishedTrialError:
                continue
    return None


def fail_and_retry(ctx: SweepContext, trial_id: int, reason: str) -> bool:
    """Mark a RUNNING trial FAILED (its worker is gone) and enqueue a retry with its params."""
    storage = ctx.study._storage
    try:
        storage.set_trial_user_attr(trial_id, A_LOST, reason)  # only while unfinished
        if not storage.set_trial_state_values(trial_id, state=TrialState.FAIL):
            return False
    except optuna.exceptions.UpdateFinishedTrialError:
        return False
    frozen = storage.get_trial(trial_id)
    retries = len(frozen.system_attrs.get("retry_history", []))
    if retries < MAX_RETRY:
        from optuna.storages import RetryHeartbeatStaleTrialCallback

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            RetryHeartbeatStaleTrialCallback(MAX_RETRY)(ctx.study, frozen)
    run_id = frozen.user_attrs.get(A_RUN)
    if run_id:
        _mark_child(ctx, run_id, "FAILED", "FAIL", reason)
    return True


def reap(ctx: SweepContext, pids: set[int] | None = None) -> int:
    """Fail trials whose worker is gone: heartbeat-stale ones (any machine) and RUNNING ones of
    this host whose process no longer exists (or is in ``pids``, workers that exited)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        optuna.storages.fail_stale_trials(ctx.study)
    host, n = socket.gethostname(), 0
    for t in ctx.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        pid = t.user_attrs.get(A_PID)
        if t.user_attrs.get(A_HOST) != host or pid is None:
            continue
        if (pids and pid in pids) or not pid_alive(int(pid)):
            n += fail_and_retry(ctx, t._trial_id, f"worker process {pid} on {host} died")
    return n


class _Heartbeat:
    def __init__(self, storage, trial_id: int):
        self.storage, self.trial_id = storage, trial_id
        self.stop_event = threading.Event()
        self.thread: threading.Thread | None = None

    def __enter__(self):
        interval = self.storage.get_heartbeat_interval()
        if interval:
            self.storage.record_heartbeat(self.trial_id)
            self.thread = threading.Thread(target=self._loop, args=(interval,), daemon=True)
            self.thread.start()
        return self

    def _loop(self, interval: float) -> None:
        while not self.stop_event.wait(interval):
            with contextlib.suppress(Exception):
                self.storage.record_heartbeat(self.trial_id)

    def __exit__(self, *exc):
        self.stop_event.set()
        if self.thread is not None:
            self.thread.join(timeout=5)


# ------------------------------------------------------------------------------- running trials
def _mark_child(ctx: SweepContext, run_id: str, status: str, state: str, reason: str = "") -> None:
    from repro.sweeps.record import T_TRIAL_STATE
    from repro.tracking import store as ts

    with contextlib.suppress(Exception):
        c = ts.client(ctx.uri)
        c.set_tag(run_id, T_TRIAL_STATE, state)
        if reason:
            c.set_tag(run_id, ts.T_FAIL, reason[:400])
        c.set_terminated(run_id, status)


def run_trial(ctx: SweepContext, trial_id: int, parent_run_id: str, echo=print) -> TrialState:
    from repro.experiments.options import RunOptions
    from repro.experiments.runner import train_one
    from repro.sweeps.record import T_STUDY, T_TRIAL, T_TRIAL_STATE
    from repro.tracking import store as ts

    study = ctx.study
    number = study._storage.get_trial(trial_id).number
    # per-trial seed: W workers on one history draw different points, reproducibly (hashed:
    # numpy's first draws for nearby small seeds are correlated)
    seed = int(hashlib.sha256(f"{ctx.spec.seed}:{number}".encode()).hexdigest()[:8], 16)
    study.sampler = _sampler(seed, ctx.spec.trials)
    trial = optuna.Trial(study, trial_id)
    value, state, cb, t0 = None, TrialState.FAIL, None, time.time()
    with _Heartbeat(study._storage, trial_id):
        trial.set_user_attr(A_HOST, socket.gethostname())
        trial.set_user_attr(A_PID, os.getpid())
        try:
            sampled = ctx.space.sample(trial, ctx.base)
            overrides = list(ctx.overrides) + [f"{k}={v}" for k, v in sampled.items()]
            try:
                ctx.exp.run_config(ctx.spec.arm, overrides)
            except ConfigError as e:
                raise InfeasibleTrial(str(e)) from None
            cb = StepPruningCallback(trial, ts.M_VAL_LOSS)
            tags = {ts.T_PARENT: parent_run_id, T_TRIAL: str(number),
                    T_STUDY: ctx.name}
            out = train_one(ctx.exp, ctx.spec.arm, ctx.seed, RunOptions(
                overrides=overrides, uri=ctx.uri, progress=ctx.spec.progress, extra_tags=tags,
                callbacks=[cb], role=ROLE_TRIAL,
                run_name=ts.run_name(f"{ctx.spec.arm}-trial-{number}", ctx.spec.scale)))
            trial.set_user_attr(A_RUN, out.run_id)
            ts.client(ctx.uri).set_tag(out.run_id, T_TRIAL_STATE, "COMPLETE")
            ts.client(ctx.uri).log_metric(out.run_id, ts.M_TRIAL_VALUE, out.final_val_loss)
            value, state = out.final_val_loss, TrialState.COMPLETE
            trial.set_user_attr(A_STEPS, ctx.base.train.max_steps)
        except optuna.TrialPruned as e:
            state = TrialState.PRUNED
            trial.set_user_attr(A_STEPS, cb.last_step if cb else 0)
            if cb is not None and cb.run_id:
                trial.set_user_attr(A_RUN, cb.run_id)
                _mark_child(ctx, cb.run_id, "KILLED", "PRUNED")
                with contextlib.suppress(Exception):
                    ts.client(ctx.uri).delete_tag(cb.run_id, ts.T_FAIL)
                    ts.client(ctx.uri).set_tag(cb.run_id, ts.T_PRUNED, str(e))
        except (KeyboardInterrupt, SystemExit):
            # not the trial's fault: leave it for a resume (FAILED + a WAITING retry)
            trial.set_user_attr(A_SECONDS, time.time() - t0)
            fail_and_retry(ctx, trial_id, "interrupted")
            raise
        except Exception as e:  # noqa: BLE001 - a failed trial must not stop the sweep
            msg = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:400]
            trial.set_user_attr(A_FAILURE, msg)
            trial.set_user_attr(A_STEPS, (cb.last_step or 0) if cb else 0)
            if cb is not None and cb.run_id:
                trial.set_user_attr(A_RUN, cb.run_id)
                _mark_child(ctx, cb.run_id, "FAILED", "FAIL", msg)
            echo(f"[sweep] trial {number} FAILED: {msg}")
        trial.set_user_attr(A_SECONDS, round(time.time() - t0, 2))
        if state == TrialState.COMPLETE:
            study.tell(trial, value, skip_if_finished=True)
        else:
            study.tell(trial, state=state, skip_if_finished=True)
    shown = f"{value:.4f}" if value is not None else "-"
    echo(f"[sweep] trial {number} {state.name}: value {shown} params {trial.params} "
         f"({time.time() - t0:.0f}s)")
    return state


class InfeasibleTrial(ValueError):
    """Sampled values give an invalid config (e.g. Finedeep M*K not dividing d_ff)."""


def work(ctx: SweepContext, parent_run_id: str, deadline: float | None = None, echo=print) -> int:
    """Claim and run trials until none is waiting (or the deadline passed); returns #run."""
    if not ctx.spec.progress:
        for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
            logging.getLogger(name).setLevel(logging.WARNING)
    n = 0
    while deadline is None or time.time() < deadline:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            optuna.storages.fail_stale_trials(ctx.study)
        tid = claim(ctx.study)
        if tid is None:
            break
        run_trial(ctx, tid, parent_run_id, echo=echo)
        n += 1
    return n


# ------------------------------------------------------------------------------- the launcher
def _worker_cmd(spec: SweepSpec, ctx: SweepContext, parent_run_id: str,
                deadline: float | None) -> list[str]:
    cmd = [sys.executable, "-m", "repro.cli", "sweep", ctx.exp.name, "--arm", spec.arm,
           "--trials", str(spec.trials), "--space", ctx.space.name, "--scale", spec.scale,
           "--storage", ctx.url, "--pruner", spec.pruner, "--seed", str(spec.seed),
           "--tracking-uri", ctx.uri, "--worker", "--parent-run", parent_run_id]
    for o in ctx.overrides:
        cmd += ["--set", o]
    if deadline is not None:
        cmd += ["--deadline", f"{deadline:.3f}"]
    return cmd


def run_workers(spec: SweepSpec, ctx: SweepContext, parent_run_id: str, deadline: float | None,
                echo=print) -> None:
    """W worker processes on the study; dead workers' trials are failed and retried."""
    from repro.pool import Job, run_pool

    logdir = runs_dir() / "sweeps" / ctx.name
    logdir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // spec.workers)))
    for rnd in range(1 + MAX_RETRY):
        waiting = state_counts(ctx.study)["waiting"]
        if waiting == 0 or (deadline is not None and time.time() >= deadline):
            return
        # workers report through the study's storage (their trials), not their output
        jobs = [Job(_worker_cmd(spec, ctx, parent_run_id, deadline),
                    logdir / f"worker-{rnd}-{w}.log", env=env)
                for w in range(min(spec.workers, waiting))]
        echo(f"[sweep] {len(jobs)} workers started (logs: {logdir})")
        pids, dead = [], set()

        def exited(d, dead=dead):
            if d.returncode != 0:
                dead.add(d.pid)
                echo(f"[sweep] worker {d.pid} exited with {d.returncode}; see {d.job.log}")

        try:
            run_pool(jobs, len(jobs), on_start=lambda job, pid, pids=pids: pids.append(pid),
                     on_done=exited)
        except (KeyboardInterrupt, SystemExit):
            reap(ctx, set(pids))  # the pool stopped them: their trials are re-queued
            raise
        if dead:
            n = reap(ctx, dead)
            if n:
                echo(f"[sweep] {n} trial(s) of dead workers marked FAILED and re-queued")
            from repro.sweeps import record

            record.close_dead_trial_runs(ctx, echo=echo)


def sweep(spec: SweepSpec, echo=print) -> dict:
    """Run (or resume) the sweep; returns the summary written to results/."""
    from repro.experiments.resolve import prepare_data
    from repro.experiments.runner import preflight
    from repro.sweeps import record

    if spec.trials < 1:
        raise ConfigError("--trials", f"must be >= 1, got {spec.trials}")
    if spec.workers < 1:
        raise ConfigError("--workers", f"must be >= 1, got {spec.workers}")
    if spec.timeout is not None and not (math.isfinite(spec.timeout) and spec.timeout > 0):
        raise ConfigError("--timeout", f"must be a finite number of seconds > 0, got "
                          f"{spec.timeout} (e.g. --timeout 3600, or leave it out for no limit)")
    if not 0 <= spec.seed < 2**32:
        raise ConfigError("--seed", f"sampler seed {spec.seed} is out of range (allowed: 0 <= "
                          "seed < 2**32)")
    from repro.experiments.base import get_experiment

    exp = get_experiment(spec.experiment, spec.scale)
    exp.arm(spec.arm)
    preflight(exp, [spec.arm], list(spec.overrides), role=ROLE_TRIAL)  # before storage and runs
    ctx = SweepContext(spec)
    prepare_data(ctx.base, ctx.seed)  # data errors fail here once, caches are built once
    reaped = reap(ctx)
    record.close_dead_trial_runs(ctx, echo=echo)  # their MLflow child runs too
    added = top_up(ctx, spec.trials)
    c = state_counts(ctx.study)
    echo(f"[sweep] study {ctx.name} in {redact(ctx.url)}: space {ctx.space.name} "
         f"({'; '.join(p.describe() for p in ctx.params)}), pruner {spec.pruner}")
    echo(f"[sweep] {spec.trials} trials: {c['complete']} complete, {c['pruned']} pruned, "
         f"{c['failed']} failed, {c['running']} running elsewhere, {c['waiting']} to run "
         f"({added} new{f', {reaped} re-queued from dead workers' if reaped else ''})")
    deadline = time.time() + spec.timeout if spec.timeout else None
    with record.parent_run(ctx) as parent:  # FINISHED / KILLED / FAILED with a reason
        try:
            if spec.workers == 1:
                work(ctx, parent.run_id, deadline, echo=echo)
            else:
                run_workers(spec, ctx, parent.run_id, deadline, echo=echo)
        finally:
            summary = record.finalize(ctx, parent, echo=echo)
    return summary


def worker_main(spec: SweepSpec, parent_run_id: str, deadline: float | None) -> int:
    ctx = SweepContext(spec)
    n = work(ctx, parent_run_id, deadline)
    print(f"[sweep worker {os.getpid()}] ran {n} trial(s)")
    return 0


def show(spec: SweepSpec, echo=print) -> dict:
    from repro.sweeps import record

    ctx = SweepContext(spec, create=False)
    record.close_dead_trial_runs(ctx, echo=echo)
    return record.show(ctx, echo=echo)
