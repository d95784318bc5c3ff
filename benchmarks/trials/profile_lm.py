"""Where a training step of the cpu-scale LM goes: dense vs top2-e8 (moe-vs-dense arms), 1 thread."""
import sys, torch
from torch.profiler import profile, ProfilerActivity
from repro.bench.lm_throughput import experiment_models
from repro.models.lm import LM
torch.set_num_threads(1); torch.manual_seed(0)
cfgs, ref, shape = experiment_models("moe-vs-dense", "cpu")
x = torch.randint(0, cfgs[ref].vocab_size, (shape["batch"], shape["seq_len"]))
for name in ("dense", "top2-e8"):
    m = LM(cfgs[name]).train(); o = torch.optim.AdamW(m.parameters(), lr=1e-3)
    def step():
        ce, out = m.loss(x, x)
        loss = ce + sum((t.coef * t.value for t in out.aux.values()), ce.new_zeros(()))
        o.zero_grad(set_to_none=True); loss.backward(); o.step()
    for _ in range(3): step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(5): step()
    print(f"\n==== {name}")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=30, max_name_column_width=45))
