"""Plain softmax top-k token-choice routing.

Also the DeepSeekMoE router ([P-DSM] Eq. 9-11): with ``normalize=False`` the gate is the raw
softmax affinity of the selected experts, and ``alpha`` is the expert-level balance factor
alpha_1 (the loss form is shared with Switch, see ``balance_loss``).
"""

from __future__ import annotations

import torch

from repro.routers.base import (
    ROUTERS,
    AuxLoss,
    GatedRouter,
    Routing,
    balance_loss,
    capacity,
    positions_in_expert,
    routing_stats,
    z_loss,
)
from repro.routers.topk_config import TopKRouterConfig  # noqa: F401  (re-export)


@ROUTERS.add  # under its Config's name, "topk" (topk_config.py)
class TopKRouter(GatedRouter):
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
        C = None  # no capacity: no drops
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
        return Routing(token, expert, weight, aux, stats, capacity=C)
