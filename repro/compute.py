"""Analytic compute accounting: total params, activated params per token, FLOPs per token.

Every number has a formula and a test that compares it with the built module (house rule 4).
Each FFN block counts itself, in its torch-free config next to its fields (``FFNConfig.count`` in
``repro/layers/<block>_config.py``), and so does each router (``param_count``,
``experts_per_token``, ``slots_per_token`` in ``repro/routers/<method>_config.py``), so a new
block or router needs nothing here (the counting vocabulary, ``FFNCount``, sits beside
``FFNConfig.count`` in ``repro/layers/base_config.py``); this module holds the shared
conventions, the model-level sums and the matching. Torch-free. Conventions
(references.md §Conventions):

* activated params per token = weights that multiply a token, averaged over tokens (expected value
  for routers whose expert count per token varies, e.g. Expert Choice: E*C/N = capacity factor);
* forward FLOPs = 2 x multiply-accumulates; FFN FLOPs/token = 2 x activated FFN matmul weights,
  router included (2*D*E); elementwise ops and softmax excluded (Kaplan-style, [P-SW] §2);
* model FLOPs/token adds attention projections, the LM head and the attention scores
  (2 * 2 * T * D per layer for a context of T, causal masking not discounted; Kaplan et al. 2020).

Matched arms are *derived* (``dense_d_ff_for_ffn_flops`` and friends), then verified with
``check_matched`` (2% tolerance by default) before any training.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from repro.config import ConfigError
from repro.layers.base_config import FFNCount, router_params, swiglu_params
from repro.registry import Registry


def ffn_count(ffn_cfg, d_model: int) -> FFNCount:
    """The block's counts; each FFN config counts itself (``FFNConfig.count``, next to its
    fields in ``repro/layers/<block>_config.py``)."""
    ACCOUNTANTS.get(ffn_cfg.kind, field="model.ffn.kind")  # an unknown kind: one line
    return ffn_cfg.count(d_model)


class _Accountants(Registry):
    """``ACCOUNTANTS``: FFN kind -> ``fn(cfg, d_model) -> FFNCount``, for every registered FFN
    config that counts itself (filled from the config family on lookup, torch-free)."""

    def _ensure_loaded(self) -> None:
        from repro.config import family_of
        from repro.layers import FFNConfig

        for kind, cls in family_of(FFNConfig).items():
            if kind not in self._items and cls.count is not FFNConfig.count:
                self._items[kind] = _count_with_config


def _count_with_config(cfg, d_model: int) -> FFNCount:
    return cfg.count(d_model)


ACCOUNTANTS: Registry[Callable[..., FFNCount]] = _Accountants("FFN accountant")


@dataclass(frozen=True)
class ModelCount:
    total_params: int
    activated_params: float  # whole model, embeddings included
    non_embedding_params: int
    ffn_total_params: int  # summed over layers
    ffn_activated_params: float
    ffn_flops: float  # per token, summed over layers
    flops: float  # per token forward, whole model, context seq_len
    ffn_activated_params_conv_a: float | None = None
    attention_flops: float = 0.0  # per token forward, summed over layers: projections + scores
    ffn_flops_padded: float | None = None  # capacity-padded FFN FLOPs per token (see FFNCount)
    head_flops: float = 0.0  # per token forward: the LM head's 2*D*V

    def flop_split(self) -> dict[str, float]:
        """Shares of the forward FLOPs per token (training, fwd + 2x bwd, has the same split):
        ``ffn`` / ``attention`` / ``head``; they sum to 1."""
        return {"ffn": self.ffn_flops / self.flops, "attention": self.attention_flops / self.flops,
                "head": self.head_flops / self.flops}

    def get(self, quantity: str) -> float:
        if quantity not in MATCHABLE:
            raise ConfigError("matched", f"unknown matched quantity {quantity!r} "
                              f"(allowed: {', '.join(MATCHABLE)})")
        return float(getattr(self, quantity))


MATCHABLE = ("total_params", "activated_params", "ffn_total_params", "ffn_activated_params",
             "ffn_flops", "flops")


def model_count(cfg, seq_len: int = 128) -> ModelCount:
    """Analytic counts for a ``ModelConfig`` (see the module docstring for conventions)."""
    D, L, V = cfg.d_model, cfg.n_layers, cfg.vocab_size
    f = ffn_count(cfg.ffn, D)
    attn = 4 * D * D  # qkv [D, 3D] + proj [D, D]
    norms = 2 * D
    per_layer = attn + norms + f.total
    emb = V * D
    head = 0 if cfg.tie_embeddings else V * D
    total = emb + head + L * per_layer + D
    activated = emb + head + L * (attn + norms + f.activated) + D
    attention = L * (2.0 * attn + 2.0 * 2 * seq_len * D)  # projections + QK^T and AV scores
    head_flops = 2.0 * D * V  # the LM head (tied or not, it multiplies every token)
    flops = attention + L * f.flops + head_flops
    conv_a = L * f.activated_conv_a if f.activated_conv_a is not None else None
    padded = L * f.flops_padded if f.flops_padded is not None else None
    return ModelCount(total, activated, total - emb - head, L * f.total, L * f.activated,
                      L * f.flops, flops, conv_a, attention_flops=attention,
                      head_flops=head_flops, ffn_flops_padded=padded)


def count_module_params(module) -> int:
    return sum(p.numel() for p in module.parameters())


# ----------------------------------------------------------------------------------- matching
def dense_d_ff_for_ffn_flops(ffn_flops_per_layer: float, d_model: int) -> int:
    """Dense SwiGLU hidden width whose FLOPs/token equal a target (6*D*F = target)."""
    return max(1, int(round(ffn_flops_per_layer / (6.0 * d_model))))


def dense_d_ff_for_params(params_per_layer: float, d_model: int) -> int:
    """Dense SwiGLU hidden width with the given parameter count (3*D*F = target)."""
    return max(1, int(round(params_per_layer / (3.0 * d_model))))


# Derived expert widths are rounded to a multiple of WIDTH_ALIGN columns: fp32 rows of 4k floats
# are 16-byte aligned, which torch._grouped_mm needs (repro.layers.dispatch.grouped_mm_ok); an
# unaligned width (191, 381, 93, 286 at the cpu scale) made ``auto`` fall back to capacity-padded
# bmm and cost 9-10% of whole-model throughput (docs/cost.md). The rounding is taken only while
# it moves the block's FFN FLOPs/token by at most ALIGN_TOL of the target (half of
# check_matched's 2%); otherwise the nearest integer width stays. Either way the accounting
# counts the width as built: no padding column is ever counted or executed by the row backends.
WIDTH_ALIGN = 4
ALIGN_TOL = 0.01


def aligned_width(exact: float, flops_of, target: float, align: int = WIDTH_ALIGN) -> int:
    """The width for an exact solution ``exact``: the nearest multiple of ``align`` when
    ``flops_of(width)`` stays within ALIGN_TOL of ``target``, else the nearest integer."""
    nearest = max(1, int(round(exact)))
    up = max(align, align * int(round(exact / align)))
    if abs(flops_of(up) - target) <= ALIGN_TOL * abs(target):
        return up
    return nearest


def moe_d_expert_for_ffn_flops(ffn_flops_per_layer: float, moe_cfg, d_model: int,
                               align: int = WIDTH_ALIGN) -> int:
    """Routed-expert width F such that an MoE block's FFN FLOPs/token equal a target.

    Solves 2*(router + k_eff*3*D*F + shared) = target for F, the router's FLOPs included, so
    MoE arms with many experts are not handed free compute by their router; F is then rounded
    to a multiple of ``align`` when that costs at most ALIGN_TOL (``aligned_width``; 1: none).
    A shared expert of ``d_shared=None`` takes F too (DeepSeekMoE's layout), and is solved with it.
    """
    D, E = d_model, moe_cfg.n_experts
    k_eff = moe_cfg.router.experts_per_token(E)
    per_f = k_eff * 3 * D * (1 + 2 * moe_cfg.neuron_ratio) / 3  # MoNE: full gate + kept up/down
    fixed = router_params(moe_cfg.router, D, E)
    if moe_cfg.n_shared and moe_cfg.d_shared is None:  # shared experts of width F as well
        per_f += swiglu_params(D, moe_cfg.n_shared)
    else:
        fixed += swiglu_params(D, moe_cfg.shared_width)
    exact = (ffn_flops_per_layer / 2.0 - fixed) / per_f
    return aligned_width(exact, lambda F: 2.0 * (fixed + per_f * F), ffn_flops_per_layer,
                         align)


def moe_widths_aligned(ffn_flops_per_layer: float, moe_cfg, d_model: int,
                       align: int = WIDTH_ALIGN) -> tuple[int, int]:
    """(routed width F, shared width S) of a block with shared experts, both multiples of
    ``align``: F is the exact solution of ``moe_d_expert_for_ffn_flops`` (shared experts of width
    F) rounded down to a multiple of ``align``, and the ``n_shared`` shared experts take the
    remaining FLOPs, 2*(router + k_eff*3*D*F + n_shared*3*D*S) = target, S rounded to the nearest
    multiple. Narrow fine-grained experts (DeepSeekMoE's 93 at cpu) move the FLOPs by more than
    ALIGN_TOL when rounded alone; the shared width absorbs the difference instead."""
    D, E = d_model, moe_cfg.n_experts
    k_eff = moe_cfg.router.experts_per_token(E)
    router = router_params(moe_cfg.router, D, E)
    exact = (ffn_flops_per_layer / 2.0 - router) / (3 * D * (k_eff + moe_cfg.n_shared))
    F = max(align, align * int(exact // align))
    rest = ffn_flops_per_layer / 2.0 - router - k_eff * 3 * D * F  # for the shared experts
    S = max(align, align * int(round(rest / (3 * D * moe_cfg.n_shared) / align)))
    return F, S


def match_dense_to(ffn_cfg, d_model: int, quantity: str = "ffn_flops"):
    """A ``DenseFFNConfig`` matched to an FFN block on ``ffn_flops`` or ``ffn_activated_params``
    (or ``ffn_total_params``)."""
    from repro.layers.dense_config import DenseFFNConfig

    f = ffn_count(ffn_cfg, d_model)
    if quantity == "ffn_flops":
        return DenseFFNConfig(d_ff=dense_d_ff_for_ffn_flops(f.flops, d_model))
    if quantity == "ffn_activated_params":
        return DenseFFNConfig(d_ff=dense_d_ff_for_params(f.activated, d_model))
    if quantity == "ffn_total_params":
        return DenseFFNConfig(d_ff=dense_d_ff_for_params(f.total, d_model))
    raise ConfigError("matched", f"cannot match a dense FFN on {quantity!r} "
                      "(allowed: ffn_flops, ffn_activated_params, ffn_total_params)")


def fine_grained(d_ff: int, granularity: int) -> int:
    """DeepSeekMoE fine-grained expert width d_ff / m [P-DSM] §3.1; m must divide d_ff."""
    if granularity < 1 or d_ff % granularity:
        raise ConfigError("granularity", f"m={granularity} must be >= 1 and divide d_ff={d_ff}")
    return d_ff // granularity


class MatchError(ConfigError):
    """Arms that should be matched on a quantity are not (beyond the tolerance)."""


def check_matched(counts: Mapping[str, ModelCount], quantity: str, tol: float = 0.02,
                  groups: list[list[str]] | None = None) -> dict[str, float]:
    """Refuse arms whose ``quantity`` differs by more than ``tol`` (relative) within a group.

    ``groups`` lists arm names that must match each other (default: all arms). Returns the
    relative deviation of each arm from its group's first arm.
    """
    groups = groups or [list(counts)]
    dev: dict[str, float] = {}
    for g in groups:
        ref_name = g[0]
        ref = counts[ref_name].get(quantity)
        for name in g:
            v = counts[name].get(quantity)
            if not (math.isfinite(v) and math.isfinite(ref)):  # a NaN deviation must not pass
                bad = name if not math.isfinite(v) else ref_name
                raise MatchError("arms", f"arm {bad!r} has a non-finite {quantity} "
                                 f"({counts[bad].get(quantity)}); check its sizes and factors")
            d = abs(v - ref) / max(abs(ref), 1e-12)
            dev[name] = max(dev.get(name, 0.0), d)
            if d > tol + 1e-12:
                raise MatchError("arms", f"arm {name!r} has {quantity}={v:,.0f} vs {ref:,.0f} for "
                                 f"{ref_name!r} ({100 * d:.1f}% > {100 * tol:.0f}% tolerance); "
                                 "derive the arm with repro.compute.match_* or change the matched "
                                 "quantity")
    return dev


def fmt_count(x: float) -> str:
    for unit, div in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(x) >= div:
            return f"{x / div:.3g}{unit}"
    return f"{x:.3g}" if not math.isclose(x, round(x)) else str(int(round(x)))
