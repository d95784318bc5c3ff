"""Config of Expert Choice routing [P-EC, C-EC]: its fields, checks and compute accounting.

Torch-free, like every ``*_config`` module (experiment definitions, ``repro ls`` / ``show`` and
``--set`` validation use it without torch); the router itself is ``repro.routers.expert_choice``.
"""

from __future__ import annotations

import dataclasses

from repro.config import check, config, variant
from repro.routers.base_config import GatedRouterConfig, RouterConfig

GROUPS = ("position", "sequence", "batch")
CAP_METHODS = ("greedy", "dykstra")


@variant("expert_choice")
@config
class ExpertChoiceRouterConfig(GatedRouterConfig):
    STATS = (*GatedRouterConfig.STATS, "ept_hist", "zero_frac")  # see RouterConfig.STATS
    capacity_factor: float = 2.0  # c: EC-CF2 matches GShard top-2 compute [P-EC] §4
    group: str = "position"  # routing group: position | sequence | batch (see module docstring)
    cap: int | None = None  # EC-CAPb: at most b experts per token (None: uncapped EC-CF)
    cap_method: str = "greedy"  # greedy (ours, exact cap) | dykstra ([P-EC] §3.3, see docstring)
    cap_lambda: float = 1e-3  # entropic regulariser lambda [P-EC] §3.3
    cap_iters: int = 100  # Dykstra iterations (max) [P-EC] §3.3
    z_loss: float = 0.0  # none in EC [C-EC]; optional

    DOMAINS = {"capacity_factor": "> 0", "cap": ">= 1", "cap_lambda": "> 0", "cap_iters": ">= 1"}

    def __post_init__(self):
        self._check_common()
        check(self.capacity_factor > 0, "capacity_factor",
              f"must be > 0, got {self.capacity_factor}")
        check(self.group in GROUPS, "group",
              f"unknown routing group {self.group!r} (allowed: {', '.join(GROUPS)})")
        check(self.cap is None or self.cap >= 1, "cap",
              f"must be >= 1 experts per token or none (uncapped), got {self.cap}")
        check(self.cap_method in CAP_METHODS, "cap_method",
              f"unknown capped-EC method {self.cap_method!r} (allowed: {', '.join(CAP_METHODS)})")
        check(self.cap_lambda > 0, "cap_lambda", f"must be > 0, got {self.cap_lambda}")
        check(self.cap_iters >= 1, "cap_iters", f"must be >= 1, got {self.cap_iters}")

    def with_experts_per_token(self, k: int) -> RouterConfig:
        return dataclasses.replace(self, capacity_factor=float(k))  # E*C/N = c

    def experts_per_token(self, n_experts: int) -> float:
        return float(self.capacity_factor)  # E*C/n = c on average [P-EC] §3.2

    def slots_per_token(self, n_experts: int) -> float | None:
        return float(self.capacity_factor)  # every slot is filled: executed = routed

    def validate_for(self, n_experts: int) -> None:
        check(self.cap is None or self.cap <= n_experts, "cap",
              f"cap={self.cap} > n_experts={n_experts}; use cap <= n_experts")
