"""``repro.metrics.logged``: the torch-free table of which routing statistics get logged, and
the lazy package (importing ``repro.metrics`` imports no torch)."""

from __future__ import annotations

import subprocess
import sys

from repro.metrics.logged import LOGGED_FROM, PASSED_THROUGH, logged_stats, n_experts_of
from repro.tracking import names as N


def test_logged_stats_maps_raw_keys_in_order_and_ignores_unknown_ones():
    assert logged_stats(["load", "no-such-key", "drop_frac"]) == (
        N.S_LOAD_CV, N.S_MAX_MEAN_LOAD, N.S_DROP_FRAC)
    assert logged_stats([]) == ()
    assert logged_stats(["ept_hist"]) == tuple(N.ept_stat(b) for b in N.EPT_BINS)


def test_every_logged_statistic_is_a_named_routing_statistic():
    named = set(N.ROUTING_SCALARS) | {N.ept_stat(b) for b in N.EPT_BINS}
    for raw, stats in LOGGED_FROM.items():
        assert set(stats) <= named, raw
    assert all(LOGGED_FROM[k] == (k,) for k in PASSED_THROUGH)


def test_n_experts_of_tracks_moe_blocks_only():
    from repro.layers.dense_config import DenseFFNConfig
    from repro.layers.moe_config import MoEConfig

    assert n_experts_of(MoEConfig(n_experts=8, d_expert=16)) == 8
    assert n_experts_of(DenseFFNConfig(d_ff=64)) is None


def test_importing_the_package_imports_no_torch():
    code = ("import sys, repro.metrics as m; m.logged_stats(['load']); "
            "print('torch' in sys.modules); m.RoutingMetric; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["False", "True"]  # torch loads on first use of a torchmetrics class
