"""bf16 autocast vs fp32 for whole-model CPU training steps, side by side in one process.

The calibrated ``cpu`` LM (repro.experiments.scales) with the dense FFN and three routed FFNs
FLOP-matched to it (``lm_throughput.method_arms``); each (method, precision) trains its own
identically seeded model on the same random batch, interleaved in rounds. Prints tokens/s, the
per-round speed ratio bf16 / fp32 and both cross-entropies after the same number of steps (they
must agree to about 1e-3 for bf16 to be usable at all).

    python -m repro.bench.precision --threads 1
"""

from __future__ import annotations

import argparse
import statistics

import torch

from repro.bench.lm_throughput import interleaved_times, method_arms, scale_shape
from repro.models.lm import LM, ModelConfig


def precision_trial(methods=("dense", "switch", "topk", "expert_choice"), rounds: int = 4,
                    steps: int = 4, scale: str = "cpu", echo=print) -> list[dict]:
    s = scale_shape(scale)
    arms = {k: v for k, v in method_arms(s["d_model"], s["d_ff"]).items() if k in methods}
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, s["vocab"], (s["batch"], s["seq_len"]), generator=g)  # [B, T]
    y = torch.randint(0, s["vocab"], (s["batch"], s["seq_len"]), generator=g)  # [B, T]
    runs = {}
    for name, ffn in arms.items():
        for prec in ("fp32", "bf16"):
            torch.manual_seed(0)
            m = LM(ModelConfig(vocab_size=s["vocab"], d_model=s["d_model"],
                               n_layers=s["n_layers"], n_heads=s["n_heads"], ffn=ffn)).train()
            runs[(name, prec)] = (m, torch.optim.AdamW(m.parameters(), lr=1e-3), [])

    def step(key):
        m, opt, losses = runs[key]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=key[1] == "bf16"):
            ce, out = m.loss(x, y)
            loss = ce + sum((t.coef * t.value for t in out.aux.values()), ce.new_zeros(()))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(ce.detach()))

    times = interleaved_times(list(runs), step, rounds, steps, warmup=2)
    tok = s["batch"] * s["seq_len"]
    rows = []
    for name in arms:
        a, b = times[(name, "fp32")], times[(name, "bf16")]
        la, lb = runs[(name, "fp32")][2], runs[(name, "bf16")][2]
        rows.append(dict(method=name, fp32_tok_s=tok / statistics.median(a),
                         bf16_tok_s=tok / statistics.median(b),
                         speed=statistics.median(x / y for x, y in zip(a, b)),
                         steps=len(la), ce_fp32=la[-1], ce_bf16=lb[-1]))
        r = rows[-1]
        echo(f"{name:14s} fp32 {r['fp32_tok_s']:7.0f} tok/s  bf16 {r['bf16_tok_s']:7.0f} tok/s  "
             f"bf16/fp32 speed {r['speed']:.3f}  CE after {r['steps']} steps: "
             f"fp32 {r['ce_fp32']:.4f}, bf16 {r['ce_bf16']:.4f}")
    return rows


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=4)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    precision_trial(rounds=a.rounds)
