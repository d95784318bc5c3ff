"""MoNE, Mixture of Neuron Experts ([S-MoNE], reconstructed in references.md §MoNE): a change to
the expert activation. With ``k < F`` each routed token keeps only the k hidden units of its expert
with the largest |SiLU(x W_gate)| and zeroes the rest:

    E_e(x) = W_down[e] (TopK_k(SiLU(x W_gate[e])) * (x W_up[e]))

``NeuronTopK`` is that activation; the MoE block hands it to any dispatch backend in place of SiLU
(``repro.layers.dispatch``), which never knows it runs MoNE. Two implementations with equal results
(tests), both run through the one backend table ``dispatch.RUN``: ``mask`` (``NeuronTopK``, the
activation above: full W_up / W_down GEMMs on the masked activations) and ``gather``
(``NeuronGather``: it owns the expert FFN, ``expert_ffn``, and per token gathers only the kept rows
of W_up and W_down; batched GEMVs), the paper's efficient version. ``auto`` resolves to ``mask``
(measured, see ``NEURON_IMPLS`` in ``repro.layers.moe_config``). The mask is a threshold at the
k-th largest |a| per row (``torch.kthvalue``), equal to the top-k set up to exact ties and about
half the cost of ``torch.topk`` at F = 286, k = 143 (docs/cost.md). Optional neuron-granular
balance loss (NG-LBL, references.md §MoNE candidate, ours): ``neuron_balance_loss``.

Dimension legend: A routed rows in expert order, R rows an activation call sees (A, or E*C slots),
D model width, E experts, F expert hidden width, k neurons kept per token.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from repro.layers.dispatch import ExpertWeights, slot_index
from repro.layers.moe_config import NEURON_IMPLS, neurons_kept  # noqa: F401  (re-export)

GATHER_CHUNK = 512  # rows per chunk in the gather implementation (bounds the [n, k, D] gathers)


def top_neuron_mask(a: torch.Tensor, k: int) -> torch.Tensor:
    """The k largest |a| per row as a bool mask: a [A, F] -> [A, F] (no gradient).

    A threshold at the k-th largest |a| (the (F-k+1)-th smallest, ``kthvalue``) instead of
    ``topk`` + scatter: the same set whenever the k-th and (k+1)-th largest differ (ties keep
    both), at about half the cost (docs/cost.md)."""
    mag = a.detach().abs()  # [A, F]
    if k >= mag.shape[-1]:
        return torch.ones_like(mag, dtype=torch.bool)
    thr = mag.kthvalue(mag.shape[-1] - k + 1, dim=-1, keepdim=True).values  # [A, 1]
    return mag >= thr  # [A, F]


def keep_top_neurons(a: torch.Tensor, k: int, return_mask: bool = False):
    """MoNE neuron top-k: zero all but the k largest |a| per row. a [A, F] -> [A, F].

    The mask is non-differentiable; gradients flow through the kept activations, as in routing.
    With ``return_mask`` also returns the bool mask [A, F].
    """
    mask = top_neuron_mask(a, k)  # [A, F]
    return (a * mask, mask) if return_mask else a * mask


class NeuronTopK:
    """The MoNE expert activation: SiLU, then the k largest |.| per row kept ([S-MoNE]).

    g [..., F] gate pre-activations -> [..., F]. With ``record`` the call keeps its kept
    activations and mask (``kept``) for the NG-LBL of this one forward; the block builds a fresh
    activation per forward, so nothing outlives the call that made it.
    """

    def __init__(self, k: int, record: bool = False):
        self.k, self.record = k, record
        self.kept: tuple[torch.Tensor, torch.Tensor] | None = None  # ([R, F], [R, F] bool)
        self.__name__ = f"silu_top{k}"  # names the activation (dispatch's auto cache key)

    def __call__(self, g: torch.Tensor) -> torch.Tensor:
        a = F.silu(g)  # [..., F]
        kept, mask = keep_top_neurons(a.reshape(-1, a.shape[-1]), self.k, return_mask=True)
        if self.record:
            self.kept = (kept, mask)  # [R, F] each
        return kept.view_as(a)

    def balance_loss(self, counts: torch.Tensor) -> torch.Tensor:
        """NG-LBL over the rows the last call saw. counts [E] -> scalar.

        The backends hand the activation expert-major rows: the A routed rows, or E*C slots with
        each expert's real rows first (``bmm``), whose padding rows are left out here."""
        kept, mask = self.kept
        A, E = int(counts.sum()), counts.numel()
        if kept.shape[0] != A:  # [E*C] slots -> the A real rows, in expert order
            rows = slot_index(counts, kept.shape[0] // E)  # [A]
            kept, mask = kept[rows], mask[rows]
        return neuron_balance_loss(kept, mask, counts)


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


class NeuronGather(NeuronTopK):
    """MoNE ``gather`` form: the same function as ``NeuronTopK``, but it owns the expert FFN
    (``expert_ffn``, called by the row backends of ``repro.layers.dispatch`` between permute
    and unpermute): full gate projection with the backend's grouped matmul, then per token only
    the kept rows of W_up and W_down ([S-MoNE] efficient version, references.md §MoNE)."""

    def __init__(self, k: int, record: bool = False):
        super().__init__(k, record)
        self.__name__ = f"silu_top{k}_gather"  # its own probe-cache key

    def expert_ffn(self, x: torch.Tensor, w: ExpertWeights, mm, counts: torch.Tensor
                   ) -> torch.Tensor:
        """x [A, D] expert-sorted rows, ``mm(h, W)`` the backend's grouped matmul -> [A, D]."""
        a = F.silu(mm(x, w.gate))  # [A, F]
        idx = a.detach().abs().topk(self.k, dim=-1).indices  # [A, k] kept neurons
        a_k = a.gather(1, idx)  # [A, k]
        if self.record:
            mask = torch.zeros_like(a, dtype=torch.bool).scatter_(1, idx, True)  # [A, F]
            self.kept = (a * mask, mask)
        sizes = counts.tolist()
        outs = []
        dt = x.dtype
        for e, (x_g, a_g, i_g) in enumerate(zip(torch.split(x, sizes), torch.split(a_k, sizes),
                                                torch.split(idx, sizes))):
            if sizes[e] == 0:
                continue
            wu_t = w.up[e].t().to(dt)  # [F, D]
            wd = w.down[e].to(dt)  # [F, D]
            for c in range(0, sizes[e], GATHER_CHUNK):
                xs, as_, is_ = (t[c:c + GATHER_CHUNK] for t in (x_g, a_g, i_g))  # [n, D], [n, k]
                # [n, k, D] @ [n, D, 1] -> [n, k]: kept rows of W_up only
                u = torch.bmm(wu_t[is_], xs[:, :, None]).squeeze(-1)
                outs.append(torch.bmm((as_ * u)[:, None, :], wd[is_]).squeeze(1))  # [n, D]
        return torch.cat(outs, 0) if outs else x.new_zeros(0, x.shape[1])  # [A, D]
