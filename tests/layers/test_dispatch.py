"""Dispatch ``auto``: the probe takes the backend its timer says is fastest and caches it per
shape, leaves the real step's outputs and gradients untouched, stays off under tracing and with
REPRO_DISPATCH_PROBE=0, and ignores a corrupt disk cache. Timings come from a fake timer; no test
asserts a real time."""

from __future__ import annotations

import json

import pytest
import torch

from repro.layers import dispatch
from repro.layers import dispatch_policy as dpol
from repro.layers.moe import MoEFFN
from tests._moe_factories import D, init_module, moe_cfg


def fake_timer(cost: dict[str, float], calls: list[str]):
    def timer(name, fn):
        fn()  # the backend really runs (on the probe's detached copies)
        calls.append(name)
        return cost[name]

    return timer


def run_step(m: MoEFFN, x: torch.Tensor):
    for p in m.parameters():
        p.grad = None
    out = m(x)
    loss = out.y.pow(2).sum() + sum(a.coef * a.value for a in out.aux.values())
    loss.backward()
    return out, {n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None}


def pair(backend_b: str, **kw):
    torch.manual_seed(0)
    a = init_module(MoEFFN(moe_cfg("topk", backend="auto", **kw), D)).train()
    b = MoEFFN(moe_cfg("topk", backend=backend_b, **kw), D).train()
    b.load_state_dict(a.state_dict())
    return a, b


@pytest.mark.parametrize("fastest", ["bmm", "loop", "grouped_mm"])
@pytest.mark.parametrize("kw", [{}, {"neuron_ratio": 0.5, "neuron_alpha": 0.01}],
                         ids=["swiglu", "mone-nglbl"])
def test_probe_picks_what_the_timer_says_and_caches_it(monkeypatch, fastest, kw):
    cost = {"grouped_mm": 2.0, "bmm": 3.0, "loop": 4.0, fastest: 1.0}
    calls: list[str] = []
    policy = dpol.AutoPolicy(timer=fake_timer(cost, calls), reps=2, probe=True, disk=False)
    monkeypatch.setattr(dpol, "POLICY", policy)
    auto, same = pair(fastest, **kw)
    x = torch.randn(4, 8, D)
    out_a, g_a = run_step(auto, x)
    (key, dec), = policy.decisions.items()
    assert dec.backend == fastest and dec.source == "probe"
    assert set(dec.ms) == {"grouped_mm", "bmm", "loop"}
    assert sorted(calls) == sorted(["grouped_mm", "bmm", "loop"] * 2)
    assert key[-2:] == ("fwd+bwd", "silu" if not kw else "silu_top4")
    # the real step ran the chosen backend alone: outputs, NG-LBL and every gradient equal the
    # fixed-backend block's exactly (probe gradients never reach the real parameters)
    out_b, g_b = run_step(same, x)
    assert torch.equal(out_a.y, out_b.y)
    assert out_a.aux.keys() == out_b.aux.keys()
    for name in out_a.aux:
        assert torch.equal(out_a.aux[name].value, out_b.aux[name].value), name
    assert g_a.keys() == g_b.keys()
    for n in g_a:
        assert torch.equal(g_a[n], g_b[n]), n
    # cached: the next step of the same shape does not time again
    calls.clear()
    run_step(auto, x)
    assert calls == [] and len(policy.decisions) == 1


def test_forward_only_under_no_grad_is_its_own_key(monkeypatch):
    calls: list[str] = []
    policy = dpol.AutoPolicy(timer=fake_timer({"grouped_mm": 1, "bmm": 2, "loop": 3}, calls),
                                 reps=1, probe=True, disk=False)
    monkeypatch.setattr(dpol, "POLICY", policy)
    m, _ = pair("loop")
    with torch.no_grad():
        m(torch.randn(2, 8, D))
    with torch.inference_mode():
        m(torch.randn(2, 8, D))
    assert {k[-2] for k in policy.decisions} == {"fwd"} and len(calls) == 3


def test_probe_off_by_env_and_while_compiling_takes_the_static_rule(monkeypatch):
    def boom(name, fn):
        raise AssertionError("the probe must not time anything here")

    m, _ = pair("loop")
    x = torch.randn(2, 8, D)
    monkeypatch.setenv(dpol.PROBE_ENV, "0")
    policy = dpol.AutoPolicy(timer=boom, disk=False)
    monkeypatch.setattr(dpol, "POLICY", policy)
    m(x)
    assert policy.decisions == {}
    monkeypatch.delenv(dpol.PROBE_ENV)  # unset: the probe is opt-in
    assert not dpol.AutoPolicy(timer=boom, disk=False).probing
    m(x)
    assert policy.decisions == {}
    monkeypatch.setenv(dpol.PROBE_ENV, "1")
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    m(x)
    assert policy.decisions == {}  # the rule is used uncached, the probe waits for eager calls
    xf = x.view(-1, D)
    r = m.router(xf, (2, 8))
    s = dispatch.sort_assignments(r.token, r.expert, r.weight, m.cfg.n_experts)
    assert policy.choose(xf, s, m.experts.weights, torch.nn.functional.silu) == \
        dpol.static_backend(xf, s, m.cfg.d_expert) == "grouped_mm"


def test_disk_cache_is_reused_and_a_corrupt_file_is_ignored(tmp_runs):
    m, _ = pair("loop")
    x = torch.randn(2, 8, D)
    xf = x.view(-1, D)
    r = m.router(xf, (2, 8))
    s = dispatch.sort_assignments(r.token, r.expert, r.weight, m.cfg.n_experts)
    w, act = m.experts.weights, torch.nn.functional.silu
    calls: list[str] = []
    first = dpol.AutoPolicy(timer=fake_timer({"grouped_mm": 2, "bmm": 1, "loop": 3}, calls),
                                reps=1, probe=True, disk=True)
    assert first.decide(xf, s, w, act).backend == "bmm"
    path = dpol._disk_path()
    assert path.is_relative_to(tmp_runs) and len(json.loads(path.read_text())) == 1

    def boom(name, fn):
        raise AssertionError("decision should come from disk")

    again = dpol.AutoPolicy(timer=boom, probe=True, disk=True).decide(xf, s, w, act)
    assert (again.backend, again.source) == ("bmm", "disk")
    for junk in ("{not json", "[1, 2]", json.dumps({"x": "bmm"}),
                 json.dumps({k: "no_such_backend" for k in json.loads(path.read_text())})):
        path.write_text(junk)
        calls.clear()
        d = dpol.AutoPolicy(timer=fake_timer({"grouped_mm": 1, "bmm": 2, "loop": 3}, calls),
                                reps=1, probe=True, disk=True).decide(xf, s, w, act)
        assert (d.backend, d.source) == ("grouped_mm", "probe") and calls, junk


def test_heavy_padding_keeps_bmm_out_of_the_probe():
    xf = torch.randn(128, D)
    counts = torch.tensor([120, 4, 2, 2])  # E * max / A = 3.75
    s = dispatch.Assignments(torch.zeros(128, dtype=torch.long), torch.ones(128), counts, False,
                             None)
    assert dpol.eligible(xf, s, 8) == ["grouped_mm", "loop"]
    assert dpol.eligible(xf, s, 6) == ["loop"]  # unaligned F: nothing to measure


def test_disk_cache_is_on_by_default_and_a_waiting_process_takes_the_first_answer(
        tmp_runs, monkeypatch):
    """Concurrent processes (``--jobs``) and a resumed run must run the backend the first
    measurement chose: the decider waits on the lock held by whoever is measuring, then reads
    the stored answer instead of timing again."""
    import threading

    monkeypatch.delenv(dpol.CACHE_ENV, raising=False)
    assert dpol.AutoPolicy(probe=True).on_disk
    monkeypatch.setenv(dpol.CACHE_ENV, "0")
    assert not dpol.AutoPolicy(probe=True).on_disk
    monkeypatch.delenv(dpol.CACHE_ENV)

    m, _ = pair("loop")
    xf = torch.randn(16, D)
    r = m.router(xf, (2, 8))
    s = dispatch.sort_assignments(r.token, r.expert, r.weight, m.cfg.n_experts)
    w, act = m.experts.weights, torch.nn.functional.silu
    key = dpol.probe_key(xf, s, w, act)

    def boom(name, fn):
        raise AssertionError("the waiting process measured instead of reading the answer")

    got: list = []
    waiter = threading.Thread(target=lambda: got.append(
        dpol.AutoPolicy(timer=boom, probe=True).decide(xf, s, w, act)))
    with dpol._disk_lock():  # "another process" is measuring this shape
        waiter.start()
        waiter.join(timeout=0.5)
        assert waiter.is_alive(), "the decider did not wait for the lock"
        dpol._disk_store(key, "loop")
    waiter.join(timeout=10)
    assert [(d.backend, d.source) for d in got] == [("loop", "disk")]
