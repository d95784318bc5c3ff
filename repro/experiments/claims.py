"""Claims: a paper's statement made checkable, evaluated over seeds into a verdict.

Verdict rule (one rule for every claim, stated in claims.md): for a per-seed quantity q whose
claim is "q > threshold" (or "<"), with mean m and sample std s over n seeds:
* reproduced      if the whole interval m ± s lies on the claimed side of the threshold;
* not reproduced  if m ± s lies entirely on the other side;
* inconclusive    otherwise (the threshold is inside one std of the mean), or fewer than 2 seeds.
Paired quantities (differences between arms sharing a seed) are formed per seed first.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

REPRODUCED = "reproduced"
NOT_REPRODUCED = "not reproduced"
INCONCLUSIVE = "inconclusive"


@dataclass
class RunRecord:
    arm: str
    seed: int
    run_id: str
    val_curve: list[tuple[int, float]]  # (step, val loss)
    metrics: dict[str, float] = field(default_factory=dict)  # final values of logged metrics
    config: dict | None = None  # the resolved run config (dict form)
    weights: str | None = None  # path of the final weights, if saved
    trained_on: str | None = None  # the run's repro.device tag (None for runs that predate it)

    @property
    def final_val_loss(self) -> float:
        return self.val_curve[-1][1] if self.val_curve else math.nan


@dataclass
class Results:
    """All finished runs of one experiment, indexed by (arm, seed)."""

    runs: dict[tuple[str, int], RunRecord]
    notes: list[str] = field(default_factory=list)

    def seeds(self, *arms: str) -> list[int]:
        """Seeds present for every given arm."""
        sets = [{s for (a, s) in self.runs if a == arm} for arm in arms]
        return sorted(set.intersection(*sets)) if sets else []

    def get(self, arm: str, seed: int) -> RunRecord:
        return self.runs[(arm, seed)]


@dataclass
class ClaimResult:
    claim: Claim
    verdict: str
    measured: str  # human-readable measured figure (mean ± std over seeds)
    rule: str
    per_seed: dict[str, list[float]] = field(default_factory=dict)
    mean: float = math.nan
    std: float = math.nan
    n: int = 0


def mean_std(xs: list[float]) -> tuple[float, float]:
    xs = [x for x in xs if not math.isnan(x)]
    if not xs:
        return math.nan, math.nan
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else math.nan)


def interval_verdict(m: float, s: float, n: int, threshold: float, greater: bool) -> str:
    if n < 2 or math.isnan(m) or math.isnan(s):
        return INCONCLUSIVE
    lo, hi = m - s, m + s
    if greater:
        return REPRODUCED if lo > threshold else NOT_REPRODUCED if hi < threshold else INCONCLUSIVE
    return REPRODUCED if hi < threshold else NOT_REPRODUCED if lo > threshold else INCONCLUSIVE


def steps_to_target(curve: list[tuple[int, float]], target: float) -> float:
    """First eval step with val loss <= target; inf if never reached ([papers.md §1])."""
    for step, v in curve:
        if v <= target + 1e-12:
            return float(step)
    return math.inf


def speedup(base: RunRecord, other: RunRecord) -> tuple[float, bool]:
    """steps_baseline / steps_method with target = the baseline's final val loss.

    If the method never reaches the target, return the upper bound steps_base / (last step +
    one eval interval) and flag it (the true speedup is below this bound).
    """
    target = base.final_val_loss
    sb = steps_to_target(base.val_curve, target)
    so = steps_to_target(other.val_curve, target)
    if math.isinf(so):
        last = other.val_curve[-1][0]
        gap = last - other.val_curve[-2][0] if len(other.val_curve) > 1 else last
        return sb / (last + gap), True
    return sb / max(so, 1.0), False


@dataclass(frozen=True)
class Claim:
    """Base claim. Subclasses implement ``evaluate(results) -> ClaimResult``."""

    name: str
    statement: str  # the paper's claim in our words
    paper_figure: str  # the published figure, e.g. "7.5x (64 experts, step 60K vs 450K)"
    source: str  # table / figure / section, e.g. "[P-SW] §3.1, Fig. 5"

    def evaluate(self, results: Results) -> ClaimResult:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def arms(self) -> tuple[str, ...]:
        return ()


@dataclass(frozen=True)
class SpeedupClaim(Claim):
    """Steps-to-target speedup of ``arm`` over ``baseline`` (paired by seed) > threshold."""

    baseline: str = ""
    arm: str = ""
    threshold: float = 1.0

    @property
    def arms(self):
        return (self.baseline, self.arm)

    def evaluate(self, results: Results) -> ClaimResult:
        seeds = results.seeds(self.baseline, self.arm)
        vals, capped = [], 0
        for s in seeds:
            v, c = speedup(results.get(self.baseline, s), results.get(self.arm, s))
            vals.append(v)
            capped += c
        m, sd = mean_std(vals)
        verdict = interval_verdict(m, sd, len(vals), self.threshold, True)
        note = f" ({capped} seed(s) never reached the target; upper bound used)" if capped else ""
        return ClaimResult(self, verdict, f"{m:.2f} ± {sd:.2f} (n={len(vals)}){note}",
                           f"speedup mean ± std > {self.threshold:g}",
                           {self.arm: vals}, m, sd, len(vals))


@dataclass(frozen=True)
class IncreasingClaim(Claim):
    """A per-seed quantity increases along ``arm_order``: each consecutive paired difference
    must satisfy the interval rule with threshold 0."""

    baseline: str = ""
    arm_order: tuple[str, ...] = ()
    quantity: str = "speedup"  # "speedup" (vs baseline) | "final_val_loss" (then: decreasing)

    @property
    def arms(self):
        return (self.baseline, *self.arm_order) if self.baseline else self.arm_order

    def _per_seed(self, results: Results, arm: str, seed: int) -> float:
        if self.quantity == "speedup":
            return speedup(results.get(self.baseline, seed), results.get(arm, seed))[0]
        return -results.get(arm, seed).final_val_loss  # lower loss = "increasing quality"

    def evaluate(self, results: Results) -> ClaimResult:
        seeds = results.seeds(*self.arms)
        per = {a: [self._per_seed(results, a, s) for s in seeds] for a in self.arm_order}
        verdicts, parts = [], []
        for a, b in zip(self.arm_order, self.arm_order[1:]):
            diffs = [y - x for x, y in zip(per[a], per[b])]
            m, sd = mean_std(diffs)
            verdicts.append(interval_verdict(m, sd, len(diffs), 0.0, True))
            parts.append(f"{b}-{a}: {m:+.2f} ± {sd:.2f}")
        if all(v == REPRODUCED for v in verdicts):
            verdict = REPRODUCED
        elif any(v == NOT_REPRODUCED for v in verdicts):
            verdict = NOT_REPRODUCED
        else:
            verdict = INCONCLUSIVE
        means = ", ".join(f"{a}={mean_std(v)[0]:.2f}" for a, v in per.items())
        return ClaimResult(self, verdict, f"means {means}; paired steps {'; '.join(parts)}",
                           "every consecutive paired difference mean ± std > 0", per,
                           n=len(seeds))


@dataclass(frozen=True)
class MetricClaim(Claim):
    """A logged final metric of ``arm`` is below (or above) a threshold over seeds."""

    arm: str = ""
    metric: str = ""
    threshold: float = 0.0
    greater: bool = False

    @property
    def arms(self):
        return (self.arm,)

    def evaluate(self, results: Results) -> ClaimResult:
        seeds = results.seeds(self.arm)
        vals = [_metric(results.get(self.arm, s), self.metric) for s in seeds]
        m, sd = mean_std(vals)
        verdict = interval_verdict(m, sd, len(vals), self.threshold, self.greater)
        op = ">" if self.greater else "<"
        return ClaimResult(self, verdict, f"{self.metric} = {m:.4f} ± {sd:.4f} (n={len(vals)})",
                           f"mean ± std {op} {self.threshold:g}", {self.arm: vals}, m, sd,
                           len(vals))


def _metric(rec: RunRecord, metric: str) -> float:
    if metric == "final_val_loss":
        return rec.final_val_loss
    return rec.metrics.get(metric, math.nan)


def paired_diffs(results: Results, arm: str, other: str, metric: str) -> list[float]:
    """metric(arm) - metric(other) for every seed both arms share."""
    return [_metric(results.get(arm, s), metric) - _metric(results.get(other, s), metric)
            for s in results.seeds(arm, other)]


@dataclass(frozen=True)
class PairedMetricClaim(Claim):
    """metric(arm) - metric(other), paired by seed, is > margin (``greater``) or < -margin."""

    arm: str = ""
    other: str = ""
    metric: str = "final_val_loss"
    margin: float = 0.0
    greater: bool = True

    @property
    def arms(self):
        return (self.arm, self.other)

    def evaluate(self, results: Results) -> ClaimResult:
        diffs = paired_diffs(results, self.arm, self.other, self.metric)
        m, sd = mean_std(diffs)
        thr = self.margin if self.greater else -self.margin
        verdict = interval_verdict(m, sd, len(diffs), thr, self.greater)
        op = ">" if self.greater else "<"
        return ClaimResult(self, verdict, f"{self.metric}({self.arm}) - {self.metric}("
                           f"{self.other}) = {m:+.4f} ± {sd:.4f} (n={len(diffs)})",
                           f"paired difference mean ± std {op} {thr:+g}", {"diff": diffs}, m, sd,
                           len(diffs))


@dataclass(frozen=True)
class EquivalenceClaim(Claim):
    """|metric(arm) - metric(other)| stays within ``margin`` (paired by seed).

    reproduced if the interval mean ± std of the paired difference lies inside (-margin, margin);
    not reproduced if it lies wholly outside; inconclusive otherwise.
    """

    arm: str = ""
    other: str = ""
    metric: str = "final_val_loss"
    margin: float = 0.02

    @property
    def arms(self):
        return (self.arm, self.other)

    def evaluate(self, results: Results) -> ClaimResult:
        diffs = paired_diffs(results, self.arm, self.other, self.metric)
        m, sd = mean_std(diffs)
        if len(diffs) < 2 or math.isnan(sd):
            verdict = INCONCLUSIVE
        elif -self.margin < m - sd and m + sd < self.margin:
            verdict = REPRODUCED
        elif m - sd > self.margin or m + sd < -self.margin:
            verdict = NOT_REPRODUCED
        else:
            verdict = INCONCLUSIVE
        return ClaimResult(self, verdict, f"{self.metric}({self.arm}) - {self.metric}("
                           f"{self.other}) = {m:+.4f} ± {sd:.4f} (n={len(diffs)})",
                           f"mean ± std of the paired difference inside ±{self.margin:g}",
                           {"diff": diffs}, m, sd, len(diffs))
