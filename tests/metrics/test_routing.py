"""``repro.metrics.routing``: the routing and activation statistics, on tensors whose answers
are worked out by hand (population std; per-batch scalars averaged over batches)."""

from __future__ import annotations

import math

import pytest
import torch

from repro.metrics.logged import logged_stats
from repro.metrics.routing import ActivationSparsity, RoutingMetric, batch_scalars, cv
from repro.tracking import names as N


def test_cv_is_population_std_over_mean():
    assert float(cv(torch.tensor([3.0, 3.0, 3.0]))) == pytest.approx(0.0)
    # [0, 2]: mean 1, population std 1 (the sample std would be sqrt(2))
    assert float(cv(torch.tensor([0.0, 2.0]))) == pytest.approx(1.0, rel=1e-6)
    rows = cv(torch.tensor([[1.0, 1.0], [0.0, 4.0]]))  # over the last axis, one per row
    assert rows.tolist() == pytest.approx([0.0, 1.0], abs=1e-6)


def test_batch_scalars_from_raw_router_stats():
    load = torch.tensor([2.0, 2.0, 4.0])  # mean 8/3
    std = math.sqrt(((2 - 8 / 3) ** 2 * 2 + (4 - 8 / 3) ** 2) / 3)
    out = batch_scalars({"load": load, "importance": torch.tensor([1.0, 1.0, 1.0]),
                         "drop_frac": torch.tensor(0.25), "entropy": torch.tensor(0.7)})
    assert out[N.S_LOAD_CV] == pytest.approx(std / (8 / 3), rel=1e-6)
    assert out[N.S_MAX_MEAN_LOAD] == pytest.approx(1.5, rel=1e-6)
    assert out[N.S_IMPORTANCE_CV] == pytest.approx(0.0, abs=1e-6)
    assert out[N.S_DROP_FRAC] == 0.25 and out[N.S_ENTROPY] == pytest.approx(0.7)
    assert N.S_Z not in out and N.S_SMOOTH_LOAD_CV not in out  # absent raw keys: no statistic


def test_routing_metric_averages_per_batch_scalars_and_sums_load():
    m = RoutingMetric(2)
    assert not m.has_data
    m.update({"load": torch.tensor([1.0, 3.0]), "drop_frac": torch.tensor(0.5)})
    m.update({"load": torch.tensor([2.0, 2.0])})  # no drop_frac this call
    assert m.has_data
    out = m.compute()
    assert float(out[N.S_DROP_FRAC]) == pytest.approx(0.5)  # averaged over the 1 batch that had it
    # load_cv per batch: [1, 3] -> 0.5, [2, 2] -> 0; the mean of the two
    assert float(out[N.S_LOAD_CV]) == pytest.approx(0.25, rel=1e-5)
    assert float(out[N.S_MAX_MEAN_LOAD]) == pytest.approx((1.5 + 1.0) / 2, rel=1e-5)
    assert m.load.tolist() == [3.0, 5.0]  # hard counts summed over calls
    m.reset()
    assert not m.has_data and m.compute() == {}


def test_routing_metric_ept_fractions():
    m = RoutingMetric(4)
    m.update({"ept_hist": torch.tensor([1.0, 2.0, 1.0, 0.0, 0.0, 0.0])})
    m.update({"ept_hist": torch.tensor([0.0, 2.0, 2.0, 0.0, 0.0, 0.0])})
    out = m.compute()
    got = [float(out[N.ept_stat(b)]) for b in N.EPT_BINS]
    assert got == pytest.approx([1 / 8, 4 / 8, 3 / 8, 0, 0, 0])


def test_routing_metric_computes_exactly_the_logged_table():
    """What RoutingMetric computes from raw keys is what ``logged_stats`` (the torch-free table
    that claims are checked against) says it logs."""
    raw = {"load": torch.tensor([1.0, 2.0]), "importance": torch.tensor([0.4, 0.6]),
           "smooth_load": torch.tensor([0.5, 0.5]), "z": torch.tensor(1.2),
           "ept_hist": torch.tensor([0.0, 1.0, 1.0, 0.0, 0.0, 0.0])}
    m = RoutingMetric(2)
    m.update(raw)
    assert set(m.compute()) == set(logged_stats(raw))


def test_persistent_accumulators_go_into_the_state_dict():
    """Train metrics resume a log window from a checkpoint; val metrics start empty."""
    train, val = RoutingMetric(2, persistent=True), RoutingMetric(2)
    train.update({"load": torch.tensor([1.0, 3.0])})
    sd = train.state_dict()
    assert {"sums", "counts", "load", "ept"} <= set(sd) and not val.state_dict()
    resumed = RoutingMetric(2, persistent=True)
    resumed.load_state_dict(sd)
    assert resumed.has_data
    assert float(resumed.compute()[N.S_LOAD_CV]) == pytest.approx(0.5, rel=1e-5)


def test_activation_sparsity_counts_above_each_threshold():
    m = ActivationSparsity(taus=(0.1, 1.0))
    m.update(torch.tensor([[0.5, -2.0], [0.0, 3.0]]))
    m.update(torch.tensor([0.05, -0.2]))
    out = m.compute()
    # |a| = 0.5, 2, 0, 3, 0.05, 0.2: above 0.1 -> 4 of 6, above 1 -> 2 of 6
    assert float(out["nsar_0.1"]) == pytest.approx(4 / 6)
    assert float(out["nsar_1"]) == pytest.approx(2 / 6)
    assert float(out["mean_abs"]) == pytest.approx(5.75 / 6)
    assert ActivationSparsity().taus == N.NSAR_TAUS
