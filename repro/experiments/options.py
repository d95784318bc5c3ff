"""How one command trains its runs: one typed value instead of a dozen loose parameters.

``RunOptions`` is the same for every (arm, seed) of a command, and travels unchanged through the
run path (``run_experiment`` / ``run_suite`` -> ``_train_grid`` -> ``train_one`` ->
``_train_rank0``). A sweep trial is one more run with its own role, tags, callbacks and name
(``repro.sweeps.study.run_trial``). Light: no torch, no MLflow.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from repro.tracking.names import ROLE_TRAIN


@dataclass(frozen=True, kw_only=True)
class RunOptions:
    overrides: tuple[str, ...] = ()  # --set KEY=VALUE, applied to every arm
    uri: str | None = None  # MLflow tracking URI; None: MLFLOW_TRACKING_URI or runs/mlflow.db
    progress: bool = True  # Lightning's progress bar
    force: bool = False  # retrain even when a FINISHED run has the same run key
    jobs: int = 1  # runs trained at once, one child process each (repro.experiments.parallel)
    threads: int | None = None  # intra-op threads per child (None: cores // jobs)
    echo: Callable[[str], object] = print  # where the command's progress lines go
    # one sweep trial's run (repro.sweeps): the repro.kind tag (tracking.names.ROLES), e.g. the
    # parent run's id, an Optuna pruning callback, the MLflow run name (None: ARM-sSEED...)
    role: str = ROLE_TRAIN
    extra_tags: Mapping[str, str] = field(default_factory=dict)
    callbacks: tuple = ()
    run_name: str | None = None

    def __post_init__(self):
        object.__setattr__(self, "overrides", tuple(self.overrides))  # a list is accepted
        object.__setattr__(self, "callbacks", tuple(self.callbacks))
