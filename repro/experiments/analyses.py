"""Eval-time analyses attached to experiments and run by ``repro check``: this module picks the
runs, names the metrics and draws the plots; the measurements are the studies of
``repro.experiments.studies``.

Each factory returns ``fn(exp, results, ctx) -> list[Path]``: it loads the final weights of the
relevant runs, runs a study from ``repro.experiments.studies``, stores per-run numbers in
``RunRecord.metrics`` (so claims can read them) and writes plots into ``ctx.out``. ``fn.arms``
and ``fn.metrics`` declare the arms it studies and the metric names it adds to their records
(``Experiment.validate`` refuses a claim on a metric nothing produces).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from repro.experiments.claims import Results, mean_std
from repro.tracking import names as N


@dataclass
class AnalysisContext:
    """What ``repro check`` hands every analysis: the validation data and the folder for plots."""

    batches: list  # validation (x, y) batches
    out: Path


def _declare(run, arms, metrics=()):
    """Attach what an analysis studies and adds: ``run.arms``, ``run.metrics``."""
    run.arms, run.metrics = tuple(arms), tuple(metrics)
    return run


def _models(results: Results, arms):
    from repro.experiments import studies as S  # torchmetrics: loaded when a study runs
    from repro.lit.checkpoint import CheckpointError

    for (arm, seed), rec in sorted(results.runs.items()):
        if arm not in arms:
            continue
        if not rec.weights or not Path(rec.weights).exists():
            # never a figure silently short of a run: the store lost (or never had) its weights
            raise CheckpointError(f"the final weights of {arm} seed {seed} (run "
                                  f"{rec.run_id[:8]}) are not at {rec.weights or '(no tag)'}: "
                                  "a store copied or moved without its checkpoints/ folder? "
                                  "copy it along, or retrain that run with `repro run "
                                  f"EXPERIMENT --arm {arm} --seeds {seed} --force`")
        yield arm, seed, rec, S.load_model(rec.config, rec.weights)


def _save(fig, ax, path: Path, xlabel: str, ylabel: str, title: str | None = None,
          legend_size: int = 8, grid: bool = True) -> Path:
    """Label, legend, grid, save (dpi 110) and close one figure; returns ``path``."""
    from repro.experiments.plots import save_figure

    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=9)
    if grid:
        ax.grid(alpha=0.3)
    ax.legend(fontsize=legend_size)
    fig.tight_layout()
    save_figure(fig, path)
    return path


def _curve_plot(per_arm: dict[str, list[dict[float, float]]], xlabel: str, ylabel: str,
                title: str, path: Path, logx: bool = False, invert: bool = False) -> Path:
    from repro.experiments.plots import plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for arm, curves in per_arm.items():
        xs = sorted(curves[0])
        ms = [mean_std([c[x] for c in curves]) for x in xs]
        ax.errorbar(xs, [m for m, _ in ms], yerr=[0 if math.isnan(s) else s for _, s in ms],
                    marker="o", ms=3, capsize=2, label=f"{arm} (n={len(curves)})")
    if logx:
        ax.set_xscale("log")
    if invert:
        ax.invert_xaxis()
    return _save(fig, ax, path, xlabel, ylabel, title)


def pruning(arms: tuple[str, ...], ratios=(1.0, .8, .6, .5, .4, .3, .2, .1, .05),
            score: str = "silu"):
    """MoNE training-free pruning curve: metrics prune_loss@rho and prune_delta@rho."""

    def run(exp, results: Results, ctx: AnalysisContext) -> list[Path]:
        from repro.experiments import studies as S  # lazy: torchmetrics
        per_arm: dict[str, list[dict[float, float]]] = {}
        for arm, _seed, rec, model in _models(results, arms):
            curve = S.pruning_curve(model, ctx.batches, ratios, score)
            base = curve[1.0] if 1.0 in curve else S.eval_loss(model, ctx.batches)
            for rho, v in curve.items():
                rec.metrics[N.prune_loss_metric(rho)] = v
                rec.metrics[N.prune_delta_metric(rho)] = v - base
            per_arm.setdefault(arm, []).append({r: v - base for r, v in curve.items()})
        if not per_arm:
            return []
        return [_curve_plot(per_arm, "kept neuron ratio rho", "val loss increase vs rho=1",
                            f"{exp.name}: training-free neuron top-k pruning",
                            ctx.out / "pruning_curve.png", invert=True)]

    return _declare(run, arms, [m(r) for r in ratios
                                for m in (N.prune_loss_metric, N.prune_delta_metric)])


def expert_masking(arms: tuple[str, ...], fracs=(0.0, 1 / 16, 1 / 8, 1 / 4)):
    def run(exp, results: Results, ctx: AnalysisContext) -> list[Path]:
        from repro.experiments import studies as S  # lazy: torchmetrics
        per_arm: dict[str, list[dict[float, float]]] = {}
        for arm, _seed, rec, model in _models(results, arms):
            curve = S.expert_masking_curve(model, ctx.batches, fracs)
            for r, v in curve.items():
                rec.metrics[N.mask_delta_metric(r)] = v - curve[0.0]
            per_arm.setdefault(arm, []).append({r: v - curve[0.0] for r, v in curve.items()})
        if not per_arm:
            return []
        return [_curve_plot(per_arm, "share of top routed experts disabled", "val loss increase",
                            f"{exp.name}: disabling top routed experts",
                            ctx.out / "expert_masking.png")]

    return _declare(run, arms, [N.mask_delta_metric(r) for r in fracs])


def shared_knockout(arm: str, ks: tuple[int, ...] = ()):
    """Drop the shared expert (+1 routed) and vary the active routed count ([P-DSM] §4.5)."""

    def run(exp, results: Results, ctx: AnalysisContext) -> list[Path]:
        from repro.experiments import studies as S  # lazy: torchmetrics
        per_arm: dict[str, list[dict[float, float]]] = {}
        for a, _seed, rec, model in _models(results, (arm,)):
            base = S.eval_loss(model, ctx.batches)
            rec.metrics[N.M_DROP_SHARED_DELTA] = S.drop_shared(model, ctx.batches) - base
            if ks:
                curve = S.vary_active(model, ctx.batches, ks)
                for k, v in curve.items():
                    rec.metrics[N.active_loss_metric(k)] = v
                per_arm.setdefault(a, []).append({float(k): v for k, v in curve.items()})
        if not per_arm:
            return []
        return [_curve_plot(per_arm, "activated routed experts (no retraining)", "val loss",
                            f"{exp.name}: varying the active routed count",
                            ctx.out / "active_count.png")]

    return _declare(run, (arm,), [N.M_DROP_SHARED_DELTA, *map(N.active_loss_metric, ks)])


def sparsity(arms: tuple[str, ...]):
    """NSAR(tau) and activation histograms: metrics nsar@tau, act_mean_abs."""

    def run(exp, results: Results, ctx: AnalysisContext) -> list[Path]:
        import torch  # lazy: defining experiments must not load torch

        from repro.experiments import studies as S  # lazy: torchmetrics
        from repro.experiments.plots import plt

        per_arm: dict[str, list[dict[float, float]]] = {}
        hists: dict[str, list] = {}
        edges = None
        for arm, _seed, rec, model in _models(results, arms):
            r = S.activation_sparsity(model, ctx.batches)
            curve = {}
            for k, v in r["mean"].items():
                if k.startswith("nsar_"):
                    tau = float(k[5:])
                    rec.metrics[N.nsar_metric(tau)] = v
                    curve[tau] = v
            rec.metrics[N.M_ACT_MEAN_ABS] = r["mean"]["mean_abs"]
            per_arm.setdefault(arm, []).append(curve)
            hists.setdefault(arm, []).append(r["hist"])
            edges = r["edges"]
        if not per_arm:
            return []
        files = [_curve_plot(per_arm, "threshold tau", "NSAR(tau) = P(|a| > tau)",
                             f"{exp.name}: non-sparse activation rate",
                             ctx.out / "nsar.png", logx=True)]
        fig, ax = plt.subplots(figsize=(6, 4))
        centers = [(a + b) / 2 for a, b in zip(edges[:-1], edges[1:])]
        for arm, hs in hists.items():
            tot = torch.tensor(hs).sum(0)
            ax.plot(centers, (tot / tot.sum()).tolist(), label=arm)
        ax.set_yscale("log")
        return files + [_save(fig, ax, ctx.out / "activation_hist.png",
                              "FFN gate activation SiLU(zW_g) (clamped to [-1, 1])", "fraction")]

    return _declare(run, arms, [*map(N.nsar_metric, N.NSAR_TAUS), N.M_ACT_MEAN_ABS])


def routing_load(arms: tuple[str, ...]):
    """Per-expert load on validation data (sorted, normalised), pooled over layers and seeds."""

    def run(exp, results: Results, ctx: AnalysisContext) -> list[Path]:
        import torch  # lazy: defining experiments must not load torch

        from repro.experiments.plots import plt

        loads: dict[str, list[torch.Tensor]] = {}
        for arm, _seed, _rec, model in _models(results, arms):
            with torch.no_grad():
                tot = None
                for x, _ in ctx.batches:
                    out = model(x)
                    for st in out.stats:
                        if "load" in st:
                            tot = st["load"].clone() if tot is None else tot + st["load"]
            if tot is not None:
                loads.setdefault(arm, []).append(tot / tot.mean())
        if not loads:
            return []
        fig, ax = plt.subplots(figsize=(6, 4))
        for arm, ls in loads.items():
            srt = torch.stack([l.sort(descending=True).values for l in ls]).mean(0)
            ax.plot(range(1, len(srt) + 1), srt.tolist(), marker=".", label=arm)
        ax.axhline(1.0, color="gray", ls="--", lw=1)
        ax.set_yscale("log")
        return [_save(fig, ax, ctx.out / "load_hist.png", "expert rank (by load)",
                      "load / mean load (val)", f"{exp.name}: expert load distribution",
                      legend_size=7)]

    return _declare(run, arms)


def experts_per_token(arms: tuple[str, ...]):
    """Experts-per-token histogram from the logged validation routing metrics (Expert Choice)."""
    bins = N.EPT_BINS

    def run(exp, results: Results, ctx: AnalysisContext) -> list[Path]:
        import torch  # lazy: defining experiments must not load torch

        from repro.experiments.plots import plt

        per_arm: dict[str, list[list[float]]] = {}
        for (arm, _seed), rec in sorted(results.runs.items()):
            if arm not in arms:
                continue
            fr = [rec.metrics.get(N.ept_metric(b), math.nan) for b in bins]
            if any(math.isnan(f) for f in fr):
                continue
            rec.metrics[N.M_EPT_3_4] = fr[3] + fr[4]
            rec.metrics[N.M_EPT_1_2] = fr[1] + fr[2]
            rec.metrics[N.M_EPT_GT4] = fr[5]
            rec.metrics[N.M_EPT_0] = fr[0]
            per_arm.setdefault(arm, []).append(fr)
        if not per_arm:
            return []
        fig, ax = plt.subplots(figsize=(6, 4))
        w = 0.8 / len(per_arm)
        for i, (arm, frs) in enumerate(per_arm.items()):
            mean = torch.tensor(frs).mean(0).tolist()
            ax.bar([j + i * w for j in range(len(bins))], mean, width=w, label=arm)
        ax.set_xticks([j + 0.4 - w / 2 for j in range(len(bins))], ["0", "1", "2", "3", "4", ">4"])
        return [_save(fig, ax, ctx.out / "experts_per_token.png", "experts per token",
                      "fraction of tokens (val)", grid=False)]

    return _declare(run, arms, [N.M_EPT_0, N.M_EPT_1_2, N.M_EPT_3_4, N.M_EPT_GT4])


def gate_mass(arms: tuple[str, ...]):
    """How much of each token's expert output survives the gate: the mean over validation
    tokens of sum_i g_i(x) over the experts a token was dispatched to (``gate_mass``, averaged
    over layers). 1.0 for renormalised top-k; for Switch top-1 it is the mean top-1 probability
    p_e(x) [P-SW Eq. 2], ~1/E while the router is near-uniform, so the expert's contribution to
    the residual stream is scaled down by that factor; drops lower it further."""

    def run(exp, results: Results, ctx: AnalysisContext) -> list[Path]:
        import torch  # lazy: defining experiments must not load torch

        from repro.experiments import studies as S
        from repro.experiments.plots import plt

        per_arm: dict[str, list[float]] = {}
        for arm, _seed, rec, model in _models(results, arms):
            masses: list[float] = []

            def hook(_mod, inputs, routing, masses=masses):
                n = inputs[0].shape[0]  # N tokens routed in this call
                masses.append(float(routing.weight.detach().float().sum()) / max(n, 1))

            handles = [b.router.register_forward_hook(hook) for b in S.moe_blocks(model)]
            try:
                model.eval()
                with torch.no_grad():
                    for x, _ in ctx.batches:
                        model(x)
            finally:
                for h in handles:
                    h.remove()
            if masses:
                rec.metrics[N.M_GATE_MASS] = sum(masses) / len(masses)
                per_arm.setdefault(arm, []).append(rec.metrics[N.M_GATE_MASS])
        if not per_arm:
            return []
        fig, ax = plt.subplots(figsize=(5, 3.5))
        names = list(per_arm)
        ax.bar(names, [sum(v) / len(v) for v in per_arm.values()],
               label="mean over seeds")
        for i, v in enumerate(per_arm.values()):
            ax.plot([i] * len(v), v, "k.", label="seeds" if i == 0 else None)
        return [_save(fig, ax, ctx.out / "gate_mass.png", "arm",
                      "mean gate mass per token (val)", f"{exp.name}: how much expert output "
                      "passes the gate", grid=False)]

    return _declare(run, arms, [N.M_GATE_MASS])
