"""Stacked SwiGLU experts and the dispatch backends that run them.

Experts hold stacked weights ``w_gate, w_up: [E, D, F]`` and ``w_down: [E, F, D]``. Dispatch
receives the routed token rows already *sorted by expert* (``x_sorted: [A, D]``) with per-expert
row counts ``counts: [E]`` and runs each contiguous group through its expert:

* ``grouped_mm``: one ``torch._grouped_mm`` per projection (op count fixed in E;
  references.md §Perf);
* ``loop``: split the sorted rows into groups and run one GEMM per non-empty expert (sort-and-group,
  never a mask over the whole batch per expert);
* ``bmm``: capacity-padded slots ``[E, C, D]`` and one ``torch.bmm`` per projection. C is the
  router's capacity when it has one (Switch, GShard, top-k with a capacity factor, Expert Choice)
  and the largest group otherwise; when every expert holds exactly C rows (Expert Choice) the
  sorted rows are viewed as ``[E, C, D]`` without any padding copy.

All give identical outputs and gradients (tests). ``auto`` takes ``grouped_mm`` where this torch
build has it for the tensors' device and dtype and falls back to ``loop`` otherwise; the MoE block
additionally takes ``bmm`` for expert-major routings with full slots (Expert Choice), the fastest
EC path in references.md §Perf.

MoNE ([S-MoNE], reconstructed in references.md §MoNE): with ``neuron_k < F`` each token keeps
only the ``neuron_k`` hidden units of its expert with the largest |SiLU(x W_gate)| and zeroes the
rest.
Two implementations with equal results (tests): ``mask`` (full W_up / W_down GEMMs on the masked
activations) and ``gather`` (per token, gather only the kept rows of W_up and W_down; batched
GEMVs). ``auto`` resolves to ``mask``: on CPU gather was slower at rho = 0.5 and 0.25 (measured,
see ``NEURON_IMPLS`` note below). Optional neuron-granular balance loss (NG-LBL, references.md §MoNE
candidate, ours): ``neuron_balance_loss``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from repro.layers.dispatch import ExpertWeights, grouped_matmul, grouped_mm_ok, slot_index

# MoNE neuron top-k implementations. ``auto`` -> ``mask``: measured 2026-11-26 on the 2-core CPU
# (fp32, E=8, F=256, D=128, 8192 tokens, top-2, fwd+bwd, glibc mmap off, 5 interleaved rounds,
# machine shared with other jobs), time relative to the plain MoE (rho=1): mask 1.13 (rho=0.5) and
# 1.10 (rho=0.25); gather 5.6 (rho=0.5) and 3.9 (rho=0.25). Per-token weight gathers are
# memory-bound GEMVs and their backward is a scatter-add, so gather only pays with real kernels.
NEURON_IMPLS = ("auto", "mask", "gather")
GATHER_CHUNK = 512  # rows per chunk in the gather implementation (bounds the [n, k, D] gathers)


class Experts(nn.Module):
    def __init__(self, n_experts: int, d_model: int, d_expert: int):
        super().__init__()
        self.n_experts, self.d_model, self.d_expert = n_experts, d_model, d_expert
        self.w_gate = nn.Parameter(torch.empty(n_experts, d_model, d_expert))
        self.w_up = nn.Parameter(torch.empty(n_experts, d_model, d_expert))
        self.w_down = nn.Parameter(torch.empty(n_experts, d_expert, d_model))

    @property
    def weights(self) -> ExpertWeights:
        return ExpertWeights(self.w_gate, self.w_up, self.w_down)

    def init_weights(self, std: float, out_std: float) -> None:
        nn.init.normal_(self.w_gate, std=std)
        nn.init.normal_(self.w_up, std=std)
        nn.init.normal_(self.w_down, std=out_std)

    def resolve_backend(self, x: torch.Tensor, backend: str) -> str:
        if backend == "auto":
            return "grouped_mm" if grouped_mm_ok(x, self.d_expert) else "loop"
        return backend

    def forward(self, x_sorted: torch.Tensor, counts: torch.Tensor, backend: str = "auto",
                neuron_k: int | None = None, *, capacity: int | None = None,
                neuron_impl: str = "auto", neuron_loss: bool = False
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x_sorted [A, D] grouped by expert, counts [E] -> (expert outputs [A, D] in the same
        order, NG-LBL value or None). ``capacity`` sizes the ``bmm`` slots (default: max count)."""
        backend = self.resolve_backend(x_sorted, backend)
        mone = neuron_k is not None and neuron_k < self.d_expert
        if mone and neuron_impl == "gather":
            return self._forward_gather(x_sorted, counts, backend, neuron_k, neuron_loss)
        if backend == "bmm":
            return self._forward_bmm(x_sorted, counts, capacity, neuron_k if mone else None,
                                     neuron_loss)
        offs = counts.cumsum(0).to(torch.int32) if backend == "grouped_mm" else None  # [E]
        if backend == "grouped_mm" and not x_sorted.is_contiguous():
            x_sorted = x_sorted.contiguous()
        a = F.silu(grouped_matmul(x_sorted, self.w_gate, counts, offs, backend))  # [A, F]
        nl = None
        if mone:
            a, mask = keep_top_neurons(a, neuron_k, return_mask=True)
            if neuron_loss:
                nl = neuron_balance_loss(a, mask, counts)
        u = grouped_matmul(x_sorted, self.w_up, counts, offs, backend)  # [A, F]
        return grouped_matmul(a * u, self.w_down, counts, offs, backend), nl  # [A, D]

    def _forward_bmm(self, x_sorted, counts, capacity, neuron_k, neuron_loss):
        """Capacity-padded slots: [A, D] -> [E, C, D] -> three bmm -> [A, D]."""
        E, D = self.n_experts, self.d_model
        A = x_sorted.shape[0]
        C = max(int(counts.max()) if A else 0, capacity or 0, 1)
        full = A == E * C  # every expert holds exactly C rows: a free view, no padding
        if full:
            xp = x_sorted.reshape(E, C, D)  # [E, C, D]
        else:
            slot = slot_index(counts, C)  # [A]
            xp = x_sorted.new_zeros(E * C, D).index_copy(0, slot, x_sorted).view(E, C, D)
        dt = x_sorted.dtype
        a = F.silu(torch.bmm(xp, self.w_gate.to(dt)))  # [E, C, F]; zero rows stay zero
        nl = None
        if neuron_k is not None:
            a2, mask = keep_top_neurons(a.view(E * C, -1), neuron_k, return_mask=True)  # [E*C, F]
            if neuron_loss:
                rows = slice(None) if full else slot
                nl = neuron_balance_loss(a2[rows], mask[rows], counts)
            a = a2.view(E, C, -1)
        u = torch.bmm(xp, self.w_up.to(dt))  # [E, C, F]
        out = torch.bmm(a * u, self.w_down.to(dt)).view(E * C, D)  # [E*C, D]
        return (out if full else out.index_select(0, slot)), nl  # [A, D]

    def _forward_gather(self, x_sorted, counts, backend, neuron_k, neuron_loss):
        """MoNE gather implementation: full gate projection, then per token only the kept rows of
        W_up and W_down ([S-MoNE] efficient version, references.md §MoNE)."""
        gb = "loop" if backend == "bmm" else backend
        offs = counts.cumsum(0).to(torch.int32) if gb == "grouped_mm" else None
        if gb == "grouped_mm" and not x_sorted.is_contiguous():
            x_sorted = x_sorted.contiguous()
        a = F.silu(grouped_matmul(x_sorted, self.w_gate, counts, offs, gb))  # [A, F]
        idx = a.detach().abs().topk(neuron_k, dim=-1).indices  # [A, k] kept neurons
        a_k = a.gather(1, idx)  # [A, k]
        nl = None
        if neuron_loss:
            mask = torch.zeros_like(a, dtype=torch.bool).scatter_(1, idx, True)
            nl = neuron_balance_loss(a * mask, mask, counts)
        sizes = counts.tolist()
        outs = []
        dt = x_sorted.dtype
        for e, (x_g, a_g, i_g) in enumerate(zip(torch.split(x_sorted, sizes),
                                                torch.split(a_k, sizes), torch.split(idx, sizes))):
            if sizes[e] == 0:
                continue
            wu_t = self.w_up[e].t().to(dt)  # [F, D]
            wd = self.w_down[e].to(dt)  # [F, D]
            for s in range(0, sizes[e], GATHER_CHUNK):
                xs, as_, is_ = (t[s:s + GATHER_CHUNK] for t in (x_g, a_g, i_g))  # [n, D], [n, k]
                # [n, k, D] @ [n, D, 1] -> [n, k]: kept rows of W_up only
                u = torch.bmm(wu_t[is_], xs[:, :, None]).squeeze(-1)
                outs.append(torch.bmm((as_ * u)[:, None, :], wd[is_]).squeeze(1))  # [n, D]
        if not outs:
            return x_sorted.new_zeros(0, self.d_model), nl
        return torch.cat(outs, 0), nl  # [A, D]


def neuron_balance_loss(a_kept: torch.Tensor, mask: torch.Tensor,
                        counts: torch.Tensor) -> torch.Tensor:
    """Neuron-granular load-balance loss, references.md §MoNE candidate [ours; NG-LBL formula NF].

    Per expert e with n_e > 0 tokens: L_e = (F / K_n) * sum_j f_j P_j with f_j = share of the
    expert's tokens that kept neuron j (no gradient), P_j = mean over those tokens of
    |a_j| / sum_j' |a_j'| (a = kept SiLU gate activations) and K_n neurons kept per token.
    Averaged over experts with tokens. The factor F / K_n (rather than F alone) makes it equal
    1 at perfectly uniform neuron use, like the Switch / DeepSeekMoE losses.
    a_kept, mask [A, F] in expert-sorted order; counts [E] -> scalar.
    """
    E = counts.numel()
    Fdim = a_kept.shape[1]
    e_of_row = torch.repeat_interleave(torch.arange(E, device=counts.device), counts)  # [A]
    p = a_kept.float().abs()
    p = p / p.sum(-1, keepdim=True).clamp_min(1e-9)  # [A, F]
    P = torch.zeros(E, Fdim, device=p.device).index_add(0, e_of_row, p)  # [E, F]
    f = torch.zeros(E, Fdim, device=p.device).index_add(0, e_of_row, mask.float())  # [E, F]
    n = counts.clamp_min(1).float()[:, None]  # [E, 1]
    k_n = mask[:1].sum().clamp_min(1).float()  # neurons kept per token (same for every row)
    L = (Fdim / k_n) * ((f / n).detach() * (P / n)).sum(-1)  # [E]
    used = counts > 0
    return L[used].mean() if bool(used.any()) else L.sum() * 0.0


def keep_top_neurons(a: torch.Tensor, k: int, return_mask: bool = False):
    """MoNE neuron top-k: zero all but the k largest |a| per row. a [A, F] -> [A, F].

    The mask is non-differentiable; gradients flow through the kept activations, as in routing.
    With ``return_mask`` also returns the bool mask [A, F].
    """
    idx = a.detach().abs().topk(k, dim=-1).indices  # [A, k]
    mask = torch.zeros_like(a, dtype=torch.bool).scatter_(1, idx, True)  # [A, F]
    return (a * mask, mask) if return_mask else a * mask


def neurons_kept(ratio: float, d_expert: int) -> int:
    """ceil(rho * F) neurons per token ([S-MoNE] top-K ratio)."""
    return max(1, math.ceil(ratio * d_expert - 1e-9))
