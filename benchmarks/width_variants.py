"""Whole-model training steps of method-table arms with fields overridden, against dense, in one
process, interleaved, CPU time, 1 thread. Each argument is METHOD[:field=value...], e.g.
``deepseekmoe:d_expert=92:d_shared=96:backend=bmm``. ROUNDS / STEPS env vars (default 3 / 2)."""

import os
import sys
from dataclasses import replace

import torch

from repro.bench.lm_throughput import method_arms, scale_shape, time_models
from repro.machine import cpu_model
from repro.models.lm import ModelConfig


def main() -> None:
    torch.set_num_threads(1)
    sh = scale_shape("cpu")
    arms = method_arms(sh["d_model"], sh["d_ff"])

    def mc(ffn):
        return ModelConfig(vocab_size=sh["vocab"], d_model=sh["d_model"],
                           n_layers=sh["n_layers"], n_heads=sh["n_heads"], ffn=ffn)

    variants = {"dense": mc(arms["dense"])}
    for spec in sys.argv[1:]:
        name, *kvs = spec.split(":")
        ffn = arms[name]
        for kv in kvs:
            k, v = kv.split("=")
            cur = getattr(ffn, k)
            typ = str if isinstance(cur, str) else (float if isinstance(cur, float) else int)
            ffn = replace(ffn, **{k: typ(v)})
        variants[spec] = mc(ffn)
    print(f"# {cpu_model()} 1 thread load {os.getloadavg()}")
    time_models(variants, "dense", seq_len=sh["seq_len"], batch=sh["batch"],
                steps=int(os.environ.get("STEPS", 2)), rounds=int(os.environ.get("ROUNDS", 3)),
                warmup=1)
    print(f"# load after {os.getloadavg()}")


if __name__ == "__main__":
    main()
