"""The training recipe and the resolved run configuration (model + data + recipe + trainer)."""

from __future__ import annotations

from repro.config import ConfigError, check, config
from repro.data.config import DataConfig
from repro.models.lm_config import ModelConfig

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

    DOMAINS = {"max_steps": ">= 1", "batch_size": ">= 1", "lr": "> 0", "min_lr_ratio": "[0, 1]",
               "warmup_steps": ">= 0", "weight_decay": ">= 0", "beta1": "[0, 1)",
               "beta2": "[0, 1)", "grad_clip": ">= 0", "eval_every": ">= 1", "log_every": ">= 1"}

    def __post_init__(self):
        check(self.precision in PRECISIONS, "precision",
              f"invalid value {self.precision!r} (allowed: {', '.join(PRECISIONS)})")


@config
class TrainerConfig:
    """Lightning Trainer placement (scale-out: devices / num_nodes / strategy)."""

    accelerator: str = "auto"  # auto | cpu | gpu | cuda
    devices: int = 1
    num_nodes: int = 1
    strategy: str = "auto"  # auto | ddp | fsdp | ... (STRATEGIES)

    DOMAINS = {"devices": ">= 1", "num_nodes": ">= 1"}

    def __post_init__(self):
        from repro.dist import check_strategy

        check(self.accelerator in ("auto", "cpu", "gpu", "cuda", "mps"), "accelerator",
              f"invalid value {self.accelerator!r} (allowed: auto, cpu, gpu, cuda, mps)")
        try:
            check_strategy(self)  # the launch modes we refuse, with their own reason
        except ConfigError as e:
            raise ConfigError("strategy", e.message) from None
        check(self.strategy in STRATEGIES, "strategy",
              f"unknown Lightning strategy {self.strategy!r} (allowed: {', '.join(STRATEGIES)})")


# Lightning strategies a run may use (the spawn/fork/notebook launchers are refused by
# repro.dist.check_strategy; xla/tpu are not supported here)
STRATEGIES = ("auto", "ddp", "ddp_find_unused_parameters_false",
              "ddp_find_unused_parameters_true", "fsdp", "fsdp_cpu_offload", "deepspeed",
              "deepspeed_stage_1", "deepspeed_stage_2", "deepspeed_stage_2_offload",
              "deepspeed_stage_3", "deepspeed_stage_3_offload", "single_device")

# Sizes multiply: refuse a config whose training state (fp32 weights, gradients and the two
# AdamW moments: 16 bytes per parameter), or the fp32 logits of one batch, would exceed this
# (before a MemoryError, or hours of training, says so).
MAX_MEMORY_GIB = 64
STATE_BYTES_PER_PARAM = 16


@config
class RunConfig:
    model: ModelConfig = ModelConfig()
    data: DataConfig = DataConfig()
    train: TrainConfig = TrainConfig()
    trainer: TrainerConfig = TrainerConfig()

    def __post_init__(self):
        check_memory(self)


def check_memory(run: RunConfig) -> None:
    """Memory estimates where sizes multiply: the training state of the parameters (vocabulary x
    width, experts x expert width x layers; ``STATE_BYTES_PER_PARAM`` each) and the fp32 logits
    of one batch (batch x seq_len x vocabulary), each against ``MAX_MEMORY_GIB``. The error names
    the field that contributes most."""
    from dataclasses import replace

    from repro.compute import ffn_count, model_count

    m, d = run.model, run.data
    vocab_field = "data.vocab_size" if d.vocab_size > m.vocab_size else "model.vocab_size"
    model = replace(m, vocab_size=max(m.vocab_size, d.vocab_size))
    limit = MAX_MEMORY_GIB * 2**30
    total = model_count(model, d.seq_len).total_params
    state = STATE_BYTES_PER_PARAM * total
    if state > limit:
        emb = model.vocab_size * model.d_model * (1 if model.tie_embeddings else 2)
        ffn = model.n_layers * ffn_count(model.ffn, model.d_model).total
        size_field = {"moe": "n_experts", "finedeep": "d_ff", "dense": "d_ff"}.get(
            model.ffn.kind, "kind")
        field = vocab_field if emb >= max(ffn, total - emb - ffn) else \
            f"model.ffn.{size_field}" if ffn >= total - emb - ffn else "model.d_model"
        raise ConfigError(field, f"{getattr_path(run, field)} gives {total:.3g} parameters, "
                          f"{state / 2**30:.0f} GiB of training state (fp32 weights, gradients, "
                          f"2 AdamW moments; allowed: <= {MAX_MEMORY_GIB} GiB); use a smaller "
                          "value")
    logits = 4 * run.train.batch_size * d.seq_len * model.vocab_size
    if logits > limit:
        raise ConfigError("train.batch_size", f"{run.train.batch_size} x seq_len {d.seq_len} x "
                          f"vocabulary {model.vocab_size} gives {logits / 2**30:.0f} GiB of fp32 "
                          f"logits per step (allowed: <= {MAX_MEMORY_GIB} GiB); use a smaller "
                          "batch_size, seq_len or vocab_size")


def getattr_path(obj, path: str):
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj
