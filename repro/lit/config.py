"""The training recipe and the resolved run configuration (model + data + recipe + trainer)."""

from __future__ import annotations

from repro.config import check, config
from repro.data.config import DataConfig
from repro.models.lm import ModelConfig

PRECISIONS = ("auto", "32-true", "bf16-mixed", "16-mixed", "bf16-true")


@config
class TrainConfig:
    """Optimisation recipe: AdamW, linear warmup then cosine decay, gradient clipping."""

    max_steps: int = 1000
    batch_size: int = 32  # sequences per optimizer step (global, across devices)
    lr: float = 1e-3
    min_lr_ratio: float = 0.1  # cosine decays to lr * min_lr_ratio
    warmup_steps: int = 100
    weight_decay: float = 0.1  # on matrices only (not norms, not embeddings' ... see system)
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0  # 0 disables
    eval_every: int = 100  # validation every N optimizer steps (and at the end)
    log_every: int = 10
    precision: str = "auto"  # auto: bf16-mixed autocast on CUDA, 32-true on CPU
    deterministic: bool = True  # torch deterministic algorithms (exact repeatability on CPU)

    def __post_init__(self):
        check(self.max_steps >= 1, "max_steps", f"must be >= 1, got {self.max_steps}")
        check(self.batch_size >= 1, "batch_size", f"must be >= 1, got {self.batch_size}")
        check(self.lr > 0, "lr", f"must be > 0, got {self.lr}")
        check(0 <= self.min_lr_ratio <= 1, "min_lr_ratio", f"must be in [0, 1], got "
              f"{self.min_lr_ratio}")
        check(self.warmup_steps >= 0, "warmup_steps", f"must be >= 0, got {self.warmup_steps}")
        check(self.weight_decay >= 0, "weight_decay", f"must be >= 0, got {self.weight_decay}")
        check(0 <= self.beta1 < 1 and 0 <= self.beta2 < 1, "beta1",
              "Adam betas must be in [0, 1)")
        check(self.grad_clip >= 0, "grad_clip", f"must be >= 0, got {self.grad_clip}")
        check(self.eval_every >= 1, "eval_every", f"must be >= 1, got {self.eval_every}")
        check(self.log_every >= 1, "log_every", f"must be >= 1, got {self.log_every}")
        check(self.precision in PRECISIONS, "precision",
              f"invalid value {self.precision!r} (allowed: {', '.join(PRECISIONS)})")


@config
class TrainerConfig:
    """Lightning Trainer placement (scale-out: devices / num_nodes / strategy)."""

    accelerator: str = "auto"  # auto | cpu | gpu | cuda
    devices: int = 1
    num_nodes: int = 1
    strategy: str = "auto"  # auto | ddp | fsdp | ...

    def __post_init__(self):
        check(self.accelerator in ("auto", "cpu", "gpu", "cuda", "mps"), "accelerator",
              f"invalid value {self.accelerator!r} (allowed: auto, cpu, gpu, cuda, mps)")
        check(self.devices >= 1, "devices", f"must be >= 1, got {self.devices}")
        check(self.num_nodes >= 1, "num_nodes", f"must be >= 1, got {self.num_nodes}")


@config
class RunConfig:
    model: ModelConfig = ModelConfig()
    data: DataConfig = DataConfig()
    train: TrainConfig = TrainConfig()
    trainer: TrainerConfig = TrainerConfig()
