"""Search spaces: named, registered sets of parameters over dotted config paths.

A parameter's name *is* a dotted path of the run config (``train.lr``,
``model.ffn.router.capacity_factor``): the same string as a ``--set`` key and as the MLflow param
the trial's run logs, so a best value can be pasted back as ``--set PATH=VALUE``.

A space is built against the arm's resolved run config (flattened), so it can (a) refuse an arm
it does not apply to with one line naming the missing path and the arm's FFN/router kind, and
(b) size ranges from the arm (``top_k`` up to the arm's ``n_experts``). A space may *derive* extra
overrides from a sampled value (granularity: more, narrower experts with a proportionally larger
top-k, DeepSeekMoE §3.1); derived keys are logged as config params of the trial's run too.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from repro.config import ConfigError, flatten, to_dict
from repro.registry import Registry

# dotted paths used below (each verified to exist on the relevant config class by the tests)
LR = "train.lr"
CAPACITY = "model.ffn.router.capacity_factor"
TOP_K = "model.ffn.router.top_k"
N_EXPERTS = "model.ffn.n_experts"
D_EXPERT = "model.ffn.d_expert"
W_IMPORTANCE = "model.ffn.router.w_importance"
W_LOAD = "model.ffn.router.w_load"
NOISE_EPS = "model.ffn.router.noise_eps"
ALPHA = "model.ffn.router.alpha"
Z_LOSS = "model.ffn.router.z_loss"
NEURON_RATIO = "model.ffn.neuron_ratio"
FD_M = "model.ffn.n_sublayers"
FD_K = "model.ffn.n_experts"
FD_D_FF = "model.ffn.d_ff"


@dataclass(frozen=True)
class Param:
    """One searched config field. ``kind``: float | int | categorical."""

    path: str
    kind: str
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: int | None = None
    choices: tuple = ()

    def suggest(self, trial) -> Any:
        if self.kind == "float":
            return trial.suggest_float(self.path, float(self.low), float(self.high), log=self.log)
        if self.kind == "int":
            return trial.suggest_int(self.path, int(self.low), int(self.high), log=self.log,
                                     step=self.step or 1)
        if self.kind == "categorical":
            return trial.suggest_categorical(self.path, list(self.choices))
        raise ValueError(f"unknown parameter kind {self.kind!r}")

    def describe(self) -> str:
        if self.kind == "categorical":
            return f"{self.path} in {list(self.choices)}"
        scale = " (log)" if self.log else ""
        return f"{self.path} in [{self.low}, {self.high}]{scale}"


def f(path: str, low: float, high: float, log: bool = False) -> Param:
    return Param(path, "float", low, high, log)


def i(path: str, low: int, high: int, log: bool = False) -> Param:
    return Param(path, "int", low, high, log)


def cat(path: str, *choices) -> Param:
    return Param(path, "categorical", choices=tuple(choices))


Flat = dict[str, Any]


@dataclass(frozen=True)
class SearchSpace:
    """A named search space.

    ``build(flat)`` returns the parameters for an arm whose flattened run config is ``flat``;
    ``needs`` are the dotted paths that must exist in that config; ``derive(flat, sampled)``
    returns extra overrides implied by the sampled values (not searched themselves).
    """

    name: str
    description: str
    needs: tuple[str, ...]
    build: Callable[[Flat], list[Param]]
    derive: Callable[[Flat, dict[str, Any]], dict[str, Any]] | None = None
    applies_to: str = ""  # human text for error messages
    extra: dict = field(default_factory=dict)

    def params_for(self, run_cfg, arm: str = "") -> list[Param]:
        """The space's parameters for this arm's run config; ConfigError if it does not apply."""
        flat = flat_config(run_cfg)
        for path in self.needs:
            if path not in flat:
                ffn = flat.get("model.ffn.kind", "?")
                router = flat.get("model.ffn.router.kind")
                what = f"ffn={ffn}" + (f", router={router}" if router else "")
                where = f"arm {arm!r}" if arm else "this arm"
                raise ConfigError("--space", f"search space {self.name!r} needs {path}, which "
                                  f"{where} ({what}) does not have; it applies to "
                                  f"{self.applies_to or 'other arms'} (see `repro sweep --help`"
                                  " for the spaces)")
        return self.build(flat)

    def sample(self, trial, run_cfg) -> dict[str, Any]:
        """Suggest every parameter; returns {dotted path: value} overrides (derived included)."""
        flat = flat_config(run_cfg)
        values = {p.path: p.suggest(trial) for p in self.params_for(run_cfg)}
        out = dict(values)
        if self.derive is not None:
            out.update(self.derive(flat, values))
        return out


def flat_config(run_cfg) -> Flat:
    return flatten(to_dict(run_cfg))


SPACES: Registry[SearchSpace] = Registry("search space")


def register_space(space: SearchSpace) -> SearchSpace:
    SPACES.register(space.name, space)
    return space


def get_space(name: str) -> SearchSpace:
    return SPACES.get(name, field="--space")


# ------------------------------------------------------------------------------- the spaces
register_space(SearchSpace(
    "lr", "learning rate, log-uniform in [1e-4, 3e-2]", (LR,),
    lambda flat: [f(LR, 1e-4, 3e-2, log=True)], applies_to="every arm"))

register_space(SearchSpace(
    "capacity", "router capacity factor in [0.5, 4] (log): Expert Choice c, Switch/GShard/top-k "
    "token capacity", (CAPACITY,),
    lambda flat: [f(CAPACITY, 0.5, 4.0, log=True)],
    applies_to="routers with a capacity (expert_choice, switch, gshard, topk)"))


def _topk(flat: Flat) -> list[Param]:
    hi = min(8, int(flat[N_EXPERTS]))
    if hi < 2:
        raise ConfigError("--space", f"search space 'topk' needs n_experts >= 2, got {hi}")
    return [i(TOP_K, 1, hi)]


register_space(SearchSpace(
    "topk", "experts per token k in [1, min(8, E)]", (TOP_K, N_EXPERTS), _topk,
    applies_to="routers with top_k (topk, noisy_topk)"))


def _experts(flat: Flat) -> list[Param]:
    k = int(flat.get(TOP_K, 1))
    return [cat(N_EXPERTS, *[e for e in (2, 4, 8, 16, 32) if e >= max(k, 2)])]


register_space(SearchSpace(
    "experts", "number of routed experts E in {2, 4, 8, 16, 32} (>= top_k); expert width fixed",
    (N_EXPERTS, D_EXPERT), _experts, applies_to="moe blocks"))


GRANULARITIES = (1, 2, 4, 8)


def _granularity(flat: Flat) -> list[Param]:
    E, F = int(flat[N_EXPERTS]), int(flat[D_EXPERT])
    return [cat(N_EXPERTS, *[E * m for m in GRANULARITIES if F // m >= 1])]


def _granularity_derive(flat: Flat, values: dict) -> dict:
    # fine-grained segmentation [P-DSM] §3.1: m times more experts, each 1/m as wide, and m
    # times the top-k (when the router has one) so activated params stay constant
    E, F = int(flat[N_EXPERTS]), int(flat[D_EXPERT])
    m = int(values[N_EXPERTS]) // E
    out: dict[str, Any] = {D_EXPERT: max(1, int(math.floor(F / m + 0.5)))}
    if TOP_K in flat:
        out[TOP_K] = int(flat[TOP_K]) * m
    return out


register_space(SearchSpace(
    "granularity", f"fine-grained segmentation m in {GRANULARITIES}: n_experts = E*m, d_expert = "
    "F/m, top_k = k*m (searched as model.ffn.n_experts)", (N_EXPERTS, D_EXPERT), _granularity,
    _granularity_derive, applies_to="moe blocks"))

register_space(SearchSpace(
    "shazeer", "Shazeer noisy top-k: w_importance, w_load in [1e-3, 1] and the noise std floor "
    "noise_eps in [1e-3, 0.3] (all log)", (W_IMPORTANCE, W_LOAD, NOISE_EPS),
    lambda flat: [f(W_IMPORTANCE, 1e-3, 1.0, log=True), f(W_LOAD, 1e-3, 1.0, log=True),
                  f(NOISE_EPS, 1e-3, 0.3, log=True)],
    applies_to="the noisy_topk router"))

register_space(SearchSpace(
    "balance", "load-balance loss alpha in [1e-4, 0.3] (log)", (ALPHA,),
    lambda flat: [f(ALPHA, 1e-4, 0.3, log=True)],
    applies_to="routers with alpha (switch, gshard, topk)"))

register_space(SearchSpace(
    "zloss", "router z-loss weight in [1e-5, 1e-1] (log)", (Z_LOSS,),
    lambda flat: [f(Z_LOSS, 1e-5, 1e-1, log=True)], applies_to="every router"))

register_space(SearchSpace(
    "loss-weights", "load-balance alpha in [1e-4, 0.3] and z-loss in [1e-5, 1e-1] (log)",
    (ALPHA, Z_LOSS),
    lambda flat: [f(ALPHA, 1e-4, 0.3, log=True), f(Z_LOSS, 1e-5, 1e-1, log=True)],
    applies_to="routers with alpha (switch, gshard, topk)"))

register_space(SearchSpace(
    "mone", "MoNE neuron ratio rho in [0.1, 1]", (NEURON_RATIO,),
    lambda flat: [f(NEURON_RATIO, 0.1, 1.0)], applies_to="moe blocks"))


def _finedeep(flat: Flat) -> list[Param]:
    # M*K must divide d_ff: search (M, K) over divisors, then infeasible pairs fail the trial
    d_ff = int(flat[FD_D_FF])
    divs = [d for d in range(1, 17) if d_ff % d == 0]
    return [cat(FD_M, *[d for d in divs if d <= 8]), cat(FD_K, *[d for d in divs if d <= 16])]


register_space(SearchSpace(
    "finedeep", "Finedeep sub-layers M and experts per sub-layer K (divisors of d_ff; pairs with "
    "M*K not dividing d_ff are infeasible trials)", (FD_M, FD_K, FD_D_FF), _finedeep,
    applies_to="the finedeep block"))


def default_space(exp) -> str:
    """An experiment's default space: ``exp.extra["space"]``, else ``lr``."""
    extra = getattr(exp, "extra", None) or {}
    return extra.get("space", "lr")
