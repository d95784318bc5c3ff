"""Config of noisy top-k gating [P-SHZ]: its fields, checks and compute accounting.

Torch-free, like every ``*_config`` module (experiment definitions, ``repro ls`` / ``show`` and
``--set`` validation use it without torch); the router itself is ``repro.routers.noisy_topk``.
"""

from __future__ import annotations

import dataclasses

from repro.config import check, config, variant
from repro.routers.base_config import GatedRouterConfig, RouterConfig


@variant("noisy_topk")
@config
class NoisyTopKRouterConfig(GatedRouterConfig):
    STATS = (*GatedRouterConfig.STATS, "smooth_load")  # see RouterConfig.STATS
    top_k: int = 4  # k = 4 for the flat MoEs [P-SHZ App. C]
    w_importance: float = 0.1  # 0.1 in the 1B-word LM runs [P-SHZ App. C] (0.01 for MT, App. E)
    w_load: float = 0.1  # 0.1 in the 1B-word LM runs [P-SHZ App. C]
    noise_at_eval: bool = False  # [ours] paper silent (NF); default: noise in training only
    noise_eps: float = 1e-2  # floor added to softplus std [ours; reference code uses 1e-2]
    init_scale: float = 0.0  # W_g and W_noise zero-initialised [P-SHZ App. A]

    DOMAINS = {"top_k": ">= 1", "w_importance": ">= 0", "w_load": ">= 0", "noise_eps": ">= 0"}

    def __post_init__(self):
        self._check_common()
        check(self.top_k >= 1, "top_k", f"must be >= 1, got {self.top_k}")
        check(self.w_importance >= 0, "w_importance", f"must be >= 0, got {self.w_importance}")
        check(self.w_load >= 0, "w_load", f"must be >= 0, got {self.w_load}")
        check(self.noise_eps >= 0, "noise_eps", f"must be >= 0, got {self.noise_eps}")

    def with_experts_per_token(self, k: int) -> RouterConfig:
        return dataclasses.replace(self, top_k=k)

    def experts_per_token(self, n_experts: int) -> float:
        return float(self.top_k)

    def validate_for(self, n_experts: int) -> None:
        check(self.top_k <= n_experts, "top_k",
              f"top_k={self.top_k} > n_experts={n_experts}; use top_k <= n_experts")

    def param_count(self, d_model: int, n_experts: int) -> int:
        return 2 * d_model * n_experts  # W_g and W_noise, each [D, E]
