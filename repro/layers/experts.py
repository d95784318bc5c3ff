"""Stacked SwiGLU experts and the dispatch backends that run them.

Experts hold stacked weights ``w_gate, w_up: [E, D, F]`` and ``w_down: [E, F, D]``. Dispatch
receives the routed token rows already *sorted by expert* (``x_sorted: [A, D]``) with per-expert
row counts ``counts: [E]`` and runs each contiguous group through its expert:

* ``grouped_mm``: one ``torch._grouped_mm`` per projection (op count fixed in E; perf-notes.md);
* ``loop``: split the sorted rows into groups and run one GEMM per non-empty expert (sort-and-group,
  never a mask over the whole batch per expert).

Both give identical outputs and gradients (tests). ``auto`` takes ``grouped_mm`` where this torch
build has it for the tensors' device and dtype and falls back to ``loop`` otherwise.

MoNE ([S-MoNE], reconstructed in papers.md §7a): with ``neuron_k < F`` each token keeps only the
``neuron_k`` hidden units of its expert with the largest |SiLU(x W_gate)| and zeroes the rest.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

BACKENDS = ("auto", "grouped_mm", "loop")


def _grouped_mm_ok(x: torch.Tensor) -> bool:
    return hasattr(torch, "_grouped_mm") and x.dtype in (torch.float32, torch.bfloat16) and (
        x.device.type == "cpu" or (x.device.type == "cuda"
                                   and torch.cuda.get_device_capability(x.device)[0] >= 9))


def grouped_matmul(x: torch.Tensor, w: torch.Tensor, counts: torch.Tensor, offs: torch.Tensor | None,
                   backend: str) -> torch.Tensor:
    """Row group g of x [A, Din] times w[g] [Din, Dout] -> [A, Dout]; groups given by counts [E]."""
    if backend == "grouped_mm":
        return torch._grouped_mm(x, w.to(x.dtype), offs=offs)
    # loop backend: contiguous slices, one GEMM per non-empty expert
    sizes = counts.tolist()
    outs = [x_g @ w[g].to(x.dtype) for g, x_g in enumerate(torch.split(x, sizes)) if sizes[g] > 0]
    if not outs:
        return x.new_zeros(0, w.shape[-1])
    return torch.cat(outs, dim=0)


class Experts(nn.Module):
    def __init__(self, n_experts: int, d_model: int, d_expert: int):
        super().__init__()
        self.n_experts, self.d_model, self.d_expert = n_experts, d_model, d_expert
        self.w_gate = nn.Parameter(torch.empty(n_experts, d_model, d_expert))
        self.w_up = nn.Parameter(torch.empty(n_experts, d_model, d_expert))
        self.w_down = nn.Parameter(torch.empty(n_experts, d_expert, d_model))

    def init_weights(self, std: float, out_std: float) -> None:
        nn.init.normal_(self.w_gate, std=std)
        nn.init.normal_(self.w_up, std=std)
        nn.init.normal_(self.w_down, std=out_std)

    def resolve_backend(self, x: torch.Tensor, backend: str) -> str:
        if backend == "auto":
            return "grouped_mm" if _grouped_mm_ok(x) else "loop"
        return backend

    def forward(self, x_sorted: torch.Tensor, counts: torch.Tensor, backend: str = "auto",
                neuron_k: int | None = None) -> torch.Tensor:
        """x_sorted [A, D] grouped by expert, counts [E] -> expert outputs [A, D] (same order)."""
        backend = self.resolve_backend(x_sorted, backend)
        offs = counts.cumsum(0).to(torch.int32) if backend == "grouped_mm" else None  # [E]
        if backend == "grouped_mm" and not x_sorted.is_contiguous():
            x_sorted = x_sorted.contiguous()
        a = F.silu(grouped_matmul(x_sorted, self.w_gate, counts, offs, backend))  # [A, F]
        if neuron_k is not None and neuron_k < self.d_expert:
            a = keep_top_neurons(a, neuron_k)
        u = grouped_matmul(x_sorted, self.w_up, counts, offs, backend)  # [A, F]
        return grouped_matmul(a * u, self.w_down, counts, offs, backend)  # [A, D]


def keep_top_neurons(a: torch.Tensor, k: int) -> torch.Tensor:
    """MoNE neuron top-k: zero all but the k largest |a| per row. a [A, F] -> [A, F].

    The mask is non-differentiable; gradients flow through the kept activations, as in routing.
    """
    idx = a.detach().abs().topk(k, dim=-1).indices  # [A, k]
    mask = torch.zeros_like(a, dtype=torch.bool).scatter_(1, idx, True)
    return a * mask


def neurons_kept(ratio: float, d_expert: int) -> int:
    """ceil(rho * F) neurons per token ([S-MoNE] top-K ratio)."""
    return max(1, math.ceil(ratio * d_expert - 1e-9))
