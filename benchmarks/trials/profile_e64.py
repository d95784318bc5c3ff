"""Where the time goes: MoE layer fwd+bwd, topk E64 k8 vs E8 k2 vs dense, 1 thread, D=256,
8192 tokens, activated hidden 2048 (the bench shape)."""
import sys, time, torch
from torch.profiler import profile, ProfilerActivity
from repro.layers.moe import MoEConfig, MoEFFN
from repro.layers.dense import DenseFFN, DenseFFNConfig
from repro.routers.topk import TopKRouterConfig
torch.set_num_threads(1); torch.manual_seed(0)
def init(mod, std=0.02):
    for m in mod.modules():
        if hasattr(m, "init_weights"):
            m.init_weights(std, std)
    return mod
import os; D, N = int(os.environ.get("TD", 256)), int(os.environ.get("TN", 8192))
def mk(E, k):
    return init(MoEFFN(MoEConfig(n_experts=E, d_expert=2048 // k, router=TopKRouterConfig(top_k=k), backend="grouped_mm"), D))
mods = {"dense": init(DenseFFN(DenseFFNConfig(d_ff=2048), D)), "E8k2": mk(8, 2), "E64k8": mk(64, 8)}
x = torch.randn(4, N // 4, D)
def step(m):
    xx = x.clone().requires_grad_(True)
    out = m(xx)
    loss = out.y.pow(2).mean() + sum((a.coef * a.value for a in out.aux.values()), torch.zeros(()))
    loss.backward()
for name, m in mods.items():
    for _ in range(2): step(m)
    ts = []
    for _ in range(5):
        t0 = time.perf_counter(); step(m); ts.append(time.perf_counter() - t0)
    print(f"{name}: median {sorted(ts)[2]*1e3:.1f} ms")
for name in ("E8k2", "E64k8"):
    m = mods[name]
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(3): step(m)
    print(f"\n==== {name}")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=22, max_name_column_width=40))
