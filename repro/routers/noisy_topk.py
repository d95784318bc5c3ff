"""Noisy top-k gating (Shazeer et al. 2017, "Outrageously Large Neural Networks") [P-SHZ].

    clean = x W_g;  std = softplus(x W_noise) (+ noise_eps);  H = clean + N(0,1) * std   (Eq. 3-5)
    G = softmax(KeepTopK(H, k))                                                          (Eq. 3)
    L_imp  = w_importance * CV(Importance)^2,  Importance_e = sum_x G_e(x)               (Eq. 6-7)
    L_load = w_load * CV(Load)^2, Load_e = sum_x Phi((clean_e - kth_excluding(H,k,e)) / std_e)
                                                                                         (Eq. 8-11)

W_g and W_noise are both zero-initialised ([P-SHZ] App. A; ``init_scale=0``), so routing starts
as pure noise and load starts even. The noise is drawn from the global torch RNG, so a seeded run
routes identically. Noise is applied in training only unless ``noise_at_eval`` (the paper is
silent on evaluation: NF, references.md §Shazeer). Without noise the smooth load estimator is
undefined; then, as in the authors' reference code, Load is the hard count (no gradient).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from repro.routers.base import (
    ROUTERS,
    AuxLoss,
    GatedRouter,
    Routing,
    cv_squared,
    routing_stats,
    z_loss,
)
from repro.routers.noisy_topk_config import NoisyTopKRouterConfig  # noqa: F401  (re-export)


def smooth_load(clean: torch.Tensor, noisy: torch.Tensor, std: torch.Tensor,
                top_vals: torch.Tensor, k: int) -> torch.Tensor:
    """Shazeer's differentiable Load estimator [P-SHZ App. A, Eq. 8-11].

    clean, noisy, std [N, E]; top_vals [N, k+1] the k+1 largest noisy logits (descending).
    P(x, e) = Phi((clean_e - kth_excluding(H, k, e)) / std_e), where kth_excluding is the (k+1)-th
    largest H if e is in the top-k and the k-th largest otherwise. Returns Load [E] = sum_x P.
    """
    thr_in = top_vals[:, k:k + 1]  # [N, 1] (k+1)-th largest: threshold when e is in the top-k
    thr_out = top_vals[:, k - 1:k]  # [N, 1] k-th largest: threshold when e is outside
    is_in = noisy > thr_in  # [N, E]
    normal = torch.distributions.Normal(0.0, 1.0)
    p_in = normal.cdf((clean - thr_in) / std)  # [N, E]
    p_out = normal.cdf((clean - thr_out) / std)  # [N, E]
    return torch.where(is_in, p_in, p_out).sum(0)  # [E]


@ROUTERS.add  # under its Config's name, "noisy_topk" (noisy_topk_config.py)
class NoisyTopKRouter(GatedRouter):
    Config = NoisyTopKRouterConfig

    # W_g and W_noise, each [D, E], both zero at init_scale=0 [P-SHZ App. A] (one init rule)
    GATES = ("w", "w_noise")

    def forward(self, x: torch.Tensor, shape: tuple[int, int] | None = None) -> Routing:
        # x: [N, D] with N = B*T flattened row-major; shape = (B, T) when known
        cfg, E, K = self.cfg, self.n_experts, self.cfg.top_k
        N = x.shape[0]
        xf = x.float()
        clean = xf @ self.w.float()  # [N, E]  [P-SHZ Eq. 4]
        noisy_on = self.training or cfg.noise_at_eval
        if noisy_on:
            std = F.softplus(xf @ self.w_noise.float()) + cfg.noise_eps  # [N, E]  [P-SHZ Eq. 5]
            H = clean + torch.randn_like(clean) * std  # [N, E]  global RNG -> seeded
        else:
            std, H = None, clean  # W_noise unused at eval: no gradient reaches it there
        top_vals, top_idx = H.topk(min(K + 1, E), dim=-1)  # [N, K(+1)] descending
        gate = top_vals[:, :K].softmax(-1)  # [N, K]  softmax(KeepTopK(H, k)) [P-SHZ Eq. 3]
        idx = top_idx[:, :K]  # [N, K]
        gates_full = torch.zeros_like(clean).scatter(1, idx, gate)  # [N, E] G(x), zeros elsewhere
        importance = gates_full.sum(0)  # [E]  [P-SHZ Eq. 6]
        if noisy_on and K < E:
            load = smooth_load(clean, H, std, top_vals, K)  # [E]  [P-SHZ Eq. 8-11]
        else:
            load = (gates_full > 0).float().sum(0)  # [E] hard count (no gradient)
        aux = {}
        if cfg.w_importance > 0:
            aux["importance"] = AuxLoss(cv_squared(importance), cfg.w_importance)  # [P-SHZ Eq. 7]
        if cfg.w_load > 0:
            aux["load"] = AuxLoss(cv_squared(load), cfg.w_load)  # [P-SHZ Eq. 11]
        if cfg.z_loss > 0:
            aux["z"] = AuxLoss(z_loss(H), cfg.z_loss)
        # rank-major assignments (all first choices, then all second choices, ...); no capacity
        expert = idx.t().reshape(-1)  # [K*N]
        token = torch.arange(N, device=x.device).repeat(K)  # [K*N]
        weight = gate.t().reshape(-1)  # [K*N]
        stats = routing_stats(H.softmax(-1), H, expert, N * K, E)
        stats["importance"] = importance.detach()
        stats["smooth_load"] = load.detach()
        return Routing(token, expert, weight, aux, stats)
