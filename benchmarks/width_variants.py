import sys, os, torch
from dataclasses import replace
from repro.bench.lm_throughput import method_arms, scale_shape, time_models
from repro.models.lm import ModelConfig
from repro.machine import cpu_model
torch.set_num_threads(1)
sh = scale_shape("cpu"); arms = method_arms(sh["d_model"], sh["d_ff"])
def mc(ffn): return ModelConfig(vocab_size=sh["vocab"], d_model=sh["d_model"], n_layers=sh["n_layers"], n_heads=sh["n_heads"], ffn=ffn)
variants = {"dense": mc(arms["dense"])}
for spec in sys.argv[1:]:
    name, *kvs = spec.split(":")
    ffn = arms[name]
    for kv in kvs:
        k, v = kv.split("=")
        cur = getattr(ffn, k)
        ffn = replace(ffn, **{k: v if isinstance(cur, str) else (float(v) if isinstance(cur, float) else int(v))})
    variants[spec] = mc(ffn)
print(f"# {cpu_model()} 1 thread load {os.getloadavg()}")
time_models(variants, "dense", seq_len=sh["seq_len"], batch=sh["batch"], steps=int(os.environ.get("STEPS", 2)), rounds=int(os.environ.get("ROUNDS", 3)), warmup=1)
print(f"# load after {os.getloadavg()}")
