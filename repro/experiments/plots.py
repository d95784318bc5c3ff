"""Matplotlib figures (Agg backend, written to PNG)."""

from __future__ import annotations

import io
import math
from pathlib import Path

import matplotlib

from repro.paths import atomic_write_bytes

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def save_figure(fig, path: Path, dpi: int = 110) -> None:
    """Render to memory, then write atomically (a killed `repro check` never leaves a truncated
    PNG in place of a good one), and close the figure."""
    buf = io.BytesIO()
    fig.savefig(buf, dpi=dpi, format="png")
    plt.close(fig)
    atomic_write_bytes(Path(path), buf.getvalue())


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
    save_figure(fig, path)


def _fit_ylim(ax, values: list[float], pad_frac: float = 0.05) -> None:
    """The y-axis spans every value drawn (nothing clipped), with a small margin."""
    vals = [v for v in values if math.isfinite(v)]
    if vals:
        lo, hi = min(vals), max(vals)
        pad = pad_frac * (hi - lo) if hi > lo else 0.01 * max(abs(hi), 1.0)
        ax.set_ylim(lo - pad, hi + pad)


def arm_curves_figure(curves: dict[str, list[list[tuple[int, float]]]], title: str, path: Path,
                      target: float | None = None, ylabel: str = "validation loss",
                      zoom: bool = True) -> None:
    """Curves per arm (validation loss by default): mean over seeds with a min-max band.

    With ``zoom`` a second panel shows the second half of training, where the arms differ by
    little next to the initial drop; each panel's axes fit every value it shows (the first
    panel all of them), so no curve is clipped."""
    panels = 2 if zoom else 1
    fig, axes = plt.subplots(1, panels, figsize=(7 * panels, 4.5), squeeze=False)
    axes = list(axes[0])
    drawn: list[tuple[list[int], list[float], list[float], list[float]]] = []
    last = 0
    for ax in axes:
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
            line, = ax.plot(steps, mean, label=f"{name} (n={len(runs)} seeds)")
            ax.fill_between(steps, lo, hi, alpha=0.2, color=line.get_color())
            if ax is axes[0]:
                drawn.append((steps, mean, lo, hi))
                last = max(last, steps[-1])
        if target is not None and math.isfinite(target):
            ax.axhline(target, ls="--", color="gray", lw=1, label="target")
        ax.set_xlabel("step")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    extra = [target] if target is not None and math.isfinite(target) else []
    _fit_ylim(axes[0], [v for st, m, lo, hi in drawn for v in (*m, *lo, *hi)] + extra)
    axes[0].set_title(title, fontsize=9)
    axes[0].legend(fontsize=8)
    if zoom and last:
        # the window starts at an evaluated step, so no line enters it from off the y-range
        half = min((x for st, *_ in drawn for x in st if x >= last / 2), default=last)
        axes[1].set_xlim(half, last + 0.02 * max(last - half, 1))
        _fit_ylim(axes[1], [v for st, m, lo, hi in drawn for i, x in enumerate(st) if x >= half
                            for v in (m[i], lo[i], hi[i])] + extra)
        axes[1].set_title(f"second half of training (steps {half}-{last}), y zoomed",
                          fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)


def bar_figure(values: dict[str, float], title: str, ylabel: str, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.bar(list(values), list(values.values()))
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)


def gap_figure(gaps, title: str, path: Path) -> None:
    """A claim's paired val-loss gap vs step (``claims.BudgetGaps``): the mean over seeds, its
    t-based 95% interval as a band, each seed as a thin line, zero and the crossover marked."""
    fig, ax = plt.subplots(figsize=(7, 4))
    steps = gaps.steps
    for vals in gaps.per_seed.values():
        ax.plot(steps, vals, lw=0.7, alpha=0.5, color="gray")
    mean = [iv.mean for iv in gaps.intervals]
    lo = [iv.lo if iv.n >= 2 else iv.mean for iv in gaps.intervals]
    hi = [iv.hi if iv.n >= 2 else iv.mean for iv in gaps.intervals]
    line, = ax.plot(steps, mean, lw=2, label=f"mean over {len(gaps.per_seed)} seeds")
    ax.fill_between(steps, lo, hi, alpha=0.25, color=line.get_color(), label="95% CI")
    ax.axhline(0.0, color="black", lw=0.8)
    if gaps.crossover is not None:
        ax.axvline(gaps.crossover, ls="--", color="tab:red", lw=1,
                   label=f"sign since step {gaps.crossover}")
    for st, _ in gaps.at.values():
        ax.axvline(st, ls=":", color="gray", lw=0.6)
    ax.set_xlabel("step")
    ax.set_ylabel(f"val loss({gaps.minus}) - val loss({gaps.plus})")
    ax.set_title(title + f"\n(> 0: {gaps.plus} ahead; {gaps.trend} over the second half)",
                 fontsize=9)
    # the first evaluations can be 10x the final gap; zoom on the second half's range
    tail = [v for vals in [lo, hi] for st, v in zip(steps, vals) if st >= steps[-1] / 4
            and math.isfinite(v)]
    if tail:
        pad = 0.1 * (max(tail) - min(tail) + 1e-3)
        ax.set_ylim(min(min(tail), 0.0) - pad, max(max(tail), 0.0) + pad)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path)
