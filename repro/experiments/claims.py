"""Claims: a paper's statement made checkable, evaluated over seeds into a verdict.

The verdict rule (a t-based 95% interval of the per-seed quantity, effect size, seeds needed)
lives in ``repro.experiments.stats``; every claim here only forms its per-seed values and calls
``stats.decide`` / ``stats.decide_within``. Loss-gap claims also report the gap along the
training budget (``budget_gaps``): at 25/50/100% of the steps, and where it crosses zero.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

from repro.experiments.stats import (
    INCONCLUSIVE,
    NOT_REPRODUCED,
    REPRODUCED,
    Decision,
    Interval,
    decide,
    decide_within,
    t_interval,
)
from repro.tracking import names as N

__all__ = ["INCONCLUSIVE", "NOT_REPRODUCED", "REPRODUCED", "Decision", "Interval"]


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
    drop_curve: list[tuple[int, float]] = field(default_factory=list)  # (step, train drop_frac)

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
    measured: str  # human-readable measured figure (mean, 95% CI, sd, n)
    rule: str  # the claim's side of the threshold, e.g. "95% CI > 0"
    per_seed: dict[str, list[float]] = field(default_factory=dict)
    mean: float = math.nan
    std: float = math.nan
    n: int = 0
    decision: Decision | None = None  # the interval, effect size and seeds-needed figure
    budget: BudgetGaps | None = None  # loss-gap claims: the gap along the training budget

    @property
    def extra(self) -> str:
        """Effect size and (inconclusive) seeds needed, for claims.md."""
        return self.decision.fmt_extra() if self.decision else ""

    @property
    def seeds_needed(self) -> int | None:
        return self.decision.seeds_needed if self.decision else None


def _result(claim: Claim, dec: Decision, label: str, rule: str, per_seed: dict,
            note: str = "", budget: BudgetGaps | None = None) -> ClaimResult:
    iv = dec.interval
    return ClaimResult(claim, dec.verdict, f"{label} = {iv.fmt()}{note}", rule, per_seed,
                       iv.mean, iv.sd, iv.n, dec, budget)


def _finite(xs: list[float]) -> list[float]:
    return [x for x in xs if not math.isnan(x)]


def mean_std(xs: list[float]) -> tuple[float, float]:
    xs = _finite(xs)
    if not xs:
        return math.nan, math.nan
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else math.nan)


def steps_to_target(curve: list[tuple[int, float]], target: float) -> float:
    """First eval step with val loss <= target; inf if never reached
    (references.md §Conventions)."""
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


# ------------------------------------------------------------------ the gap along the budget
BUDGET_FRACTIONS = (0.25, 0.5, 1.0)


@dataclass
class BudgetGaps:
    """Paired val-loss gap ``loss(minus) - loss(plus)`` at every eval step all seeds share.

    Positive = ``plus`` is ahead. ``steps[i]`` has the interval ``intervals[i]`` over seeds;
    ``at`` maps each of BUDGET_FRACTIONS to (step, interval) at the first eval step at or after
    that fraction of the last step. ``crossover`` is the step from which the mean gap keeps the
    sign it ends with (None when it never changed sign): the "crossover" of MoE scaling plots.
    """

    plus: str
    minus: str
    steps: list[int]
    intervals: list[Interval]
    per_seed: dict[int, list[float]]  # seed -> gap at each step
    at: dict[float, tuple[int, Interval]]
    crossover: int | None

    @property
    def trend(self) -> str:
        """Second half of training: "opening" (|gap| grew by more than the final interval's
        half-width), "closing" (shrank by more), or "flat"."""
        (_, mid), (_, end) = self.at[0.5], self.at[1.0]
        change = abs(end.mean) - abs(mid.mean)
        tol = end.half_width if end.n >= 2 else 0.0
        if math.copysign(1, end.mean) != math.copysign(1, mid.mean):
            return "changed sign"
        return "opening" if change > tol else "closing" if change < -tol else "flat"


def budget_gaps(results: Results, plus: str, minus: str) -> BudgetGaps | None:
    """The paired val-loss gap of ``minus`` over ``plus`` at every shared eval step."""
    seeds = results.seeds(plus, minus)
    if not seeds:
        return None
    curves = {}
    for s in seeds:
        a = dict(results.get(plus, s).val_curve)
        b = dict(results.get(minus, s).val_curve)
        curves[s] = {st: b[st] - a[st] for st in a.keys() & b.keys()}
    steps = sorted(set.intersection(*(set(c) for c in curves.values())))
    if not steps:
        return None
    per_seed = {s: [curves[s][st] for st in steps] for s in seeds}
    ivs = [t_interval(_finite([per_seed[s][i] for s in seeds])) for i in range(len(steps))]
    at = {}
    for f in BUDGET_FRACTIONS:
        i = next(i for i, st in enumerate(steps) if st >= f * steps[-1])
        at[f] = (steps[i], ivs[i])
    crossover = None
    end_sign = math.copysign(1, ivs[-1].mean)
    for i in range(len(steps) - 1, 0, -1):
        if math.copysign(1, ivs[i - 1].mean) != end_sign:
            crossover = steps[i]
            break
    return BudgetGaps(plus, minus, steps, ivs, per_seed, at, crossover)


# ------------------------------------------------------------------------------------ claims
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

    @property
    def reads(self) -> tuple[tuple[str, str], ...]:
        """The (arm, metric) pairs the claim reads from the runs' records (``Experiment.validate``
        refuses a metric that arm does not produce)."""
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
        dec = decide(_finite(vals), self.threshold, True)
        note = f" ({capped} seed(s) never reached the target; upper bound used)" if capped else ""
        return _result(self, dec, "speedup", f"95% CI > {self.threshold:g}", {self.arm: vals},
                       note, budget_gaps(results, self.arm, self.baseline))


@dataclass(frozen=True)
class IncreasingClaim(Claim):
    """A per-seed quantity increases along ``arm_order``: each consecutive paired difference
    must be decided > 0 by the interval rule; the claim's verdict is reproduced when every step
    is, not reproduced when any step is, inconclusive otherwise."""

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
        decisions, parts = [], []
        for a, b in zip(self.arm_order, self.arm_order[1:]):
            dec = decide(_finite([y - x for x, y in zip(per[a], per[b])]), 0.0, True)
            decisions.append(dec)
            parts.append(f"{b}-{a}: {dec.interval.fmt(2)}")
        verdicts = [d.verdict for d in decisions]
        if all(v == REPRODUCED for v in verdicts):
            verdict = REPRODUCED
        elif any(v == NOT_REPRODUCED for v in verdicts):
            verdict = NOT_REPRODUCED
        else:
            verdict = INCONCLUSIVE
        # the weakest step stands for the claim: the undecided step that needs the most seeds
        undecided = [d for d in decisions if d.verdict == INCONCLUSIVE]
        worst = max(undecided, key=lambda d: d.seeds_needed or math.inf) if undecided else \
            min(decisions, key=lambda d: abs(d.effect) if not math.isnan(d.effect) else 0)
        worst = Decision(verdict, worst.interval, 0.0, worst.effect,
                         worst.seeds_needed if verdict == INCONCLUSIVE else None)
        means = ", ".join(f"{a}={mean_std(v)[0]:.2f}" for a, v in per.items())
        return ClaimResult(self, verdict, f"means {means}; paired steps {'; '.join(parts)}",
                           "every consecutive paired difference: 95% CI > 0", per,
                           n=len(seeds), decision=worst)


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

    @property
    def reads(self):
        return ((self.arm, self.metric),)

    def evaluate(self, results: Results) -> ClaimResult:
        seeds = results.seeds(self.arm)
        vals = [_metric(results.get(self.arm, s), self.metric) for s in seeds]
        dec = decide(_finite(vals), self.threshold, self.greater)
        op = ">" if self.greater else "<"
        return _result(self, dec, self.metric, f"95% CI {op} {self.threshold:g}",
                       {self.arm: vals})


def _metric(rec: RunRecord, metric: str) -> float:
    if metric == N.M_FINAL_VAL_LOSS:
        return rec.final_val_loss
    return rec.metrics.get(metric, math.nan)


def paired_diffs(results: Results, arm: str, other: str, metric: str) -> list[float]:
    """metric(arm) - metric(other) for every seed both arms share."""
    return [_metric(results.get(arm, s), metric) - _metric(results.get(other, s), metric)
            for s in results.seeds(arm, other)]


class _ArmVsOther:
    """A claim on ``metric`` of ``arm`` against ``other``, paired by seed."""

    @property
    def arms(self):
        return (self.arm, self.other)

    @property
    def reads(self):
        return ((self.arm, self.metric), (self.other, self.metric))


@dataclass(frozen=True)
class PairedMetricClaim(_ArmVsOther, Claim):
    """metric(arm) - metric(other), paired by seed, is > margin (``greater``) or < -margin."""

    arm: str = ""
    other: str = ""
    metric: str = N.M_FINAL_VAL_LOSS
    margin: float = 0.0
    greater: bool = True

    def evaluate(self, results: Results) -> ClaimResult:
        diffs = paired_diffs(results, self.arm, self.other, self.metric)
        thr = self.margin if self.greater else -self.margin
        dec = decide(_finite(diffs), thr, self.greater)
        op = ">" if self.greater else "<"
        # the loss gap along the budget, oriented so that positive = the claim's winner ahead
        budget = None
        if self.metric == N.M_FINAL_VAL_LOSS:
            plus, minus = (self.other, self.arm) if self.greater else (self.arm, self.other)
            budget = budget_gaps(results, plus, minus)
        return _result(self, dec, f"{self.metric}({self.arm}) - {self.metric}({self.other})",
                       f"paired difference: 95% CI {op} {thr:+g}", {"diff": diffs},
                       budget=budget)


@dataclass(frozen=True)
class EquivalenceClaim(_ArmVsOther, Claim):
    """|metric(arm) - metric(other)| stays within ``margin`` (paired by seed): the 95% interval
    of the paired difference must lie inside (-margin, margin)."""

    arm: str = ""
    other: str = ""
    metric: str = N.M_FINAL_VAL_LOSS
    margin: float = 0.02

    def evaluate(self, results: Results) -> ClaimResult:
        diffs = paired_diffs(results, self.arm, self.other, self.metric)
        dec = decide_within(_finite(diffs), self.margin)
        budget = (budget_gaps(results, self.arm, self.other)
                  if self.metric == N.M_FINAL_VAL_LOSS else None)
        return _result(self, dec, f"{self.metric}({self.arm}) - {self.metric}({self.other})",
                       f"paired difference: 95% CI inside ±{self.margin:g}", {"diff": diffs},
                       budget=budget)
