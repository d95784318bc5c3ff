"""Trial: gate and up projections fused into one grouped GEMM ([E, D, 2F] concatenated per call)
vs the current three-GEMM grouped_mm path, MoE layer fwd+bwd, 1 thread, interleaved rounds."""
import statistics, time, torch
from repro.layers import dispatch
from repro.layers.dispatch import permute, unpermute
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

def fused(xf, s, w, act):
    x = permute(xf, s)  # [A, D]
    offs = s.counts.cumsum(0).to(torch.int32)
    F = w.gate.shape[-1]
    h = torch._grouped_mm(x, torch.cat([w.gate, w.up], -1), offs=offs)  # [A, 2F]
    g, u = h.split(F, -1)
    return unpermute(xf, s, torch._grouped_mm(act(g) * u, w.down, offs=offs))

dispatch.RUN["fused"] = fused
def mk(E, k, be):
    torch.manual_seed(1)
    m = MoEFFN(MoEConfig(n_experts=E, d_expert=int(os.environ.get("TH", 2048)) // k, router=TopKRouterConfig(top_k=k), backend="grouped_mm"), D)
    object.__setattr__(m.cfg, "backend", be)  # trial backends are not config values
    return init(m)
mods = {"dense": init(DenseFFN(DenseFFNConfig(d_ff=int(os.environ.get("TH", 2048))), D))}
for E, k in ((8, 2), (64, 8)):
    for be in ("grouped_mm", "fused"):
        mods[f"E{E}k{k}-{be}"] = mk(E, k, be)
x = torch.randn(4, N // 4, D)
def step(m):
    xx = x.clone().requires_grad_(True)
    out = m(xx)
    loss = out.y.pow(2).mean() + sum((a.coef * a.value for a in out.aux.values()), torch.zeros(()))
    loss.backward()
    return out.y
# equality
for E, k in ((8, 2), (64, 8)):
    a, b = mods[f"E{E}k{k}-grouped_mm"], mods[f"E{E}k{k}-fused"]
    b.load_state_dict(a.state_dict())
    print(E, k, "max |diff|", (step(a) - step(b)).abs().max().item())
for m in mods.values():
    step(m)
T = {n: [] for n in mods}
for r in range(7):
    for n, m in mods.items():
        t0 = time.perf_counter(); step(m); step(m); T[n].append((time.perf_counter() - t0) / 2)
for n in mods:
    rat = statistics.median(t / d for t, d in zip(T[n], T["dense"]))
    print(f"{n:22s} {1e3*statistics.median(T[n]):8.1f} ms  {rat:.3f}x dense")

# ---- trial 2: gathers instead of scatter-adds (dropless rank-major top-k: token = arange(N).repeat(K))
import repro.layers.moe as moe_mod
from repro.layers.dispatch import sort_assignments as _sort
STASH = {}
def sort_and_stash(token, expert, weight, n_experts, *a, **kw):
    STASH["order"] = torch.argsort(expert, stable=True)
    STASH["weight_rm"] = weight
    return _sort(token, expert, weight, n_experts, *a, **kw)
moe_mod.sort_assignments = sort_and_stash

class Perm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, idx, inv):
        ctx.save_for_backward(inv)
        return x.index_select(0, idx)
    @staticmethod
    def backward(ctx, g):
        (inv,) = ctx.saved_tensors
        return g.index_select(0, inv), None, None

def gathers(xf, s, w, act):
    N, D = xf.shape
    order = STASH["order"]; A = order.numel(); K = A // N
    inv = torch.empty_like(order); inv[order] = torch.arange(A)
    x = Perm.apply(xf.repeat(K, 1), order, inv)  # [A, D] expert-sorted; backward: gather + sum
    offs = s.counts.cumsum(0).to(torch.int32)
    a = act(torch._grouped_mm(x, w.gate, offs=offs)); u = torch._grouped_mm(x, w.up, offs=offs)
    out = torch._grouped_mm(a * u, w.down, offs=offs)  # [A, D] sorted
    out_rm = Perm.apply(out, inv, order).view(K, N, D)  # rank-major
    wr = STASH["weight_rm"].view(K, N, 1).to(out.dtype)
    return (out_rm * wr).sum(0)
dispatch.RUN["gathers"] = gathers
m2 = {"dense": mods["dense"]}
for E, k in ((8, 2), (64, 8)):
    for be in ("grouped_mm", "gathers"):
        m2[f"E{E}k{k}-{be}"] = mk(E, k, be)
    a, b = m2[f"E{E}k{k}-grouped_mm"], m2[f"E{E}k{k}-gathers"]
    b.load_state_dict(a.state_dict())
    ya = step(a); ga = {n: p.grad.clone() for n, p in a.named_parameters()}
    yb = step(b); gb = {n: p.grad.clone() for n, p in b.named_parameters()}
    print(E, k, "gathers max |diff| y", (ya - yb).abs().max().item(), "grads", max((ga[n] - gb[n]).abs().max().item() for n in ga))
T = {n: [] for n in m2}
for r in range(7):
    for n, m in m2.items():
        t0 = time.perf_counter(); step(m); step(m); T[n].append((time.perf_counter() - t0) / 2)
for n in m2:
    rat = statistics.median(t / d for t, d in zip(T[n], T["dense"]))
    print(f"{n:22s} {1e3*statistics.median(T[n]):8.1f} ms  {rat:.3f}x dense")
