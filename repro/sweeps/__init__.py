"""Optuna sweeps: registered search spaces over dotted config paths, one resumable study per
(experiment, arm, space, scale), Lightning pruning, parallel workers, MLflow parent/child runs."""

from repro.sweeps.spaces import SPACES, SearchSpace, default_space, get_space
from repro.sweeps.study import SweepSpec, show, study_name, sweep, worker_main

__all__ = ["SPACES", "SearchSpace", "SweepSpec", "default_space", "get_space", "show",
           "study_name", "sweep", "worker_main"]
