"""``repro bench``: run the layer grid (routers x backends x E) and the training-loop check, write
the CSV + PNG under the project's ``results/bench/`` and print the table with the issue's
targets."""

from __future__ import annotations

import csv
import ctypes
import ctypes.util
import math
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path

import torch

from repro.bench.layer import bench_group, default_top_k
from repro.machine import cpu_model
from repro.paths import results_dir
from repro.routers import ROUTERS

BACKEND_NAMES = ("auto", "loop", "grouped_mm", "bmm")

# issue 13 targets (CPU: E8 k2 <= 1.10, E64 k8 <= 1.20, growth E8 -> E256 <= 1.15; CUDA: E64 k8
# <= 1.30), as ratios to the fair dense SwiGLU reference of equal activated FLOPs
TARGETS = {"cpu": {"e8": 1.10, "e64": 1.20, "growth": 1.15, "train": 0.95},
           "cuda": {"e8": 1.20, "e64": 1.30, "growth": 1.15, "train": 0.95}}

COLUMNS = ["section", "device", "device_name", "torch", "dtype", "router", "backend",
           "resolved_backend", "n_experts", "top_k", "d_model", "d_expert", "d_ff_dense", "hidden",
           "tokens", "reps", "dense_ms", "moe_ms", "ratio", "ratio_min", "ratio_max",
           "tokens_per_s", "ref_max_err", "ref_ok", "auto_choice", "threads", "alloc_policy",
           "load_before", "load_after", "clock", "dense_drift", "plausible", "ratio_refused",
           "note"]


@dataclass
class BenchSpec:
    device: str = "cpu"
    # default: every registered router (a new router is benchmarked without an edit here)
    routers: tuple[str, ...] = field(default_factory=lambda: tuple(ROUTERS.names()))
    sweep_routers: tuple[str, ...] | None = None  # routers for E not in (8, 64); None: routers
    experts: tuple[int, ...] = (8, 16, 64, 256)
    backends: tuple[str, ...] = BACKEND_NAMES
    dtype: str = "float32"
    tokens: int = 8192
    seq_len: int = 1024  # tokens are shaped [tokens / seq_len, seq_len] (Expert Choice groups)
    d_model: int = 256
    hidden: int = 2048  # activated hidden width H = k * F
    reps: int = 5
    warmup: int = 1
    train: bool = True
    train_steps: int = 30
    train_rounds: int = 2
    threads: int | None = None
    quick: bool = False
    update: bool = False  # merge into an existing CSV, replacing the rows this run re-measured
    out_dir: str = ""  # "": <results>/bench (repro.paths.results_dir: the project's results/)
    wrong_backend: dict = field(default_factory=dict)  # tests: perturb a backend's module
    peers: bool = False  # also time transformers 5's MoE blocks (topk cases; repro.bench.peers)

    @classmethod
    def quick_spec(cls, **kw) -> BenchSpec:
        base = dict(experts=(8, 16), tokens=512, seq_len=64, d_model=64, hidden=256, reps=2,
                    warmup=1, train_steps=6, train_rounds=1, quick=True)
        base.update(kw)
        return cls(**base)


def set_allocator_policy() -> str:
    """Keep big CPU tensors in the glibc heap (references.md §Perf) and say which policy ran."""
    env = {k: os.environ.get(k) for k in ("MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_")}
    if platform.system() != "Linux":
        return "platform default"
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
        ok = libc.mallopt(M_MMAP_MAX, 0) == 1 and libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1) == 1
    except (OSError, AttributeError):
        ok = False
    if ok:
        return "glibc mallopt M_MMAP_MAX=0 M_TRIM_THRESHOLD=2GiB (env " + " ".join(
            f"{k}={v}" for k, v in env.items() if v is not None) + ")"
    return "glibc default (mallopt unavailable; env " + " ".join(
        f"{k}={v}" for k, v in env.items() if v is not None) + ")"


def device_name(device: str) -> str:
    if device == "cuda":
        return torch.cuda.get_device_name(0)
    return f"{cpu_model()} x{os.cpu_count()} cores"


def load() -> str:
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except OSError:
        return "n/a"


def run_bench(spec: BenchSpec, log=print) -> tuple[list[dict], Path]:
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[spec.dtype]
    if spec.device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("no CUDA device")
    out = Path(spec.out_dir) if spec.out_dir else results_dir() / "bench"  # fail before timing
    threads = spec.threads or min(torch.get_num_threads(), os.cpu_count() or 1)
    torch.set_num_threads(threads)
    policy = set_allocator_policy() if spec.device == "cpu" else "torch CUDA caching allocator"
    meta = dict(device=spec.device, device_name=device_name(spec.device),
                torch=torch.__version__, dtype=spec.dtype, threads=threads, alloc_policy=policy)
    log(f"[bench] {meta['device_name']} torch {torch.__version__} {spec.dtype} threads={threads}"
        f" allocator: {policy}; load {load()}")
    rows: list[dict] = []
    for E in spec.experts:
        routers = spec.routers if E in (8, 64) or spec.sweep_routers is None else [
            r for r in spec.sweep_routers]
        for router in routers:
            k = default_top_k(E)
            lb = load()
            group = bench_group(router, E, k, d_model=spec.d_model, hidden=spec.hidden,
                                tokens=spec.tokens, seq_len=spec.seq_len,
                                backends=list(spec.backends), reps=spec.reps,
                                warmup=spec.warmup, device=spec.device, dtype=dtype,
                                wrong_backend=spec.wrong_backend, peers=spec.peers)
            la = load()
            for r in group:
                r.update(meta, section="layer", load_before=lb, load_after=la)
                how = f" [{r['auto_choice']}]" if r.get("auto_choice") else ""
                log(f"[bench] E={E:<3d} k={k} {router:13s} {r['backend']:10s} -> "
                    f"{r['resolved_backend']:10s}{how} ratio {r['ratio']:.3f} "
                    f"(dense {r['dense_ms']:.0f} ms){'  ' + r['note'] if r['note'] else ''}")
            rows += group
    if spec.train:
        lb = load()
        q = dict(steps=spec.train_steps, rounds=spec.train_rounds)
        if spec.quick:
            q.update(batch=4, seq_len=32, vocab=256, d_model=32, skip=2)
        from repro.bench.train import training_overhead

        tr = training_overhead(**q)
        la = load()
        for r in tr:
            r.update(meta, load_before=lb, load_after=la)
            log(f"[bench] train {r['backend']:13s} {r['tokens_per_s']:.0f} tok/s, "
                f"ratio to bare {r['ratio']:.3f}")
        rows += tr
    out.mkdir(parents=True, exist_ok=True)
    tv = torch.__version__.split("+")[0]
    stem = f"bench-{spec.device}-torch{tv}" + ("-quick" if spec.quick else "")
    csv_path = out / f"{stem}.csv"
    if spec.update and csv_path.exists():
        rows = merge_rows(read_csv(csv_path), rows)
    write_csv(rows, csv_path)
    try:
        plot(rows, out / f"{stem}.png", spec, meta)
    except ImportError:  # matplotlib missing: the CSV is the result
        pass
    return rows, csv_path


def write_csv(rows: list[dict], path: Path) -> None:
    from repro.paths import open_owned

    fd = open_owned(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)  # never through a link
    with os.fdopen(fd, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({c: _fmt(r.get(c, "")) for c in COLUMNS})


_KEY = ("section", "router", "backend", "n_experts")


def read_csv(path: Path) -> list[dict]:
    """Rows of a bench CSV with numbers parsed back (for --update and re-plotting)."""
    with open(path) as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        for k, v in r.items():
            if k == "ref_ok":
                r[k] = {"True": True, "False": False}.get(v, "")
            elif k in ("n_experts", "d_model", "d_expert", "d_ff_dense", "hidden", "tokens",
                       "reps", "threads"):
                r[k] = int(v) if v else 0
            elif k in ("dense_ms", "moe_ms", "ratio", "ratio_min", "ratio_max", "tokens_per_s",
                       "ref_max_err", "top_k"):
                r[k] = float(v) if v else math.nan
    return rows


def merge_rows(old: list[dict], new: list[dict]) -> list[dict]:
    fresh = {tuple(r.get(k) for k in _KEY) for r in new}
    return [r for r in old if tuple(r.get(k) for k in _KEY) not in fresh] + new


def _fmt(v):
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.4g}"
    return v


# ------------------------------------------------------------------------------ targets / table
def _ratio(rows, router, E, backend="auto"):
    for r in rows:
        if (r.get("section") == "layer" and r["router"] == router and r["n_experts"] == E
                and r["backend"] == backend):
            return r["ratio"]
    return math.nan


def best_ratio(rows, router, E) -> tuple[float, str]:
    cands = [(r["ratio"], r["backend"]) for r in rows if r.get("section") == "layer"
             and r["router"] == router and r["n_experts"] == E
             and r["backend"] not in ("auto", "static") and not is_peer(r["backend"])
             and not math.isnan(r["ratio"])]
    return min(cands) if cands else (math.nan, "")


def is_peer(backend: str) -> bool:
    return backend.startswith("hf-")  # repro.bench.peers.PEERS


def best_peer(rows, router, E) -> tuple[float, str]:
    cands = [(r["ratio"], r["backend"]) for r in rows if r.get("section") == "layer"
             and r["router"] == router and r["n_experts"] == E and is_peer(r["backend"])
             and r["ref_ok"] and not math.isnan(r["ratio"])]
    return min(cands) if cands else (math.nan, "")


def verdicts(rows: list[dict], device: str) -> list[dict]:
    """One line per (target, router): measured value (auto backend) and met / missed."""
    t = TARGETS.get(device, TARGETS["cpu"])
    out = []
    layer = [r for r in rows if r.get("section") == "layer"]
    Es = sorted({r["n_experts"] for r in layer})
    for router in dict.fromkeys(r["router"] for r in layer):
        for E, key in ((8, "e8"), (64, "e64")):
            if E in Es:
                v = _ratio(rows, router, E)
                b, bb = best_ratio(rows, router, E)
                out.append(dict(target=f"E={E} <= {t[key]:.2f}x",
                                router=router, value=v, best=f"{b:.3f} ({bb})",
                                ok=v <= t[key]))
        for E in Es:  # issue 13: at every shape no slower than the best transformers block
            p, pb = best_peer(rows, router, E)
            if pb:
                v = _ratio(rows, router, E)
                out.append(dict(target=f"E={E} <= best transformers", router=router, value=v,
                                best=f"{p:.3f} ({pb})", ok=v <= p))
        mine = sorted({r["n_experts"] for r in layer if r["router"] == router})
        if len(mine) > 1 and 8 in mine:
            Emax = max(mine)
            v = _ratio(rows, router, Emax) / _ratio(rows, router, 8)
            out.append(dict(target=f"growth E8->E{Emax} <= {t['growth']:.2f}x", router=router,
                            value=v, best="", ok=v <= t["growth"]))
    for r in rows:
        if r.get("section") == "train" and r["backend"] == "lightning":
            out.append(dict(target=f"lightning / bare tokens/s >= {t['train']:.2f}",
                            router="topk", value=r["ratio"], best="", ok=r["ratio"] >= t["train"]))
    return out


def format_table(rows: list[dict], device: str) -> str:
    lines = []
    layer = [r for r in rows if r.get("section") == "layer"]
    if layer:
        backends = list(dict.fromkeys(r["backend"] for r in layer))
        lines.append("MoE fwd+bwd / dense SwiGLU of equal activated FLOPs (median of per-round "
                     "ratios; at the right the backend auto ran, and the fastest measured here "
                     "when that differs)")
        lines.append(f"{'router':14s} {'E':>4s} {'k':>2s} "
                     + " ".join(f"{b:>10s}" for b in backends) + "   auto ->")
        for router in dict.fromkeys(r["router"] for r in layer):
            for E in sorted({r["n_experts"] for r in layer}):
                rs = {r["backend"]: r for r in layer if r["router"] == router and
                      r["n_experts"] == E}
                if not rs:
                    continue
                cells = []
                for b in backends:
                    r = rs.get(b)
                    if r is not None and not r["ref_ok"]:  # failed to run, or disagreed
                        bad = "failed" if str(r.get("note", "")).startswith("failed") else "WRONG"
                        cells.append(f"{bad:>10s}")
                    elif r is None or math.isnan(r["ratio"]):
                        cells.append(f"{'-':>10s}")
                    else:
                        cells.append(f"{r['ratio']:>10.3f}")
                auto = rs.get("auto", {}).get("resolved_backend", "")
                _, fastest = best_ratio(rows, router, E)
                if auto and fastest and fastest != auto:
                    auto += f" (fastest here: {fastest})"
                k = next(iter(rs.values()))["top_k"]
                lines.append(f"{router:14s} {E:>4d} {k!s:>2s} " + " ".join(cells) + f"   {auto}")
    tr = [r for r in rows if r.get("section") == "train"]
    if tr:
        lines.append("")
        lines.append("training loop (tokens/s, median; ratio to the bare loop):")
        for r in tr:
            lines.append(f"  {r['backend']:13s} {r['tokens_per_s']:10.0f}   {r['ratio']:.3f}")
    v = verdicts(rows, device)
    if v:
        lines.append("")
        lines.append(f"targets ({device}, issue 13; measured with auto):")
        for x in v:
            lines.append(f"  {'met ' if x['ok'] else 'MISS'}  {x['target']:34s} {x['router']:14s} "
                         f"{x['value']:.3f}  {('best ' + x['best']) if x['best'] else ''}")
    return "\n".join(lines)


def plot(rows: list[dict], path: Path, spec: BenchSpec, meta: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layer = [r for r in rows if r.get("section") == "layer"]
    routers = list(dict.fromkeys(r["router"] for r in layer))
    if not routers:
        return
    fig, axes = plt.subplots(1, len(routers), figsize=(3.2 * len(routers), 3.4), sharey=True,
                             squeeze=False)
    t = TARGETS.get(spec.device, TARGETS["cpu"])
    for ax, router in zip(axes[0], routers):
        for b in dict.fromkeys(r["backend"] for r in layer):
            pts = sorted((r["n_experts"], r["ratio"]) for r in layer
                         if r["router"] == router and r["backend"] == b and
                         not math.isnan(r["ratio"]))
            if pts:
                ax.plot(*zip(*pts), marker="o", lw=2.5 if b == "auto" else 1,
                        label=b, alpha=1 if b == "auto" else 0.7)
        ax.axhline(1.0, color="k", lw=0.8)
        ax.axhline(t["e8"], color="g", ls=":", lw=0.8)
        ax.axhline(t["e64"], color="r", ls=":", lw=0.8)
        top = max((r["ratio"] for r in layer if not math.isnan(r["ratio"])), default=2.0)
        ax.set_ylim(0.5, min(4.0, top * 1.05))  # outliers above 4x are clipped (see the CSV)
        ax.set_xscale("log", base=2)
        ax.set_title(router, fontsize=9)
        ax.set_xlabel("experts E (k=2 below 64, 8 from 64)", fontsize=7)
    axes[0][0].set_ylabel("time / dense (fwd+bwd)")
    axes[0][0].legend(fontsize=7)
    loads = [r.get("load_before") for r in rows] + [r.get("load_after") for r in rows]
    loads = [float(x) for x in loads if x not in (None, "", "n/a")]
    fig.suptitle(f"{meta['device_name']} torch {meta['torch']} {spec.dtype} D={spec.d_model} "
                 f"N={spec.tokens} H={spec.hidden} reps={spec.reps}; load "
                 f"{min(loads, default=0):.1f}-{max(loads, default=0):.1f} (shared machine); "
                 f"{meta['alloc_policy'][:40]}", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
