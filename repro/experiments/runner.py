"""Train the (arm, seed) grid of an experiment with Lightning, logging to MLflow.

A run is identified by its *run key*: hash(resolved run config, data fingerprint, seed). A
FINISHED run with the same key is reused by every experiment that needs it (shared arms).
"""

from __future__ import annotations

import json
import math
import os
import socket
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

from repro.config import config_hash, flatten, to_dict
from repro.experiments.base import Experiment
from repro.lit.config import RunConfig
from repro.tracking import store as ts


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


def prepare_data(run: RunConfig, seed: int):
    from repro.data import LMDataModule

    dm = LMDataModule(run.data, batch_size=run.train.batch_size, seed=seed)
    dm.prepare_data()
    dm.setup("fit")
    return dm


def train_one(exp: Experiment, arm: str, seed: int, overrides: list[str], uri: str,
              progress: bool = True, force: bool = False, *, extra_tags: dict | None = None,
              callbacks: list | None = None, kind: str = "train",
              run_name: str | None = None) -> RunOutcome:
    """Train one (arm, seed) into its own MLflow run and return the outcome.

    ``extra_tags`` (e.g. ``mlflow.parentRunId`` for sweep trials), ``callbacks`` (e.g. an Optuna
    pruning callback) and ``kind`` (the ``repro.kind`` tag) let sweeps reuse this path. Reuse of a
    finished run only applies to ``kind == "train"``.
    """
    import lightning as L
    import torch

    from repro.lit.callbacks import Throughput
    from repro.lit.system import LMSystem

    base = exp.run_config(arm, overrides)
    dm = prepare_data(base, seed)
    run = replace(base, model=replace(base.model, vocab_size=dm.vocab_size))
    key = run_key(run, dm.fingerprint, seed)
    exp_id = ts.ensure_experiment(ts.resolve_uri(uri) if uri else ts.resolve_uri(), exp.name)
    if not force and kind == "train":
        done = ts.find_finished(uri, None, key)
        if done is not None:
            hist = ts.metric_history(uri, done.info.run_id, ts.M_VAL_LOSS)
            return RunOutcome(arm, seed, done.info.run_id, "reused",
                              hist[-1][1] if hist else math.nan,
                              done.data.metrics.get(ts.M_TOKENS_PER_S, math.nan), 0.0)

    client = ts.client(uri)
    tags = {ts.T_EXPERIMENT: exp.name, ts.T_VERSION: exp.version, ts.T_ARM: arm,
            ts.T_SEED: str(seed), ts.T_GIT: ts.git_sha(), ts.T_HASH: config_hash(run),
            ts.T_KEY: key, ts.T_SCALE: exp.scale, ts.T_KIND: kind,
            ts.T_PID: str(os.getpid()), ts.T_HOST: socket.gethostname(),
            "repro.data_fingerprint": dm.fingerprint, "repro.torch": torch.__version__}
    tags.update(extra_tags or {})
    mlrun = client.create_run(exp_id, tags=tags, run_name=run_name or f"{arm}-s{seed}")
    run_id = mlrun.info.run_id
    t0 = time.time()
    try:
        params = {k: (json.dumps(v) if isinstance(v, list) else v)
                  for k, v in flatten(to_dict(run)).items()}
        params["seed"] = seed
        from mlflow.entities import Param

        client.log_batch(run_id, params=[Param(k, str(v)[:500]) for k, v in params.items()])
        with tempfile.TemporaryDirectory() as td:
            p = Path(td) / "config.json"
            p.write_text(json.dumps({"run": to_dict(run), "seed": seed, "experiment": exp.name,
                                     "arm": arm, "scale": exp.scale}, indent=2))
            client.log_artifact(run_id, str(p))

        from lightning.pytorch.loggers import MLFlowLogger

        logger = MLFlowLogger(experiment_name=exp.name, tracking_uri=uri, run_id=run_id,
                              log_model=False)
        L.seed_everything(seed, workers=True, verbose=False)
        system = LMSystem.from_run_config(run)
        tp = Throughput()
        accel = run.trainer.accelerator
        if accel == "auto":
            accel = "gpu" if torch.cuda.is_available() else "cpu"
        t = run.train
        trainer = L.Trainer(
            max_steps=t.max_steps, val_check_interval=t.eval_every, check_val_every_n_epoch=None,
            logger=logger, callbacks=[tp, *(callbacks or [])], enable_checkpointing=False,
            gradient_clip_val=t.grad_clip or None, precision=_precision(run, accel),
            deterministic=(True if accel == "cpu" else "warn") if t.deterministic else False,
            accelerator=accel, devices=run.trainer.devices, num_nodes=run.trainer.num_nodes,
            strategy=run.trainer.strategy, enable_progress_bar=progress,
            enable_model_summary=False, num_sanity_val_steps=0, log_every_n_steps=t.log_every)
        trainer.fit(system, datamodule=dm)
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
    except KeyboardInterrupt:
        client.set_tag(run_id, ts.T_FAIL, "interrupted by user")
        client.set_terminated(run_id, "KILLED")
        raise
    except BaseException as e:
        client.set_tag(run_id, ts.T_FAIL, f"{type(e).__name__}: {str(e)[:400]}")
        client.set_terminated(run_id, "FAILED")
        raise


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


def run_experiment(exp: Experiment, arms: list[str] | None = None, seeds: list[int] | None = None,
                   overrides: list[str] | None = None, uri: str | None = None,
                   progress: bool = True, force: bool = False, echo=print) -> list[RunOutcome]:
    """Validate matching, then train every (arm, seed) not already finished."""
    uri = ts.resolve_uri(uri)
    overrides = list(overrides or [])
    exp.validate(overrides)
    arm_names = arms or [a.name for a in exp.arms]
    for a in arm_names:
        exp.arm(a)  # unknown arm -> error with close matches, before any training
    seeds = list(seeds) if seeds else list(exp.seeds)
    outcomes = []
    for arm in arm_names:
        for seed in seeds:
            echo(f"[repro] {exp.name} arm={arm} seed={seed} scale={exp.scale}")
            o = train_one(exp, arm, seed, overrides, uri, progress=progress, force=force)
            msg = (f"  -> {o.status}: val loss {o.final_val_loss:.4f}, "
                   f"{o.tokens_per_s:,.0f} tok/s, {o.seconds:.0f}s (run {o.run_id[:8]})")
            echo(msg)
            outcomes.append(o)
            sys.stdout.flush()
    return outcomes
