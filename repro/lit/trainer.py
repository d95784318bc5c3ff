"""The Lightning ``Trainer`` of a run: accelerator, precision, device label, callbacks, fit.

Rank 0 (which owns the MLflow run) and DDP ranks > 0 (which train in lockstep and write nothing)
build their trainer here, so both make the same collective calls in ``fit``.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from repro.lit.config import RunConfig
from repro.tracking import store as ts


def accelerator(run: RunConfig) -> str:
    """trainer.accelerator with ``auto`` resolved: gpu when CUDA is available, else cpu."""
    import torch

    accel = run.trainer.accelerator
    if accel == "auto":
        accel = "gpu" if torch.cuda.is_available() else "cpu"
    return accel


def precision(run: RunConfig, accel: str) -> str:
    """train.precision with ``auto`` resolved: bf16 autocast on GPU, fp32 elsewhere."""
    if run.train.precision != "auto":
        return run.train.precision
    return "bf16-mixed" if accel in ("gpu", "cuda") else "32-true"


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
    if run.train.precision == "16-mixed" and accelerator(run) == "cpu":
        raise ConfigError("train.precision", "'16-mixed' (fp16 autocast) needs CUDA: on CPU "
                          "Lightning trains bf16 instead while the run would record 16-mixed; "
                          "use auto, 32-true or bf16-mixed on CPU")


def device_label(run: RunConfig) -> str:
    """Where this process trains: "cuda:<name> (<precision>)" or "cpu (<model>, <arch>, <n>
    threads)" (``repro.machine``)."""
    import torch

    from repro.machine import cpu_label

    accel = accelerator(run)
    if accel in ("gpu", "cuda") and torch.cuda.is_available():
        return f"cuda:{torch.cuda.get_device_name(0)} ({precision(run, 'gpu')})"
    return cpu_label(torch.get_num_threads())


def checkpoint_callback(dirpath: Path):
    """At every evaluation: ``last.ckpt`` (resume) and ``best.ckpt`` (lowest val/loss)."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    return ModelCheckpoint(dirpath=dirpath, filename="best", monitor=ts.M_VAL_LOSS, mode="min",
                           save_top_k=1, save_last=True, auto_insert_metric_name=False,
                           enable_version_counter=False)


def build_trainer(run: RunConfig, logger, callbacks: list, progress: bool,
                  checkpointing: bool = False):
    import lightning as L

    from repro.lit.checkpoint import SafeCheckpointIO

    accel = accelerator(run)
    t = run.train
    if progress:  # total steps, ETA over this process's steps (repro.lit.progress)
        from repro.lit.progress import StepBar

        callbacks = [*callbacks, StepBar()]
    from repro.lit.progress import PROGRESS_ENV, ProgressFile

    if os.environ.get(PROGRESS_ENV):  # a --jobs child: its progress for the parent's display
        callbacks = [*callbacks, ProgressFile(Path(os.environ[PROGRESS_ENV]))]
    return L.Trainer(
        max_steps=t.max_steps, val_check_interval=t.eval_every, check_val_every_n_epoch=None,
        logger=logger, callbacks=callbacks, enable_checkpointing=checkpointing,
        plugins=[SafeCheckpointIO()],
        gradient_clip_val=t.grad_clip or None, precision=precision(run, accel),
        deterministic=(True if accel == "cpu" else "warn") if t.deterministic else False,
        accelerator=accel, devices=run.trainer.devices, num_nodes=run.trainer.num_nodes,
        strategy=run.trainer.strategy, enable_progress_bar=progress,
        # Lightning flushes logged values when (step + 1) % log_every_n_steps == 0; LMSystem
        # logs on exactly those steps (see LMSystem.training_step)
        enable_model_summary=False, num_sanity_val_steps=0, log_every_n_steps=t.log_every)


def fit(trainer, system, dm, run: RunConfig, ckpt_path: Path | None = None) -> None:
    """``trainer.fit`` (from ``ckpt_path`` when resuming), then a last validation when the final
    step is not an evaluation step, so every run ends with a val/loss at max_steps."""
    with warnings.catch_warnings():
        # we resume the data stream ourselves (LMDataModule.train_offset); last.ckpt in the
        # directory is the point of resuming
        warnings.filterwarnings("ignore", ".*dataloader is not resumable.*")
        warnings.filterwarnings("ignore", ".*exists and is not empty.*")
        trainer.fit(system, datamodule=dm, weights_only=True,
                    ckpt_path=str(ckpt_path) if ckpt_path else None)
    if run.train.max_steps % run.train.eval_every != 0:
        trainer.validate(system, datamodule=dm, verbose=False)
