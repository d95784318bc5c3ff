"""Lightning callbacks: training throughput (tokens/s, validation time excluded), the CPU time
the steps used and what else ran on the machine meanwhile (``repro.lit.contention``)."""

from __future__ import annotations

import time

import lightning as L

from repro.lit.contention import ContentionSampler


class Throughput(L.Callback):
    """Measures train-step wall time and process CPU time excluding validation; the runner logs
    perf/tokens_per_s, the CPU figures and the contention summary at the end.

    The first ``skip`` steps (allocator warm-up, lazy init) are excluded from the rate. Every
    ``sample_every`` steps the load average and the other repro training processes are sampled.
    ``cpu_share`` = CPU seconds / (wall seconds x intra-op threads): about 1 when the run had its
    cores to itself, lower when it waited for them (a contended run).
    """

    def __init__(self, skip: int = 3, sample_every: int = 25):
        self.skip, self.sample_every = skip, sample_every
        self.tokens = 0
        self.elapsed = 0.0
        self.cpu = 0.0
        self.threads = 1
        self.contention = ContentionSampler()
        self._start: float | None = None
        self._cpu_start = 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._start = time.perf_counter()
        self._cpu_start = time.process_time()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self._start is None:
            return
        if trainer.global_step > self.skip:
            self.elapsed += time.perf_counter() - self._start
            self.cpu += time.process_time() - self._cpu_start
            self.tokens += batch[0].numel() * trainer.world_size
            if not self.contention.loads or trainer.global_step % self.sample_every == 0:
                import torch

                self.threads = torch.get_num_threads()
                self.contention.sample()
        self._start = None

    # resume: the rate covers every step of the run, before and after an interruption
    def state_dict(self) -> dict:
        return {"tokens": self.tokens, "elapsed": self.elapsed, "cpu": self.cpu,
                "contention": self.contention.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.tokens, self.elapsed = int(state["tokens"]), float(state["elapsed"])
        self.cpu = float(state.get("cpu", 0.0))
        self.contention.load_state_dict(state.get("contention", {}))

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.elapsed if self.elapsed > 0 else float("nan")

    @property
    def tokens_per_cpu_s(self) -> float:
        return self.tokens / self.cpu if self.cpu > 0 else float("nan")

    @property
    def cpu_share(self) -> float:
        return self.cpu / (self.elapsed * self.threads) if self.elapsed > 0 else float("nan")
