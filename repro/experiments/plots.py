"""Matplotlib figures (Agg backend, written to PNG)."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def loss_curve_figure(curves: dict[str, list[tuple[int, float]]], title: str, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, pts in curves.items():
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], label=name,
                    marker="o" if name == "val" else None, ms=3)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title, fontsize=9)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def arm_curves_figure(curves: dict[str, list[list[tuple[int, float]]]], title: str, path: Path,
                      target: float | None = None) -> None:
    """Validation curves per arm: mean over seeds with a min-max band."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, runs in curves.items():
        runs = [r for r in runs if r]
        if not runs:
            continue
        steps = sorted({s for r in runs for s, _ in r})
        mean, lo, hi = [], [], []
        for s in steps:
            vals = [dict(r)[s] for r in runs if s in dict(r) and math.isfinite(dict(r)[s])]
            mean.append(sum(vals) / len(vals) if vals else math.nan)
            lo.append(min(vals) if vals else math.nan)
            hi.append(max(vals) if vals else math.nan)
        line, = ax.plot(steps, mean, label=f"{name} (n={len(runs)})")
        ax.fill_between(steps, lo, hi, alpha=0.2, color=line.get_color())
    if target is not None and math.isfinite(target):
        ax.axhline(target, ls="--", color="gray", lw=1, label="target")
    ax.set_xlabel("step")
    ax.set_ylabel("validation loss")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    # zoom past the initial drop so differences between arms are visible
    all_vals = [v for runs in curves.values() for r in runs for _, v in r if math.isfinite(v)]
    if all_vals:
        lo_v = min(all_vals)
        finals = [r[-1][1] for runs in curves.values() for r in runs if r]
        top = max(finals) + 3 * (max(finals) - lo_v + 1e-3)
        ax.set_ylim(lo_v - 0.02, min(max(all_vals), top))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def bar_figure(values: dict[str, float], title: str, ylabel: str, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.bar(list(values), list(values.values()))
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
