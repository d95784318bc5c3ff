"""The statistics behind every verdict: a t-based 95% interval, an effect size, and a power figure.

One rule for every claim (stated once here, quoted into claims.md and the README by ``RULE``):

* A claim is about a per-seed quantity q: a paired difference between two arms trained with the
  same seed (formed per seed first, so seed-to-seed variation common to both arms cancels), or a
  single arm's metric. Over n seeds q has mean m and sample standard deviation s.
* The interval is the two-sided Student-t 95% confidence interval of the mean,
  m ± t(0.975, n-1) · s / sqrt(n). With n = 3 that is m ± 2.48 s; the rule it replaces
  (m ± 1 s) covered only ~78% of the sampling distribution at n = 3.
* reproduced: the whole interval lies on the claimed side of the threshold; not reproduced: the
  whole interval lies on the other side; inconclusive: the interval contains the threshold, or
  n < 2 (no spread estimate).
* Equivalence claims ("within ±margin"): reproduced when the interval lies inside
  (-margin, margin), not reproduced when it lies wholly outside it, inconclusive otherwise.
* The effect size is the standardised distance from the threshold, d = (m - threshold) / s
  (Cohen's d_z for paired differences).
* For an inconclusive claim, ``seeds_needed`` is the smallest n at which the test would decide
  with 80% probability if the observed m and s were the truth: the power of the one-sided
  t-test at level 2.5% (the interval's side) from the noncentral t distribution with
  noncentrality d · sqrt(n). It is an estimate built from the same few seeds, so treat it as an
  order of magnitude.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

REPRODUCED = "reproduced"
NOT_REPRODUCED = "not reproduced"
INCONCLUSIVE = "inconclusive"

LEVEL = 0.95  # two-sided confidence level of every interval
POWER = 0.80  # the power at which seeds_needed is quoted
MAX_SEEDS = 1000  # seeds_needed above this is reported as "> MAX_SEEDS"

RULE = ("Verdict rule: per-seed quantities (paired differences formed per seed first); "
        "two-sided Student-t 95% confidence interval of their mean, m ± t(0.975, n-1)·s/√n. "
        "*reproduced* when the interval lies wholly on the claimed side of the threshold (inside "
        "±margin for equivalence claims), *not reproduced* when wholly on the other side, "
        "*inconclusive* otherwise or with fewer than 2 seeds. Effect d = (mean - threshold) / s. "
        "\"seeds needed\": the number of seeds at which the same test would decide with 80% "
        "power if the observed mean and s were true (noncentral t).")


def t_quantile(p: float, df: int) -> float:
    """Student-t quantile t(p, df) (scipy)."""
    from scipy.stats import t

    return float(t.ppf(p, df))


@dataclass(frozen=True)
class Interval:
    """Mean, sample std and the two-sided ``LEVEL`` t-interval of the mean over n values."""

    n: int
    mean: float
    sd: float
    lo: float
    hi: float

    @property
    def half_width(self) -> float:
        return (self.hi - self.lo) / 2

    def fmt(self, digits: int = 4) -> str:
        if self.n == 0:
            return "no seeds (n=0)"
        if self.n < 2:
            return f"{self.mean:+.{digits}f} (n=1, no interval)"
        return (f"{self.mean:+.{digits}f}, 95% CI [{self.lo:+.{digits}f}, {self.hi:+.{digits}f}] "
                f"(sd {self.sd:.{digits}f}, n={self.n})")


def t_interval(xs: list[float], level: float = LEVEL) -> Interval:
    """The t-interval of the mean of the finite values in ``xs`` (NaNs are dropped by the
    caller's contract: a claim refuses NaN inputs before it gets here)."""
    xs = [float(x) for x in xs]
    n = len(xs)
    if n == 0:
        return Interval(0, math.nan, math.nan, math.nan, math.nan)
    m = statistics.fmean(xs)
    if n < 2:
        return Interval(1, m, math.nan, math.nan, math.nan)
    s = statistics.stdev(xs)
    h = t_quantile(0.5 + level / 2, n - 1) * s / math.sqrt(n)
    return Interval(n, m, s, m - h, m + h)


def effect_size(iv: Interval, threshold: float) -> float:
    """d = (mean - threshold) / sd; +-inf when sd = 0 and the mean is off the threshold."""
    if iv.n < 2 or math.isnan(iv.sd):
        return math.nan
    dist = iv.mean - threshold
    if iv.sd == 0:
        return 0.0 if dist == 0 else math.copysign(math.inf, dist)
    return dist / iv.sd


def power_one_sided(d: float, n: int, level: float = LEVEL) -> float:
    """P(the t-test at one-sided level (1-level)/2 rejects) when the true standardised effect is
    |d| and n seeds are used: 1 - F_nct(t_crit; df=n-1, nc=|d| sqrt(n))."""
    from scipy.stats import nct

    if n < 2:
        return 0.0
    crit = t_quantile(0.5 + level / 2, n - 1)
    return float(nct.sf(crit, n - 1, abs(d) * math.sqrt(n)))


def seeds_needed(d: float, power: float = POWER, level: float = LEVEL,
                 cap: int = MAX_SEEDS) -> int | None:
    """Smallest n >= 2 whose one-sided t-test decides with ``power`` at effect |d|; None when
    d is 0 or unknown (no finite number of seeds decides), ``cap + 1`` when above ``cap``."""
    if math.isnan(d) or d == 0:
        return None
    if math.isinf(d):
        return 2
    lo = 2
    if power_one_sided(d, lo, level) >= power:
        return lo
    hi = 4
    while power_one_sided(d, hi, level) < power:  # exponential search, then bisection
        if hi > cap:
            return cap + 1
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if power_one_sided(d, mid, level) < power else (lo, mid)
    return hi


@dataclass(frozen=True)
class Decision:
    """A verdict with everything that produced it."""

    verdict: str
    interval: Interval
    threshold: float
    effect: float  # d = (mean - threshold) / sd (for equivalence: distance to the nearer bound)
    seeds_needed: int | None  # only for inconclusive verdicts (None: undecidable or decided)

    def fmt_extra(self) -> str:
        """``d = +1.23`` plus, when inconclusive, the seeds-needed figure."""
        parts = []
        if not math.isnan(self.effect):
            parts.append(f"d = {self.effect:+.2f}")
        if self.verdict == INCONCLUSIVE:
            if self.interval.n < 2:
                parts.append("needs >= 2 seeds")
            elif self.seeds_needed is None:
                parts.append("seeds needed: none decide (effect 0)")
            elif self.seeds_needed > MAX_SEEDS:
                parts.append(f"seeds needed > {MAX_SEEDS}")
            else:
                parts.append(f"seeds needed ≈ {self.seeds_needed}")
        return "; ".join(parts)


def decide(xs: list[float], threshold: float, greater: bool) -> Decision:
    """One-sided claim "mean > threshold" (``greater``) or "mean < threshold"."""
    iv = t_interval(xs)
    d = effect_size(iv, threshold)
    if iv.n < 2:
        return Decision(INCONCLUSIVE, iv, threshold, d, None)
    if greater:
        v = REPRODUCED if iv.lo > threshold else NOT_REPRODUCED if iv.hi < threshold else \
            INCONCLUSIVE
    else:
        v = REPRODUCED if iv.hi < threshold else NOT_REPRODUCED if iv.lo > threshold else \
            INCONCLUSIVE
    return Decision(v, iv, threshold, d, seeds_needed(d) if v == INCONCLUSIVE else None)


def decide_within(xs: list[float], margin: float) -> Decision:
    """Equivalence claim "|mean| < margin": the interval must lie inside (-margin, margin).

    The effect is the standardised distance from the mean to the nearer bound (positive when the
    mean is inside); seeds_needed is the power figure for that distance.
    """
    iv = t_interval(xs)
    if iv.n < 2:
        return Decision(INCONCLUSIVE, iv, margin, math.nan, None)
    if -margin < iv.lo and iv.hi < margin:
        v = REPRODUCED
    elif iv.lo > margin or iv.hi < -margin:
        v = NOT_REPRODUCED
    else:
        v = INCONCLUSIVE
    dist = margin - abs(iv.mean)  # > 0 inside the band
    d = (0.0 if dist == 0 else math.copysign(math.inf, dist)) if iv.sd == 0 else dist / iv.sd
    return Decision(v, iv, margin, d, seeds_needed(d) if v == INCONCLUSIVE else None)



# ------------------------------------------------------------------ tests per claim type (v2)
# Every claim forms its per-seed values and gets an ``Outcome`` from one of the tests below:
# an estimate with an interval of a named type, and two one-sided p-values, ``p_for`` (H0: the
# claim is false; small = evidence that it holds) and ``p_against`` (H0: the claim holds; small =
# evidence that it fails). The claim's raw p-value is their two-sided combination
# p = min(1, 2 min(p_for, p_against)), which for a t-test is the ordinary two-sided p-value; the
# verdict engine (repro.experiments.verdicts) adjusts p across the scale and reads the direction
# off the smaller one-sided p. References: docs/verdicts.md.

T_TEST = "t"  # one-sample / paired Student t
TOST = "TOST"  # two one-sided tests, Schuirmann 1987
EXACT_BINOMIAL = "exact binomial"  # with the Clopper-Pearson interval (Clopper & Pearson 1934)
IUT = "intersection-union t"  # every ordered step must hold (Berger 1982)
DELTA_T = "paired t on the uncensored speedup delta"

CI_T = "t 95% CI"
CI_RCI = "repeated 95% CI (HSD)"
CI_CP = "Clopper-Pearson 95%"
CI_DET = "deterministic (zero spread)"
CI_NONE = "none"


@dataclass(frozen=True)
class Outcome:
    """What one test says about one claim's per-seed values."""

    test: str
    n: int
    estimate: float
    sd: float
    lo: float
    hi: float
    interval: str  # CI_* (its type)
    p_for: float
    p_against: float
    t_for: float = math.nan  # the signed t toward the claim (sequential decisions)
    detail: str = ""
    crossed: bool = True  # sequential design: the decisive statistic crossed its boundary

    @property
    def p(self) -> float:
        if math.isnan(self.p_for) or math.isnan(self.p_against):
            return math.nan
        return min(1.0, 2 * min(self.p_for, self.p_against))

    @property
    def direction(self) -> str:
        """The verdict the data lean to if the adjusted p is small enough."""
        return REPRODUCED if self.p_for <= self.p_against else NOT_REPRODUCED

    @property
    def deterministic(self) -> bool:
        return self.interval == CI_DET

    def fmt(self, digits: int = 4) -> str:
        if self.n == 0:
            return "no values (n=0)"
        est = f"{self.estimate:+.{digits}f}"
        if self.interval == CI_DET:
            return f"{est} (deterministic: all {self.n} seeds equal)"
        if self.interval == CI_NONE or math.isnan(self.lo):
            return f"{est} (n={self.n}, no interval)"
        sd = "" if math.isnan(self.sd) else f"sd {self.sd:.{digits}f}, "
        return (f"{est}, {self.interval} [{self.lo:+.{digits}f}, {self.hi:+.{digits}f}] "
                f"({sd}n={self.n})")


def _one_sided_t(xs, value: float, greater: bool) -> tuple[float, float]:
    """(t, one-sided p) of mean(xs) > value (greater) or < value."""
    from scipy.stats import ttest_1samp

    r = ttest_1samp(xs, value, alternative="greater" if greater else "less")
    return float(r.statistic), float(r.pvalue)


def t_outcome(xs: list[float], threshold: float, greater: bool, design=None) -> Outcome:
    """One-sample (paired-difference) t of mean > threshold (``greater``) or < threshold.

    Fixed design: the t-test's one-sided p-values and its 95% CI. A group-sequential design
    (repro.experiments.sequential) at look n: the stagewise p-value and the repeated CI
    mean ± c_n s / sqrt(n), with c_n the design's boundary. Zero spread: deterministic, decided
    by the side of the threshold the common value lies on, no interval."""
    xs = [float(x) for x in xs]
    n = len(xs)
    if n == 0:
        return Outcome(T_TEST, 0, math.nan, math.nan, math.nan, math.nan, CI_NONE, math.nan,
                       math.nan)
    m = statistics.fmean(xs)
    if n < 2:
        return Outcome(T_TEST, 1, m, math.nan, math.nan, math.nan, CI_NONE, math.nan, math.nan)
    s = statistics.stdev(xs)
    sign = 1 if greater else -1
    if s == 0:
        on = sign * (m - threshold)
        p_for = 0.0 if on > 0 else 1.0
        p_against = 0.0 if on < 0 else 1.0
        return Outcome(T_TEST, n, m, 0.0, math.nan, math.nan, CI_DET, p_for, p_against,
                       math.copysign(math.inf, on) if on else 0.0)
    t_stat = (m - threshold) / (s / math.sqrt(n))
    t_for = sign * t_stat
    if design is None or design.kind == "fixed-n t":
        _, p_for = _one_sided_t(xs, threshold, greater)
        _, p_against = _one_sided_t(xs, threshold, not greater)
        h = t_quantile(0.5 + LEVEL / 2, n - 1) * s / math.sqrt(n)
        return Outcome(T_TEST, n, m, s, m - h, m + h, CI_T, p_for, p_against, t_for)
    from repro.experiments.sequential import stagewise_p

    look = min(n, design.max_seeds)
    c = design.boundary(look)
    p2 = stagewise_p(design, n, abs(t_stat))
    p_for, p_against = (p2 / 2, 1 - p2 / 2) if t_for > 0 else (1 - p2 / 2, p2 / 2)
    h = c * s / math.sqrt(n)
    state = "crossed" if abs(t_stat) >= c else (
        "final look" if look >= design.max_seeds else
        "futility stop" if abs(t_stat) < design.futility(look) else "continue")
    return Outcome(T_TEST, n, m, s, m - h, m + h, CI_RCI, p_for, p_against, t_for,
                   f"look at n={n} of {design.planned}..{design.max_seeds}: |t| = "
                   f"{abs(t_stat):.2f} vs boundary {c:.2f} ({state})", abs(t_stat) >= c)


def tost_outcome(xs: list[float], margin: float, design=None) -> Outcome:
    """Equivalence |mean| < margin by two one-sided tests [Schuirmann 1987]: p_for is the larger
    of the two one-sided p-values (mean > -margin, mean < +margin); p_against the smaller of
    (mean > +margin, mean < -margin), i.e. evidence that the difference lies outside the band.
    Each one-sided test is at level 0.025 (the level of every verdict), so the claim holds when
    the 95% interval lies inside (-margin, margin)."""
    lo = t_outcome(xs, -margin, True, design)
    hi = t_outcome(xs, margin, False, design)
    if lo.n < 2:
        return Outcome(TOST, lo.n, lo.estimate, lo.sd, lo.lo, lo.hi, lo.interval, math.nan,
                       math.nan)
    p_for = max(lo.p_for, hi.p_for)
    p_against = min(hi.p_against, lo.p_against)
    if p_for <= p_against:
        crossed = lo.crossed and hi.crossed
    else:
        crossed = (lo.crossed and lo.t_for < 0) or (hi.crossed and hi.t_for < 0)
    return Outcome(TOST, lo.n, lo.estimate, lo.sd, lo.lo, lo.hi, lo.interval, p_for, p_against,
                   min(lo.t_for, hi.t_for), lo.detail, crossed)


def clopper_pearson(k: int, n: int, level: float = LEVEL) -> tuple[float, float]:
    """Exact (Clopper-Pearson 1934) interval for a binomial proportion (scipy's binomtest)."""
    from scipy.stats import binomtest

    ci = binomtest(k, n).proportion_ci(confidence_level=level, method="exact")
    return float(ci.low), float(ci.high)


def rate_outcome(flags: list[float], threshold: float, greater: bool) -> Outcome:
    """A rate of 0/1 per-seed events (e.g. diverged runs) > threshold (``greater``) or <: the
    exact binomial test against the threshold and the Clopper-Pearson interval; never a
    t-interval (a rate of 0 of n has no spread, but its uncertainty is [0, 1-(alpha/2)^(1/n)])."""
    from scipy.stats import binomtest

    n = len(flags)
    if any(f not in (0.0, 1.0) for f in flags):
        raise ValueError(f"rate claim: per-seed values must be 0 or 1, got {sorted(set(flags))}")
    if n == 0:
        return Outcome(EXACT_BINOMIAL, 0, math.nan, math.nan, math.nan, math.nan, CI_NONE,
                       math.nan, math.nan)
    k = int(sum(flags))
    up = float(binomtest(k, n, threshold, alternative="greater").pvalue)
    down = float(binomtest(k, n, threshold, alternative="less").pvalue)
    p_for, p_against = (up, down) if greater else (down, up)
    lo, hi = clopper_pearson(k, n)
    return Outcome(EXACT_BINOMIAL, n, k / n, math.nan, lo, hi, CI_CP, p_for, p_against,
                   detail=f"{k} of {n}")


def mcnemar_exact(b: int, c: int) -> float:
    """Exact McNemar test for paired binary outcomes (two-sided): the discordant pairs b (event
    in arm 1 only) and c (arm 2 only) against Binomial(b + c, 1/2)."""
    from scipy.stats import binomtest

    if b + c == 0:
        return 1.0
    return float(binomtest(b, b + c, 0.5).pvalue)


def iut_outcome(steps: list[Outcome], labels: list[str]) -> Outcome:
    """Ordered claims ("each step helps"): intersection-union [Berger 1982]: the claim holds
    only if every step does, so p_for is the largest step p_for (no multiplicity penalty); it
    fails if any step is reversed, so p_against is Bonferroni over steps. The estimate and
    interval shown are the weakest step's (largest p_for)."""
    if not steps or any(s.n < 2 for s in steps):
        n = min((s.n for s in steps), default=0)
        return Outcome(IUT, n, math.nan, math.nan, math.nan, math.nan, CI_NONE, math.nan,
                       math.nan)
    k = len(steps)
    weakest = max(range(k), key=lambda i: steps[i].p_for)
    w = steps[weakest]
    p_for = max(s.p_for for s in steps)
    p_against = min(1.0, k * min(s.p_against for s in steps))
    parts = "; ".join(f"{lab}: {s.fmt(3)}" for lab, s in zip(labels, steps))
    crossed = all(s.crossed for s in steps) if p_for <= p_against else any(
        s.crossed and s.t_for < 0 for s in steps)
    return Outcome(IUT, w.n, w.estimate, w.sd, w.lo, w.hi, w.interval, p_for, p_against,
                   min(s.t_for for s in steps), f"weakest step {labels[weakest]}; {parts}",
                   crossed)


def holm(ps: list[float]) -> list[float]:
    """Holm (1979) step-down adjusted p-values (family-wise error)."""
    m = len(ps)
    order = sorted(range(m), key=lambda i: ps[i])
    out = [0.0] * m
    run = 0.0
    for rank, i in enumerate(order):
        run = max(run, min(1.0, (m - rank) * ps[i]))
        out[i] = run
    return out


def bh(ps: list[float]) -> list[float]:
    """Benjamini-Hochberg (1995) adjusted p-values (false discovery rate), by scipy."""
    from scipy.stats import false_discovery_control

    if not ps:
        return []
    return [float(x) for x in false_discovery_control(ps, method="bh")]
