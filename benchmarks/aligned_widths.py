"""Before/after of aligned expert widths, whole-model training steps at the cpu scale, in one
process, arms interleaved round by round, CPU time (time.process_time) per step, 1 thread.

"before" arms are the method table with the unaligned widths the first build derived (191, 381,
93, 286 at cpu) and MoNE's topk mask; "after" arms are ``method_arms`` as it stands (widths rounded
to a multiple of 4, kthvalue mask). Prints one line per arm and a header with the CPU model,
threads and load. Usage:

    MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=68719476736 \\
        python benchmarks/aligned_widths.py --rounds 5 --steps 4 [--methods topk,switch]
"""

from __future__ import annotations

import argparse
import os
from dataclasses import replace

import torch

from repro.bench.lm_throughput import method_arms, scale_shape, time_models
from repro.layers import mone
from repro.layers.moe_config import MoEConfig
from repro.machine import cpu_model
from repro.models.lm import ModelConfig

UNALIGNED = {"expert_choice": 191, "gshard": 191, "noisy_topk": 191, "topk": 191,
             "switch": 381, "deepseekmoe": 93, "mone": 286}


class TopkMask(mone.NeuronTopK):
    """The first build's mask: torch.topk + scatter (for the 'before' MoNE arm)."""

    def __call__(self, g):
        a = torch.nn.functional.silu(g)
        a2 = a.reshape(-1, a.shape[-1])
        idx = a2.detach().abs().topk(self.k, dim=-1).indices
        m = torch.zeros_like(a2, dtype=torch.bool).scatter_(1, idx, True)
        return (a2 * m).view_as(a)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--methods", default="")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    from repro.bench.run import set_allocator_policy

    alloc = set_allocator_policy()
    sh = scale_shape("cpu")
    arms = method_arms(sh["d_model"], sh["d_ff"])
    want = set(a.methods.split(",")) if a.methods else set(arms)
    cfgs = {}
    for name, ffn in arms.items():
        if name not in want and name != "dense":
            continue
        base = ModelConfig(vocab_size=sh["vocab"], d_model=sh["d_model"],
                           n_layers=sh["n_layers"], n_heads=sh["n_heads"], ffn=ffn)
        if isinstance(ffn, MoEConfig) and name in UNALIGNED:
            F = UNALIGNED[name]
            cfgs[f"{name}[before F={F}]"] = replace(base, ffn=replace(
                ffn, d_expert=F, d_shared=F if ffn.n_shared else None))
            cfgs[f"{name}[after F={ffn.d_expert}]"] = base
        else:
            cfgs[name] = base
    if "mone" in want:  # the 'before' MoNE also used topk for its mask
        from repro.layers import moe as moe_mod
        orig = moe_mod.NeuronTopK

        def activation(self):
            k = self.cfg.neuron_k
            if k is None or k >= self.cfg.d_expert:
                return torch.nn.functional.silu
            return (TopkMask if self.cfg.d_expert == UNALIGNED["mone"] else orig)(k)
        moe_mod.MoEFFN.activation = activation
    print(f"# {cpu_model()}; torch {torch.__version__}; {torch.get_num_threads()} thread(s); "
          f"loadavg before {os.getloadavg()}; allocator: {alloc}; clock: process CPU time")
    time_models(cfgs, "dense", seq_len=sh["seq_len"], batch=sh["batch"], steps=a.steps,
                rounds=a.rounds, warmup=2)
    print(f"# loadavg after {os.getloadavg()}")


if __name__ == "__main__":
    main()
