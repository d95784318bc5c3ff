"""Lightning callbacks: training throughput (tokens/s, validation time excluded)."""

from __future__ import annotations

import time

import lightning as L


class Throughput(L.Callback):
    """Measures train-step wall time excluding validation; logs perf/tokens_per_s at the end.

    The first ``skip`` steps (allocator warm-up, lazy init) are excluded from the rate.
    """

    def __init__(self, skip: int = 3):
        self.skip = skip
        self.t0: float | None = None
        self.tokens = 0
        self.elapsed = 0.0
        self._start: float | None = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self._start is None:
            return
        if trainer.global_step > self.skip:
            self.elapsed += time.perf_counter() - self._start
            self.tokens += batch[0].numel() * trainer.world_size
        self._start = None

    # resume: the rate covers every step of the run, before and after an interruption
    def state_dict(self) -> dict:
        return {"tokens": self.tokens, "elapsed": self.elapsed}

    def load_state_dict(self, state: dict) -> None:
        self.tokens, self.elapsed = int(state["tokens"]), float(state["elapsed"])

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.elapsed if self.elapsed > 0 else float("nan")
