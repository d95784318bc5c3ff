"""Routing and activation statistics as torchmetrics ``Metric``s (sum-reduced across ranks).

A router returns per-call raw statistics (``load`` [E] hard counts, ``importance`` [E] summed
gate probabilities, ``drop_frac``, ``entropy``, ``z``, optionally ``smooth_load`` [E] and
``ept_hist`` [6]). ``RoutingMetric`` turns each call into per-batch scalars and averages them:

* load_cv / importance_cv: std/mean over experts (population std, references.md §Conventions);
* max_mean_load: max_e Load_e / mean_e Load_e (1.0 = perfect balance);
* drop_frac, entropy (mean router entropy, nats), z (mean squared router logsumexp);
* ept_*: fraction of tokens with 0, 1, 2, 3, 4, >4 experts (Expert Choice, [P-EC] §4.5).
"""

from __future__ import annotations

import torch
from torchmetrics import Metric

from repro.metrics.logged import PASSED_THROUGH
from repro.tracking import names as N

SCALARS = N.ROUTING_SCALARS  # the statistic names (logged as N.routing_metric(split, name))
EPT_BINS = N.EPT_BINS
EPS = 1e-9
def cv(v: torch.Tensor) -> torch.Tensor:
    """Coefficient of variation std/mean over the last axis (population variance, + eps)."""
    v = v.float()
    return v.std(dim=-1, unbiased=False) / (v.mean(dim=-1) + EPS)


def batch_scalars(stats: dict[str, torch.Tensor]) -> dict[str, float]:
    out: dict[str, float] = {}
    if "load" in stats:
        load = stats["load"].float()
        out[N.S_LOAD_CV] = float(cv(load))
        out[N.S_MAX_MEAN_LOAD] = float(load.max() / (load.mean() + EPS))
    if "importance" in stats:
        out[N.S_IMPORTANCE_CV] = float(cv(stats["importance"]))
    if "smooth_load" in stats:
        out[N.S_SMOOTH_LOAD_CV] = float(cv(stats["smooth_load"]))
    for k in PASSED_THROUGH:
        if k in stats:
            out[k] = float(stats[k])
    return out


class RoutingMetric(Metric):
    full_state_update = False

    def __init__(self, n_experts: int, persistent: bool = False, **kw):
        """``persistent``: the accumulators go into the module's state_dict, so a checkpoint
        taken mid log-window resumes the window exactly (the train metrics use it)."""
        super().__init__(**kw)
        self.n_experts = n_experts
        for name, size in (("sums", len(SCALARS)), ("counts", len(SCALARS)),
                           ("load", n_experts), ("ept", len(EPT_BINS))):
            self.add_state(name, torch.zeros(size, dtype=torch.float64), "sum",
                           persistent=persistent)

    @property
    def has_data(self) -> bool:
        """Anything accumulated (restored states count; torchmetrics' update_count does not
        survive a checkpoint)."""
        return bool(self.counts.sum() > 0 or self.ept.sum() > 0)

    def update(self, stats: dict[str, torch.Tensor]) -> None:
        for k, v in batch_scalars(stats).items():
            i = SCALARS.index(k)
            self.sums[i] += v
            self.counts[i] += 1
        if "load" in stats and stats["load"].numel() == self.n_experts:
            self.load += stats["load"].to(self.load.device, torch.float64)
        if "ept_hist" in stats:
            self.ept += stats["ept_hist"].to(self.ept.device, torch.float64)

    def compute(self) -> dict[str, torch.Tensor]:
        out = {k: self.sums[i] / self.counts[i] for i, k in enumerate(SCALARS)
               if self.counts[i] > 0}
        if self.ept.sum() > 0:
            frac = self.ept / self.ept.sum()
            out.update({N.ept_stat(b): frac[i] for i, b in enumerate(EPT_BINS)})
        return {k: v.float() for k, v in out.items()}


class ActivationSparsity(Metric):
    """NSAR(tau) = mean 1{|a| > tau} over FFN activations (references.md §Finedeep, threshold
    ours) and mean |a|, accumulated over batches."""

    full_state_update = False
    TAUS = N.NSAR_TAUS

    def __init__(self, taus: tuple[float, ...] = TAUS, **kw):
        super().__init__(**kw)
        self.taus = tuple(taus)
        self.add_state("above", torch.zeros(len(self.taus), dtype=torch.float64), "sum")
        self.add_state("abs_sum", torch.zeros((), dtype=torch.float64), "sum")
        self.add_state("n", torch.zeros((), dtype=torch.float64), "sum")

    def update(self, a: torch.Tensor) -> None:  # a: [..., F] activations
        aa = a.detach().abs().float().reshape(-1)
        for i, t in enumerate(self.taus):
            self.above[i] += (aa > t).sum()
        self.abs_sum += aa.sum()
        self.n += aa.numel()

    def compute(self) -> dict[str, torch.Tensor]:
        n = self.n.clamp_min(1)
        out = {f"nsar_{t:g}": (self.above[i] / n).float() for i, t in enumerate(self.taus)}
        out["mean_abs"] = (self.abs_sum / n).float()
        return out
