"""A/B: the experiments' unaligned expert widths (191, 381) vs the nearest multiple of 8, per
backend, whole cpu-scale LM training steps, 1 thread, interleaved."""
import torch
from dataclasses import replace
from repro.bench.lm_throughput import experiment_models, time_models
torch.set_num_threads(1)
cfgs, ref, shape = experiment_models("moe-vs-dense", "cpu")
out = {"dense": cfgs["dense"]}
for arm in ("top2-e8", "switch-e8"):
    m = cfgs[arm]; F = m.ffn.d_expert; F8 = int(round(F / 8)) * 8
    for f in (F, F8):
        for be in ("grouped_mm", "bmm"):
            out[f"{arm}-F{f}[{be}]"] = replace(m, ffn=replace(m.ffn, d_expert=f, backend=be))
time_models(out, "dense", rounds=5, steps=4, **shape)
