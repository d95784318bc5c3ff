"""Which routing statistics get logged, from a router's raw ``Routing.stats`` keys (torch-free).

``repro.metrics.routing.RoutingMetric`` turns each raw key into the logged statistics below;
``repro.experiments.produced`` uses the same table to check claims at definition time without
importing torch.
"""

from __future__ import annotations

from collections.abc import Iterable

from repro.tracking import names as N

# raw router statistics logged as they are (per-batch scalars, averaged)
PASSED_THROUGH = (N.S_DROP_FRAC, N.S_ENTROPY, N.S_Z, N.S_ZERO_FRAC, N.S_SECOND_FRAC)
# raw router statistic (a key of ``Routing.stats``) -> the logged statistics it gives
LOGGED_FROM = {"load": (N.S_LOAD_CV, N.S_MAX_MEAN_LOAD), "importance": (N.S_IMPORTANCE_CV,),
               "smooth_load": (N.S_SMOOTH_LOAD_CV,),
               "ept_hist": tuple(N.ept_stat(b) for b in N.EPT_BINS),
               **{k: (k,) for k in PASSED_THROUGH}}


def logged_stats(raw: Iterable[str]) -> tuple[str, ...]:
    """The statistics ``RoutingMetric`` logs for a router whose calls return the raw ``raw``
    keys (``RouterConfig.STATS``); a raw key it does not read gives none."""
    return tuple(s for k in raw for s in LOGGED_FROM.get(k, ()))


def n_experts_of(ffn_cfg) -> int | None:
    """The experts of a block whose router is tracked (``moe`` blocks); None: no routing metrics."""
    return getattr(ffn_cfg, "n_experts", None) if ffn_cfg.kind == "moe" else None
