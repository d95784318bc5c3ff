"""Router contract shared by every routing method.

A router maps tokens ``x: [N, D]`` to *assignments*: parallel 1-D tensors (token, expert, weight)
of length A (A = N*K minus drops for token choice; E*C for expert choice). The MoE block sorts
assignments by expert and runs contiguous groups, so any router works with any dispatch backend.
Router math runs in float32 (Switch Transformer's "selective precision", [P-SW] §2.4).

Dimension legend: N tokens in the routing call, D model width, E experts, K experts per token,
C capacity (tokens per expert), A assignments.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from repro import initialization as init
from repro.config import ComponentRegistry
from repro.routers.base_config import GatedRouterConfig, RouterConfig


@dataclass
class AuxLoss:
    """An auxiliary loss term: the system adds ``coef * value`` to the cross-entropy.

    Defined here (torch-only) rather than in ``repro.layers.base`` so that importing
    ``repro.routers`` never triggers ``repro.layers`` (which imports the routers: a cycle).
    ``repro.layers.base`` re-exports it.
    """

    value: torch.Tensor  # scalar, differentiable
    coef: float


@dataclass
class Routing:
    token: torch.Tensor  # [A] long, token index in [0, N)
    expert: torch.Tensor  # [A] long, expert index in [0, E)
    weight: torch.Tensor  # [A] float32 gate value (differentiable w.r.t. the router)
    aux: dict[str, AuxLoss] = field(default_factory=dict)
    stats: dict[str, torch.Tensor] = field(default_factory=dict)
    # most assignments any expert can receive in this call (summed over routing groups), when the
    # method has a capacity; lets the ``bmm`` backend use fixed [E, C, D] slots. None: no capacity.
    capacity: int | None = None
    # True when assignments are already expert-major with exactly ``capacity`` per expert
    # (Expert Choice): the block can skip the sort and use a [E, C, D] view directly.
    expert_major: bool = False


class Router(nn.Module):
    """Base of every router. A router's name is written once, ``@variant("name")`` on its
    ``Config`` (a ``@config`` subclass of ``RouterConfig``, no ``kind`` default) in its torch-free
    ``<method>_config.py``; ``@ROUTERS.add`` on the class registers it under that name (its
    ``KIND``). Its tests and benchmarks then come from the registry (tests/routers,
    ``repro bench``), and ``repro selftest NAME`` runs the same contract (``repro.selftest``).

    This base holds no parameters: a router without a learned gate (a hash, a fixed
    assignment) derives from it directly. A router with a learned gate and logits derives from
    ``GatedRouter``."""

    Config: type[RouterConfig] = RouterConfig
    KIND: str = ""  # set by the registration
    # the raw ``Routing.stats`` keys every call returns: declared once, on the (torch-free) config
    STATS: tuple[str, ...] = RouterConfig.STATS

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        cls.STATS = tuple(getattr(cls.Config, "STATS", RouterConfig.STATS))

    def __init__(self, cfg: RouterConfig, d_model: int, n_experts: int):
        super().__init__()
        self.cfg = cfg
        self.d_model = d_model
        self.n_experts = n_experts

    def init_weights(self, std: float = 0.0, out_std: float = 0.0) -> None:
        self.reset_parameters()  # routers ignore the LM-wide std: their own rule applies

    def reset_parameters(self) -> None:
        """(Re)initialise the router's own parameters; none here."""

    def forward(self, x: torch.Tensor, shape: tuple[int, int] | None = None) -> Routing:
        # x: [N, D] with N = B*T flattened row-major; shape = (B, T) when known
        raise NotImplementedError


class GatedRouter(Router):
    """A router with learned gate weights and logits: ``W_r: [D, E]`` (``self.w``) and
    ``logits(x) = x W_r`` in float32. ``GATES`` names its [D, E] gate matrices, created in that
    order (the order parameters are registered in is the order the seeded init draws them) and
    initialised by one rule, std = sqrt(init_scale / D), or zeros at ``init_scale=0``."""

    Config: type[GatedRouterConfig] = GatedRouterConfig
    GATES: tuple[str, ...] = ("w",)  # W_r: [D, E]

    def __init__(self, cfg: GatedRouterConfig, d_model: int, n_experts: int):
        super().__init__(cfg, d_model, n_experts)
        for name in self.GATES:
            setattr(self, name, nn.Parameter(torch.empty(d_model, n_experts)))  # [D, E]
        self.reset_parameters()

    def reset_parameters(self) -> None:
        D = self.w.shape[0]
        std = math.sqrt(self.cfg.init_scale / D) if self.cfg.init_scale > 0 else 0.0
        for name in self.GATES:
            p = getattr(self, name)
            if std == 0.0:
                init.zeros_(p)
            else:
                init.normal_(p, std=std)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Router logits in float32: x [N, D] -> [N, E]."""
        return x.float() @ self.w.float()


def _load_routers() -> None:
    from repro.routers import load_components

    load_components()


# name -> Router subclass, under its Config's name; the first lookup imports every router module
ROUTERS: ComponentRegistry = ComponentRegistry("router", base=Router, config_base=RouterConfig,
                                               load=_load_routers)
__all__ = ["ROUTERS", "AuxLoss", "GatedRouter", "Router", "Routing", "balance_loss", "capacity",
           "cv_squared", "positions_in_expert", "routing_stats", "tokens_per_expert_hist",
           "z_loss"]


# ------------------------------------------------------------------------ shared router pieces
def z_loss(logits: torch.Tensor) -> torch.Tensor:
    """ST-MoE router z-loss [P-ST Eq. 5]: mean over tokens of logsumexp(logits)^2. logits [N, E]."""
    return torch.logsumexp(logits, dim=-1).pow(2).mean()


def balance_loss(probs: torch.Tensor, expert: torch.Tensor, n_experts: int) -> torch.Tensor:
    """Switch load-balance loss without alpha [P-SW Eq. 4-6]: E * sum_i f_i P_i.

    probs [N, E] router probabilities; expert [N, K] the experts each token selected (before any
    capacity drop). f_i = share of the N*K selections that went to i (no gradient), P_i = mean
    router probability of i. With K=1 this is Switch's loss; for K>1 it equals DeepSeekMoE's
    expert-level loss sum_i f'_i P_i with f'_i = E/(K N) * count_i ([P-DSM] Eq. 12-14). It is 1 at
    perfectly uniform routing.
    """
    N, K = expert.shape
    counts = torch.bincount(expert.reshape(-1), minlength=n_experts).to(probs.dtype)  # [E]
    f = counts / (N * K)  # [E]
    P = probs.mean(dim=0)  # [E]
    return n_experts * torch.sum(f.detach() * P)


def positions_in_expert(expert: torch.Tensor, n_experts: int) -> torch.Tensor:
    """Arrival position of each assignment within its expert, in the given (priority) order.

    expert [A] -> pos [A]; equivalent to the exclusive cumsum of one-hot(expert) ([P-SW] §2.2)
    without materialising [A, E].
    """
    A = expert.numel()
    order = torch.argsort(expert, stable=True)  # [A]
    counts = torch.bincount(expert, minlength=n_experts)  # [E]
    starts = counts.cumsum(0) - counts  # [E]
    pos_sorted = torch.arange(A, device=expert.device) - starts[expert[order]]
    pos = torch.empty_like(pos_sorted)
    pos[order] = pos_sorted
    return pos


def capacity(n_tokens: int, n_experts: int, slots_per_token: float, factor: float) -> int:
    """Tokens per expert: floor(slots * N / E * capacity_factor) ([P-SW] §2.2), at least 1."""
    return max(1, int(math.floor(slots_per_token * n_tokens / n_experts * factor)))


def cv_squared(v: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """Squared coefficient of variation over the expert axis, population variance
    (references.md §Conventions).

    v [E] -> scalar: var(v) / (mean(v)^2 + eps) ([P-SHZ] Sec. 4 uses CV^2 as the penalty).
    Differentiable: it *is* Shazeer's importance / load loss, so it must carry gradient to W_g and
    W_noise (pass a detached tensor for a diagnostic).
    """
    v = v.float()
    return v.var(unbiased=False) / (v.mean().pow(2) + eps)


@torch.no_grad()
def tokens_per_expert_hist(token: torch.Tensor, n_tokens: int) -> dict[str, torch.Tensor]:
    """Experts-per-token histogram for bins 0,1,2,3,4,>4 (``ept_hist`` [6], token counts) and the
    fraction of tokens that got no expert (``zero_frac``) [P-EC] §4.5. token [A] -> stats."""
    per_tok = torch.bincount(token, minlength=n_tokens)  # [N] experts applied to each token
    hist = torch.bincount(per_tok.clamp_max(5), minlength=6)[:6].float()  # [6]
    return {"ept_hist": hist, "zero_frac": (per_tok == 0).float().mean()}


@torch.no_grad()
def routing_stats(probs: torch.Tensor | None, logits: torch.Tensor | None,
                  kept_expert: torch.Tensor, n_selected: int, n_experts: int
                  ) -> dict[str, torch.Tensor]:
    """Diagnostics of one routing call (all detached, float32).

    probs/logits [N, E], or None for a router without them (then only the hard ``load`` and the
    ``drop_frac``, ``RouterConfig.STATS``); kept_expert [A] experts of the assignments that
    survived capacity; n_selected = number of assignments before drops.
    """
    load = torch.bincount(kept_expert, minlength=n_experts).float()  # [E] hard load
    out = {"load": load}
    if probs is not None:
        out["importance"] = probs.sum(0)  # [E] sum of gate probabilities [P-SHZ] Sec. 4
    out["drop_frac"] = torch.tensor(1.0 - kept_expert.numel() / max(n_selected, 1))
    if probs is not None:
        out["entropy"] = -(probs * probs.clamp_min(1e-9).log()).sum(-1).mean()
    if logits is not None:
        out["z"] = torch.logsumexp(logits, -1).pow(2).mean()
    return out
