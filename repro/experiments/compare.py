"""``repro compare ROUTER[,ROUTER...]``: your routers against the baselines at matched compute.

The comparison is an ``Experiment`` built on the spot (never registered): one arm per router under
test and one per baseline, every MoE arm FLOP-matched per routed token to the scale's dense FFN
unit with ``repro.compute`` (router FLOPs paid for, as in every registered experiment). It trains
through the ordinary runner, so an (arm, seed) whose run key already has a FINISHED run is reused:
the ``dense``, ``top2`` and ``switch`` baselines are exactly ``moe-vs-dense``'s ``dense``,
``top2-e8`` and ``switch-e8-cf1.25`` arms, so a store that ran the positive control trains only
the new arms (tests/experiments/test_compare.py checks the shared run keys).

Baselines (``--against``, default all five):
* ``dense``: the scale's SwiGLU FFN unit;
* ``top2``: softmax top-2 of 8 experts, renormalised gates, dropless, alpha 0.01, z-loss 1e-3;
* ``switch``: Switch top-1 of 8 experts with the paper's capacity (1.25 train / 2.0 eval) [P-SW];
* ``expert_choice``: Expert Choice of 8 experts at capacity factor 2 [P-EC];
* ``deepseekmoe``: 1 shared + 31 routed fine-grained experts, top-3, raw softmax gates, expert
  balance alpha 0.01 [P-DSM] §3 (a quarter-width expert: granularity 4 of the 8-expert layout).
A router under test gets ``--experts`` experts (default 8) of the width that matches the FLOPs.

The verdict "ROUTER beats BASELINE" is decided per pair by the project's verdict engine
(``repro.experiments.stats``, the rule of ``repro.experiments.verdicts``): the gap in final
validation loss, loss(BASELINE) - loss(ROUTER), paired per seed; the paired t outcome of the
per-seed gaps (95% interval, one-sided p-values both ways, zero spread decided
deterministically); the two-sided p-values of all pairs of the command adjusted together by
Benjamini-Hochberg (``stats.bh``, scipy; Holm alongside); a pair is decided at adjusted
p <= 0.05 (``claims.ALPHA``) in the direction of its smaller one-sided p, otherwise it is
inconclusive, with the seeds its interval would need. The family is the command's own: the
registered claims under results/NAME/SCALE are judged apart.

Outputs: ``results/compare/NAME/SCALE/`` (smoke: ``runs/results/compare/NAME/smoke``, never the
clone's results/) with ``leaderboard.md``, ``leaderboard.csv``, ``leaderboard.json`` and
``val_curves.png``, and one MLflow summary run in the experiment ``compare-NAME`` carrying the same
numbers as metrics and tags and the files as artifacts.
"""

from __future__ import annotations

import csv
import io
import json
import math
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path

from repro.compute import ffn_count, model_count, moe_d_expert_for_ffn_flops
from repro.config import ConfigError
from repro.experiments.base import Arm, Experiment
from repro.experiments.scales import preset
from repro.layers.dense_config import DenseFFNConfig
from repro.layers.finedeep_config import FinedeepConfig
from repro.layers.moe_config import MoEConfig
from repro.routers.expert_choice_config import ExpertChoiceRouterConfig
from repro.routers.switch_config import SwitchRouterConfig
from repro.routers.topk_config import TopKRouterConfig
from repro.tracking import names as N

BASELINES = ("dense", "top2", "switch", "expert_choice", "deepseekmoe")
# every built-in method compare can build at the dense unit: the default baselines plus MoNE and
# Finedeep (a name here can also be put under test: `repro compare mone,finedeep --against dense`)
METHODS = (*BASELINES, "mone", "finedeep")
DEFAULT_EXPERTS = 8
VERSION = "1"
FILES = ("leaderboard.md", "leaderboard.csv", "leaderboard.json", "val_curves.png")
M_LOAD = N.routing_metric(N.TRAIN, N.S_MAX_MEAN_LOAD)


@dataclass(frozen=True)
class CompareSpec:
    routers: tuple[str, ...]
    against: tuple[str, ...] = BASELINES
    scale: str = "cpu"
    name: str | None = None  # default: the routers joined by "+"
    experts: int = DEFAULT_EXPERTS

    @property
    def label(self) -> str:
        return self.name or "+".join(self.routers)

    @property
    def experiment(self) -> str:
        return f"compare-{self.label}"


def parse_list(flag: str, text: str | None, allowed: tuple[str, ...] | None = None
               ) -> tuple[str, ...]:
    items = [t.strip() for t in (text or "").split(",")]
    if not text or not all(items):
        raise ConfigError(flag, f"expected comma-separated names, got {text!r}")
    if len(set(items)) != len(items):
        raise ConfigError(flag, f"{text!r} names one twice; list each once")
    for t in items:
        if allowed is not None and t not in allowed:
            import difflib

            close = difflib.get_close_matches(t, allowed, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(flag, f"unknown baseline {t!r}{hint} (allowed: "
                              f"{', '.join(allowed)})")
    return tuple(items)


def _matched(ffn: MoEConfig, target: float, d_model: int) -> MoEConfig:
    """``ffn`` with the expert width whose FFN FLOPs per routed token equal ``target``
    (``repro.compute.moe_d_expert_for_ffn_flops``). Shared experts of the routed width
    (``d_shared`` unset) move with it: then the width whose FLOPs come closest to the target."""
    F = moe_d_expert_for_ffn_flops(target, ffn, d_model)
    if ffn.n_shared == 0 or ffn.d_shared is not None:
        return replace(ffn, d_expert=F)
    cands = [replace(ffn, d_expert=f) for f in range(1, 2 * max(F, ffn.d_expert) + 1)]
    return min(cands, key=lambda c: abs(ffn_count(c, d_model).flops - target))


def method_ffns(scale: str) -> dict[str, object]:
    """The built-in methods' FFN configs at ``scale``, FLOP-matched to its dense unit."""
    p = preset(scale)
    dense = DenseFFNConfig(d_ff=p.d_ff)
    target = ffn_count(dense, p.d_model).flops

    def moe(router, n_experts=DEFAULT_EXPERTS, **kw) -> MoEConfig:
        return _matched(MoEConfig(n_experts=n_experts, d_expert=p.d_ff, router=router, **kw),
                        target, p.d_model)

    return {
        "dense": dense,
        # moe-vs-dense's top2-e8 and switch-e8-cf1.25, field for field (shared run keys)
        "top2": moe(TopKRouterConfig(top_k=2, normalize=True, alpha=0.01, z_loss=1e-3)),
        "switch": moe(SwitchRouterConfig()),
        "expert_choice": moe(ExpertChoiceRouterConfig(capacity_factor=2.0)),
        "deepseekmoe": moe(TopKRouterConfig(top_k=3, normalize=False, alpha=0.01),
                           n_experts=4 * DEFAULT_EXPERTS - 1, n_shared=1),
        # MoNE [S-MoNE]: top-2 of 8 keeping half of each expert's neurons (mone-pruning-curve's
        # rho=0.5), the width derived with the neuron ratio in the FLOPs
        "mone": moe(TopKRouterConfig(top_k=2), neuron_ratio=0.5),
        # Finedeep [S-FD]: the dense unit split into M=2 sub-layers of K=4 sigmoid-gated experts
        # (its gates and norms add FLOPs: the width closest to the unit's FLOPs; K=4 unless the
        # unit is so small that only K=2's finer widths come within the 2% tolerance, as at
        # smoke scale)
        "finedeep": min((FinedeepConfig(d_ff=f, n_sublayers=2, n_experts=k)
                         for k in (4, 2) for f in range(2 * k, p.d_ff + 1, 2 * k)),
                        key=lambda c: (abs(ffn_count(c, p.d_model).flops / target - 1) >= 0.02,
                                       c.n_experts != 4,
                                       abs(ffn_count(c, p.d_model).flops - target))),
    }


def _width(ffn) -> str:
    return f"d_ff={getattr(ffn, 'd_expert', None) or ffn.d_ff}"


DESCRIPTIONS = {
    "dense": "dense SwiGLU FFN unit",
    "top2": "top-2 of 8, renormalised, dropless, alpha 0.01, z-loss 1e-3",
    "switch": "Switch top-1 of 8, capacity 1.25 / 2.0, alpha 0.01, z-loss 1e-3",
    "expert_choice": "Expert Choice of 8, capacity factor 2",
    "deepseekmoe": "1 shared + 31 routed quarter-width experts, top-3, alpha 0.01",
    "mone": "MoNE: top-2 of 8 keeping 50% of each expert's neurons",
    "finedeep": "Finedeep M=2 sub-layers of K sigmoid-gated experts of the dense unit",
}


def build(spec: CompareSpec) -> Experiment:
    """The comparison as an Experiment: routers under test first, then the baselines."""
    from repro.routers import ROUTERS

    p = preset(spec.scale)
    ffns = method_ffns(spec.scale)
    target = ffn_count(ffns["dense"], p.d_model).flops
    clash = [r for r in spec.routers if r in spec.against]
    if clash:
        raise ConfigError("--against", f"{clash[0]} is both a router under test and a baseline; "
                          f"drop it from --against (e.g. --against "
                          f"{','.join(b for b in spec.against if b not in clash) or 'dense'})")
    arms = []
    for name in spec.routers:
        if name not in ROUTERS and name in METHODS:  # a built-in method put under test
            arms.append(Arm(name, p.model(ffns[name]),
                            f"{DESCRIPTIONS[name]} ({_width(ffns[name])})"))
            continue
        cfg = ROUTERS.get(name, field="router").Config()
        try:
            cfg.validate_for(spec.experts)
        except ConfigError as e:
            raise e.prefixed(f"{name} with --experts {spec.experts}") from None
        ffn = _matched(MoEConfig(n_experts=spec.experts, d_expert=p.d_ff, router=cfg), target,
                       p.d_model)
        arms.append(Arm(name, p.model(ffn), f"{name} ({ROUTERS.origin(name)}): {spec.experts} "
                        f"experts of d_ff={ffn.d_expert}"))
    for b in spec.against:
        arms.append(Arm(b, p.model(ffns[b]), f"{DESCRIPTIONS[b]} ({_width(ffns[b])})"))
    return Experiment(
        name=spec.experiment, version=VERSION, scale=spec.scale,
        title=f"{', '.join(spec.routers)} against {', '.join(spec.against)} at matched FLOPs",
        paper="(your router) vs the baselines of docs/references.md",
        arms=tuple(arms), matched="ffn_flops", recipe=p.recipe, data=p.data, seeds=p.seeds,
        # deviations are measured from the baselines' first arm (dense: the unit itself)
        match_groups=((*spec.against, *spec.routers),),
        baseline="dense" if "dense" in spec.against else None,
        notes="repro compare: FLOP-matched per routed token at the scale's dense unit")


# ---------------------------------------------------------------------------------- the verdict
@dataclass
class Pair:
    router: str
    baseline: str
    gaps: list[float]  # loss(baseline) - loss(router) per shared seed: > 0 = router better
    mean: float = math.nan
    lo: float = math.nan
    hi: float = math.nan
    interval: str = ""  # the interval's type (stats.CI_*)
    p_better: float = math.nan  # one-sided: H0 "the router is not better"
    p_worse: float = math.nan  # one-sided: H0 "the router is not worse"
    p: float = math.nan  # two-sided, min(1, 2 min(p_better, p_worse))
    p_adj: float = math.nan  # BH over the command's pairs
    holm: float = math.nan  # Holm over the same pairs (the stricter mark)
    verdict: str = "inconclusive"
    seeds_needed: int | None = None


def decide_pairs(pairs: list[Pair]) -> list[Pair]:
    """The project's verdict engine applied to the pairs of one command
    (``repro.experiments.stats`` / ``verdicts.adjust_scale``): per pair the paired t outcome on
    the per-seed gaps (``stats.t_outcome``; zero spread is decided deterministically); the
    two-sided p-values adjusted over the pairs by Benjamini-Hochberg (``stats.bh``, scipy) with
    Holm alongside; a pair is decided at adjusted p <= ALPHA in the direction of its smaller
    one-sided p, otherwise inconclusive with the seeds the interval would need."""
    from repro.experiments import stats as S
    from repro.experiments.claims import ALPHA

    outcomes = []
    for pr in pairs:
        o = S.t_outcome(pr.gaps, 0.0, greater=True)
        outcomes.append(o)
        pr.mean, pr.lo, pr.hi, pr.interval = o.estimate, o.lo, o.hi, o.interval
        pr.p_better, pr.p_worse, pr.p = o.p_for, o.p_against, o.p
    testable = [i for i, pr in enumerate(pairs) if not math.isnan(pr.p)]
    ps = [pairs[i].p for i in testable]
    for i, a, h in zip(testable, S.bh(ps), S.holm(ps)):
        pairs[i].p_adj, pairs[i].holm = a, h
    for pr, o in zip(pairs, outcomes):
        if not math.isnan(pr.p_adj) and pr.p_adj <= ALPHA and o.crossed:
            pr.verdict = "beats" if o.p_for <= o.p_against else "does not beat (worse)"
        else:
            pr.verdict = "inconclusive"
            iv = S.Interval(o.n, o.estimate, o.sd, o.lo, o.hi)
            d = S.effect_size(iv, 0.0) if o.n >= 2 else math.nan
            pr.seeds_needed = S.seeds_needed(d) if math.isfinite(d) and d else None
    return pairs


@dataclass
class ArmRow:
    arm: str
    role: str  # "router" or "baseline"
    seeds: int
    loss: float
    lo: float
    hi: float
    tokens_per_s: float
    activated: float
    total: int
    flops: float
    drop: float
    max_mean_load: float
    origin: str = ""


@dataclass
class Leaderboard:
    spec: CompareSpec
    arms: list[ArmRow]
    pairs: list[Pair]
    seeds: list[int]
    trained: int = 0
    reused: int = 0
    wall_s: float = 0.0
    cpu: str = ""
    devices: list[str] = field(default_factory=list)


def _mean(xs: list[float]) -> float:
    xs = [x for x in xs if x is not None and math.isfinite(x)]
    return sum(xs) / len(xs) if xs else math.nan


def leaderboard(exp: Experiment, spec: CompareSpec, results,
                overrides: list[str] | None = None) -> Leaderboard:
    from repro.experiments.stats import t_interval
    from repro.routers import ROUTERS

    rows = []
    for a in exp.arms:
        recs = [r for (arm, _), r in sorted(results.runs.items()) if arm == a.name]
        iv = t_interval([r.final_val_loss for r in recs])
        c = model_count(exp.run_config(a, overrides).model, exp.data.seq_len)
        routed = a.name in spec.routers
        rows.append(ArmRow(
            a.name, "router" if routed else "baseline", len(recs), iv.mean, iv.lo, iv.hi,
            _mean([r.metrics.get(N.M_TOKENS_PER_S) for r in recs]), c.activated_params,
            c.total_params, c.flops, _mean([r.metrics.get(N.M_DROP_MEAN) for r in recs]),
            _mean([r.metrics.get(M_LOAD) for r in recs]),
            (ROUTERS.origin(a.name) if a.name in ROUTERS else "built-in") if routed
            else "baseline"))
    from repro.experiments.claims import paired_diffs

    pairs = [Pair(r, b, paired_diffs(results, b, r, N.M_FINAL_VAL_LOSS))
             for r in spec.routers for b in spec.against]
    seeds = sorted({s for (_, s) in results.runs})
    devices = sorted({r.trained_on for r in results.runs.values() if r.trained_on})
    return Leaderboard(spec, rows, decide_pairs(pairs), seeds, devices=devices)


# ------------------------------------------------------- as an experiment of --jobs children
ENV = "REPRO_COMPARE"  # the comparisons of the parent command, JSON: children rebuild them


def _factory(spec: CompareSpec):
    def make(scale: str) -> Experiment:
        return build(replace(spec, scale=scale))

    return make


def register(spec: CompareSpec) -> bool:
    """Register the comparison as an experiment of this process; True if it was not yet."""
    from repro.experiments.base import EXPERIMENTS

    if spec.experiment in EXPERIMENTS:
        return False
    EXPERIMENTS.register(spec.experiment, _factory(spec))
    return True


@contextmanager
def for_children(spec: CompareSpec):
    """While the block runs, the comparison is an experiment of this process and
    ``REPRO_COMPARE`` carries it to the children it starts (``repro run`` children of ``--jobs``
    train one (arm, seed) each by experiment name); both are undone afterwards."""
    import os

    from repro.experiments.base import EXPERIMENTS

    added = register(spec)
    old = os.environ.get(ENV)
    form = {"routers": list(spec.routers), "against": list(spec.against), "scale": spec.scale,
            "name": spec.name, "experts": spec.experts}
    os.environ[ENV] = json.dumps([*json.loads(old or "[]"), form])
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(ENV, None)
        else:
            os.environ[ENV] = old
        if added:
            EXPERIMENTS.unregister(spec.experiment)


def register_from_env() -> None:
    """In a child process: the parent's comparisons (``REPRO_COMPARE``) as experiments."""
    import os

    for form in json.loads(os.environ.get(ENV) or "[]"):
        register(CompareSpec(routers=tuple(form["routers"]), against=tuple(form["against"]),
                             scale=form["scale"], name=form["name"], experts=form["experts"]))


# ------------------------------------------------------------------------------------- outputs
def output_dir(spec: CompareSpec) -> Path:
    """results/compare/NAME/SCALE; smoke outputs go under the runs folder, never into the
    clone's results/ (smoke runs are not results)."""
    from repro.paths import results_dir, runs_dir

    root = runs_dir() / "results" if spec.scale == "smoke" else results_dir()
    return root / "compare" / spec.label / spec.scale


def _f(x: float, digits: int = 4) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def _count(x: float) -> str:
    from repro.compute import fmt_count

    return fmt_count(x)


def markdown(lb: Leaderboard, command: str) -> str:
    s = lb.spec
    lines = [f"# Leaderboard: {', '.join(s.routers)} vs {', '.join(s.against)} [{s.scale}]", "",
             f"Command: `{command}`  ",
             f"Seeds: {', '.join(map(str, lb.seeds))}; runs trained now: {lb.trained}, reused "
             f"by run key: {lb.reused}; wall time of this command: {lb.wall_s:.0f} s.  ",
             f"Machine: {lb.cpu}; runs trained on: {', '.join(lb.devices) or 'n/a'}.  ",
             "Arms are FLOP-matched per routed token at the scale's dense FFN unit "
             "(repro.compute; router FLOPs included).", "",
             "| arm | from | seeds | final val loss | 95% CI | tokens/s | activated | total | "
             "FLOPs/tok | drop rate | max/mean load |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(lb.arms, key=lambda r: (math.isnan(r.loss), r.loss)):
        lines.append(f"| {r.arm} | {r.origin} | {r.seeds} | {_f(r.loss)} | [{_f(r.lo)}, "
                     f"{_f(r.hi)}] | {_f(r.tokens_per_s, 0)} | {_count(r.activated)} | "
                     f"{_count(r.total)} | {_count(r.flops)} | {_f(r.drop, 3)} | "
                     f"{_f(r.max_mean_load, 2)} |")
    lines += ["", "Paired gap = loss(baseline) - loss(router), per seed (positive: the router "
              "is better); paired t per pair (repro.experiments.stats), two-sided p adjusted over "
              f"the {len(lb.pairs)} comparisons of this command by Benjamini-Hochberg (Holm "
              "alongside); decided at adjusted p <= 0.05 (claims.ALPHA) in the direction of "
              "the smaller one-sided p. This family is the command's own: the registered claims in "
              "results/NAME/SCALE are judged apart.", "",
              "| router | baseline | gap (mean) | 95% CI | p | p adj. (BH) | Holm | verdict |",
              "|---|---|---|---|---|---|---|---|"]
    for p in lb.pairs:
        more = f" (~{p.seeds_needed} seeds needed)" if p.verdict == "inconclusive" and \
            p.seeds_needed else ""
        ci = "deterministic" if p.interval == "deterministic (zero spread)" else \
            f"[{_f(p.lo)}, {_f(p.hi)}]"
        lines.append(f"| {p.router} | {p.baseline} | {_f(p.mean, 4)} | {ci} | {_f(p.p, 3)} | "
                     f"{_f(p.p_adj, 3)} | {_f(p.holm, 3)} | {p.verdict}{more} |")
    lines += ["", "![validation loss, mean over seeds with min-max band](val_curves.png)", ""]
    return "\n".join(lines)


def as_json(lb: Leaderboard) -> dict:
    from repro.experiments.claims import ALPHA

    def clean(x):
        return None if isinstance(x, float) and not math.isfinite(x) else x

    return {"routers": list(lb.spec.routers), "against": list(lb.spec.against),
            "scale": lb.spec.scale, "experts": lb.spec.experts, "seeds": lb.seeds,
            "trained": lb.trained, "reused": lb.reused, "wall_s": lb.wall_s, "cpu": lb.cpu,
            "devices": lb.devices, "adjustment": "Benjamini-Hochberg over the pairs (Holm "
            "alongside)", "alpha": ALPHA,
            "arms": [{k: clean(v) for k, v in vars(r).items()} for r in lb.arms],
            "pairs": [{k: ([clean(g) for g in v] if k == "gaps" else clean(v))
                       for k, v in vars(p).items()} for p in lb.pairs]}


def write(lb: Leaderboard, results, out: Path, command: str) -> list[Path]:
    from repro.experiments.plots import arm_curves_figure
    from repro.paths import staged_dir

    with staged_dir(out, owned=lambda name: name in FILES) as stage:
        (stage / "leaderboard.md").write_text(markdown(lb, command))
        (stage / "leaderboard.json").write_text(json.dumps(as_json(lb), indent=1) + "\n")
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["arm", "from", "seeds", "final_val_loss", "ci95_lo", "ci95_hi",
                    "tokens_per_s", "activated_params", "total_params", "flops_per_token",
                    "drop_rate", "max_mean_load"] + [f"gap_vs_{b}" for b in lb.spec.against]
                   + [f"verdict_vs_{b}" for b in lb.spec.against])
        by = {(p.router, p.baseline): p for p in lb.pairs}
        for r in lb.arms:
            gaps = [by[(r.arm, b)].mean if (r.arm, b) in by else "" for b in lb.spec.against]
            verdicts = [by[(r.arm, b)].verdict if (r.arm, b) in by else ""
                        for b in lb.spec.against]
            w.writerow([r.arm, r.origin, r.seeds, r.loss, r.lo, r.hi, r.tokens_per_s,
                        r.activated, r.total, r.flops, r.drop, r.max_mean_load, *gaps,
                        *verdicts])
        (stage / "leaderboard.csv").write_text(buf.getvalue())
        curves = {a.arm: [rec.val_curve for (arm, _), rec in sorted(results.runs.items())
                          if arm == a.arm] for a in lb.arms}
        arm_curves_figure(curves, f"{lb.spec.experiment} [{lb.spec.scale}]: validation loss "
                          "(mean over seeds, min-max band)", stage / "val_curves.png")
    return [out / f for f in FILES]


def log_summary(exp: Experiment, lb: Leaderboard, uri: str, files: list[Path],
                text: str) -> str:
    """One MLflow summary run in the comparison's experiment: per arm and per pair metrics,
    verdict tags, the leaderboard as the run's description, the files as artifacts."""
    from repro.tracking import store as ts
    from repro.tracking.lifecycle import tracked_run

    c = ts.client(uri)
    exp_id = ts.ensure_experiment(uri, exp.name)
    with tracked_run(c, exp_id, run_name=ts.run_name("leaderboard", exp.scale),
                     tags={ts.T_ROLE: ts.ROLE_SUMMARY, ts.T_EXPERIMENT: exp.name,
                           ts.T_VERSION: exp.version, ts.T_SCALE: exp.scale,
                           ts.T_GIT: ts.git_sha(), ts.T_NOTE: text}) as run:
        for r in lb.arms:
            for key, v in (("final_val_loss", r.loss), ("final_val_loss_ci_lo", r.lo),
                           ("final_val_loss_ci_hi", r.hi), ("tokens_per_s", r.tokens_per_s),
                           ("activated_params", r.activated), ("total_params", r.total),
                           ("flops_per_token", r.flops), ("drop_rate", r.drop),
                           ("max_mean_load", r.max_mean_load)):
                if v is not None and math.isfinite(v):
                    c.log_metric(run.run_id, f"arm/{r.arm}/{key}", float(v))
        for p in lb.pairs:
            c.set_tag(run.run_id, f"verdict.{p.router}-beats-{p.baseline}", p.verdict)
            if math.isfinite(p.mean):
                c.log_metric(run.run_id, f"gap/{p.router}-vs-{p.baseline}", p.mean)
        for f in files:
            c.log_artifact(run.run_id, str(f))
        return run.run_id


def run_compare(spec: CompareSpec, *, uri: str | None = None, overrides: list[str] | None = None,
                seeds: list[int] | None = None, progress: bool = True, force: bool = False,
                jobs: int = 1, threads: int | None = None, command: str = "", echo=print):
    """Train what is missing, decide every pair, write the leaderboard; returns
    ``(Leaderboard, output folder)``."""
    from repro.experiments.check import collect
    from repro.experiments.options import RunOptions
    from repro.experiments.resolve import prepare_data
    from repro.experiments.runner import run_experiment
    from repro.machine import cpu_model
    from repro.tracking import store as ts

    uri = ts.resolve_uri(uri)
    exp = build(spec)
    overrides = list(overrides or [])
    t0 = time.perf_counter()
    opts = RunOptions(overrides=overrides, uri=uri, progress=progress, force=force, echo=echo,
                      jobs=jobs or 1, threads=threads)
    with for_children(spec) if opts.jobs > 1 else nullcontext():  # children find it by name
        outcomes = run_experiment(exp, opts, seeds=seeds)
    wall = time.perf_counter() - t0
    dm = prepare_data(exp.run_config(exp.arms[0], overrides), 0)
    results = collect(exp, uri, overrides, seeds or list(exp.seeds), dm)
    lb = leaderboard(exp, spec, results, overrides)
    lb.trained = sum(o.status == "trained" for o in outcomes)
    lb.reused = sum(o.status == "reused" for o in outcomes)
    lb.wall_s, lb.cpu = wall, cpu_model()
    out = output_dir(spec)
    files = write(lb, results, out, command)
    log_summary(exp, lb, uri, files, (out / "leaderboard.md").read_text())
    return lb, out
