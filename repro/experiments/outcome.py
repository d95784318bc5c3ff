"""What training one (arm, seed) came to: the runner returns it, and a ``--jobs`` child writes it
to its result file for the parent (``repro.experiments.parallel``) to read back."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class RunOutcome:
    arm: str
    seed: int
    run_id: str
    status: str  # trained | reused | failed
    final_val_loss: float
    tokens_per_s: float
    seconds: float
