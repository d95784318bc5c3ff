"""Token dispatch for routed experts: group (token, expert, gate) assignments by expert, run each
group through its expert, and scatter the gate-weighted outputs back to their tokens.

Dimension legend: N tokens in the call, D model width, E experts, F expert hidden width, A routed
assignments (token, expert pairs that survived capacity), C slots per expert.

One call computes the routed term of the MoE block ([P-DSM] Eq. 9),

    y_t = sum_{(t, e, g) in routing} g * W_down[e] (act(x_t W_gate[e]) * (x_t W_up[e])),

for stacked expert weights ``W_gate, W_up: [E, D, F]``, ``W_down: [E, F, D]`` and an activation
``act`` (SiLU for SwiGLU experts; MoNE passes SiLU followed by its neuron top-k). Backends only
apply ``act`` to gate pre-activations and never look inside it. ``act`` receives expert-major rows
``[R, F]`` or slots ``[E, C, F]``: each expert's rows contiguous, in the order of
``sort_assignments`` (and in slot layouts the real rows first in each expert's C slots).

Backends (plain functions ``backend(xf, s, w, act) -> y [N, D]``, identical outputs and gradients
up to float rounding; tests):

* ``loop``: gather the sorted rows ``[A, D]`` and run one GEMM per non-empty expert and projection
  (sort-and-group, never a mask over the whole batch per expert);
* ``grouped_mm``: the same rows, one ``torch._grouped_mm`` per projection (op count fixed in E,
  references.md §Perf); needs 16-byte-aligned rows and CPU or CUDA SM90+;
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

BACKENDS = ("auto", "grouped_mm", "loop", "bmm")  # config values of MoEConfig.backend

# auto: capacity-padded bmm while E * (largest group) <= BMM_MAX_PAD * routed rows. Measured on
# the 2-core CPU (results/bench/bench-cpu-torch2.13.0.csv: fp32, D=256, 8192 tokens, fwd+bwd,
# contended): bmm with the fused slot permute beat grouped_mm by 1.2x (E8 k2, padding 1.04),
# 2.7x (E64 k8, padding 1.23) and 2.1x (E256 k8, padding 1.64); loop was slower still. 3.0 keeps
# bmm until the padding alone would cost about what grouped_mm loses.
BMM_MAX_PAD = 3.0


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
    """Sorted rows through their experts with ``grouped_matmul``: xf [N, D] -> y [N, D]."""
    x = permute(xf, s)  # [A, D]
    offs = s.counts.cumsum(0).to(torch.int32) if backend == "grouped_mm" else None  # [E]
    a = act(grouped_matmul(x, w.gate, s.counts, offs, backend))  # [A, F]
    u = grouped_matmul(x, w.up, s.counts, offs, backend)  # [A, F]
    return unpermute(xf, s, grouped_matmul(a * u, w.down, s.counts, offs, backend))  # [N, D]


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


RUN: dict[str, Callable[..., torch.Tensor]] = {"loop": loop, "grouped_mm": grouped_mm, "bmm": bmm}


# ------------------------------------------------------------------------------- backend policy
def static_backend(xf: torch.Tensor, s: Assignments, d_expert: int,
                   rows_only: bool = False) -> str:
    """``auto`` without measurement (see ``BMM_MAX_PAD``): expert-major full slots (Expert Choice)
    -> ``bmm`` (a free view); otherwise ``bmm`` while the padding to the largest group costs at
    most ``BMM_MAX_PAD`` x the routed rows, else ``grouped_mm`` where this torch build has it for
    the device/dtype/shape, else ``loop``; on CUDA ``grouped_mm`` first (SM90+), then the same
    ``bmm`` rule. ``rows_only``: only the row backends (grouped_mm, loop)."""
    if s.full:
        return "bmm"
    grouped = "grouped_mm" if grouped_mm_ok(xf, d_expert) else "loop"
    if rows_only or (xf.device.type == "cuda" and grouped == "grouped_mm"):
        return grouped
    A = s.token.numel()
    E = s.counts.numel()
    pad = E * max(int(s.counts.max()) if A else 0, 1) / max(A, 1)
    return "bmm" if pad <= BMM_MAX_PAD else grouped


def choose_backend(backend: str, xf: torch.Tensor, s: Assignments, w: ExpertWeights,
                   rows_only: bool = False) -> str:
    """The backend a call runs: the configured one, or what ``auto`` picks."""
    if backend != "auto":
        return backend
    return static_backend(xf, s, w.gate.shape[-1], rows_only)


def dispatch(xf: torch.Tensor, s: Assignments, w: ExpertWeights, act: Act,
             backend: str = "auto") -> torch.Tensor:
    """The routed term for sorted assignments ``s``: xf [N, D] -> y [N, D]."""
    return RUN[choose_backend(backend, xf, s, w)](xf, s, w, act)
