"""Pruners (registered by name) and the Lightning pruning callback.

``optuna_integration.PyTorchLightningPruningCallback`` imports ``lightning.pytorch`` (so it works
with ``import lightning`` 2.x), but it reports ``trial.report(value, step=current_epoch)``. Our
runs validate every ``train.eval_every`` *steps* inside one epoch, so every report after the
first of an epoch would be dropped by Optuna as a duplicate step and the pruner would only ever
see one point. ``StepPruningCallback`` subclasses it and reports at ``trainer.global_step``
(single process; the DDP path is left to the parent class). It also fails fast on a non-finite
validation loss (the trial is then FAILED, not pruned) and remembers the MLflow run id.
"""

from __future__ import annotations

import math

import optuna
from optuna_integration import PyTorchLightningPruningCallback

from repro.registry import Registry
from repro.tracking.names import M_VAL_LOSS


class StepPruningCallback(PyTorchLightningPruningCallback):
    def __init__(self, trial: optuna.trial.Trial, monitor: str = M_VAL_LOSS) -> None:
        super().__init__(trial, monitor)
        self.run_id: str | None = None
        self.last_step: int | None = None

    def on_fit_start(self, trainer, pl_module) -> None:
        super().on_fit_start(trainer, pl_module)
        self.run_id = getattr(trainer.logger, "run_id", None)

    def on_validation_end(self, trainer, pl_module) -> None:
        if self.is_ddp_backend or trainer.sanity_checking:
            return super().on_validation_end(trainer, pl_module)
        score = trainer.callback_metrics.get(self.monitor)
        if score is None:
            return super().on_validation_end(trainer, pl_module)  # warns about the name
        value = float(score.item())
        if not math.isfinite(value):
            raise FloatingPointError(f"{self.monitor} is {value} at step {trainer.global_step}")
        step = int(trainer.global_step)
        if step == self.last_step:  # the end-of-run validate() repeats the last step
            return
        self.last_step = step
        self._trial.report(value, step=step)
        if self._trial.should_prune():
            raise optuna.TrialPruned(f"pruned at step {step} ({self.monitor}={value:.4f})")


class AlwaysPrune(optuna.pruners.BasePruner):
    """Debug/test pruner: prunes every trial at its first report (deterministic)."""

    def prune(self, study, trial) -> bool:
        return trial.last_step is not None


PRUNERS: Registry = Registry("pruner")


@PRUNERS.register("median")
def _median(max_steps: int, eval_every: int, n_trials: int):
    # no pruning before a quarter of the run (early val losses are noisy), nor before
    # a handful of trials finished to define the median
    return optuna.pruners.MedianPruner(n_startup_trials=min(5, max(1, n_trials // 4)),
                                       n_warmup_steps=max_steps // 4)


@PRUNERS.register("halving")
def _halving(max_steps: int, eval_every: int, n_trials: int):
    # rungs at r, 3r, 9r, ... steps with r = two evaluations (or 1/8 of the run)
    r = max(eval_every, min(2 * eval_every, max(1, max_steps // 8)))
    return optuna.pruners.SuccessiveHalvingPruner(min_resource=r, reduction_factor=3)


@PRUNERS.register("none")
def _none(max_steps: int, eval_every: int, n_trials: int):
    return optuna.pruners.NopPruner()


@PRUNERS.register("always")
def _always(max_steps: int, eval_every: int, n_trials: int):
    return AlwaysPrune()


def make_pruner(name: str, max_steps: int, eval_every: int, n_trials: int):
    return PRUNERS.get(name, field="--pruner")(max_steps, eval_every, n_trials)
