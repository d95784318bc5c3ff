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
