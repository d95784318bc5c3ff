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
import socket
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

from repro.config import config_hash, flatten, to_dict
from repro.experiments.base import Experiment
from repro.lit.config import RunConfig
from repro.tracking import store as ts

T_RESUMES = "repro.resumes"  # how many times an interrupted run was reopened


@dataclass
class RunOutcome:
    arm: str
    seed: int
    run_id: str
    status: str  # trained | reused | failed
    final_val_loss: float
    tokens_per_s: float
    seconds: float


def run_key(run: RunConfig, data_fingerprint: str, seed: int) -> str:
    return config_hash({"run": to_dict(run), "data": data_fingerprint, "seed": seed}, n=16)


def _precision(run: RunConfig, accelerator: str) -> str:
    if run.train.precision != "auto":
        return run.train.precision
    return "bf16-mixed" if accelerator in ("gpu", "cuda") else "32-true"


def check_device(run: RunConfig) -> None:
    """Lightning-level settings this machine cannot honour, refused before any run is created:
    an accelerator with no device behind it, and fp16 autocast on CPU (Lightning would train
    bf16 there while the run records ``16-mixed``)."""
    import torch

    from repro.config import ConfigError

    accel = run.trainer.accelerator
    if accel in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ConfigError("trainer.accelerator", f"{accel!r} but no CUDA device is available; "
                          "use trainer.accelerator=cpu (or auto) on this machine")
    if accel == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("trainer.accelerator", "'mps' but no Apple MPS device is available; "
                          "use trainer.accelerator=cpu (or auto) on this machine")
    if run.train.precision == "16-mixed" and _accelerator(run) == "cpu":
        raise ConfigError("train.precision", "'16-mixed' (fp16 autocast) needs CUDA: on CPU "
                          "Lightning trains bf16 instead while the run would record 16-mixed; "
                          "use auto, 32-true or bf16-mixed on CPU")


def preflight(exp: Experiment, arms: list[str], overrides: list[str],
              kind: str = "train") -> None:
    """Everything checkable before the first MLflow run is created, for every arm of the command:
    the resolved config (domains, memory estimate), scale-out, device and precision, and each
    distinct data source (readable local files, a reachable hub)."""
    from repro import dist
    from repro.data.sources import check_source

    sources = set()
    for arm in arms:
        run = exp.run_config(arm, overrides)
        dist.check_run(run, kind)
        check_device(run)
        key = json.dumps(to_dict(run.data), sort_keys=True)
        if key not in sources:
            sources.add(key)
            check_source(run.data)


def prepare_data(run: RunConfig, seed: int):
    from repro.data import LMDataModule
    from repro.dist import per_rank_batch

    # train.batch_size is the global batch: each of the W ranks loads batch_size / W
    dm = LMDataModule(run.data, batch_size=per_rank_batch(run), seed=seed)
    dm.prepare_data()
    dm.setup("fit")
    return dm


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


def train_one(exp: Experiment, arm: str, seed: int, overrides: list[str], uri: str,
              progress: bool = True, force: bool = False, *, extra_tags: dict | None = None,
              callbacks: list | None = None, kind: str = "train",
              run_name: str | None = None) -> RunOutcome:
    """Train one (arm, seed) into its own MLflow run and return the outcome.

    ``extra_tags`` (e.g. ``mlflow.parentRunId`` for sweep trials), ``callbacks`` (e.g. an Optuna
    pruning callback) and ``kind`` (the ``repro.kind`` tag) let sweeps reuse this path. Reuse of a
    finished run only applies to ``kind == "train"``.
    """

    from repro import dist
    from repro.tracking.locks import file_lock, lock_path

    quiet_third_party()
    base = exp.run_config(arm, overrides)
    dist.check_run(base, kind)
    check_device(base)
    dm = prepare_data(base, seed)
    run = replace(base, model=replace(base.model, vocab_size=dm.vocab_size))
    key = run_key(run, dm.fingerprint, seed)
    uri = ts.resolve_uri(uri)
    if not dist.is_rank_zero(run.trainer):  # DDP rank > 0: train in lockstep, write nothing
        return _train_rank_worker(arm, seed, run, dm, key, uri, progress, force, callbacks, kind)
    exp_id = ts.ensure_experiment(uri, exp.name)
    if kind != "train":  # sweep trials: no reuse, no resume, no checkpoints
        return _train_rank0(exp, arm, seed, run, dm, key, uri, exp_id, progress, extra_tags,
                            callbacks, kind, run_name, resume_from=None)

    def waiting(holder):
        print(f"[repro] {arm} seed {seed}: another process ({holder}) is training this run; "
              "waiting for it to finish", file=sys.stderr, flush=True)

    # one process per run key at a time: a second `repro run` waits here, then reuses the result
    with file_lock(lock_path(key), on_wait=waiting):
        if not force:
            done = ts.find_finished(uri, None, key)
            if done is not None:
                hist = ts.metric_history(uri, done.info.run_id, ts.M_VAL_LOSS)
                return RunOutcome(arm, seed, done.info.run_id, "reused",
                                  hist[-1][1] if hist else math.nan,
                                  done.data.metrics.get(ts.M_TOKENS_PER_S, math.nan), 0.0)
        # multi-process runs restart rather than resume: the other ranks cannot see rank 0's
        # resume decision before the process group exists (see _train_rank_worker)
        resume_from = None if force or dist.world_size(run.trainer) > 1 else \
            ts.find_resumable(uri, key)
        return _train_rank0(exp, arm, seed, run, dm, key, uri, exp_id, progress, extra_tags,
                            callbacks, kind, run_name, resume_from=resume_from)


def _train_rank_worker(arm, seed, run, dm, key, uri, progress, force, callbacks,
                       kind) -> RunOutcome:
    """A DDP rank > 0 (Lightning's re-launch of this command, torchrun, srun): make the same
    reuse decision as rank 0, then meet it in ``fit`` with the same collective-calling callbacks
    (checkpointing barriers) and no logger. It writes nothing; rank 0 owns the MLflow run."""
    import lightning as L

    from repro.lit.callbacks import Throughput
    from repro.lit.checkpoint import ResumeState
    from repro.lit.system import LMSystem

    if not force and kind == "train":
        done = ts.find_finished(uri, None, key)
        if done is not None:  # rank 0 reuses it too: no fit to meet
            return RunOutcome(arm, seed, done.info.run_id, "reused", math.nan, math.nan, 0.0)
    t0 = time.time()
    L.seed_everything(seed, workers=True, verbose=False)
    system = LMSystem.from_run_config(run)
    cbs = [Throughput(), ResumeState(), *(callbacks or [])]
    if kind == "train":  # rank 0 checkpoints at every evaluation; saving has barriers
        from lightning.pytorch.callbacks import ModelCheckpoint

        cbs.append(ModelCheckpoint(dirpath=checkpoint_dir(key), filename="best",
                                   monitor=ts.M_VAL_LOSS, mode="min", save_top_k=1,
                                   save_last=True, auto_insert_metric_name=False,
                                   enable_version_counter=False))
    trainer = _trainer(run, False, cbs, progress, checkpointing=kind == "train")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*exists and is not empty.*")
        trainer.fit(system, datamodule=dm)
    if run.train.max_steps % run.train.eval_every != 0:
        trainer.validate(system, datamodule=dm, verbose=False)
    return RunOutcome(arm, seed, "", "worker", math.nan, math.nan, time.time() - t0)


class RunFailed(RuntimeError):
    """One or more (arm, seed) runs failed (diverged, crashed); each is marked FAILED in MLflow
    with a ``repro.failure_reason`` tag. ``str()`` is one line."""


def _train_rank0(exp, arm, seed, run, dm, key, uri, exp_id, progress, extra_tags, callbacks,
                 kind, run_name, resume_from) -> RunOutcome:
    import lightning as L
    import torch

    from repro.lit.callbacks import Throughput
    from repro.lit.checkpoint import (
        FaultInjection,
        GracefulStop,
        ResumeState,
        RunInterrupted,
        load_checkpoint_file,
    )
    from repro.lit.system import LMSystem

    client = ts.client(uri)
    ckdir = checkpoint_dir(key)
    keep_ckpts = kind == "train"
    tags = {ts.T_EXPERIMENT: exp.name, ts.T_VERSION: exp.version, ts.T_ARM: arm,
            ts.T_SEED: str(seed), ts.T_GIT: ts.git_sha(), ts.T_HASH: config_hash(run),
            ts.T_KEY: key, ts.T_SCALE: exp.scale, ts.T_KIND: kind,
            ts.T_PID: str(os.getpid()), ts.T_HOST: socket.gethostname(),
            ts.T_PID_SINCE: f"{time.time():.3f}", ts.T_DATA_FP: dm.fingerprint,
            "repro.torch": torch.__version__, ts.T_DEVICE: device_label(run)}
    tags.update(extra_tags or {})
    ckpt_path = None
    if resume_from is not None:
        # reopen the interrupted run: same run id, this process now owns it
        run_id = resume_from.info.run_id
        n = int(resume_from.data.tags.get(T_RESUMES, "0")) + 1
        # take ownership (pid, host, since) *before* the run shows RUNNING again, so that a
        # concurrent stale check never sees RUNNING next to the dead previous owner's pid
        for k, v in {ts.T_PID: str(os.getpid()), ts.T_HOST: socket.gethostname(),
                     ts.T_PID_SINCE: f"{time.time():.3f}", ts.T_GIT: ts.git_sha(),
                     T_RESUMES: str(n)}.items():
            client.set_tag(run_id, k, v)
        client.update_run(run_id, status="RUNNING")
        if ts.T_FAIL in resume_from.data.tags:
            client.delete_tag(run_id, ts.T_FAIL)
        if (ckdir / "last.ckpt").exists():
            ckpt_path = ckdir / "last.ckpt"
    else:
        mlrun = client.create_run(exp_id, tags=tags,
                                  run_name=run_name or ts.run_name(f"{arm}-s{seed}", exp.scale))
        run_id = mlrun.info.run_id
        if keep_ckpts:  # a fresh run (or --force) never resumes an older run's checkpoints
            for name in ("last.ckpt", "best.ckpt"):
                (ckdir / name).unlink(missing_ok=True)
    t0 = time.time()
    stop = GracefulStop(ckdir / "last.ckpt" if keep_ckpts else None)
    try:
        with stop:
            if resume_from is None:
                params = {k: (json.dumps(v) if isinstance(v, list) else v)
                          for k, v in flatten(to_dict(run)).items()}
                params["seed"] = seed
                from mlflow.entities import Param

                client.log_batch(run_id, params=[Param(k, str(v)[:500])
                                                 for k, v in params.items()])
                with tempfile.TemporaryDirectory() as td:
                    p = Path(td) / "config.json"
                    p.write_text(json.dumps({"run": to_dict(run), "seed": seed,
                                             "experiment": exp.name, "arm": arm,
                                             "scale": exp.scale}, indent=2))
                    client.log_artifact(run_id, str(p))
                from repro.tracking.datasets import log_data_inputs

                log_data_inputs(client, run_id, dm)  # the UI's Dataset column
            start_step = 0
            if ckpt_path is not None:
                start_step = int(load_checkpoint_file(ckpt_path)["global_step"])
                print(f"[repro] {arm} seed {seed}: resuming run {run_id[:8]} from step "
                      f"{start_step} ({ckpt_path})", file=sys.stderr, flush=True)
            # the train stream continues at window global_step x global batch
            dm.train_offset = start_step * run.train.batch_size

            from lightning.pytorch.loggers import MLFlowLogger

            logger = MLFlowLogger(experiment_name=exp.name, tracking_uri=uri, run_id=run_id,
                                  log_model=False)
            logger._mlflow_client = ts.RetryingClient(logger._mlflow_client)
            if ckpt_path is not None:
                _log_each_step_once(logger, client, run_id)
            # the run's status is ours to set (FINISHED only once weights and plots are saved)
            logger.finalize = lambda *a, **k: None
            L.seed_everything(seed, workers=True, verbose=False)
            system = LMSystem.from_run_config(run)
            tp = Throughput()
            t = run.train
            cbs = [tp, ResumeState(), FaultInjection(), stop, *(callbacks or [])]
            if keep_ckpts:
                from lightning.pytorch.callbacks import ModelCheckpoint

                # at every evaluation: last.ckpt (resume) and best.ckpt (lowest val/loss)
                cbs.append(ModelCheckpoint(dirpath=ckdir, filename="best", monitor=ts.M_VAL_LOSS,
                                           mode="min", save_top_k=1, save_last=True,
                                           auto_insert_metric_name=False,
                                           enable_version_counter=False))
            trainer = _trainer(run, logger, cbs, progress, checkpointing=keep_ckpts)
            stop.check(start_step)
            with warnings.catch_warnings():
                # we resume the data stream ourselves (LMDataModule.train_offset); last.ckpt
                # in the directory is the point of resuming
                warnings.filterwarnings("ignore", ".*dataloader is not resumable.*")
                warnings.filterwarnings("ignore", ".*exists and is not empty.*")
                trainer.fit(system, datamodule=dm, weights_only=True,
                            ckpt_path=str(ckpt_path) if ckpt_path else None)
            if t.max_steps % t.eval_every != 0:
                trainer.validate(system, datamodule=dm, verbose=False)
        client.log_metric(run_id, ts.M_TOKENS_PER_S, tp.tokens_per_s, step=t.max_steps)
        ckpt = save_weights(system.model, key)
        client.set_tag(run_id, ts.T_WEIGHTS, str(ckpt))
        hist = ts.metric_history(uri, run_id, ts.M_VAL_LOSS)
        final = hist[-1][1] if hist else math.nan
        if not math.isfinite(final):
            raise FloatingPointError(f"final validation loss is {final}")
        _log_curve_plot(client, run_id, uri, f"{exp.name} / {arm} / seed {seed}")
        client.set_terminated(run_id, "FINISHED")
        return RunOutcome(arm, seed, run_id, "trained", final, tp.tokens_per_s, time.time() - t0)
    except RunInterrupted as e:
        client.set_tag(run_id, ts.T_FAIL, str(e)[:400])
        client.set_terminated(run_id, "KILLED")
        raise
    except (KeyboardInterrupt, SystemExit) as e:
        client.set_tag(run_id, ts.T_FAIL, f"interrupted ({type(e).__name__}); rerun the same "
                       "command to resume from the last checkpoint")
        client.set_terminated(run_id, "KILLED")
        raise
    except BaseException as e:
        msg = (str(e).strip().splitlines() or [""])[0]
        client.set_tag(run_id, ts.T_FAIL, f"{type(e).__name__}: {msg[:400]}")
        client.set_terminated(run_id, "FAILED")
        raise


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


def _trainer(run: RunConfig, logger, callbacks: list, progress: bool,
             checkpointing: bool = False):
    import lightning as L

    from repro.lit.checkpoint import SafeCheckpointIO

    accel = _accelerator(run)
    t = run.train
    if progress:  # total steps, ETA over this process's steps (repro.lit.progress)
        from repro.lit.progress import StepBar

        callbacks = [*callbacks, StepBar()]
    return L.Trainer(
        max_steps=t.max_steps, val_check_interval=t.eval_every, check_val_every_n_epoch=None,
        logger=logger, callbacks=callbacks, enable_checkpointing=checkpointing,
        plugins=[SafeCheckpointIO()],
        gradient_clip_val=t.grad_clip or None, precision=_precision(run, accel),
        deterministic=(True if accel == "cpu" else "warn") if t.deterministic else False,
        accelerator=accel, devices=run.trainer.devices, num_nodes=run.trainer.num_nodes,
        strategy=run.trainer.strategy, enable_progress_bar=progress,
        # Lightning flushes logged values when (step + 1) % log_every_n_steps == 0; LMSystem
        # logs on exactly those steps (see LMSystem.training_step)
        enable_model_summary=False, num_sanity_val_steps=0, log_every_n_steps=t.log_every)


def _accelerator(run: RunConfig) -> str:
    """trainer.accelerator with ``auto`` resolved: gpu when CUDA is available, else cpu."""
    import torch

    accel = run.trainer.accelerator
    if accel == "auto":
        accel = "gpu" if torch.cuda.is_available() else "cpu"
    return accel


def device_label(run: RunConfig) -> str:
    """Where this process trains: "cuda:<name> (<precision>)" or "cpu (<arch>, <n> threads)"."""
    import platform

    import torch

    accel = _accelerator(run)
    if accel in ("gpu", "cuda") and torch.cuda.is_available():
        return f"cuda:{torch.cuda.get_device_name(0)} ({_precision(run, 'gpu')})"
    return f"cpu ({platform.machine()}, {torch.get_num_threads()} threads)"


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
    """A user mistake (config, data, checkpoint, store) or a stop ends the whole command; any
    other failure is one run's (marked FAILED) and the others go on."""
    from repro.config import ConfigError
    from repro.data.errors import DataError
    from repro.lit.checkpoint import CheckpointError, RunInterrupted
    from repro.registry import RegistryError

    return isinstance(e, (ConfigError, DataError, CheckpointError, RegistryError,
                          ts.TrackingError, RunInterrupted))


def _train_in_process(grid: list[tuple[Experiment, str, int]], overrides: list[str], uri: str,
                      progress: bool, force: bool, echo) -> tuple[list[RunOutcome], list[str]]:
    """Train each (experiment, arm, seed) in this process, one after another. A run that fails
    is marked FAILED and reported; the others go on. The outcome line is parsed by
    ``repro.experiments.parallel`` when this runs in a ``--jobs`` child."""
    from repro.lit.progress import RunCounter

    outcomes, failed, counter = [], [], RunCounter(grid)
    for exp, arm, seed in grid:
        echo(counter.start(exp, arm, seed))  # "run 3/12 · ARM · seed S" + the command's totals
        try:
            o = train_one(exp, arm, seed, overrides, uri, progress=progress, force=force)
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


def run_experiment(exp: Experiment, arms: list[str] | None = None, seeds: list[int] | None = None,
                   overrides: list[str] | None = None, uri: str | None = None,
                   progress: bool = True, force: bool = False, echo=print, jobs: int = 1,
                   threads: int | None = None) -> list[RunOutcome]:
    """Validate matching, then train every (arm, seed) not already finished.

    A failing (arm, seed) (e.g. a diverged loss) is marked FAILED and the others still train;
    ``RunFailed`` is raised at the end. An interruption stops the whole command. ``jobs > 1``
    trains the grid in that many child processes (``repro.experiments.parallel``)."""
    uri = ts.resolve_uri(uri)
    overrides = list(overrides or [])
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
    return _train_grid(grid, overrides, uri, progress, force, echo, jobs, threads)


def _train_grid(grid: list[tuple[Experiment, str, int]], overrides: list[str], uri: str,
                progress: bool, force: bool, echo, jobs: int,
                threads: int | None) -> list[RunOutcome]:
    """Train ``grid`` in this process (``jobs == 1``) or in ``jobs`` child processes; raise
    RunFailed at the end if any run failed (the others still ran)."""
    if jobs > max(len(grid), 1):
        echo(f"[repro] --jobs {jobs}: only {len(grid)} run(s) to train; using {max(len(grid), 1)} "
             "process(es)")
        jobs = max(len(grid), 1)
    if jobs > 1:
        from repro.experiments.parallel import run_parallel

        outcomes, failed = run_parallel(grid, overrides, uri, jobs, threads, force, echo)
    else:
        outcomes, failed = _train_in_process(grid, overrides, uri, progress, force, echo)
    if failed:
        raise RunFailed(f"{len(failed)} of {len(failed) + len(outcomes)} runs failed and are "
                        f"marked FAILED in MLflow ({failed[0]}{'; ...' if len(failed) > 1 else ''})"
                        "; fix the cause and rerun the same command")
    return outcomes


def plan_runs(exps: list[Experiment], seeds: list[int] | None, overrides: list[str], uri: str,
              force: bool = False) -> tuple[list[tuple[Experiment, str, int]], dict[str, int]]:
    """The (experiment, arm, seed) runs a suite still needs, one per run key.

    Arms shared between experiments (same config, data and seed) appear once, under the first
    experiment that lists them; keys with a FINISHED run are left out unless ``force``.
    Returns the runs to train and counts {"total", "distinct", "finished", "todo"}."""
    from repro.config import to_dict

    fingerprints: dict[str, tuple[str, int]] = {}
    seen: set[str] = set()
    todo, total, finished = [], 0, 0
    for exp in exps:  # every experiment checked before any data is built or run created
        exp.validate(overrides)
        preflight(exp, [a.name for a in exp.arms], overrides)
    for exp in exps:
        for arm in exp.arms:
            base = exp.run_config(arm, overrides)
            dkey = json.dumps(to_dict(base.data), sort_keys=True)
            for seed in (seeds or list(exp.seeds)):
                total += 1
                if dkey not in fingerprints:  # the fingerprint does not depend on the seed
                    dm = prepare_data(base, seed)
                    fingerprints[dkey] = (dm.fingerprint, dm.vocab_size)
                fp, vocab = fingerprints[dkey]
                run = replace(base, model=replace(base.model, vocab_size=vocab))
                key = run_key(run, fp, seed)
                if key in seen:
                    continue
                seen.add(key)
                if not force and ts.find_finished(uri, None, key) is not None:
                    finished += 1
                    continue
                todo.append((exp, arm.name, seed))
    return todo, {"total": total, "distinct": len(seen), "finished": finished,
                  "todo": len(todo)}


def run_suite(exps: list[Experiment], seeds: list[int] | None = None,
              overrides: list[str] | None = None, uri: str | None = None, progress: bool = True,
              force: bool = False, echo=print, jobs: int = 1,
              threads: int | None = None) -> list[RunOutcome]:
    """`repro run all`: every experiment's runs, each distinct run key trained once."""
    uri = ts.resolve_uri(uri)
    overrides = list(overrides or [])
    for r in ts.mark_stale(uri, None):
        echo(f"[repro] marked run {r.info.run_id[:8]} FAILED: its process died")
    todo, n = plan_runs(exps, seeds, overrides, uri, force)
    echo(f"[repro] suite of {len(exps)} experiments: {n['total']} (arm, seed) entries, "
         f"{n['distinct']} distinct runs, {n['finished']} already finished, {n['todo']} to train")
    return _train_grid(todo, overrides, uri, progress, force, echo, jobs, threads)
