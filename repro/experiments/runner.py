"""Train the (arm, seed) grid of an experiment with Lightning, logging to MLflow.

A run is identified by its *run key*: hash(resolved run config, data fingerprint, seed). A
FINISHED run with the same key is reused by every experiment that needs it (shared arms).

Reliability (see README "Reliability"):
* one process per run key at a time (``runs/locks/<key>.lock``, fcntl): concurrent ``repro run``
  processes wait for each other and reuse, never train an (arm, seed) twice;
* checkpoints at every evaluation under ``runs/checkpoints/<key>/`` (``last.ckpt``, ``best.ckpt``;
  atomic, loaded weights-only); re-running after a crash reopens the interrupted MLflow run (same
  run id) and resumes from ``last.ckpt`` with the same data stream, LR schedule and RNG states, so
  it ends with the same metrics as an uninterrupted run;
* SIGINT / SIGTERM stop at the next step boundary with a checkpoint and the run marked KILLED;
  any failure (e.g. a non-finite loss) marks the run FAILED with a ``repro.failure_reason``;
* before training, RUNNING runs of the experiment whose process died are marked FAILED.
"""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
import time
import warnings
from dataclasses import replace
from pathlib import Path

from repro.config import flatten, to_dict
from repro.errors import UserError
from repro.experiments.base import Experiment
from repro.experiments.options import RunOptions
from repro.experiments.outcome import RunOutcome
from repro.experiments.resolve import DataFingerprints, ResolvedRun, prepare_data, resolve_run
from repro.lit.config import RunConfig
from repro.lit.trainer import check_device, device_label
from repro.tracking import store as ts


def preflight(exp: Experiment, arms: list[str], overrides: list[str],
              role: str = ts.ROLE_TRAIN) -> None:
    """Everything checkable before the first MLflow run is created, for every arm of the command:
    the resolved config (domains, memory estimate), scale-out, device and precision, and each
    distinct data source (readable local files, a reachable hub)."""
    from repro import dist
    from repro.data.sources import check_source
    from repro.experiments.resolve import data_identity

    sources = set()
    for arm in arms:
        run = exp.run_config(arm, overrides)
        dist.check_run(run, role)
        check_device(run)
        key = data_identity(run)
        if key not in sources:
            sources.add(key)
            check_source(run.data)


VERBOSE_ENV = "REPRO_VERBOSE"  # `repro run --verbose` sets it (children inherit it)


def quiet_third_party() -> None:
    """Unless REPRO_VERBOSE is set: no Lightning INFO lines ("GPU available: False", the
    litlogger tip, ...) and no third-party deprecation warnings around each run; warnings and
    errors still show."""
    if os.environ.get(VERBOSE_ENV):
        return
    import logging

    import lightning.pytorch  # noqa: F401 - its import sets its logger to INFO: override after

    for name in ("lightning.pytorch", "lightning.fabric", "pytorch_lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for mod in (r"lightning(\..*)?", r"pytorch_lightning(\..*)?", r"torchmetrics(\..*)?",
                r"mlflow(\..*)?"):
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=mod)
        warnings.filterwarnings("ignore", category=FutureWarning, module=mod)


def train_one(exp: Experiment, arm: str, seed: int, opts: RunOptions) -> RunOutcome:
    """Train one (arm, seed) into its own MLflow run and return the outcome.

    ``opts.extra_tags`` (e.g. ``mlflow.parentRunId`` for sweep trials), ``opts.callbacks`` (e.g.
    an Optuna pruning callback) and ``opts.role`` (the ``repro.kind`` tag: names.ROLES) let
    sweeps reuse this path. Reuse of a finished run only applies to training runs (``role``
    ROLE_TRAIN).
    """

    from repro import dist
    from repro.procs import file_lock
    from repro.tracking.locks import lock_path

    quiet_third_party()
    base = exp.run_config(arm, list(opts.overrides))  # the one run_config of this run
    dist.check_run(base, opts.role)
    check_device(base)
    dm = prepare_data(base, seed)
    rr = resolve_run(exp, arm, seed, opts.overrides, dm, base=base)
    uri = ts.resolve_uri(opts.uri)
    opts = replace(opts, uri=uri)
    train = opts.role == ts.ROLE_TRAIN  # sweep trials: no reuse, no resume, no checkpoints
    if not dist.is_rank_zero(rr.config.trainer):  # DDP rank > 0: lockstep, write nothing
        return _train_rank_worker(rr, dm, opts, reuse=train and not opts.force,
                                  checkpoints=train)
    exp_id = ts.ensure_experiment(uri, exp.name, exp.mlflow_description())
    if not train:
        return _train_rank0(rr, dm, exp_id, opts, resume_from=None, checkpoints=False)

    def waiting(holder):
        print(f"[repro] {arm} seed {seed}: another process ({holder}) is training this run; "
              "waiting for it to finish", file=sys.stderr, flush=True)

    # one process per run key at a time: a second `repro run` waits here, then reuses the result
    with file_lock(lock_path(rr.key), on_wait=waiting):
        if not opts.force:
            done = ts.find_finished(uri, None, rr.key)
            if done is not None:
                return reused_outcome(uri, arm, seed, done)
        # multi-process runs restart rather than resume: the other ranks cannot see rank 0's
        # resume decision before the process group exists (see _train_rank_worker)
        resume_from = None if opts.force or dist.world_size(rr.config.trainer) > 1 else \
            ts.find_resumable(uri, rr.key)
        return _train_rank0(rr, dm, exp_id, opts, resume_from=resume_from, checkpoints=True)


def reused_outcome(uri: str, arm: str, seed: int, done) -> RunOutcome:
    """The outcome of a FINISHED run reused instead of trained: its final val loss and speed."""
    hist = ts.metric_history(uri, done.info.run_id, ts.M_VAL_LOSS)
    return RunOutcome(arm, seed, done.info.run_id, "reused", hist[-1][1] if hist else math.nan,
                      done.data.metrics.get(ts.M_TOKENS_PER_S, math.nan), 0.0)


def _train_rank_worker(rr: ResolvedRun, dm, opts: RunOptions, *, reuse: bool,
                       checkpoints: bool) -> RunOutcome:
    """A DDP rank > 0 (Lightning's re-launch of this command, torchrun, srun): make the same
    reuse decision as rank 0, then meet it in ``fit`` with the same collective-calling callbacks
    (checkpointing barriers) and no logger. It writes nothing; rank 0 owns the MLflow run."""
    from repro.lit.callbacks import Throughput
    from repro.lit.checkpoint import ResumeState
    from repro.lit.trainer import fit

    if reuse:
        done = ts.find_finished(opts.uri, None, rr.key)
        if done is not None:  # rank 0 reuses it too: no fit to meet
            return RunOutcome(rr.arm, rr.seed, done.info.run_id, "reused", math.nan, math.nan,
                              0.0)
    t0 = time.time()
    # rank 0 checkpoints at every evaluation; saving has barriers
    system, trainer = _system_and_trainer(rr.config, rr.seed, None,
                                          [Throughput(), ResumeState(rr.key), *opts.callbacks],
                                          opts.progress,
                                          checkpoint_dir(rr.key) if checkpoints else None)
    fit(trainer, system, dm, rr.config)
    return RunOutcome(rr.arm, rr.seed, "", "worker", math.nan, math.nan, time.time() - t0)


def _system_and_trainer(run: RunConfig, seed: int, logger, callbacks: list, progress: bool,
                        ckdir: Path | None):
    """The seeded model and its trainer; with ``ckdir``, checkpoints at every evaluation."""
    import lightning as L

    from repro.lit.system import LMSystem
    from repro.lit.trainer import build_trainer, checkpoint_callback

    L.seed_everything(seed, workers=True, verbose=False)
    system = LMSystem(run)
    if ckdir is not None:
        callbacks = [*callbacks, checkpoint_callback(ckdir)]
    # rank > 0 passes logger None; Lightning takes False for "no logger"
    trainer = build_trainer(run, logger if logger is not None else False, callbacks, progress,
                            checkpointing=ckdir is not None)
    return system, trainer


class RunFailed(RuntimeError):
    """One or more (arm, seed) runs failed (diverged, crashed); each is marked FAILED in MLflow
    with a ``repro.failure_reason`` tag. ``str()`` is one line."""


def _machine_tags() -> dict[str, str]:
    """CPU model, kernel ISA capability and threads: the verdict engine never pairs two arms of
    one seed trained on different CPU types (repro.experiments.claims.Results.seeds)."""
    import torch

    from repro.machine import run_machine

    m = run_machine(torch.get_num_threads())
    return {ts.T_CPU_MODEL: m["cpu_model"], ts.T_CPU_CAPABILITY: m["cpu_capability"],
            ts.T_THREADS: m["threads"]}


def _train_rank0(rr: ResolvedRun, dm, exp_id: str, opts: RunOptions, *, resume_from,
                 checkpoints: bool) -> RunOutcome:
    """Rank 0: own the MLflow run (create, or reopen ``resume_from``), train, save, finish.
    ``checkpoints``: last.ckpt / best.ckpt at every evaluation (train runs; not sweep trials).
    ``opts.uri`` is resolved (``train_one``)."""
    import torch

    from repro.lit.callbacks import Throughput
    from repro.lit.checkpoint import FaultInjection, GracefulStop, ResumeState, RunInterrupted
    from repro.lit.trainer import fit
    from repro.tracking.lifecycle import owner_tags, tracked_run

    uri = opts.uri
    client = ts.client(uri)
    ckdir = checkpoint_dir(rr.key) if checkpoints else None
    tags = {**rr.identity_tags(), ts.T_GIT: ts.git_sha(), **owner_tags(),
            ts.T_TORCH: torch.__version__, ts.T_DEVICE: device_label(rr.config),
            **_machine_tags(), ts.T_ROLE: opts.role, **opts.extra_tags}
    superseded = None
    if resume_from is not None and not (checkpoint_dir(rr.key) / "last.ckpt").exists():
        # killed (or out of disk) before its first checkpoint: reopening it would retrain from
        # step 0 and log each (metric, step) a second time. A fresh run instead: its history is
        # exactly its weights' (MLflow cannot delete a metric's history); the old run is marked
        # and soft-deleted below (hidden from searches; `MlflowClient.restore_run` undoes it).
        superseded, resume_from = resume_from, None
    with tracked_run(client, exp_id, tags=tags, run_name=opts.run_name or rr.run_name,
                     resume=resume_from, interrupts=(RunInterrupted,)) as mlrun:
        run_id, ckpt_path = mlrun.run_id, None
        if superseded is not None:
            _supersede(client, superseded, run_id)
        if mlrun.resumed:
            last = checkpoint_dir(rr.key) / "last.ckpt"
            ckpt_path = last if last.exists() else None
        elif ckdir is not None:  # a fresh run (or --force) never resumes an older run's checkpoints
            for name in ("last.ckpt", "best.ckpt"):
                (ckdir / name).unlink(missing_ok=True)
        t0 = time.time()
        with GracefulStop(ckdir / "last.ckpt" if ckdir is not None else None) as stop:
            if not mlrun.resumed:
                _log_inputs(mlrun, rr, dm)
            start_step = _resume_step(rr, run_id, ckpt_path)
            # the train stream continues at window global_step x global batch
            dm.train_offset = start_step * rr.config.train.batch_size
            logger = _mlflow_logger(client, rr.experiment, uri, run_id,
                                    resumed=ckpt_path is not None)
            tp = Throughput()
            system, trainer = _system_and_trainer(
                rr.config, rr.seed, logger,
                [tp, ResumeState(rr.key), FaultInjection(), stop, *opts.callbacks], opts.progress,
                ckdir)
            stop.check(start_step)
            fit(trainer, system, dm, rr.config, ckpt_path)
        final = _finish(client, uri, run_id, rr, system, tp)
    return RunOutcome(rr.arm, rr.seed, run_id, "trained", final, tp.tokens_per_s,
                      time.time() - t0)


def _supersede(client, old, new_id: str) -> None:
    """Mark the interrupted run ``old`` (no checkpoint) as replaced by ``new_id`` and delete it
    (MLflow's soft delete: hidden from searches and the UI, kept in the store)."""
    old_id = old.info.run_id
    client.set_tag(old_id, ts.T_SUPERSEDED, new_id)
    client.set_tag(old_id, ts.T_FAIL, f"interrupted before its first checkpoint; retrained from "
                   f"step 0 as run {new_id}")
    client.delete_run(old_id)
    print(f"[repro] run {old_id[:8]} stopped before its first checkpoint: retraining from step 0 "
          f"as run {new_id[:8]} (the old run is deleted, not reopened, so no step is logged "
          "twice)", file=sys.stderr, flush=True)


def _log_inputs(mlrun, rr: ResolvedRun, dm) -> None:
    """A fresh run's params (the flattened config and seed), config.json and dataset inputs."""
    from repro.tracking.datasets import log_data_inputs

    params = {k: (json.dumps(v) if isinstance(v, list) else v)
              for k, v in flatten(to_dict(rr.config)).items()}
    params["seed"] = rr.seed
    mlrun.log_params(params)
    mlrun.log_json("config.json", {"run": to_dict(rr.config), "seed": rr.seed,
                                   "experiment": rr.experiment, "arm": rr.arm,
                                   "scale": rr.scale})
    log_data_inputs(mlrun.client, mlrun.run_id, dm)  # the UI's Dataset column


def _resume_step(rr: ResolvedRun, run_id: str, ckpt_path: Path | None) -> int:
    """The global step ``ckpt_path`` was saved at (0 for a fresh start)."""
    from repro.lit.checkpoint import load_checkpoint_file

    if ckpt_path is None:
        return 0
    step = int(load_checkpoint_file(ckpt_path, run_key=rr.key)["global_step"])
    print(f"[repro] {rr.arm} seed {rr.seed}: resuming run {run_id[:8]} from step "
          f"{step} ({ckpt_path})", file=sys.stderr, flush=True)
    return step


def _mlflow_logger(client, experiment: str, uri: str, run_id: str, resumed: bool):
    from lightning.pytorch.loggers import MLFlowLogger

    logger = MLFlowLogger(experiment_name=experiment, tracking_uri=uri, run_id=run_id,
                          log_model=False)
    logger._mlflow_client = ts.RetryingClient(logger._mlflow_client)
    if resumed:
        _log_each_step_once(logger, client, run_id)
    # the run's status is ours to set (FINISHED only once weights and plots are saved)
    logger.finalize = lambda *a, **k: None
    return logger


def _finish(client, uri: str, run_id: str, rr: ResolvedRun, system, tp) -> float:
    """After fit: throughput, final weights and the loss-curve plot; the final val loss
    (FloatingPointError when it is not finite)."""
    step = rr.config.train.max_steps
    client.log_metric(run_id, ts.M_TOKENS_PER_S, tp.tokens_per_s, step=step)
    _log_contention(client, run_id, tp, step)
    ckpt = save_weights(system.model, rr.key)
    client.set_tag(run_id, ts.T_WEIGHTS, ts.weights_tag(ckpt))  # relative: a store can move
    hist = ts.metric_history(uri, run_id, ts.M_VAL_LOSS)
    final = hist[-1][1] if hist else math.nan
    if not math.isfinite(final):
        raise FloatingPointError(f"final validation loss is {final}")
    _log_curve_plot(client, run_id, uri, f"{rr.experiment} [{rr.scale}] / arm {rr.arm} / "
                    f"seed {rr.seed}: train and validation loss")
    return final


def _log_contention(client, run_id: str, tp, step: int) -> None:
    """The run's CPU time, CPU share, load average and co-running repro processes (so a
    contended run shows in the UI next to its tokens/s)."""
    c = tp.contention.summary()
    values = {ts.M_TRAIN_CPU_S: tp.cpu, ts.M_TRAIN_WALL_S: tp.elapsed,
              ts.M_TOKENS_PER_CPU_S: tp.tokens_per_cpu_s, ts.M_CPU_SHARE: tp.cpu_share,
              ts.M_LOAD_MEAN: c["load_mean"], ts.M_LOAD_MAX: c["load_max"],
              ts.M_PEERS_MAX: c["peers_max"]}
    for name, v in values.items():
        if math.isfinite(v):
            client.log_metric(run_id, name, float(v), step=step)
    client.set_tag(run_id, ts.T_PEERS, "; ".join(c["peers"])[:4900] or "none")


def _log_each_step_once(logger, client, run_id: str) -> None:
    """After a resume, steps between the checkpoint and the interruption train again and log
    the same values again (the resume is exact): keep each (metric, step) once in MLflow by
    dropping what the interrupted process already logged (steps <= its last step per metric)."""
    done = {m.key: m.step for m in client.get_run(run_id).data._metric_objs}
    inner = logger.log_metrics

    def log_metrics(metrics, step=None):
        if step is not None:
            metrics = {k: v for k, v in metrics.items() if step > done.get(k, -1)}
        if metrics:
            inner(metrics, step)

    logger.log_metrics = log_metrics


def checkpoint_dir(key: str) -> Path:
    from repro.paths import runs_dir

    return runs_dir() / "checkpoints" / key


def save_weights(model, key: str) -> Path:
    """Final model weights (state dict) for eval-time studies; written atomically."""
    import io

    import torch

    from repro.paths import atomic_write_bytes

    buf = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, buf)
    path = checkpoint_dir(key) / "final.pt"
    atomic_write_bytes(path, buf.getvalue())
    return path


def _log_curve_plot(client, run_id: str, uri: str, title: str) -> None:
    from repro.experiments.plots import loss_curve_figure

    train = ts.metric_history(uri, run_id, ts.M_TRAIN_LOSS)
    val = ts.metric_history(uri, run_id, ts.M_VAL_LOSS)
    with tempfile.TemporaryDirectory() as td:
        path = Path(td) / "loss_curve.png"
        loss_curve_figure({"train": train, "val": val}, title, path)
        client.log_artifact(run_id, str(path))


def _stops_the_command(e: BaseException) -> bool:
    """A user mistake (config, data, checkpoint, store: a ``UserError``) or a stop ends the whole
    command; any other failure is one run's (marked FAILED) and the others go on."""
    from repro.lit.checkpoint import RunInterrupted

    return isinstance(e, (UserError, RunInterrupted))


def _train_in_process(grid: list[tuple[Experiment, str, int]],
                      opts: RunOptions) -> tuple[list[RunOutcome], list[str]]:
    """Train each (experiment, arm, seed) in this process, one after another. A run that fails
    is marked FAILED and reported; the others go on."""
    from repro.lit.progress import RunCounter

    outcomes, failed, counter = [], [], RunCounter(grid)
    echo = opts.echo
    for exp, arm, seed in grid:
        echo(counter.start(exp, arm, seed))  # "run 3/12 · ARM · seed S" + the command's totals
        try:
            o = train_one(exp, arm, seed, opts)
            counter.done(o.status)
        except Exception as e:  # noqa: BLE001 - recorded in MLflow; keep going
            counter.done("failed")
            if _stops_the_command(e):
                raise
            msg = (str(e).strip().splitlines() or [""])[0][:300]
            echo(f"  -> FAILED: {type(e).__name__}: {msg}")
            failed.append(f"{exp.name} arm={arm} seed={seed}: {type(e).__name__}: {msg}")
            sys.stdout.flush()
            continue
        echo(f"  -> {o.status}: val loss {o.final_val_loss:.4f}, {o.tokens_per_s:,.0f} tok/s, "
             f"{o.seconds:.0f}s (run {o.run_id[:8]})")
        outcomes.append(o)
        sys.stdout.flush()
    return outcomes, failed


def run_experiment(exp: Experiment, opts: RunOptions | None = None, *,
                   arms: list[str] | None = None,
                   seeds: list[int] | None = None) -> list[RunOutcome]:
    """Validate matching, then train every (arm, seed) not already finished.

    A failing (arm, seed) (e.g. a diverged loss) is marked FAILED and the others still train;
    ``RunFailed`` is raised at the end. An interruption stops the whole command. ``jobs > 1``
    trains the grid in that many child processes (``repro.experiments.parallel``)."""
    opts = opts or RunOptions()
    opts = replace(opts, uri=ts.resolve_uri(opts.uri))
    uri, overrides, echo = opts.uri, list(opts.overrides), opts.echo
    exp.validate(overrides)
    arm_names = arms or [a.name for a in exp.arms]
    for a in arm_names:
        exp.arm(a)  # unknown arm -> error with close matches, before any training
    preflight(exp, arm_names, overrides)
    seeds = list(seeds) if seeds else list(exp.seeds)
    for r in ts.mark_stale(uri, exp.name):
        echo(f"[repro] marked run {r.info.run_id[:8]} ({r.data.tags.get(ts.T_ARM)} seed "
             f"{r.data.tags.get(ts.T_SEED)}) FAILED: its process {r.data.tags.get(ts.T_PID)} "
             "died; it resumes below if it is part of this command")
    grid = [(exp, arm, seed) for arm in arm_names for seed in seeds]
    if opts.jobs == 1:  # finished runs are reused under their lock by train_one
        return _train_grid(grid, opts)
    # --jobs: finished runs are skipped here, not by a child process each (~12 s of start-up)
    reused, todo = [], []
    data = DataFingerprints()
    for e, arm, seed in grid:
        done = None if opts.force else ts.find_finished(
            uri, None, resolve_run(e, arm, seed, overrides, data).key)
        if done is None:
            todo.append((e, arm, seed))
        else:
            reused.append(reused_outcome(uri, arm, seed, done))
    if reused:
        echo(f"[repro] {len(reused)} of {len(grid)} runs already finished (reused); "
             f"{len(todo)} to train")
    if not todo:
        return reused
    return reused + _train_grid(todo, opts)


def _train_grid(grid: list[tuple[Experiment, str, int]], opts: RunOptions) -> list[RunOutcome]:
    """Train ``grid`` in this process (``opts.jobs == 1``) or in ``opts.jobs`` child processes;
    raise RunFailed at the end if any run failed (the others still ran)."""
    jobs, echo = opts.jobs, opts.echo
    if jobs > max(len(grid), 1):
        echo(f"[repro] --jobs {jobs}: only {len(grid)} run(s) to train; using {max(len(grid), 1)} "
             "process(es)")
        jobs = max(len(grid), 1)
    if jobs > 1:
        from repro.experiments.parallel import run_parallel

        outcomes, failed = run_parallel(grid, list(opts.overrides), opts.uri, jobs,
                                        opts.threads, opts.force, echo)
    else:
        outcomes, failed = _train_in_process(grid, opts)
        _report_to_parent(outcomes, failed)
    if failed:
        raise RunFailed(f"{len(failed)} of {len(failed) + len(outcomes)} runs failed and are "
                        f"marked FAILED in MLflow ({failed[0]}{'; ...' if len(failed) > 1 else ''})"
                        "; fix the cause and rerun the same command")
    return outcomes


def _report_to_parent(outcomes: list[RunOutcome], failed: list[str]) -> None:
    """In a ``--jobs`` child (``repro.pool`` set REPRO_RESULT_FILE): the outcomes and failures
    as its JSON result file, written atomically; DDP ranks > 0 write nothing."""
    from dataclasses import asdict

    from repro import dist
    from repro.pool import write_result

    if dist.global_rank() == 0 and all(o.status != "worker" for o in outcomes):
        write_result({"outcomes": [asdict(o) for o in outcomes], "failed": failed})


def plan_runs(exps: list[Experiment], seeds: list[int] | None, overrides: list[str], uri: str,
              force: bool = False) -> tuple[list[tuple[Experiment, str, int]], dict[str, int]]:
    """The (experiment, arm, seed) runs a suite still needs, one per run key.

    Arms shared between experiments (same config, data and seed) appear once, under the first
    experiment that lists them; keys with a FINISHED run are left out unless ``force``.
    Returns the runs to train and counts {"total", "distinct", "finished", "todo"}."""
    data = DataFingerprints()
    seen: set[str] = set()
    todo, total, finished = [], 0, 0
    for exp in exps:  # every experiment checked before any data is built or run created
        exp.validate(overrides)
        preflight(exp, [a.name for a in exp.arms], overrides)
    for exp in exps:
        for arm in exp.arms:
            for seed in (seeds or list(exp.seeds)):
                total += 1
                key = resolve_run(exp, arm, seed, overrides, data).key
                if key in seen:
                    continue
                seen.add(key)
                if not force and ts.find_finished(uri, None, key) is not None:
                    finished += 1
                    continue
                todo.append((exp, arm.name, seed))
    return todo, {"total": total, "distinct": len(seen), "finished": finished,
                  "todo": len(todo)}


def run_suite(exps: list[Experiment], opts: RunOptions | None = None, *,
              seeds: list[int] | None = None) -> list[RunOutcome]:
    """`repro run all`: every experiment's runs, each distinct run key trained once."""
    opts = opts or RunOptions()
    opts = replace(opts, uri=ts.resolve_uri(opts.uri))
    echo = opts.echo
    for r in ts.mark_stale(opts.uri, None):
        echo(f"[repro] marked run {r.info.run_id[:8]} FAILED: its process died")
    todo, n = plan_runs(exps, seeds, list(opts.overrides), opts.uri, opts.force)
    echo(f"[repro] suite of {len(exps)} experiments: {n['total']} (arm, seed) entries, "
         f"{n['distinct']} distinct runs, {n['finished']} already finished, {n['todo']} to train")
    return _train_grid(todo, opts)
