"""The verdict statistics against hand-computed values and against simulation."""

import math
import random

from repro.experiments.stats import (
    INCONCLUSIVE,
    NOT_REPRODUCED,
    REPRODUCED,
    decide,
    decide_within,
    effect_size,
    power_one_sided,
    seeds_needed,
    t_interval,
)

T_975_2 = 4.302652729749464  # Student t(0.975, df=2), from a printed t table
T_975_4 = 2.7764451051977987  # t(0.975, df=4)


def test_t_interval_by_hand():
    iv = t_interval([0.10, 0.12, 0.08])  # mean 0.1, sd 0.02
    h = T_975_2 * 0.02 / math.sqrt(3)
    assert math.isclose(iv.mean, 0.1) and math.isclose(iv.sd, 0.02)
    assert math.isclose(iv.lo, 0.1 - h, rel_tol=1e-9) and math.isclose(iv.hi, 0.1 + h,
                                                                        rel_tol=1e-9)
    iv5 = t_interval([1.0, 2.0, 3.0, 4.0, 5.0])  # mean 3, sd sqrt(2.5)
    assert math.isclose(iv5.half_width, T_975_4 * math.sqrt(2.5) / math.sqrt(5), rel_tol=1e-9)


def test_decisions_by_hand():
    assert decide([0.10, 0.12, 0.08], 0.0, True).verdict == REPRODUCED  # [0.050, 0.150]
    assert decide([0.10, 0.12, 0.08], 0.0, False).verdict == NOT_REPRODUCED
    # mean 0.2, sd 0.1: mean ± 1 sd = [0.1, 0.3] excluded 0 (the old rule said reproduced);
    # the 95% interval is 0.2 ± 0.248 = [-0.048, 0.448], which contains 0: inconclusive
    d = decide([0.1, 0.2, 0.3], 0.0, True)
    assert d.verdict == INCONCLUSIVE
    assert math.isclose(d.interval.lo, 0.2 - T_975_2 * 0.1 / math.sqrt(3), rel_tol=1e-9)
    assert math.isclose(d.effect, 2.0) and d.seeds_needed is not None
    assert decide([0.5], 0.0, True).verdict == INCONCLUSIVE  # one seed: no interval
    assert decide([], 0.0, True).verdict == INCONCLUSIVE
    # zero spread decides (e.g. a 0/1 divergence flag that is 0 on every seed)
    assert decide([0.0] * 5, 0.1, False).verdict == REPRODUCED


def test_equivalence_by_hand():
    # mean 0.005, sd 0.005, n=3: interval 0.005 ± 0.0124 -> [-0.0074, 0.0174] inside ±0.02
    assert decide_within([0.0, 0.005, 0.01], 0.02).verdict == REPRODUCED
    assert decide_within([0.10, 0.12, 0.08], 0.02).verdict == NOT_REPRODUCED  # [0.05, 0.15]
    d = decide_within([-0.01, 0.01, 0.03], 0.02)  # mean 0.01, sd 0.02: [-0.04, 0.06]
    assert d.verdict == INCONCLUSIVE and math.isclose(d.effect, (0.02 - 0.01) / 0.02)


def test_effect_size_and_seeds_needed():
    iv = t_interval([0.1, 0.2, 0.3])
    assert math.isclose(effect_size(iv, 0.0), 2.0) and math.isclose(effect_size(iv, 0.1), 1.0)
    assert seeds_needed(0.0) is None and seeds_needed(math.nan) is None
    n = seeds_needed(1.0)
    # the returned n reaches 80% power and n-1 does not
    assert power_one_sided(1.0, n) >= 0.8 > power_one_sided(1.0, n - 1)
    # normal-approximation cross-check: n ~ ((z_.975 + z_.8) / d)^2 = 7.85 -> t needs a bit more
    assert 8 <= n <= 12
    assert seeds_needed(2.0) < n < seeds_needed(0.5)  # smaller effects need more seeds
    assert seeds_needed(0.01) == 1001  # beyond the cap


def test_power_matches_simulation():
    """power_one_sided(d, n) equals the rate at which decide() says reproduced on simulated
    normal paired differences with true effect d (5000 draws: +-0.02 at 3 sigma)."""
    rng = random.Random(0)
    d, n, trials = 1.2, 6, 5000
    hits = sum(decide([rng.gauss(d, 1.0) for _ in range(n)], 0.0, True).verdict == REPRODUCED
               for _ in range(trials))
    assert abs(hits / trials - power_one_sided(d, n)) < 0.025
