"""Group-sequential seeds: the registered design behind ``repro run NAME --seeds auto``.

Design (registered per experiment, hashed into its lock; docs/verdicts.md):

* One look per seed, from the planned seed count ``planned`` up to ``max_seeds`` (<= 10). At look
  n the statistic is the one-sample t of the per-seed values against the claim's threshold.
* Two-sided alpha (0.05; 0.025 per side, the level of every other verdict) is spent over the
  information fractions n / max_seeds by the Hwang-Shih-DeCani family with gamma = -2
  [Hwang, Shih & DeCani 1990; Jennison & Turnbull 2000, §7.3]:
  ``alpha(s) = alpha * (1 - exp(-gamma s)) / (1 - exp(-gamma))``.
* The boundary c_n for |t| at each look is calibrated by Monte Carlo: under the null the path of
  t statistics of normal per-seed values does not depend on the mean or the scale, so one
  simulation of standard-normal paths gives boundaries that are exact up to simulation error
  (Jennison & Turnbull §3 calibrate the same way; no maintained Python package implements
  group-sequential t boundaries). The first look's boundary is exact: a Student-t quantile.
  ``python -m repro.experiments.sequential`` recomputes the committed table
  (``hsd_boundaries.json``); tests/experiments/test_sequential.py re-derives it with a smaller
  simulation and checks the type-I error of the whole procedure.
* Futility (non-binding, so it never raises the type-I error): before the last look the design
  stops when |t| is below the 10% quantile of |t|'s distribution at the registered smallest
  effect of interest ``sesoi_d`` (standardised, Cohen's d_z): the data are then implausible under
  the smallest effect worth chasing. It is planned from sesoi_d, never from the observed effect.
* A design with ``max_seeds == planned`` is the fixed-n t-test at the planned count.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

ALPHA = 0.05  # two-sided; 0.025 per direction
GAMMA = -2.0  # Hwang-Shih-DeCani shape (Hwang, Shih & DeCani 1990; -2: between Pocock and OBF)
MAX_SEEDS_CAP = 10
SESOI_D = 1.0  # registered smallest effect of interest (d_z) for the futility stop
FUTILITY_Q = 0.10  # futility when P(|T_n| <= |t| ; d = SESOI_D) < FUTILITY_Q
CALIBRATION_SIMS = 2_000_000  # the committed table's Monte Carlo size
CALIBRATION_SEED = 20261208
P_VALUE_SIMS = 200_000  # stagewise p-values of sequential claims (fixed seed: reproducible)
P_VALUE_SEED = 7
TABLE = Path(__file__).with_name("hsd_boundaries.json")

FIXED = "fixed-n t"
HSD = "group-sequential t (HSD gamma=-2)"


@dataclass(frozen=True)
class Design:
    """The registered seed design of an experiment: planned and maximum seeds, alpha, the
    smallest effect of interest. ``kind`` is FIXED when max_seeds == planned."""

    planned: int
    max_seeds: int
    alpha: float = ALPHA
    gamma: float = GAMMA
    sesoi_d: float = SESOI_D

    def __post_init__(self):
        if self.max_seeds == self.planned >= 1:  # fixed-n: any count
            return
        if not 2 <= self.planned < self.max_seeds <= MAX_SEEDS_CAP:  # a look needs a spread
            raise ValueError(f"seed design: need 2 <= planned ({self.planned}) <= max_seeds "
                             f"({self.max_seeds}) <= {MAX_SEEDS_CAP}")

    @property
    def kind(self) -> str:
        return FIXED if self.max_seeds == self.planned else HSD

    @property
    def looks(self) -> list[int]:
        return list(range(self.planned, self.max_seeds + 1))

    def canonical(self) -> dict:
        return {**asdict(self), "kind": self.kind}

    def boundary(self, n: int) -> float:
        """|t| boundary at look n (the fixed-n two-sided t quantile for a fixed design)."""
        from scipy.stats import t

        if self.kind == FIXED:
            return float(t.isf(self.alpha / 2, n - 1))
        return boundaries(self.planned, self.max_seeds, self.alpha, self.gamma)[n]

    def futility(self, n: int) -> float:
        """Non-binding futility bound on |t| at look n (0 at the last look / fixed designs)."""
        if self.kind == FIXED or n >= self.max_seeds:
            return 0.0
        return futility_bound(n, self.sesoi_d)


def spent(s: float, alpha: float = ALPHA, gamma: float = GAMMA) -> float:
    """Hwang-Shih-DeCani cumulative alpha at information fraction s in [0, 1]."""
    if gamma == 0:
        return alpha * s
    return alpha * (1 - math.exp(-gamma * s)) / (1 - math.exp(-gamma))


def futility_bound(n: int, d: float = SESOI_D, q: float = FUTILITY_Q) -> float:
    """The q-quantile of t at n seeds when the true effect is d (noncentral t, nc = d sqrt(n))."""
    from scipy.stats import nct

    return float(nct.ppf(q, n - 1, d * math.sqrt(n)))


def _null_t_paths(max_seeds: int, n_sim: int, seed: int, start: int = 2) -> np.ndarray:
    """|t| statistics of n_sim standard-normal seed paths at n = start..max_seeds:
    shape (n_sim, max_seeds - start + 1), float64. Vectorised over paths."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n_sim, max_seeds))
    n = np.arange(1, max_seeds + 1)
    s1 = np.cumsum(x, axis=1)
    s2 = np.cumsum(x * x, axis=1)
    mean = s1 / n
    with np.errstate(divide="ignore", invalid="ignore"):
        var = (s2 - n * mean * mean) / (n - 1)
        t = mean / np.sqrt(var / n)
    return np.abs(t[:, start - 1:])


def calibrate(planned: int, max_seeds: int, n_sim: int, seed: int, alpha: float = ALPHA,
              gamma: float = GAMMA, paths: np.ndarray | None = None) -> dict[int, float]:
    """Boundaries c_n (n = planned..max_seeds) with P0(first crossing at look n) equal to the
    alpha spent between looks n-1 and n; the first look's is the exact t quantile."""
    from scipy.stats import t as student

    if paths is None:
        paths = _null_t_paths(max_seeds, n_sim, seed)
    n_sim = paths.shape[0]
    alive = np.ones(n_sim, dtype=bool)
    out: dict[int, float] = {}
    prev = 0.0
    for n in range(planned, max_seeds + 1):
        cum = spent(n / max_seeds, alpha, gamma)
        inc = cum - prev
        prev = cum
        tn = paths[:, n - 2]
        if n == planned:
            c = float(student.isf(inc / 2, n - 1))
        else:
            m = int(round(inc * n_sim))
            vals = np.sort(tn[alive])[::-1]
            c = float(vals[m - 1]) if m >= 1 else float(vals[0]) + 1e-9
        out[n] = c
        alive &= ~(tn >= c)
    return out


def build_table(n_sim: int = CALIBRATION_SIMS, seed: int = CALIBRATION_SEED) -> dict:
    """Every design with 2 <= planned <= max_seeds <= 10, planned < max_seeds."""
    table: dict[str, dict[str, float]] = {}
    for mx in range(3, MAX_SEEDS_CAP + 1):
        paths = _null_t_paths(mx, n_sim, seed + mx)
        for planned in range(2, mx):
            c = calibrate(planned, mx, n_sim, seed, paths=paths)
            table[f"{planned}-{mx}"] = {str(n): round(v, 4) for n, v in c.items()}
    return {"alpha": ALPHA, "gamma": GAMMA, "n_sim": n_sim, "seed": seed,
            "statistic": "|t| of the per-seed values against the threshold, two-sided",
            "boundaries": table}


@functools.cache
def _table() -> dict:
    return json.loads(TABLE.read_text())


def boundaries(planned: int, max_seeds: int, alpha: float = ALPHA,
               gamma: float = GAMMA) -> dict[int, float]:
    """The committed |t| boundaries of a registered HSD design."""
    tab = _table()
    if alpha != tab["alpha"] or gamma != tab["gamma"]:
        raise ValueError(f"no committed boundaries for alpha={alpha}, gamma={gamma} (the table "
                         f"holds alpha={tab['alpha']}, gamma={tab['gamma']}); recalibrate with "
                         "`python -m repro.experiments.sequential`")
    return {int(n): v for n, v in tab["boundaries"][f"{planned}-{max_seeds}"].items()}


@functools.cache
def _p_paths(max_seeds: int) -> np.ndarray:
    return _null_t_paths(max_seeds, P_VALUE_SIMS, P_VALUE_SEED)


def stagewise_p(design: Design, n: int, t_abs: float) -> float:
    """Two-sided stagewise-ordering p-value at look n for |t| = t_abs [Jennison & Turnbull
    §8.4]: the null probability of crossing at an earlier look, plus of reaching look n and
    having |T_n| >= t_abs there. Fixed design / first look: the exact t p-value."""
    from scipy.stats import t as student

    if math.isnan(t_abs):
        return math.nan
    if design.kind == FIXED or n <= design.planned:
        return float(min(1.0, 2 * student.sf(t_abs, n - 1)))
    n = min(n, design.max_seeds)
    c = design.boundary
    paths = _p_paths(design.max_seeds)
    alive = np.ones(paths.shape[0], dtype=bool)
    for k in range(design.planned, n):
        alive &= ~(paths[:, k - 2] >= c(k))
    earlier = spent((n - 1) / design.max_seeds, design.alpha, design.gamma)
    here = float(np.mean(alive & (paths[:, n - 2] >= t_abs)))
    return float(min(1.0, earlier + here))


def simulate_procedure(design: Design, n_sim: int, seed: int, effect: float = 0.0,
                       futility: bool = True) -> dict[str, float]:
    """Run the whole sequential procedure on n_sim simulated experiments whose per-seed values
    are N(effect, 1): the fraction decided on each side, and the mean number of seeds used."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n_sim, design.max_seeds)) + effect
    n = np.arange(1, design.max_seeds + 1)
    mean = np.cumsum(x, axis=1) / n
    with np.errstate(divide="ignore", invalid="ignore"):
        var = (np.cumsum(x * x, axis=1) - n * mean * mean) / (n - 1)
        t = mean / np.sqrt(var / n)
    alive = np.ones(n_sim, dtype=bool)
    up = np.zeros(n_sim, dtype=bool)
    down = np.zeros(n_sim, dtype=bool)
    used = np.full(n_sim, design.max_seeds)
    for k in design.looks:
        tk = t[:, k - 1]
        c = design.boundary(k)
        hit_up, hit_down = alive & (tk >= c), alive & (tk <= -c)
        up |= hit_up
        down |= hit_down
        stop = hit_up | hit_down
        if futility:
            stop |= alive & (np.abs(tk) < design.futility(k))
        used[stop] = k
        alive &= ~stop
    return {"up": float(up.mean()), "down": float(down.mean()), "seeds": float(used.mean())}


def simulate_old_rule(planned: int, max_seeds: int, n_sim: int, seed: int) -> float:
    """The rule this design replaces: a fixed-n 95% t-interval at every seed from ``planned``
    up to ``max_seeds``, stopping when it clears 0. Returns the two-sided false-decision rate
    under the null (for the test that shows the new design is needed)."""
    from scipy.stats import t as student

    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n_sim, max_seeds))
    n = np.arange(1, max_seeds + 1)
    mean = np.cumsum(x, axis=1) / n
    with np.errstate(divide="ignore", invalid="ignore"):
        var = (np.cumsum(x * x, axis=1) - n * mean * mean) / (n - 1)
        t = mean / np.sqrt(var / n)
    hit = np.zeros(n_sim, dtype=bool)
    for k in range(planned, max_seeds + 1):
        hit |= np.abs(t[:, k - 1]) >= student.isf(0.025, k - 1)
    return float(hit.mean())


if __name__ == "__main__":  # recompute the committed table (one-off, about a minute)
    TABLE.write_text(json.dumps(build_table(), indent=1) + "\n")
    print(f"wrote {TABLE}")
