"""The token-routed MoE FFN block: router + stacked routed experts + optional shared experts.

One block covers the token-choice methods by configuration:
* Switch top-1 / plain top-k / GShard / Shazeer / Expert Choice: choose the router;
* DeepSeekMoE [P-DSM] §3: fine-grained experts (small ``d_expert``, many experts, larger top-k)
  plus ``n_shared`` always-on shared experts;
* MoNE [S-MoNE]: ``neuron_ratio < 1`` keeps the top ceil(rho F) neurons inside each routed expert
  (``neuron_impl`` mask | gather | auto; optional NG-LBL balance loss ``neuron_alpha``).

Forward: h = sum_shared FFN_s(x) + sum_{(t,e,g) in routing} g * FFN_e(x_t)   ([P-DSM] Eq. 9-11)
(the residual is added by the transformer block, not here).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from repro.config import ConfigError, check, config
from repro.layers.base import FFN_BLOCKS, AuxLoss, FFNConfig, FFNOutput
from repro.layers.dense import SwiGLU
from repro.layers.experts import (
    BACKENDS,
    NEURON_IMPLS,
    Experts,
    grouped_matmul,
    keep_top_neurons,
    neurons_kept,
    slot_index,
)
from repro.routers import ROUTERS, RouterConfig
from repro.routers.topk import TopKRouterConfig

# auto: capacity-padded bmm while E * (largest group) <= BMM_MAX_PAD * routed rows. Measured on
# the 2-core CPU (results/bench/bench-cpu-torch2.13.0.csv: fp32, D=256, 8192 tokens, fwd+bwd,
# contended): bmm with the fused slot permute beat grouped_mm by 1.2x (E8 k2, padding 1.04),
# 2.7x (E64 k8, padding 1.23) and 2.1x (E256 k8, padding 1.64); loop was slower still. 3.0 keeps
# bmm until the padding alone would cost about what grouped_mm loses.
BMM_MAX_PAD = 3.0


@config
class MoEConfig(FFNConfig):
    n_experts: int = 8  # E routed experts
    d_expert: int = 352  # F, hidden width of one routed expert
    router: RouterConfig = TopKRouterConfig()
    n_shared: int = 0  # K_s shared experts, always active [P-DSM] §3.2
    d_shared: int | None = None  # hidden width of one shared expert (default: d_expert)
    neuron_ratio: float = 1.0  # MoNE rho: share of each routed expert's neurons kept per token
    backend: str = "auto"  # dispatch backend: auto | grouped_mm | loop | bmm
    neuron_impl: str = "auto"  # MoNE top-k implementation: auto (= mask, measured) | mask | gather
    # NG-LBL coefficient (references.md §MoNE candidate formula, ours; the paper's is NF). 0: off.
    neuron_alpha: float = 0.0

    DOMAINS = {"n_experts": ">= 1", "d_expert": ">= 1", "n_shared": ">= 0", "d_shared": ">= 1",
               "neuron_ratio": "(0, 1]", "neuron_alpha": ">= 0"}

    def __post_init__(self):
        check(self.n_experts >= 1, "n_experts", f"must be >= 1, got {self.n_experts}")
        check(self.d_expert >= 1, "d_expert", f"must be >= 1, got {self.d_expert}")
        check(self.n_shared >= 0, "n_shared", f"must be >= 0, got {self.n_shared}")
        check(self.d_shared is None or self.d_shared >= 1, "d_shared",
              f"must be >= 1 or none, got {self.d_shared}")
        check(0.0 < self.neuron_ratio <= 1.0, "neuron_ratio",
              f"MoNE rho must be in (0, 1], got {self.neuron_ratio}")
        check(self.backend in BACKENDS, "backend",
              f"unknown dispatch backend {self.backend!r} (allowed: {', '.join(BACKENDS)})")
        check(self.neuron_impl in NEURON_IMPLS, "neuron_impl",
              f"unknown MoNE implementation {self.neuron_impl!r} "
              f"(allowed: {', '.join(NEURON_IMPLS)})")
        check(self.neuron_alpha >= 0, "neuron_alpha", f"must be >= 0, got {self.neuron_alpha}")
        if self.router.kind not in ROUTERS:
            raise ConfigError("router.kind", ROUTERS.unknown_message(self.router.kind))
        try:
            self.router.validate_for(self.n_experts)
        except ConfigError as e:
            raise e.prefixed("router") from None

    @property
    def shared_width(self) -> int:
        return self.n_shared * (self.d_shared or self.d_expert)

    @property
    def neuron_k(self) -> int | None:
        return neurons_kept(self.neuron_ratio, self.d_expert) if self.neuron_ratio < 1 else None


@FFN_BLOCKS.register("moe")
class MoEFFN(nn.Module):
    Config = MoEConfig

    def __init__(self, cfg: MoEConfig, d_model: int):
        super().__init__()
        self.cfg = cfg
        self.router = ROUTERS.get(cfg.router.kind)(cfg.router, d_model, cfg.n_experts)
        self.experts = Experts(cfg.n_experts, d_model, cfg.d_expert)
        # K_s shared experts of width d_shared are one SwiGLU of width K_s * d_shared: the sum of
        # SwiGLUs equals the SwiGLU over their concatenated hidden units.
        self.shared = SwiGLU(d_model, cfg.shared_width) if cfg.n_shared > 0 else None

    def forward(self, x: torch.Tensor, routing_override=None) -> FFNOutput:  # x: [B, T, D]
        B, T, D = x.shape
        xf = x.reshape(B * T, D)  # [N, D]
        r = routing_override(self, xf) if routing_override is not None else self.router(xf, (B, T))
        y, nl = self.combine(xf, r.token, r.expert, r.weight, capacity=r.capacity,
                             expert_major=r.expert_major)  # [N, D]
        if self.shared is not None:
            y = y + self.shared(xf)
        aux = r.aux
        if nl is not None:
            aux = {**aux, "neuron_balance": AuxLoss(nl, self.cfg.neuron_alpha)}
        return FFNOutput(y.view(B, T, D), aux, r.stats)

    def dispatch_backend(self, xf: torch.Tensor, counts: torch.Tensor, capacity: int | None,
                         full_slots: bool) -> str:
        """The backend this call runs: the configured one, or what ``auto`` picks.

        ``auto`` (measured, see ``BMM_MAX_PAD``): expert-major full slots (Expert Choice) -> ``bmm``
        (a free view); otherwise on CPU ``bmm`` while the padding to the largest group costs at
        most ``BMM_MAX_PAD`` x the routed rows, else ``grouped_mm`` where this torch build has it
        for the device/dtype/shape, else ``loop``; on CUDA ``grouped_mm`` first (SM90+), then the
        same ``bmm`` rule. MoNE blocks keep the per-row backends (their neuron loss needs rows).
        counts [E] per-expert assignment counts.
        """
        backend = self.cfg.backend
        if backend != "auto":
            return backend
        if full_slots:
            return "bmm"
        grouped = self.experts.resolve_backend(xf, "auto")  # grouped_mm or loop
        if self.cfg.neuron_k is not None or (xf.device.type == "cuda" and grouped == "grouped_mm"):
            return grouped
        A = int(counts.sum())
        pad = self.cfg.n_experts * max(int(counts.max()) if A else 0, 1) / max(A, 1)
        return "bmm" if pad <= BMM_MAX_PAD else grouped

    def combine(self, xf: torch.Tensor, token: torch.Tensor, expert: torch.Tensor,
                weight: torch.Tensor, capacity: int | None = None,
                expert_major: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Sort assignments by expert, run grouped experts, scatter-add gate-weighted outputs.

        Returns y [N, D] and the NG-LBL value (None unless MoNE with neuron_alpha > 0).
        ``expert_major``: assignments already grouped by expert, ``capacity`` each (Expert
        Choice); the sort is skipped and ``auto`` dispatches with ``bmm`` (no padding needed).
        """
        cfg, E = self.cfg, self.cfg.n_experts
        full = expert_major and capacity is not None and expert.numel() == E * capacity
        if full:
            tok_sorted, w_sorted = token, weight  # [A] already expert-major
            counts = torch.full((E,), capacity, dtype=torch.long, device=xf.device)  # [E]
        else:
            order = torch.argsort(expert, stable=True)  # [A]
            tok_sorted, w_sorted = token[order], weight[order]  # [A]
            counts = torch.bincount(expert, minlength=E)  # [E]
        backend = self.dispatch_backend(xf, counts, capacity, full)
        mone = cfg.neuron_k is not None
        if backend == "bmm" and not mone:
            return self._combine_slots(xf, tok_sorted, w_sorted, counts, full), None
        x_sorted = xf.index_select(0, tok_sorted)  # [A, D]
        out, nl = self.experts(x_sorted, counts, backend, cfg.neuron_k, capacity=capacity,
                               neuron_impl="gather" if cfg.neuron_impl == "gather" else "mask",
                               neuron_loss=mone and cfg.neuron_alpha > 0)  # [A, D]
        out = out * w_sorted.to(out.dtype)[:, None]  # gate-weighted [A, D]
        y = torch.zeros_like(xf)  # dropped / unrouted tokens contribute 0 (residual carries them)
        # under autocast the experts return bf16/fp16 while xf (the residual stream) stays fp32:
        # accumulate in xf's dtype
        return y.index_add_(0, tok_sorted, out.to(y.dtype)), nl  # [N, D]

    def _combine_slots(self, xf: torch.Tensor, tok_sorted: torch.Tensor, w_sorted: torch.Tensor,
                       counts: torch.Tensor, full: bool) -> torch.Tensor:
        """``bmm`` dispatch with the permute fused into the slot layout: one gather straight from
        the tokens into [E, C, D] slots (C = the largest group) and one weighted scatter-add
        straight out of them, with no [A, D] intermediate, no zero-padded copy and no un-pad
        gather. Padding slots point at token 0 with gate weight 0: their outputs are multiplied
        by 0 and their gradients are exactly 0, so results equal the other backends.
        xf [N, D]; tok_sorted, w_sorted [A] expert-major; counts [E] -> y [N, D].
        """
        E, D = self.cfg.n_experts, xf.shape[1]
        A = tok_sorted.numel()
        if full:
            C = A // E
            tok_slot, w_slot = tok_sorted, w_sorted  # [E*C]
        else:
            C = max(int(counts.max()) if A else 0, 1)
            slot = slot_index(counts, C)  # [A] position of each sorted row in [E*C]
            tok_slot = tok_sorted.new_zeros(E * C).index_copy_(0, slot, tok_sorted)  # [E*C]
            w_slot = w_sorted.new_zeros(E * C).index_copy(0, slot, w_sorted)  # [E*C], 0 on pads
        xp = xf.index_select(0, tok_slot).view(E, C, D)  # [E, C, D]
        out = self.experts.forward_slots(xp).view(E * C, D)  # [E*C, D]
        out = out * w_slot.to(out.dtype)[:, None]  # gate-weighted, pads -> 0
        return torch.zeros_like(xf).index_add_(0, tok_slot, out.to(xf.dtype))  # [N, D]

    def activations(self, x: torch.Tensor) -> torch.Tensor:
        """Routed SiLU gate activations [A, F] (after MoNE masking) for sparsity studies.

        Eval-only: the rows are grouped by expert and run with the ``loop`` backend, since only
        the set of activation values matters here, not their order or speed.
        """
        B, T, D = x.shape
        xf = x.reshape(B * T, D)  # [N, D]
        r = self.router(xf, (B, T))
        order = torch.argsort(r.expert, stable=True)  # [A]
        counts = torch.bincount(r.expert, minlength=self.cfg.n_experts)  # [E]
        xs = xf.index_select(0, r.token[order])  # [A, D] grouped by expert
        a = F.silu(grouped_matmul(xs, self.experts.w_gate, counts, None, "loop"))  # [A, F]
        return a if self.cfg.neuron_k is None else keep_top_neurons(a, self.cfg.neuron_k)
