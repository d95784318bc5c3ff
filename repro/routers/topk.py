"""Plain softmax top-k token-choice routing.

Also the DeepSeekMoE router ([P-DSM] Eq. 9-11): with ``normalize=False`` the gate is the raw
softmax affinity of the selected experts, and ``alpha`` is the expert-level balance factor
alpha_1 (the loss form is shared with Switch, see ``balance_loss``).
"""

from __future__ import annotations

import dataclasses

import torch

from repro.config import check, config
from repro.routers.base import (
    ROUTERS,
    AuxLoss,
    Router,
    RouterConfig,
    Routing,
    balance_loss,
    capacity,
    positions_in_expert,
    routing_stats,
    z_loss,
)


@config
class TopKRouterConfig(RouterConfig):
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


@ROUTERS.register("topk")
class TopKRouter(Router):
    Config = TopKRouterConfig

    def select(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """probs [N, E]; top-k gate [N, K] and expert ids [N, K] (descending)."""
        probs = logits.softmax(-1)  # [N, E]
        gate, idx = probs.topk(self.cfg.top_k, dim=-1)  # [N, K]
        if self.cfg.normalize:
            gate = gate / gate.sum(-1, keepdim=True)
        return probs, gate, idx

    def forward(self, x: torch.Tensor, shape: tuple[int, int] | None = None) -> Routing:
        # x: [N, D] with N = B*T flattened row-major; shape = (B, T) when known
        cfg, E = self.cfg, self.n_experts
        N = x.shape[0]
        logits = self.logits(x)  # [N, E] float32
        probs, gate, idx = self.select(logits)
        K = idx.shape[1]
        # rank-major order: every token's first choice has priority over any second choice
        # (GShard's rule, [C-GS]); within a rank, arrival order is the token order.
        expert = idx.t().reshape(-1)  # [K*N]
        token = torch.arange(N, device=x.device).repeat(K)  # [K*N]
        weight = gate.t().reshape(-1)  # [K*N]
        cf = cfg.capacity_factor if self.training else (
            cfg.eval_capacity_factor or cfg.capacity_factor)
        if cf is not None:
            C = capacity(N, E, K, cf)
            keep = positions_in_expert(expert, E) < C  # [K*N]
            token, expert, weight = token[keep], expert[keep], weight[keep]
        aux = {}
        if cfg.alpha > 0:
            aux["balance"] = AuxLoss(balance_loss(probs, idx, E), cfg.alpha)
        if cfg.z_loss > 0:
            aux["z"] = AuxLoss(z_loss(logits), cfg.z_loss)
        stats = routing_stats(probs, logits, expert, N * K, E)
        return Routing(token, expert, weight, aux, stats)
