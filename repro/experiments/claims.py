"""Claims: a paper's statement made checkable, evaluated over seeds into a verdict.

Every claim forms its per-seed values and hands them to the test of its type
(``repro.experiments.stats``: t, TOST, exact binomial, intersection-union, the uncensored speedup
delta), which returns an ``Outcome`` (estimate, interval and its type, one-sided p-values).
``Claim.evaluate`` gives the claim's own, unadjusted verdict; the verdict engine
(``repro.experiments.verdicts``) then applies the registered design, the lock, the families and
the multiplicity adjustment. A claim whose test needs data the results do not hold (per-seed
validation curves, for the speedup delta) is *pending*, never given a verdict. Loss-gap claims
also report the gap along the training budget (``budget_gaps``) when curves are available.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from dataclasses import dataclass, field

from repro.experiments import stats as S
from repro.experiments.stats import (
    INCONCLUSIVE,
    NOT_REPRODUCED,
    REPRODUCED,
    Decision,
    Interval,
    Outcome,
    t_interval,
)
from repro.tracking import names as N

__all__ = ["INCONCLUSIVE", "NOT_REPRODUCED", "REPRODUCED", "Decision", "Interval", "PENDING"]

PENDING = "pending"  # the claim's test needs data these results do not hold
NEEDS_CURVES = "needs a rerun: per-seed curves not committed"

# families (docs/verdicts.md): the positive control gates a scale; confirmatory paper claims are
# adjusted together (BH, with a Holm mark); checks are sanity checks (Holm, out of the totals);
# exploratory claims get an estimate and interval, no verdict
GATE = "gate"
CONFIRMATORY = "confirmatory"
CHECK = "check"
EXPLORATORY = "exploratory"
FAMILIES = (GATE, CONFIRMATORY, CHECK, EXPLORATORY)
ALPHA = 0.05  # two-sided level of every verdict (0.025 per direction)


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
    curves: bool = True  # val_curve / drop_curve are whole curves (False: final values only)
    machine: str | None = None  # CPU type the run trained on (model + ISA capability)
    machine_tags: dict | None = None  # cpu_model, cpu_capability, torch, threads (run tags)

    @property
    def final_val_loss(self) -> float:
        return self.val_curve[-1][1] if self.val_curve else math.nan


@dataclass
class Results:
    """All finished runs of one experiment, indexed by (arm, seed)."""

    runs: dict[tuple[str, int], RunRecord]
    notes: list[str] = field(default_factory=list)
    missing: list[tuple[str, int]] = field(default_factory=list)  # grid (arm, seed) not finished

    def _all_seeds(self, arms) -> list[int]:
        sets = [{s for (a, s) in self.runs if a == arm} for arm in arms]
        return sorted(set.intersection(*sets)) if sets else []

    def seeds(self, *arms: str) -> list[int]:
        """Seeds present for every given arm, on one CPU type: the arms of one seed are never
        paired across machines (a routed run's numerics depend on the CPU)."""
        return [s for s in self._all_seeds(arms)
                if len({self.runs[(a, s)].machine for a in arms}) == 1]

    def cross_machine(self, *arms: str) -> list[int]:
        """Seeds left out of ``seeds`` because their arms trained on different CPU types."""
        return [s for s in self._all_seeds(arms) if s not in self.seeds(*arms)]

    @property
    def has_curves(self) -> bool:
        return bool(self.runs) and all(r.curves for r in self.runs.values())

    def machines(self, *arms: str) -> list[str]:
        """The CPU types of the runs of these arms (all arms when none given)."""
        recs = [r for (a, _), r in self.runs.items() if not arms or a in arms]
        return sorted({r.machine or "unrecorded" for r in recs})

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
    outcome: Outcome | None = None  # the claim type's test (None: pending)
    pending: str | None = None  # why the claim cannot be decided from these results

    @property
    def extra(self) -> str:
        """Effect size and (inconclusive) seeds needed, for claims.md."""
        return self.decision.fmt_extra() if self.decision else ""

    @property
    def seeds_needed(self) -> int | None:
        return self.decision.seeds_needed if self.decision else None


def own_verdict(o: Outcome, alpha: float = ALPHA) -> str:
    """The claim's verdict from its own (unadjusted) p: the direction its data lean to when
    p <= alpha, else inconclusive."""
    if o.n < 2 and o.test != S.EXACT_BINOMIAL or math.isnan(o.p):
        return INCONCLUSIVE
    return o.direction if o.p <= alpha and o.crossed else INCONCLUSIVE


def _result(claim: Claim, o: Outcome, label: str, rule: str, per_seed: dict,
            budget: BudgetGaps | None = None, threshold: float = 0.0) -> ClaimResult:
    iv = Interval(o.n, o.estimate, o.sd, o.lo, o.hi)
    d = S.effect_size(iv, threshold) if o.test != S.EXACT_BINOMIAL else math.nan
    v = own_verdict(o)
    dec = Decision(v, iv, threshold, d, S.seeds_needed(d) if v == INCONCLUSIVE and
                   o.test != S.EXACT_BINOMIAL else None)
    return ClaimResult(claim, v, f"{label} = {o.fmt()}", rule, per_seed, o.estimate, o.sd, o.n,
                       dec, budget, o)


def _pending(claim: Claim, label: str, rule: str, why: str) -> ClaimResult:
    return ClaimResult(claim, PENDING, f"{label}: {why}", rule, pending=why)


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
    """Base claim. Subclasses implement ``evaluate(results, design) -> ClaimResult`` and
    ``spec()`` (the registered fields, hashed into the lock: repro.experiments.verdicts)."""

    name: str
    statement: str  # the paper's claim in our words
    paper_figure: str  # the published figure, e.g. "7.5x (64 experts, step 60K vs 450K)"
    source: str  # table / figure / section, e.g. "[P-SW] §3.1, Fig. 5"
    family: str = CONFIRMATORY  # GATE | CONFIRMATORY | CHECK | EXPLORATORY
    proxy: str = ""  # when the claim tests a stand-in for the paper's measure: which and why

    def evaluate(self, results: Results, design=None) -> ClaimResult:  # pragma: no cover
        raise NotImplementedError

    @property
    def arms(self) -> tuple[str, ...]:
        return ()

    @property
    def reads(self) -> tuple[tuple[str, str], ...]:
        """The (arm, metric) pairs the claim reads from the runs' records (``Experiment.validate``
        refuses a metric that arm does not produce)."""
        return ()

    test: str = ""  # set by each subclass (a stats.* test name); in the registered spec

    def spec(self) -> dict:
        """The registered form: type, arms, metric, threshold or margin, direction, family, test
        (the seed design and alpha are added from the experiment)."""
        skip = {"statement", "paper_figure", "source"}
        out = {"type": type(self).__name__}
        for f in dataclasses.fields(self):
            if f.name in skip:
                continue
            v = getattr(self, f.name)
            out[f.name] = list(v) if isinstance(v, tuple) else v
        return out


@dataclass(frozen=True)
class SpeedupClaim(Claim):
    """Steps-to-target speedup of ``arm`` over ``baseline`` > ``threshold`` (k), tested without
    censoring: per seed, delta = (arm's lowest val loss up to step S_b / k) - (baseline's final
    val loss), where S_b is the step at which the baseline first reached its final loss. The
    arm reaches the target within S_b / k steps, i.e. the speedup is >= k on the evaluation
    grid, exactly when delta <= 0; delta is defined for every seed (a seed that never reaches the
    target has delta > 0, measured, not an upper bound), so a paired t-test of mean delta < 0
    applies (docs/verdicts.md). Steps-to-target ratios are shown for figures only."""

    baseline: str = ""
    arm: str = ""
    threshold: float = 1.0
    test: str = S.DELTA_T

    @property
    def arms(self):
        return (self.baseline, self.arm)

    def evaluate(self, results: Results, design=None) -> ClaimResult:
        label = f"delta at 1/{self.threshold:g} of {self.baseline}'s steps"
        rule = f"mean delta < 0 (speedup > {self.threshold:g})"
        if not results.has_curves:
            return _pending(self, label, rule, NEEDS_CURVES)
        seeds = results.seeds(self.baseline, self.arm)
        deltas = [speedup_delta(results.get(self.baseline, s), results.get(self.arm, s),
                                self.threshold) for s in seeds]
        ratios = [speedup(results.get(self.baseline, s), results.get(self.arm, s))[0]
                  for s in seeds]
        o = S.t_outcome(_finite(deltas), 0.0, False, design)
        return _result(self, o, label, rule, {"delta": deltas, "speedup (figure only)": ratios},
                       budget_gaps(results, self.arm, self.baseline))


def speedup_delta(base: RunRecord, other: RunRecord, k: float) -> float:
    """(other's lowest val loss at eval steps <= S_b / k) - (base's final val loss), S_b the
    step at which base first reached its final loss. <= 0 exactly when other reaches the target
    within S_b / k steps (a speedup of at least k on the grid)."""
    target = base.final_val_loss
    cut = steps_to_target(base.val_curve, target) / k
    early = [v for st, v in other.val_curve if st <= cut + 1e-9]
    if not early:
        raise ValueError(f"speedup delta: {other.arm} seed {other.seed} has no eval step at or "
                         f"before step {cut:g} (1/{k:g} of the baseline's {cut * k:g}); evaluate "
                         "more often (train.eval_every)")
    return min(early) - target


@dataclass(frozen=True)
class IncreasingClaim(Claim):
    """A per-seed quantity increases along ``arm_order``: every consecutive paired difference
    must be > 0 (intersection-union test: the claim holds only when every step does)."""

    baseline: str = ""
    arm_order: tuple[str, ...] = ()
    quantity: str = "speedup"  # "speedup" (vs baseline) | "final_val_loss" (then: decreasing)
    test: str = S.IUT

    @property
    def arms(self):
        return (self.baseline, *self.arm_order) if self.baseline else self.arm_order

    def _per_seed(self, results: Results, arm: str, seed: int) -> float:
        if self.quantity == "speedup":
            return speedup(results.get(self.baseline, seed), results.get(arm, seed))[0]
        return -results.get(arm, seed).final_val_loss  # lower loss = "increasing quality"

    def evaluate(self, results: Results, design=None) -> ClaimResult:
        rule = "every consecutive paired difference > 0 (intersection-union)"
        if self.quantity == "speedup" and not results.has_curves:
            return _pending(self, "speedup steps", rule, NEEDS_CURVES)
        seeds = results.seeds(*self.arms)
        per = {a: [self._per_seed(results, a, s) for s in seeds] for a in self.arm_order}
        steps, labels = [], []
        for a, b in zip(self.arm_order, self.arm_order[1:]):
            steps.append(S.t_outcome(_finite([y - x for x, y in zip(per[a], per[b])]), 0.0,
                                     True, design))
            labels.append(f"{b}-{a}")
        o = S.iut_outcome(steps, labels)
        r = _result(self, o, "weakest step", rule, per)
        means = ", ".join(f"{a}={mean_std(v)[0]:.2f}" for a, v in per.items())
        r.measured = f"means {means}; weakest step = {o.fmt(4)}; {o.detail}"
        return r


@dataclass(frozen=True)
class MetricClaim(Claim):
    """A logged final metric of ``arm`` is below (or above) a threshold over seeds (t-test).
    ``per_final_loss``: the metric is divided by the run's final val loss first (a relative
    effect, comparable across scales whose losses differ)."""

    arm: str = ""
    metric: str = ""
    threshold: float = 0.0
    greater: bool = False
    per_final_loss: bool = False
    test: str = S.T_TEST

    @property
    def arms(self):
        return (self.arm,)

    @property
    def reads(self):
        return ((self.arm, self.metric),)

    def values(self, results: Results) -> list[float]:
        vals = []
        for s in results.seeds(self.arm):
            rec = results.get(self.arm, s)
            v = _metric(rec, self.metric)
            vals.append(v / rec.final_val_loss if self.per_final_loss else v)
        return vals

    def evaluate(self, results: Results, design=None) -> ClaimResult:
        vals = self.values(results)
        op = ">" if self.greater else "<"
        label = f"{self.metric}/final_val_loss" if self.per_final_loss else self.metric
        o = S.t_outcome(_finite(vals), self.threshold, self.greater, design)
        return _result(self, o, label, f"mean {op} {self.threshold:g}", {self.arm: vals},
                       threshold=self.threshold)


@dataclass(frozen=True)
class RateClaim(MetricClaim):
    """The rate of a 0/1 per-run event (``metric``, e.g. train/diverged) is above (``greater``)
    or below ``threshold``: exact binomial test, Clopper-Pearson interval, at the registered
    seed count (a rate is never grown sequentially)."""

    test: str = S.EXACT_BINOMIAL

    def evaluate(self, results: Results, design=None) -> ClaimResult:
        vals = self.values(results)
        op = ">" if self.greater else "<"
        o = S.rate_outcome(_finite(vals), self.threshold, self.greater)
        return _result(self, o, f"rate of {self.metric} ({o.detail})",
                       f"rate {op} {self.threshold:g}", {self.arm: vals},
                       threshold=self.threshold)


@dataclass(frozen=True)
class SteadyDropClaim(Claim):
    """The train drop fraction of ``arm`` at steady state (mean of the logged drop curve over
    the last ``tail`` of training) is below ``threshold`` (t-test over seeds). The paper's
    figure is a steady-state one; a whole-run mean counts the first steps, when a near-uniform
    router sends many tokens to the same argmax."""

    arm: str = ""
    threshold: float = 0.01
    tail: float = 0.5
    test: str = S.T_TEST

    @property
    def arms(self):
        return (self.arm,)

    @property
    def reads(self):
        return ((self.arm, N.M_DROP),)

    def evaluate(self, results: Results, design=None) -> ClaimResult:
        label = f"train drop fraction over the last {self.tail:.0%} of steps"
        rule = f"mean < {self.threshold:g}"
        if not results.has_curves:
            return _pending(self, label, rule, NEEDS_CURVES)
        vals = []
        for s in results.seeds(self.arm):
            c = results.get(self.arm, s).drop_curve
            last = c[-1][0] if c else 0
            tail = [v for st, v in c if st >= (1 - self.tail) * last]
            vals.append(statistics.fmean(tail) if tail else math.nan)
        o = S.t_outcome(_finite(vals), self.threshold, False, design)
        return _result(self, o, label, rule, {self.arm: vals}, threshold=self.threshold)


def _metric(rec: RunRecord, metric: str) -> float:
    if metric == N.M_FINAL_VAL_LOSS:
        return rec.final_val_loss
    return rec.metrics.get(metric, math.nan)


def paired_diffs(results: Results, arm: str, other: str, metric: str) -> list[float]:
    """metric(arm) - metric(other) for every seed both arms share (on one CPU type)."""
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
    """metric(arm) - metric(other), paired by seed, is > margin (``greater``) or < -margin
    (paired t-test)."""

    arm: str = ""
    other: str = ""
    metric: str = N.M_FINAL_VAL_LOSS
    margin: float = 0.0
    greater: bool = True
    test: str = S.T_TEST

    def evaluate(self, results: Results, design=None) -> ClaimResult:
        diffs = paired_diffs(results, self.arm, self.other, self.metric)
        thr = self.margin if self.greater else -self.margin
        o = S.t_outcome(_finite(diffs), thr, self.greater, design)
        op = ">" if self.greater else "<"
        # the loss gap along the budget, oriented so that positive = the claim's winner ahead
        budget = None
        if self.metric == N.M_FINAL_VAL_LOSS and results.has_curves:
            plus, minus = (self.other, self.arm) if self.greater else (self.arm, self.other)
            budget = budget_gaps(results, plus, minus)
        return _result(self, o, f"{self.metric}({self.arm}) - {self.metric}({self.other})",
                       f"paired difference {op} {thr:+g}", {"diff": diffs}, budget, thr)


@dataclass(frozen=True)
class EquivalenceClaim(_ArmVsOther, Claim):
    """|metric(arm) - metric(other)| stays within ``margin`` (paired by seed): TOST, each
    one-sided test at 0.025 (the 95% interval inside (-margin, margin))."""

    arm: str = ""
    other: str = ""
    metric: str = N.M_FINAL_VAL_LOSS
    margin: float = 0.02
    test: str = S.TOST

    def evaluate(self, results: Results, design=None) -> ClaimResult:
        diffs = paired_diffs(results, self.arm, self.other, self.metric)
        o = S.tost_outcome(_finite(diffs), self.margin, design)
        budget = (budget_gaps(results, self.arm, self.other)
                  if self.metric == N.M_FINAL_VAL_LOSS and results.has_curves else None)
        r = _result(self, o, f"{self.metric}({self.arm}) - {self.metric}({self.other})",
                    f"paired difference inside ±{self.margin:g} (TOST)", {"diff": diffs},
                    budget)
        iv = r.decision.interval
        dist = self.margin - abs(iv.mean)
        d = (math.nan if iv.n < 2 or math.isnan(iv.sd) else
             (0.0 if dist == 0 else math.copysign(math.inf, dist)) if iv.sd == 0 else
             dist / iv.sd)
        r.decision = Decision(r.verdict, iv, self.margin, d, S.seeds_needed(d)
                              if r.verdict == INCONCLUSIVE and not math.isnan(d) else None)
        return r
