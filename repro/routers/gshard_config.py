"""Config of GShard top-2 gating [C-GS]: its fields, checks and compute accounting.

Torch-free, like every ``*_config`` module (experiment definitions, ``repro ls`` / ``show`` and
``--set`` validation use it without torch); the router itself is ``repro.routers.gshard``.
"""

from __future__ import annotations

from repro.config import check, config, variant
from repro.routers.base_config import GatedRouterConfig

POLICIES = ("all", "random")


@variant("gshard")
@config
class GShardRouterConfig(GatedRouterConfig):
    STATS = (*GatedRouterConfig.STATS, "second_frac")  # see RouterConfig.STATS
    policy: str = "random"  # second-expert policy: all | random  [C-GS]
    threshold: float = 0.5  # random policy: keep e2 with prob min(1, g2/threshold) [C-GS comment]
    random_at_eval: bool = True  # Lingvo applies the random policy regardless of mode [C-GS]
    capacity_factor: float = 2.0  # C = S*cf/E per group; 2.0 = GShard's 2N/(G*E) [S-GS]
    eval_capacity_factor: float = 2.0  # references.md §GShard: 2.0 for train and eval
    group_size: int | None = None  # tokens per routing group; None: the whole batch [ours]
    alpha: float = 0.01  # aux-loss multiplier: NF in GShard; 0.01 as [P-DSM] §4.1.3
    z_loss: float = 0.0  # optional router z-loss [P-ST] (1e-3 is the ST-MoE value)

    DOMAINS = {"threshold": "> 0", "capacity_factor": "> 0", "eval_capacity_factor": "> 0",
               "group_size": ">= 1", "alpha": ">= 0"}

    def __post_init__(self):
        self._check_common()
        check(self.policy in POLICIES, "policy",
              f"unknown second-expert policy {self.policy!r} (allowed: {', '.join(POLICIES)})")
        check(self.threshold > 0, "threshold", f"must be > 0, got {self.threshold}")
        for name in ("capacity_factor", "eval_capacity_factor"):
            v = getattr(self, name)
            check(v > 0, name, f"must be > 0, got {v}")
        check(self.group_size is None or self.group_size >= 1, "group_size",
              f"must be >= 1 or none (whole batch), got {self.group_size}")
        check(self.alpha >= 0, "alpha", f"must be >= 0, got {self.alpha}")

    def experts_per_token(self, n_experts: int) -> float:
        return 2.0  # upper bound (before random-policy and capacity drops), as the papers match

    def slots_per_token(self, n_experts: int) -> float | None:
        return self.capacity_factor  # E * floor(S * cf / E) / S ~ cf slots per token

    def validate_for(self, n_experts: int) -> None:
        check(n_experts >= 2, "kind", f"gshard is top-2 and needs n_experts >= 2, got {n_experts}")
