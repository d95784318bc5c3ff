"""Config of the token-routed MoE FFN block (``repro.layers.moe``): its fields, checks and
compute accounting, and the names its ``backend`` / ``neuron_impl`` fields accept.

Torch-free, like every ``*_config`` module (experiment definitions, ``repro ls`` / ``show`` and
``--set`` validation use it without torch).
"""

from __future__ import annotations

import math

from repro.config import ConfigError, check, config, family_of, variant
from repro.layers.base_config import FFNConfig, FFNCount, router_params, swiglu_params
from repro.routers import RouterConfig
from repro.routers.topk_config import TopKRouterConfig

# config values of MoEConfig.backend: ``auto`` (measured), the three backends, ``static`` (the
# rule); the backends themselves are ``repro.layers.dispatch``
BACKENDS = ("auto", "grouped_mm", "loop", "bmm", "static")

# MoNE neuron top-k implementations (``repro.layers.mone``). ``auto`` -> ``mask``: measured
# 2026-11-26 on the 2-core CPU (fp32, E=8, F=256, D=128, 8192 tokens, top-2, fwd+bwd, glibc mmap
# off, 5 interleaved rounds, machine shared with other jobs), time relative to the plain MoE
# (rho=1): mask 1.13 (rho=0.5) and 1.10 (rho=0.25); gather 5.6 (rho=0.5) and 3.9 (rho=0.25).
# Per-token weight gathers are memory-bound GEMVs and their backward is a scatter-add, so gather
# only pays with real kernels.
NEURON_IMPLS = ("auto", "mask", "gather")


def neurons_kept(ratio: float, d_expert: int) -> int:
    """ceil(rho * F) neurons per token ([S-MoNE] top-K ratio)."""
    return max(1, math.ceil(ratio * d_expert - 1e-9))


@variant("moe")
@config
class MoEConfig(FFNConfig):
    n_experts: int = 8  # E routed experts
    d_expert: int = 352  # F, hidden width of one routed expert
    router: RouterConfig = TopKRouterConfig()
    n_shared: int = 0  # K_s shared experts, always active [P-DSM] §3.2
    d_shared: int | None = None  # hidden width of one shared expert (default: d_expert)
    neuron_ratio: float = 1.0  # MoNE rho: share of each routed expert's neurons kept per token
    backend: str = "auto"  # dispatch backend: auto (measured) | grouped_mm | loop | bmm | static
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
        routers = family_of(RouterConfig)  # the router configs (torch-free), by name
        if self.router.kind not in routers:
            raise ConfigError("router.kind", routers.unknown_message(self.router.kind))
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

    def count(self, d_model: int) -> FFNCount:
        """Router + E routed experts + shared experts; per token the router, k_eff routed
        experts (expected, ``RouterConfig.experts_per_token``) and the shared ones."""
        D, E, F = d_model, self.n_experts, self.d_expert
        router = router_params(self.router, D, E)
        expert = swiglu_params(D, F)
        shared = swiglu_params(D, self.shared_width)
        k_eff = self.router.experts_per_token(E)  # expected routed experts per token
        rho = self.neuron_ratio
        # MoNE (references.md §MoNE): convention B counts rho of all three matrices per activated
        # expert; convention A counts the full W_gate (needed to rank neurons) plus rho of W_up
        # and W_down.
        routed_b = k_eff * rho * expert
        routed_a = k_eff * (D * F + 2 * rho * D * F)
        total = router + E * expert + shared
        activated = router + routed_b + shared
        # FLOPs follow the efficient MoNE implementation (full gate projection, kept rows only).
        flops = 2.0 * (router + routed_a + shared)
        slots = self.router.slots_per_token(E)  # E*C/N with capacity, else None
        padded = None if slots is None else 2.0 * (router + slots / k_eff * routed_a + shared)
        return FFNCount(total, activated, flops, router + routed_a + shared if rho < 1 else None,
                        padded)
