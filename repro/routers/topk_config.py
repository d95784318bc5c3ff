"""Config of plain softmax top-k routing (also DeepSeekMoE's, [P-DSM] Eq. 9-11): its fields,
checks and compute accounting.

Torch-free, like every ``*_config`` module (experiment definitions, ``repro ls`` / ``show`` and
``--set`` validation use it without torch); the router itself is ``repro.routers.topk``.
"""

from __future__ import annotations

import dataclasses

from repro.config import check, config, variant
from repro.routers.base_config import GatedRouterConfig, RouterConfig


@variant("topk")
@config
class TopKRouterConfig(GatedRouterConfig):
    top_k: int = 2
    # renormalise the kept top-k probabilities to sum to 1 (GShard/Mixtral style). DeepSeekMoE's
    # paper equations do not renormalise [P-DSM Eq. 11], so its arms set normalize=false.
    normalize: bool = True
    alpha: float = 0.01  # balance-loss coefficient ([P-SW] alpha=1e-2; [P-DSM] alpha_1=0.01 at 2B)
    capacity_factor: float | None = None  # None: no capacity, no drops
    eval_capacity_factor: float | None = None  # [P-ST] uses 2.0 at eval; None: same as training

    DOMAINS = {"top_k": ">= 1", "alpha": ">= 0", "capacity_factor": "> 0",
               "eval_capacity_factor": "> 0"}

    def __post_init__(self):
        self._check_common()
        check(self.top_k >= 1, "top_k", f"must be >= 1, got {self.top_k}")
        check(self.alpha >= 0, "alpha", f"must be >= 0, got {self.alpha}")
        for name in ("capacity_factor", "eval_capacity_factor"):
            v = getattr(self, name)
            check(v is None or v > 0, name, f"must be > 0 (or none for no capacity), got {v}")

    def with_experts_per_token(self, k: int) -> RouterConfig:
        return dataclasses.replace(self, top_k=k)

    def experts_per_token(self, n_experts: int) -> float:
        return float(self.top_k)

    def slots_per_token(self, n_experts: int) -> float | None:
        return None if self.capacity_factor is None else self.top_k * self.capacity_factor

    def validate_for(self, n_experts: int) -> None:
        check(self.top_k <= n_experts, "top_k",
              f"top_k={self.top_k} > n_experts={n_experts}; use top_k <= n_experts")
