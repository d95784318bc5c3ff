"""Whole-model training throughput per method at matched activated FLOPs (issue 3's table).

Every method's FFN is derived from the dense FFN unit of the chosen scale so that its FFN
FLOPs/token (router included, MoNE at its efficient-implementation cost) equal the dense arm's;
each arm then runs full training steps (forward, backward, AdamW) of the whole LM on random
tokens. Arms are interleaved round by round in one process; the reported figure is the median
over rounds of tokens/s, and the median of the per-round ratio to dense.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import replace

import torch

from repro.compute import (
    ffn_count,
    model_count,
    moe_d_expert_for_ffn_flops,
    moe_widths_aligned,
)
from repro.layers.dense import DenseFFNConfig
from repro.layers.finedeep import FinedeepConfig
from repro.layers.moe import MoEConfig
from repro.models.lm import LM, ModelConfig
from repro.routers import ROUTERS
from repro.routers.topk import TopKRouterConfig


def method_arms(d_model: int, d_ff: int, n_experts: int = 8) -> dict[str, object]:
    """FFN configs of every method, FLOP-matched to a dense SwiGLU of width d_ff, with expert
    widths derived as the experiments derive them (``repro.compute.moe_d_expert_for_ffn_flops``:
    rounded to a multiple of 4 columns when that keeps the FLOPs within 1% of the target)."""
    target = ffn_count(DenseFFNConfig(d_ff=d_ff), d_model).flops
    E = n_experts

    def fit(cfg: MoEConfig) -> MoEConfig:
        F = moe_d_expert_for_ffn_flops(target, cfg, d_model)
        return replace(cfg, d_expert=F, d_shared=F if cfg.n_shared else None)

    arms: dict[str, object] = {"dense": DenseFFNConfig(d_ff=d_ff)}
    for name, router in ROUTERS.items():  # every registered router, at 2 experts per token
        arms[name] = fit(MoEConfig(n_experts=E, router=router.Config().with_experts_per_token(2)))
    # DeepSeekMoE: m=4 fine-grained, 1 shared, top-3 routed of 4E-1; routed width F rounded
    # down to a multiple of 4, the shared expert takes the rest of the FLOPs (92 / 96 at cpu)
    dsm = MoEConfig(n_experts=4 * E - 1, n_shared=1, router=TopKRouterConfig(top_k=3,
                                                                             normalize=False))
    F, S = moe_widths_aligned(target, dsm, d_model)
    arms["deepseekmoe"] = replace(dsm, d_expert=F, d_shared=S)
    arms["mone"] = fit(MoEConfig(n_experts=E, router=TopKRouterConfig(top_k=2),
                                 neuron_ratio=0.5))
    arms["finedeep"] = FinedeepConfig(d_ff=d_ff, n_sublayers=2, n_experts=4)
    return arms


CLOCKS = {"cpu": time.process_time, "wall": time.perf_counter}


def interleaved_times(keys: list, step, rounds: int, steps: int, warmup: int,
                      clock=time.process_time) -> dict:
    """``warmup`` calls of ``step(key)`` per key, then ``rounds`` rounds timing ``steps`` calls of
    each key in turn: {key: [seconds per step, one per round]}. ``clock``: the process's CPU
    time by default (all its threads), which other processes on a shared machine do not inflate
    the way they inflate wall time; ``time.perf_counter`` for wall time."""
    for k in keys:
        for _ in range(warmup):
            step(k)
    times: dict = {k: [] for k in keys}
    for _ in range(rounds):
        for k in keys:
            t0 = clock()
            for _ in range(steps):
                step(k)
            times[k].append((clock() - t0) / steps)
    return times


def lm_throughput(d_model=128, n_layers=2, n_heads=4, d_ff=344, vocab=4096, seq_len=128,
                  batch=32, steps=6, rounds=5, warmup=2, methods=None, seed=0,
                  echo=print) -> list[dict]:
    """Every method's FFN FLOP-matched to the dense width ``d_ff`` (``method_arms``), timed."""
    arms = method_arms(d_model, d_ff)
    if methods:
        arms = {k: v for k, v in arms.items() if k in methods or k == "dense"}
    cfgs = {name: ModelConfig(vocab_size=vocab, d_model=d_model, n_layers=n_layers,
                              n_heads=n_heads, ffn=ffn) for name, ffn in arms.items()}
    return time_models(cfgs, "dense", seq_len=seq_len, batch=batch, steps=steps, rounds=rounds,
                       warmup=warmup, seed=seed, echo=echo)


def time_models(cfgs: dict[str, ModelConfig], ref: str, seq_len: int, batch: int, steps=6,
                rounds=5, warmup=2, seed=0, echo=print) -> list[dict]:
    """Full training steps (fwd, bwd, AdamW) of each LM on the same random tokens, interleaved
    round by round: tokens/s (median over rounds) and the median per-round ratio to ``ref``."""
    torch.manual_seed(seed)
    models, opts = {}, {}
    for name, cfg in cfgs.items():
        models[name] = LM(cfg).train()
        opts[name] = torch.optim.AdamW(models[name].parameters(), lr=1e-3)
    vocab = cfgs[ref].vocab_size
    x = torch.randint(0, vocab, (batch, seq_len))  # [B, T]
    y = torch.randint(0, vocab, (batch, seq_len))  # [B, T]

    def step(name):
        m, o = models[name], opts[name]
        ce, out = m.loss(x, y)
        loss = ce + sum((t.coef * t.value for t in out.aux.values()), ce.new_zeros(()))
        o.zero_grad(set_to_none=True)
        loss.backward()
        o.step()

    times = interleaved_times(list(cfgs), step, rounds, steps, warmup)
    tok = batch * seq_len
    rows = []
    for name, cfg in cfgs.items():
        c = model_count(cfg, seq_len)
        ratios = [d / t for d, t in zip(times[ref], times[name])]
        rows.append({"method": name, "tokens_per_s": tok / statistics.median(times[name]),
                     "rel_dense": statistics.median(ratios), "ffn_flops": c.ffn_flops,
                     "total_params": c.total_params})
    ref_flops = next(r["ffn_flops"] for r in rows if r["method"] == ref)
    w = max(14, *(len(n) for n in cfgs))
    echo(f"{'method':{w}s} {'tokens/s':>10s} {'vs ' + ref:>9s} {'FFN FLOPs/tok':>14s} "
         f"{'(vs ' + ref + ')':>10s} {'params':>9s}")
    for r in rows:
        echo(f"{r['method']:{w}s} {r['tokens_per_s']:10,.0f} {r['rel_dense']:9.3f} "
             f"{r['ffn_flops']:14,.0f} {r['ffn_flops'] / ref_flops:10.3f} "
             f"{r['total_params']:9,d}")
    return rows


def experiment_models(name: str, scale: str = "cpu",
                      backends: list[str] | None = None) -> tuple[dict[str, ModelConfig], str,
                                                                  dict]:
    """The LMs an experiment's arms train, exactly as configured (expert widths unrounded), one
    entry per (MoE arm, backend) when ``backends`` is given ("arm[backend]"): the in-run
    configurations, so this bench and the runs' logged tokens/s measure the same models.
    Returns (configs, reference arm: ``dense`` if the experiment has one, else its first arm,
    {seq_len, batch})."""
    from repro.experiments.base import get_experiment

    exp = get_experiment(name, scale)
    cfgs: dict[str, ModelConfig] = {}
    shape = {"seq_len": exp.data.seq_len, "batch": exp.recipe.batch_size}  # every arm's
    for arm in exp.arms:
        model = exp.run_config(arm).model
        if backends and isinstance(model.ffn, MoEConfig):
            for b in backends:
                cfgs[f"{arm.name}[{b}]"] = replace(model, ffn=replace(model.ffn, backend=b))
        else:
            cfgs[arm.name] = model
    ref = "dense" if "dense" in cfgs else next(iter(cfgs))
    return cfgs, ref, shape


def scale_shape(scale: str = "cpu") -> dict:
    """The LM shape of a scale preset (repro.experiments.scales), as lm_throughput kwargs."""
    from repro.experiments.scales import PRESETS

    p = PRESETS[scale]
    return dict(d_model=p.d_model, n_layers=p.n_layers, n_heads=p.n_heads, d_ff=p.d_ff,
                vocab=p.data.vocab_size, seq_len=p.data.seq_len, batch=p.recipe.batch_size)


if __name__ == "__main__":
    import argparse

    from repro.machine import cpu_model

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", default="cpu", help="the preset whose LM shape to time "
                    "(default cpu: the calibrated scale)")
    ap.add_argument("--experiment", default=None, help="time this experiment's own arms at "
                    "--scale (unrounded widths, as they train) instead of the method table")
    ap.add_argument("--backends", default=None, help="with --experiment: time each MoE arm "
                    "under each of these dispatch backends (comma-separated)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--threads", type=int, default=0)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    from repro.bench.run import set_allocator_policy

    print(f"allocator: {set_allocator_policy()}; clock: process CPU time")
    if a.experiment:
        cfgs, ref, shape = experiment_models(a.experiment, a.scale,
                                             a.backends.split(",") if a.backends else None)
        print(f"experiment {a.experiment} at scale {a.scale}: {shape}; torch {torch.__version__}, "
              f"{torch.get_num_threads()} threads, {cpu_model()}")
        time_models(cfgs, ref, rounds=a.rounds, steps=a.steps, **shape)
    else:
        shape = scale_shape(a.scale)
        print(f"scale {a.scale}: {shape}; torch {torch.__version__}, {torch.get_num_threads()} "
              f"threads, {cpu_model()}")
        lm_throughput(rounds=a.rounds, steps=a.steps, **shape)
