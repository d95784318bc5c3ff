"""Token dispatch for routed experts, the mechanism: group (token, expert, gate) assignments by
expert (``sort_assignments``), gather each group's rows (``permute``), run them through their
expert with one of the backends, and scatter the gate-weighted outputs back (``unpermute``).
Which backend a call runs is policy: ``repro.layers.dispatch_policy``.

Dimension legend: N tokens in the call, D model width, E experts, F expert hidden width, A routed
assignments (token, expert pairs that survived capacity), C slots per expert.

One call computes the routed term of the MoE block ([P-DSM] Eq. 9),

    y_t = sum_{(t, e, g) in routing} g * W_down[e] (act(x_t W_gate[e]) * (x_t W_up[e])),

for stacked expert weights ``W_gate, W_up: [E, D, F]``, ``W_down: [E, F, D]`` and an activation
``act`` (SiLU for SwiGLU experts; MoNE passes its neuron top-k of SiLU). Backends apply ``act``
to gate pre-activations and never look inside it. ``act`` receives expert-major rows ``[R, F]``
or slots ``[E, C, F]``: each expert's rows contiguous, in the order of ``sort_assignments`` (and
in slot layouts the real rows first in each expert's C slots).

Backends (``RUN``; plain functions ``backend(xf, s, w, act) -> y [N, D]``, identical outputs and
gradients up to float rounding; tests):

* ``loop``: gather the sorted rows ``[A, D]`` and run one GEMM per non-empty expert and projection
  (sort-and-group, never a mask over the whole batch per expert);
* ``grouped_mm``: the same rows, one ``torch._grouped_mm`` per projection (op count fixed in E,
  references.md §Perf); needs 16-byte-aligned rows and CPU or CUDA SM90+ (``grouped_mm_ok``);
* ``bmm``: slots ``[E, C, D]`` gathered straight from the tokens (C = the largest group) and three
  ``torch.bmm``, with the permute fused into the slot layout; when every expert holds exactly C
  rows (Expert Choice) the sorted rows are the slots and nothing is padded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import torch

Act = Callable[[torch.Tensor], torch.Tensor]


class ExpertWeights(NamedTuple):
    gate: torch.Tensor  # [E, D, F]
    up: torch.Tensor  # [E, D, F]
    down: torch.Tensor  # [E, F, D]


@dataclass(frozen=True)
class Assignments:
    """Routed (token, gate) pairs grouped by expert: expert 0's rows first, then expert 1's, ..."""

    token: torch.Tensor  # [A] token index of each assignment
    weight: torch.Tensor  # [A] its gate value g
    counts: torch.Tensor  # [E] assignments per expert
    full: bool  # expert-major with exactly ``capacity`` rows per expert (Expert Choice)
    capacity: int | None  # the router's capacity C, None when it has none


def sort_assignments(token: torch.Tensor, expert: torch.Tensor, weight: torch.Tensor,
                     n_experts: int, capacity: int | None = None,
                     expert_major: bool = False) -> Assignments:
    """Group assignments token, expert, weight [A] by expert (stable, so each expert keeps its
    tokens in routing order). ``expert_major`` with exactly ``capacity`` per expert (Expert
    Choice) is already grouped: the sort is skipped."""
    E = n_experts
    if expert_major and capacity is not None and expert.numel() == E * capacity:
        counts = torch.full((E,), capacity, dtype=torch.long, device=token.device)  # [E]
        return Assignments(token, weight, counts, True, capacity)
    order = torch.argsort(expert, stable=True)  # [A]
    return Assignments(token[order], weight[order], torch.bincount(expert, minlength=E), False,
                       capacity)


def permute(xf: torch.Tensor, s: Assignments) -> torch.Tensor:
    """Token rows in expert order: xf [N, D] -> [A, D]."""
    return xf.index_select(0, s.token)


def unpermute(xf: torch.Tensor, s: Assignments, out: torch.Tensor) -> torch.Tensor:
    """Gate-weighted scatter-add of expert outputs out [A, D] back to their tokens -> y [N, D].

    Dropped / unrouted tokens get 0 (the residual carries them). Under autocast the experts
    return bf16/fp16 while xf (the residual stream) stays fp32: accumulate in xf's dtype."""
    out = out * s.weight.to(out.dtype)[:, None]  # [A, D]
    return torch.zeros_like(xf).index_add_(0, s.token, out.to(xf.dtype))  # [N, D]


def slot_index(counts: torch.Tensor, C: int) -> torch.Tensor:
    """Slot of each expert-sorted row in a flattened [E, C] layout: e * C + position in group.

    counts [E] -> slot [A] (A = counts.sum(), every count <= C).
    """
    E = counts.numel()
    e_of_row = torch.repeat_interleave(torch.arange(E, device=counts.device), counts)  # [A]
    starts = counts.cumsum(0) - counts  # [E]
    A = e_of_row.numel()
    return torch.arange(A, device=counts.device) - starts[e_of_row] + e_of_row * C  # [A]


def grouped_mm_ok(x: torch.Tensor, *dims: int) -> bool:
    """torch._grouped_mm needs every row stride to be a multiple of 16 bytes: all of D and F
    must be multiples of 16 / element size (4 in fp32, 8 in bf16)."""
    align = 16 // x.element_size()
    if any(d % align for d in (x.shape[-1], *dims)):
        return False
    return hasattr(torch, "_grouped_mm") and x.dtype in (torch.float32, torch.bfloat16) and (
        x.device.type == "cpu" or (x.device.type == "cuda"
                                   and torch.cuda.get_device_capability(x.device)[0] >= 9))


def grouped_matmul(x: torch.Tensor, w: torch.Tensor, counts: torch.Tensor,
                   offs: torch.Tensor | None, backend: str) -> torch.Tensor:
    """Row group g of x [A, Din] times w[g] [Din, Dout] -> [A, Dout]; groups given by counts [E].
    ``offs`` [E] int32 cumulative counts (``grouped_mm`` only)."""
    if backend == "grouped_mm":
        return torch._grouped_mm(x, w.to(x.dtype), offs=offs)
    # loop: contiguous slices, one GEMM per non-empty expert
    sizes = counts.tolist()
    outs = [x_g @ w[g].to(x.dtype) for g, x_g in enumerate(torch.split(x, sizes)) if sizes[g] > 0]
    if not outs:
        return x.new_zeros(0, w.shape[-1])
    return torch.cat(outs, dim=0)


# ------------------------------------------------------------------------------------ backends
def _rows(xf: torch.Tensor, s: Assignments, w: ExpertWeights, act: Act,
          backend: str) -> torch.Tensor:
    """Sorted rows through their experts with ``grouped_matmul``: xf [N, D] -> y [N, D].

    An activation with an ``expert_ffn(x, w, mm, counts)`` method owns the expert computation
    between permute and unpermute (MoNE's gather form, ``repro.layers.mone``); ``mm(h, W)`` is
    this backend's grouped matmul over the same expert groups."""
    x = permute(xf, s)  # [A, D]
    offs = s.counts.cumsum(0).to(torch.int32) if backend == "grouped_mm" else None  # [E]

    def mm(h: torch.Tensor, wt: torch.Tensor) -> torch.Tensor:  # [A, Din] x [E, Din, Dout]
        return grouped_matmul(h, wt, s.counts, offs, backend)  # [A, Dout]

    expert_ffn = getattr(act, "expert_ffn", None)
    if expert_ffn is not None:
        return unpermute(xf, s, expert_ffn(x, w, mm, s.counts))  # [N, D]
    return unpermute(xf, s, mm(act(mm(x, w.gate)) * mm(x, w.up), w.down))  # [N, D]


def loop(xf: torch.Tensor, s: Assignments, w: ExpertWeights, act: Act) -> torch.Tensor:
    return _rows(xf, s, w, act, "loop")


def grouped_mm(xf: torch.Tensor, s: Assignments, w: ExpertWeights, act: Act) -> torch.Tensor:
    return _rows(xf, s, w, act, "grouped_mm")


def bmm(xf: torch.Tensor, s: Assignments, w: ExpertWeights, act: Act) -> torch.Tensor:
    """Slots with the permute fused in: one gather straight from the tokens into [E, C, D] slots
    (C = the largest group) and one weighted scatter-add straight out of them, with no [A, D]
    intermediate, no zero-padded copy and no un-pad gather. Padding slots point at token 0 with
    gate weight 0: rows of a slot are independent, so their outputs are multiplied by 0 and their
    gradients are exactly 0, and results equal the other backends. xf [N, D] -> y [N, D].
    """
    if hasattr(act, "expert_ffn"):
        raise NotImplementedError("bmm runs slots: an activation that owns the expert FFN "
                                  "(MoNE gather) needs a row backend (loop or grouped_mm)")
    E, D = w.gate.shape[0], xf.shape[1]
    A = s.token.numel()
    if s.full:
        C = A // E
        tok_slot, w_slot = s.token, s.weight  # [E*C]
    else:
        C = max(int(s.counts.max()) if A else 0, 1)
        slot = slot_index(s.counts, C)  # [A] position of each sorted row in [E*C]
        tok_slot = s.token.new_zeros(E * C).index_copy_(0, slot, s.token)  # [E*C]
        w_slot = s.weight.new_zeros(E * C).index_copy(0, slot, s.weight)  # [E*C], 0 on pads
    xp = xf.index_select(0, tok_slot).view(E, C, D)  # [E, C, D]
    dt = xp.dtype
    a = act(torch.bmm(xp, w.gate.to(dt)))  # [E, C, F]
    u = torch.bmm(xp, w.up.to(dt))  # [E, C, F]
    out = torch.bmm(a * u, w.down.to(dt)).view(E * C, D)  # [E*C, D]
    out = out * w_slot.to(out.dtype)[:, None]  # gate-weighted, pads -> 0
    return torch.zeros_like(xf).index_add_(0, tok_slot, out.to(xf.dtype))  # [N, D]


# the one backend table: every routed call (MoNE's mask and gather forms included) runs one
RUN: dict[str, Callable[..., torch.Tensor]] = {"loop": loop, "grouped_mm": grouped_mm, "bmm": bmm}
