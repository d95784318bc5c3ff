"""Switch Transformer top-1 routing with capacity and token dropping [P-SW] §2.1-2.2."""

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
from repro.routers.switch_config import SwitchRouterConfig  # noqa: F401  (re-export)


@ROUTERS.add  # under its Config's name, "switch" (switch_config.py)
class SwitchRouter(GatedRouter):
    Config = SwitchRouterConfig

    def forward(self, x: torch.Tensor, shape: tuple[int, int] | None = None) -> Routing:
        # x: [N, D] with N = B*T flattened row-major; shape = (B, T) when known
        cfg, E = self.cfg, self.n_experts
        N = x.shape[0]
        logits = self.logits(x)  # [N, E] float32
        probs = logits.softmax(-1)  # [N, E]
        gate, expert = probs.max(dim=-1)  # [N], [N]: gate = p_e(x), the differentiable path
        cf = cfg.capacity_factor if self.training else cfg.eval_capacity_factor
        if cf is None:  # dropless: every token keeps its expert
            C = None
            keep = torch.ones(N, dtype=torch.bool, device=x.device)
        else:
            C = capacity(N, E, 1, cf)  # expert capacity = N / E * capacity_factor
            keep = positions_in_expert(expert, E) < C  # overflowing tokens ride the residual
        token = torch.arange(N, device=x.device)[keep]
        aux = {}
        if cfg.alpha > 0:
            aux["balance"] = AuxLoss(balance_loss(probs, expert[:, None], E), cfg.alpha)
        if cfg.z_loss > 0:
            aux["z"] = AuxLoss(z_loss(logits), cfg.z_loss)
        stats = routing_stats(probs, logits, expert[keep], N, E)
        return Routing(token, expert[keep], gate[keep], aux, stats, capacity=C)
