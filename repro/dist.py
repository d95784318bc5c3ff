"""Scale-out helpers: world size, per-rank batch and "am I rank 0?" for multi-process training.

Distributed training is Lightning's (``trainer.strategy=ddp`` / ``fsdp``), never home-made. What
this module adds is the bookkeeping around it, so that ``train_one`` works under every launcher:

* Lightning's own launch (``--set trainer.devices=N trainer.strategy=ddp``): the command starts as
  rank 0; at its first ``fit`` Lightning re-runs the same command line N-1 times with
  ``LOCAL_RANK`` / ``NODE_RANK`` / ``WORLD_SIZE`` set (``_SubprocessScriptLauncher``). Those
  children re-execute the whole command and meet rank 0 in every ``fit`` / ``validate``.
* ``torchrun`` (``RANK`` etc. set for every process) and SLURM ``srun`` (``SLURM_PROCID``):
  every process runs the command from the start.

In all cases every process runs ``train_one`` with the same arguments; only the process whose
:func:`global_rank` is 0 creates the MLflow run and writes metrics, weights and results. The
others train in lockstep with ``logger=False`` and return an outcome with status ``"worker"``.
The process group does not exist before ``fit``, so rank is read from the launcher's environment.

``train.batch_size`` is the GLOBAL batch (sequences per optimizer step): each rank loads
``batch_size / world_size`` sequences and DDP averages gradients, so a W-process run takes the
same optimizer steps on the same windows as a single process with the same global batch (the
train windows are dealt round-robin by Lightning's ``DistributedSampler(shuffle=False)``; see
``repro.data.datamodule``). What does NOT stay identical is anything a router computes over its
input tokens: routing groups, capacities and auxiliary balance losses are per rank (local batch),
as in every production MoE trainer; Expert Choice ``group=position`` groups are the B/W sequences
of one rank at one position (rank-local, still causal-safe: no token of a later position enters).
"""

from __future__ import annotations

import os

from repro.config import ConfigError

# Launch modes that re-create the model in a process other than the one that created the MLflow
# run, losing callback state and (FSDP/spawn) the rank-0 view: refused with a one-line fix.
_REFUSED = ("spawn", "fork", "notebook")


def world_size(trainer_cfg) -> int:
    """Processes taking part in one optimizer step: devices per node x nodes."""
    return int(trainer_cfg.devices) * int(trainer_cfg.num_nodes)


def per_rank_batch(run) -> int:
    """``train.batch_size`` (global) / world size; ConfigError when it does not divide."""
    w = world_size(run.trainer)
    b = run.train.batch_size
    if b % w:
        lo, hi = (b // w) * w, (b // w + 1) * w
        raise ConfigError("train.batch_size",
                          f"global batch {b} is not divisible by the world size {w} "
                          f"(trainer.devices x trainer.num_nodes); use "
                          f"{', '.join(str(x) for x in (lo, hi) if x > 0)}")
    return b // w


def check_strategy(trainer_cfg) -> None:
    s = str(trainer_cfg.strategy)
    if any(k in s for k in _REFUSED):
        raise ConfigError("trainer.strategy",
                          f"{s!r} is not supported (the process that creates the MLflow run must "
                          "be rank 0 of the fit); use ddp (Lightning re-launches the command), "
                          "or torchrun / srun with ddp")


def global_rank(devices_per_node: int = 1, env: dict | None = None) -> int:
    """This process's global rank as the launcher announced it (0 when not distributed).

    Order: ``RANK`` (torchrun, and any launcher that sets it); ``SLURM_PROCID`` for a multi-task
    SLURM step not re-launched by Lightning; Lightning's own re-launch, ``NODE_RANK * devices +
    LOCAL_RANK`` (a node's first process has only ``NODE_RANK``).
    """
    env = os.environ if env is None else env
    if env.get("RANK", "").strip():
        return int(env["RANK"])
    if "LOCAL_RANK" not in env and int(env.get("SLURM_NTASKS", "1") or 1) > 1 \
            and env.get("SLURM_PROCID", "").strip():
        return int(env["SLURM_PROCID"])
    node = int(env.get("NODE_RANK", env.get("GROUP_RANK", "0")) or 0)
    local = int(env.get("LOCAL_RANK", "0") or 0)
    return node * devices_per_node + local


def is_rank_zero(trainer_cfg, env: dict | None = None) -> bool:
    return global_rank(int(trainer_cfg.devices), env) == 0


def check_run(run, role: str = "train") -> None:
    """Validate the scale-out part of a run config before any data or tracking is touched."""
    check_strategy(run.trainer)
    per_rank_batch(run)
    if role != "train" and world_size(run.trainer) > 1:
        raise ConfigError("trainer.devices",
                          f"sweep trials train in one process (world size "
                          f"{world_size(run.trainer)} given); scale a sweep out with --workers "
                          "and more machines on one --storage")


def shard_train_loader(loader, trainer):
    """Under DDP, ``loader`` rebuilt with ``DistributedSampler(shuffle=False)``; else ``loader``.

    Lightning injects ``DistributedSampler(shuffle=True)`` into every *train* loader that has no
    DistributedSampler (whatever the loader's own sampler), which would replace the data
    module's seeded global order by a random one. The round-robin sampler keeps it: rank r gets
    items r, r+W, r+2W, ..., so with a per-rank batch of B/W the union of one step's shards is
    exactly the single-process batch of B, and no window is seen by two ranks.
    """
    if trainer is None or trainer.world_size <= 1:
        return loader
    from torch.utils.data import DataLoader
    from torch.utils.data.distributed import DistributedSampler

    sampler = DistributedSampler(loader.dataset, num_replicas=trainer.world_size,
                                 rank=trainer.global_rank, shuffle=False)
    return DataLoader(loader.dataset, batch_size=loader.batch_size, sampler=sampler,
                      drop_last=loader.drop_last, num_workers=loader.num_workers,
                      generator=loader.generator, collate_fn=loader.collate_fn,
                      persistent_workers=loader.num_workers > 0)
