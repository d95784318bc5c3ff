"""Finedeep FFN block (Pan, Su et al. 2025, arXiv 2502.12928) [S-FD], references.md §Finedeep.

The dense SwiGLU FFN (hidden d_ff) is split along its hidden dimension into M*K experts of width
f = d_ff / (M*K), arranged as M sub-layers applied in sequence, each with K experts:

    h_0 = x
    for j in 1..M:
        z   = RMSNorm_j(h_{j-1})                       (placement NF in the sources; ours: pre-norm)
        o_i = FFN_{j,i}(z) = (SiLU(z W_g^{j,i}) * z W_up^{j,i}) W_down^{j,i}        i = 1..K
        r_i = sigmoid(o_i . R_{j,i})                   ("output-guided" sigmoid routing, no top-k)
        h_j = h_{j-1} + sum_i r_i o_i
    return h_M - h_0

The transformer block already adds the residual, x + FFN(norm(x)), so this block returns the
*delta* h_M - h_0. With M = 1, gates fixed to 1 (``gate="none"``) and ``norm=false`` it is exactly
the dense SwiGLU with the same weights (tested).

Implementation: all K experts of a sub-layer run as one [N, D] x [D, K*f] GEMM per projection (the
dense weight slice). The score o_i . R_{j,i} equals h_i . (W_down^{j,i} R_{j,i}) with
h_i = SiLU(..) * (..) [N, f], so it is computed from the hidden activations and a [K, f] vector
per step, and sum_i r_i o_i = (h * r repeated per expert) @ W_down^j ([N, K*f] x [K*f, D]): no
[K, N, D] tensor, FLOPs of the dense FFN plus O(d_ff) per token.

Gate options [ours where NF]: ``sigmoid`` (the paper's), ``softmax`` (over the K experts of a
sub-layer; an ablation), ``none`` (r = 1; for equivalence tests and ablations).
Router vectors R are initialised N(0, std) (NF); norms to ones.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from repro import initialization as init
from repro.layers.base import FFN_BLOCKS, FFNOutput
from repro.layers.finedeep_config import GATES, FinedeepConfig  # noqa: F401  (re-export)
from repro.layers.norms import RMSNorm


@FFN_BLOCKS.add  # under its Config's name, "finedeep" (finedeep_config.py)
class FinedeepFFN(nn.Module):
    Config = FinedeepConfig

    def __init__(self, cfg: FinedeepConfig, d_model: int):
        super().__init__()
        self.cfg = cfg
        M, K, f, D = cfg.n_sublayers, cfg.n_experts, cfg.d_expert, d_model
        # sub-layer j holds columns [j*K*f, (j+1)*K*f) of the dense weights; expert i of it is
        # the i-th f-wide slice of those
        self.w_gate = nn.Parameter(torch.empty(M, D, K * f))  # [M, D, K*f]
        self.w_up = nn.Parameter(torch.empty(M, D, K * f))  # [M, D, K*f]
        self.w_down = nn.Parameter(torch.empty(M, K * f, D))  # [M, K*f, D]
        self.router = nn.Parameter(torch.empty(M, K, D))  # R_{j,i}: [M, K, D]
        self.norms = nn.ModuleList(RMSNorm(D) for _ in range(M)) if cfg.norm else None

    def init_weights(self, std: float, out_std: float) -> None:
        init.normal_(self.w_gate, std=std)
        init.normal_(self.w_up, std=std)
        init.normal_(self.w_down, std=out_std)
        init.normal_(self.router, std=std)
        if self.norms is not None:
            for n in self.norms:
                nn.init.ones_(n.weight)

    @torch.no_grad()
    def load_dense(self, w_gate: torch.Tensor, w_up: torch.Tensor, w_down: torch.Tensor) -> None:
        """Copy a dense SwiGLU's weights ([D, d_ff], [D, d_ff], [d_ff, D]) into the partition."""
        M, D = self.cfg.n_sublayers, w_gate.shape[0]
        self.w_gate.copy_(w_gate.view(D, M, -1).permute(1, 0, 2))  # [M, D, K*f]
        self.w_up.copy_(w_up.view(D, M, -1).permute(1, 0, 2))  # [M, D, K*f]
        self.w_down.copy_(w_down.view(M, -1, D))  # [M, K*f, D]

    def _sublayer(self, j: int, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """h [N, D] -> (sum_i r_i o_i [N, D], gate activations SiLU(z W_g) [N, K*f])."""
        cfg = self.cfg
        K, f = cfg.n_experts, cfg.d_expert
        z = self.norms[j](h) if self.norms is not None else h  # [N, D]
        a = F.silu(z @ self.w_gate[j])  # [N, K*f]
        hid = a * (z @ self.w_up[j])  # [N, K*f]  hidden of all K experts
        w_down = self.w_down[j]  # [K*f, D]
        if cfg.gate == "none":
            return hid @ w_down, a  # r = 1
        # o_i . R_i = hid_i . (W_down^i R_i):  v [K, f]
        v = torch.bmm(w_down.view(K, f, -1), self.router[j][:, :, None]).squeeze(-1)  # [K, f]
        score = (hid.view(-1, K, f) * v).sum(-1).float()  # [N, K]
        r = score.sigmoid() if cfg.gate == "sigmoid" else score.softmax(-1)  # [N, K]
        hid = (hid.view(-1, K, f) * r.to(hid.dtype)[:, :, None]).view(-1, K * f)  # [N, K*f]
        return hid @ w_down, a  # sum_i r_i o_i  [N, D]

    def forward(self, x: torch.Tensor) -> FFNOutput:  # x: [B, T, D]
        B, T, D = x.shape
        h0 = x.reshape(B * T, D)  # [N, D]
        h = h0
        for j in range(self.cfg.n_sublayers):
            h = h + self._sublayer(j, h)[0]  # h_j = h_{j-1} + sum_i r_i o_i
        return FFNOutput((h - h0).view(B, T, D))  # delta h_M - h_0 (block adds the residual)

    @torch.no_grad()
    def activations(self, x: torch.Tensor) -> torch.Tensor:
        """SiLU gate activations [B*T, d_ff] (all sub-layers, concatenated) for NSAR studies."""
        h = x.reshape(-1, x.shape[-1])  # [N, D]
        acts = []
        for j in range(self.cfg.n_sublayers):
            delta, a = self._sublayer(j, h)
            acts.append(a)
            h = h + delta
        return torch.cat(acts, dim=-1)  # [N, d_ff]
