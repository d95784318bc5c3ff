"""An independent measurement of `repro bench`'s layer shapes, to check the bench against: one
fresh process per shape (no allocator history from other shapes), its own timing loop (not
repro.bench.layer's), CPU time (time.process_time), the MoE block and a dense SwiGLU of the
bench's activated width built from plain torch tensors, forward + backward, interleaved rounds.

    MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=68719476736 \\
        python benchmarks/independent_layer.py --router topk --experts 8 --reps 7

prints one line: router, E, k, the median per-round CPU-time ratio MoE / dense, load average.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time


def one_shape(router: str, E: int, reps: int, tokens: int, d_model: int, hidden: int,
              threads: int) -> dict:
    import torch
    import torch.nn.functional as F

    from repro.bench.layer import LayerCase, build_moe, default_top_k, dense_width, moe_config

    torch.set_num_threads(threads)
    k = default_top_k(E)
    case = LayerCase(router, E, k, d_model, hidden)
    moe = build_moe(case, "auto", 0, "cpu", torch.float32)
    d_ff = dense_width(moe_config(case, "auto"), d_model)
    d_ff = max(d_ff, -(-d_ff // 64) * 64) if d_ff % 64 else d_ff  # an aligned dense width
    g = torch.Generator().manual_seed(1)
    w = [torch.randn(d_model, d_ff, generator=g) * 0.02, torch.randn(d_model, d_ff, generator=g)
         * 0.02, torch.randn(d_ff, d_model, generator=g) * 0.02]
    w = [t.requires_grad_() for t in w]
    x = torch.randn(tokens // 1024, 1024, d_model, generator=g)  # [B, T, D]
    dy = torch.randn_like(x)

    def dense():
        xx = x.detach().requires_grad_()
        y = (F.silu(xx @ w[0]) * (xx @ w[1])) @ w[2]
        y.backward(dy)

    def sparse():
        xx = x.detach().requires_grad_()
        moe(xx).y.backward(dy)

    for f in (dense, sparse, dense, sparse):  # warm-up
        f()
    t = {"dense": [], "moe": []}
    for r in range(reps):
        order = [("dense", dense), ("moe", sparse)]
        for name, f in (order if r % 2 == 0 else order[::-1]):
            t0 = time.process_time()
            f()
            t[name].append(time.process_time() - t0)
    ratio = statistics.median(a / b for a, b in zip(t["moe"], t["dense"]))
    return {"router": router, "E": E, "k": k, "ratio": ratio, "d_ff_dense": d_ff,
            "dense_ms": 1e3 * statistics.median(t["dense"]),
            "moe_ms": 1e3 * statistics.median(t["moe"]), "load": os.getloadavg()[0]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--router", default="topk")
    ap.add_argument("--experts", default="8")
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--tokens", type=int, default=8192)
    ap.add_argument("--d-model", type=int, default=256)
    ap.add_argument("--hidden", type=int, default=2048)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(one_shape(a.router, int(a.experts), a.reps, a.tokens, a.d_model,
                                   a.hidden, a.threads)))
        return
    for router in a.router.split(","):
        for E in a.experts.split(","):
            cmd = [sys.executable, __file__, "--child", "--router", router, "--experts", E,
                   "--reps", str(a.reps), "--tokens", str(a.tokens), "--d-model",
                   str(a.d_model), "--hidden", str(a.hidden), "--threads", str(a.threads)]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            print(out.strip().splitlines()[-1], flush=True)


if __name__ == "__main__":
    main()
