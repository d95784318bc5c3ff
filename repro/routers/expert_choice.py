"""Expert Choice routing (Zhou et al. 2022) [P-EC, C-EC].

Per routing group of n tokens (references.md §EC):
    S = softmax(X W_g) over EXPERTS                      [P-EC Eq. 2]
    C = int(n * c / E)  tokens per expert                 [P-EC Eq. 1]  (clamped to [1, n])
    G, I = topk(S^T, C) along tokens: each expert picks its C highest-affinity tokens
    y = sum over (e, slot) of G[e, slot] * FFN_e(x_I[e, slot])     [P-EC Eq. 3-4]
No auxiliary loss [P-EC §4.1, C-EC] (the z-loss is available but off by default).

Routing groups (``group``), which decide whose tokens compete for an expert's C slots:
* ``position`` (default, causal-safe [ours, references.md §EC]): the B tokens at the same position t
  across the batch form one group; a token's routing depends only on other sequences' tokens at
  position t, never on later tokens of its own sequence. C = int(B * c / E).
* ``sequence``: one group per sequence. LEAKY in a causal LM: whether token t is chosen depends on
  tokens after t of the same sequence, so the model can "cheat" (the paper's §6 caveat).
* ``batch``: all B*T tokens in one group (the paper's setting). Leaky for the same reason.

Capped EC (``cap = b``, EC-CAPb, [P-EC] §3.3), two methods (``cap_method``):
* ``dykstra`` (the paper's): solve max_A <S^T, A> + lambda H(A) subject to each expert row summing
  to C, each token column summing to <= b and 0 <= A <= 1 with Dykstra's alternating (KL /
  entropic) projections, lambda = 1e-3, at most 100 iterations, in log space; then TopK(A, C) per
  expert (exactly C tokens per expert). Measured here: with softmax affinities in [0, 1] and
  lambda = 1e-3, 100 iterations are far from converged (n=32, E=4, C=16: rows sum to ~3 instead of
  16; convergence needs ~1e4 iterations), so TopK(A, C) does NOT keep every token within b
  (``max_ept`` in the stats shows it).
* ``greedy`` (default, ours): a greedy b-matching on S: visit (expert, token) pairs in descending
  affinity and accept a pair while its expert has < C tokens and its token has < b experts. The cap
  holds exactly; an expert can end with fewer than C tokens when the cap binds (a Python loop
  over E*n pairs per call: fine at our sizes, not a GPU-speed path).
Gates stay the softmax affinities S in both.

Formulation note (references.md §Perf): the softmax is taken on the transposed logits (``[G, E, n]``
softmax over dim 1), never ``softmax(-1).t()``, which torch.compile differentiates wrongly.
"""

from __future__ import annotations

import math

import torch

from repro.routers.base import (
    ROUTERS,
    AuxLoss,
    GatedRouter,
    Routing,
    routing_stats,
    tokens_per_expert_hist,
    z_loss,
)
from repro.routers.expert_choice_config import CAP_METHODS, GROUPS, ExpertChoiceRouterConfig  # noqa: F401  (re-export)


def ec_capacity(n: int, n_experts: int, factor: float) -> int:
    """Tokens per expert per group: int(n * c / E) [P-EC Eq. 1], clamped to [1, n]."""
    return min(n, max(1, int(n * factor / n_experts + 1e-9)))


@torch.no_grad()
def capped_assignment(scores: torch.Tensor, C: int, b: int, lam: float, iters: int,
                      tol: float = 1e-4) -> torch.Tensor:
    """EC-CAP relaxation [P-EC] §3.3: log of A* = argmax <S, A> + lam H(A), s.t. rows sum to C,
    columns sum to <= b, 0 <= A <= 1, by Dykstra's algorithm with KL (entropic) projections.

    scores [G, E, n] (affinities S^T per group) -> log A [G, E, n]. The row constraint is affine
    (plain Bregman projection); the column and box constraints are inequalities and carry
    Dykstra correction terms q_col, q_box.
    """
    logA = scores.float() / lam  # [G, E, n]: the unconstrained entropic maximiser, up to scale
    q_col = torch.zeros_like(logA)
    q_box = torch.zeros_like(logA)
    log_c, log_b = math.log(C), math.log(b)
    for _ in range(iters):
        logA = logA - (torch.logsumexp(logA, dim=2, keepdim=True) - log_c)  # rows sum to C
        y = logA + q_col
        excess = (torch.logsumexp(y, dim=1, keepdim=True) - log_b).clamp_min(0)  # [G, 1, n]
        logA, q_col = y - excess, excess.expand_as(y)  # columns sum to <= b
        y = logA + q_box
        logA = y.clamp_max(0.0)  # entries <= 1
        q_box = y - logA
        row_err = (torch.logsumexp(logA, dim=2).exp() - C).abs().max()
        col_over = (torch.logsumexp(logA, dim=1).exp() - b).clamp_min(0).max()
        if float(row_err) < tol * C and float(col_over) < tol * b:
            break
    return logA


@torch.no_grad()
def greedy_capped(scores: torch.Tensor, C: int, b: int) -> torch.Tensor:
    """Greedy b-matching [ours]: scores [G, E, n] -> bool selection [G, E, n] with at most C
    tokens per expert and at most b experts per token, taking pairs in descending score."""
    G, E, n = scores.shape
    sel = torch.zeros(G, E, n, dtype=torch.bool)
    order = scores.reshape(G, -1).argsort(dim=1, descending=True).cpu().tolist()  # [G, E*n]
    for g in range(G):
        e_fill, t_fill = [0] * E, [0] * n
        left = E * C
        rows = sel[g]
        for flat in order[g]:
            e, t = divmod(flat, n)
            if e_fill[e] < C and t_fill[t] < b:
                rows[e, t] = True
                e_fill[e] += 1
                t_fill[t] += 1
                left -= 1
                if left == 0:
                    break
    return sel.to(scores.device)


@ROUTERS.add  # under its Config's name, "expert_choice" (expert_choice_config.py)
class ExpertChoiceRouter(GatedRouter):
    Config = ExpertChoiceRouterConfig

    def forward(self, x: torch.Tensor, shape: tuple[int, int] | None = None) -> Routing:
        # x: [N, D] with N = B*T flattened row-major; shape = (B, T) when known
        cfg, E = self.cfg, self.n_experts
        N = x.shape[0]
        B, T = shape if shape is not None else (N, 1)  # unknown shape: one group of N
        if B * T != N:
            raise ValueError(f"expert_choice router: shape={shape} does not match {N} tokens")
        logits = self.logits(x)  # [N, E] float32
        lg = logits.view(B, T, E)  # [B, T, E]
        if cfg.group == "position":
            lg_g = lg.permute(1, 2, 0)  # [G=T, E, n=B]
        elif cfg.group == "sequence":
            lg_g = lg.permute(0, 2, 1)  # [G=B, E, n=T]
        else:
            lg_g = logits.t()[None]  # [G=1, E, n=N]
        G, _, n = lg_g.shape
        S = lg_g.softmax(1)  # [G, E, n] softmax over experts [P-EC Eq. 2] (compile-safe form)
        C = ec_capacity(n, E, cfg.capacity_factor)
        full = True  # every expert holds exactly C tokens per group
        if cfg.cap is not None and cfg.cap_method == "dykstra":
            logA = capped_assignment(S.detach(), C, cfg.cap, cfg.cap_lambda, cfg.cap_iters)
            idx = logA.topk(C, dim=2).indices  # [G, E, C]  TopK(A, C) [P-EC] §3.3
            gate = S.gather(2, idx)  # [G, E, C]
        elif cfg.cap is not None:
            sel = greedy_capped(S.detach(), C, cfg.cap)  # [G, E, n]
            # selected tokens first (by score), unselected slots marked invalid
            masked = torch.where(sel, S.detach(), torch.full_like(S, -1.0))  # [G, E, n]
            idx = masked.topk(C, dim=2).indices  # [G, E, C]
            valid = sel.gather(2, idx)  # [G, E, C]
            gate = S.gather(2, idx)  # [G, E, C]
            full = bool(valid.all())
        else:
            gate, idx = S.topk(C, dim=2)  # [G, E, C] each expert picks its top-C tokens
        # token id of (group g, in-group index i)
        g_ar = torch.arange(G, device=x.device)[:, None, None]  # [G, 1, 1]
        if cfg.group == "position":
            tok = idx * T + g_ar  # [G, E, C]: token b*T + t
        elif cfg.group == "sequence":
            tok = g_ar * T + idx  # [G, E, C]: token b*T + t
        else:
            tok = idx  # [1, E, C]
        # expert-major assignments: expert e owns slots [e*G*C, (e+1)*G*C)
        token = tok.permute(1, 0, 2).reshape(-1)  # [E*G*C]
        weight = gate.permute(1, 0, 2).reshape(-1)  # [E*G*C]
        expert = torch.arange(E, device=x.device).repeat_interleave(G * C)  # [E*G*C]
        if not full:  # greedy capped EC left some slots empty
            keep = valid.permute(1, 0, 2).reshape(-1)  # [E*G*C]
            token, weight, expert = token[keep], weight[keep], expert[keep]
        aux = {}
        if cfg.z_loss > 0:
            aux["z"] = AuxLoss(z_loss(logits), cfg.z_loss)
        with torch.no_grad():
            probs = logits.softmax(-1)  # [N, E] (diagnostics only)
        stats = routing_stats(probs, logits, expert, E * G * C, E)
        stats.update(tokens_per_expert_hist(token, N))
        stats["drop_frac"] = stats["zero_frac"]  # EC "drop rate" = tokens with 0 experts [§1]
        return Routing(token, expert, weight, aux, stats, capacity=G * C, expert_major=full)
