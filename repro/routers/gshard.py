"""GShard top-2 gating (Lepikhin et al. 2020), following Lingvo's ``Top2GatingOnLogits`` [C-GS].

Per routing group of S tokens (references.md §GShard):
    g = softmax(logits);  e1 = argmax g;  e2 = argmax g without e1
    g1, g2 = g1/(g1+g2), g2/(g1+g2)                        (renormalise first: legacy behaviour)
    aux = E * sum_e mean_S(g)_e * mean_S(m1)_e             (averaged over groups)
    policy "random": keep the 2nd expert with prob min(1, g2 / threshold), threshold 0.5
    C = floor(S * capacity_factor / E); first choices fill each expert before any second choice;
    overflowing assignments are dropped (the token rides the residual).

Choices where the sources say nothing (NF) or where we simplify [ours] (references.md §Ours):
* the routing group is the whole call (all B*T tokens) by default; ``group_size`` splits the
  flattened tokens into consecutive groups of that many tokens (it must divide B*T);
* Lingvo rounds C up to a multiple of 4 (a TPU layout detail); we use the plain floor (>= 1);
* aux coefficient alpha = 0.01 (the paper's multiplier is NF; [P-DSM] used 0.01 for its GShard);
* Lingvo samples the random policy in eval too; ``random_at_eval`` (default true) follows it.
"""

from __future__ import annotations

import torch

from repro.routers.base import (
    ROUTERS,
    AuxLoss,
    GatedRouter,
    Routing,
    capacity,
    positions_in_expert,
    routing_stats,
    z_loss,
)
from repro.routers.gshard_config import POLICIES, GShardRouterConfig  # noqa: F401  (re-export)


@ROUTERS.add  # under its Config's name, "gshard" (gshard_config.py)
class GShardRouter(GatedRouter):
    Config = GShardRouterConfig

    def forward(self, x: torch.Tensor, shape: tuple[int, int] | None = None) -> Routing:
        # x: [N, D] with N = B*T flattened row-major; shape = (B, T) when known
        cfg, E = self.cfg, self.n_experts
        N = x.shape[0]
        S = cfg.group_size or N  # tokens per routing group
        if N % S:
            raise ValueError(f"gshard router: group_size={S} does not divide the {N} tokens of "
                             "this batch; pick a group_size dividing batch*seq_len or none")
        G = N // S
        logits = self.logits(x)  # [N, E] float32
        probs = logits.softmax(-1)  # [N, E]
        top_g, top_e = probs.topk(2, dim=-1)  # [N, 2]: (g1, g2), (e1, e2)
        denom = top_g.sum(-1, keepdim=True) + 1e-9  # [N, 1]
        gate = top_g / denom  # [N, 2] renormalised g1, g2 [C-GS]
        e1, e2 = top_e[:, 0], top_e[:, 1]  # [N]
        group = torch.arange(N, device=x.device) // S  # [N] routing group of each token

        # aux = E * mean_G sum_e mean_S(g)_e * mean_S(m1)_e  (before capacity) [C-GS]
        m1_count = torch.zeros(G, E, device=x.device).index_put_(
            (group, e1), torch.ones(N, device=x.device), accumulate=True)  # [G, E]
        P = probs.view(G, S, E).mean(1)  # [G, E]
        aux = {}
        if cfg.alpha > 0:
            aux["balance"] = AuxLoss(E * (P * (m1_count / S)).sum(-1).mean(), cfg.alpha)
        if cfg.z_loss > 0:
            aux["z"] = AuxLoss(z_loss(logits), cfg.z_loss)

        keep2 = torch.ones(N, dtype=torch.bool, device=x.device)  # [N]
        if cfg.policy == "random" and (self.training or cfg.random_at_eval):
            # dispatch e2 with probability min(1, g2 / threshold)  [C-GS]
            keep2 = torch.rand(N, device=x.device) < gate[:, 1].detach() / cfg.threshold

        # priority order: all first choices of a group before its second choices [C-GS]
        token = torch.cat([torch.arange(N, device=x.device),
                           torch.arange(N, device=x.device)[keep2]])  # [A0]
        expert = torch.cat([e1, e2[keep2]])  # [A0]
        weight = torch.cat([gate[:, 0], gate[:, 1][keep2]])  # [A0]
        n_selected = token.numel()
        cf = cfg.capacity_factor if self.training else cfg.eval_capacity_factor
        C = capacity(S, E, 1, cf)  # per group per expert: floor(S * cf / E)
        slot_key = group[token] * E + expert  # [A0] (group, expert) buckets
        keep = positions_in_expert(slot_key, G * E) < C  # [A0] first choices fill first
        token, expert, weight = token[keep], expert[keep], weight[keep]

        stats = routing_stats(probs, logits, expert, n_selected, E)
        stats["second_frac"] = keep2.float().mean()  # tokens whose 2nd expert was dispatched
        return Routing(token, expert, weight, aux, stats, capacity=G * C)
