"""Switch Transformer top-1 routing with capacity and token dropping [P-SW] §2.1-2.2."""

from __future__ import annotations

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
class SwitchRouterConfig(RouterConfig):
    # [P-ST] trains at 1.25 and evaluates at 2.0. None = no capacity in that mode: the dropless
    # variant (every token reaches its expert; the sorted/grouped backends then run exactly N
    # expert rows, the padded bmm backend sizes its slots to the largest group)
    capacity_factor: float | None = 1.25
    eval_capacity_factor: float | None = 2.0
    alpha: float = 0.01  # load-balance alpha [P-SW Eq. 4], chosen by their 1e-1..1e-5 sweep
    z_loss: float = 1e-3  # router z-loss c_z [P-ST Eq. 5-6]

    DOMAINS = {"capacity_factor": "> 0", "eval_capacity_factor": "> 0", "alpha": ">= 0"}

    def __post_init__(self):
        self._check_common()
        for name in ("capacity_factor", "eval_capacity_factor"):
            v = getattr(self, name)
            check(v is None or v > 0, name, f"must be > 0 (or none for no capacity), got {v}")
        check(self.alpha >= 0, "alpha", f"must be >= 0, got {self.alpha}")

    def experts_per_token(self, n_experts: int) -> float:
        return 1.0

    def slots_per_token(self, n_experts: int) -> float | None:
        return self.capacity_factor  # E * C / N = capacity_factor (k = 1)


@ROUTERS.register("switch")
class SwitchRouter(Router):
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
            C = N
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
        return Routing(token, expert[keep], gate[keep], aux, stats)
