"""The token-routed MoE FFN block: router + stacked routed experts + optional shared experts.

One block covers the token-choice methods by configuration:
* Switch top-1 / plain top-k / GShard / Shazeer / Expert Choice: choose the router;
* DeepSeekMoE [P-DSM] §3: fine-grained experts (small ``d_expert``, many experts, larger top-k)
  plus ``n_shared`` always-on shared experts;
* MoNE [S-MoNE]: ``neuron_ratio < 1`` keeps the top ceil(rho F) neurons inside each routed expert,
  a change of the experts' activation (``repro.layers.mone``; ``neuron_impl`` mask | gather | auto;
  optional NG-LBL balance loss ``neuron_alpha``).

Forward: h = sum_shared FFN_s(x) + sum_{(t,e,g) in routing} g * FFN_e(x_t)   ([P-DSM] Eq. 9-11)
with FFN_e(x) = W_down[e] (act(x W_gate[e]) * (x W_up[e])), act = SiLU or MoNE's top-k of it
(the residual is added by the transformer block, not here). Grouping the (t, e, g) by expert and
the backends that run them live in ``repro.layers.dispatch``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from repro.layers import dispatch, dispatch_policy
from repro.layers.base import FFN_BLOCKS, AuxLoss, FFNOutput
from repro.layers.dense import SwiGLU
from repro.layers.dispatch import Act, Assignments, sort_assignments
from repro.layers.experts import Experts
from repro.layers.moe_config import MoEConfig  # noqa: F401  (re-export)
from repro.layers.mone import NeuronGather, NeuronTopK
from repro.routers import ROUTERS


@FFN_BLOCKS.add  # under its Config's name, "moe" (moe_config.py)
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
        s = sort_assignments(r.token, r.expert, r.weight, self.cfg.n_experts, r.capacity,
                             r.expert_major)  # the (t, e, g) of the routing, grouped by e
        y, nl = self.routed(xf, s)  # [N, D]: sum_{(t,e,g)} g * FFN_e(x_t)
        if self.shared is not None:
            y = y + self.shared(xf)  # + sum_shared FFN_s(x)  [P-DSM] Eq. 9
        aux = r.aux
        if nl is not None:
            aux = {**aux, "neuron_balance": AuxLoss(nl, self.cfg.neuron_alpha)}
        return FFNOutput(y.view(B, T, D), aux, r.stats)

    def activation(self) -> Act:
        """The routed experts' activation: SiLU, or MoNE's SiLU with its neuron top-k when it
        keeps fewer than F neurons ([S-MoNE]; recording its mask when NG-LBL is on)."""
        k = self.cfg.neuron_k
        if k is None or k >= self.cfg.d_expert:
            return F.silu
        form = NeuronGather if self.cfg.neuron_impl == "gather" else NeuronTopK
        return form(k, record=self.cfg.neuron_alpha > 0)

    def dispatch_backend(self, xf: torch.Tensor, s: Assignments) -> str:
        """The backend this call runs: the configured one, or what ``auto`` picks for this shape
        (``repro.layers.dispatch_policy``: the static rule, or measured once per shape)."""
        return dispatch_policy.choose_backend(self.cfg.backend, xf, s, self.experts.weights,
                                       self.activation())

    def routed(self, xf: torch.Tensor, s: Assignments) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The routed term y [N, D] = sum_{(t,e,g)} g * FFN_e(x_t) for the sorted assignments
        ``s``, and the NG-LBL value (None unless MoNE with neuron_alpha > 0)."""
        w, act = self.experts.weights, self.activation()
        # chosen before the real call (a first call of a shape under auto times the backends)
        backend = dispatch_policy.choose_backend(self.cfg.backend, xf, s, w, act)
        y = dispatch.RUN[backend](xf, s, w, act)  # [N, D]
        return y, (act.balance_loss(s.counts) if isinstance(act, NeuronTopK) and act.record
                   else None)

    def activations(self, x: torch.Tensor) -> torch.Tensor:
        """Routed gate activations act(x W_gate) [A, F] (after MoNE masking) for sparsity studies.

        Eval-only: the rows are grouped by expert and run with the ``loop`` backend, since only
        the set of activation values matters here, not their order or speed.
        """
        B, T, D = x.shape
        xf = x.reshape(B * T, D)  # [N, D]
        r = self.router(xf, (B, T))
        s = sort_assignments(r.token, r.expert, r.weight, self.cfg.n_experts)
        xs = dispatch.permute(xf, s)  # [A, D] grouped by expert
        return self.activation()(dispatch.grouped_matmul(xs, self.experts.w_gate, s.counts, None,
                                                         "loop"))  # [A, F]
