"""``repro check``: read finished runs back from MLflow, evaluate claims, write results/.

Outputs go to ``results/<experiment>/<scale>/``: ``claims.md`` (claim, paper figure, measured
figure, verdict, rule), ``claims.json`` (read by ``repro report``), ``summary.csv`` (one row per
arm x seed) and PNG plots; the same files are logged as artifacts of one MLflow "summary" run.
Runs are found by run key (``repro.experiments.resolve``), the same identity training records.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

from repro.config import to_dict
from repro.errors import UserError
from repro.experiments.base import Experiment
from repro.experiments.claims import ClaimResult, Results, RunRecord, mean_std
from repro.experiments.resolve import ResolvedRun, prepare_data, resolve_run
from repro.experiments.verdicts import RULE_ID as VERDICT_RULE_ID  # noqa: F401 (claims.json)
from repro.experiments.verdicts import machine_label
from repro.machine import cpu_label
from repro.paths import atomic_write_text, results_dir, staged_dir
from repro.tracking import store as ts

SUMMARY_METRICS = (ts.M_VAL_PPL, ts.M_TOKENS_PER_S,
                   *(ts.routing_metric(ts.VAL, s) for s in (ts.S_LOAD_CV, ts.S_MAX_MEAN_LOAD,
                                                             ts.S_IMPORTANCE_CV, ts.S_DROP_FRAC)),
                   ts.M_DROP, ts.M_DROP_MEAN,
                   *(ts.routing_metric(ts.VAL, s) for s in (ts.S_ENTROPY, ts.S_Z)),
                   ts.M_MAX_SPIKE, ts.M_DIVERGED)


def is_check_output(name: str) -> bool:
    """Whether a file of ``results/<experiment>/<scale>/`` is written by ``repro check`` (a
    check replaces all of these; other files there, e.g. sweep summaries, are kept)."""
    return name in ("claims.md", "claims.json", "summary.csv", "curves.csv") or \
        name.endswith(".png")


class MissingRunsError(UserError, RuntimeError):
    """No finished runs of the experiment at this scale: `repro run` it first."""


class IncompleteGridError(UserError, ValueError):
    """``repro check`` found only some (arm, seed) runs and would replace a complete result."""


def extra_seeds(exp: Experiment, uri: str) -> list[int]:
    """Seeds beyond the experiment's own that have finished training runs at its scale (in any
    MLflow experiment: shared arms are tagged with the experiment that trained them first);
    `repro check` tries them, so an experiment grown by `repro run --seeds auto` is checked on
    every seed it has."""
    flt = f"tags.`{ts.T_SCALE}` = '{exp.scale}' and tags.`{ts.T_ROLE}` = '{ts.ROLE_TRAIN}'"
    found = {int(r.data.tags[ts.T_SEED]) for r in ts.search_runs(uri, None, flt,
                                                                  statuses=("FINISHED",))
             if (r.data.tags.get(ts.T_SEED) or "").isdigit()}
    return sorted(found - set(exp.seeds))


def missing_runs(exp: Experiment, results: Results, seeds: list[int] | None) -> list:
    """The (arm, seed) pairs of the grid with no finished run."""
    seeds = list(seeds) if seeds else list(exp.seeds)
    return [(a.name, s) for a in exp.arms for s in seeds if (a.name, s) not in results.runs]


def describe_missing(missing: list) -> str:
    """``dense seeds 1,2; switch-e4 seed 0``."""
    by_arm: dict[str, list[int]] = {}
    for a, s in missing:
        by_arm.setdefault(a, []).append(s)
    return "; ".join(f"{a} seed{'s' if len(v) > 1 else ''} {','.join(map(str, v))}"
                     for a, v in by_arm.items())


def refuse_incomplete_fast(exp: Experiment, uri: str, seeds: list[int] | None,
                           out: Path) -> None:
    """Before any data, model or MLflow import: count the grid's finished runs by their tags
    (``ts.finished_train_runs``) and raise the refusal ``evaluate_claims`` would raise after
    seconds of loading: IncompleteGridError when some runs are missing and ``out`` holds a
    complete result. Only when that is certain: the full check finds runs by run key in any
    MLflow experiment (a run shared with another experiment may carry another arm name), so
    a missing (arm, seed) whose seed has finished runs at this scale in another experiment,
    or a grid with no run at all, is left to the full check."""
    runs = ts.finished_train_runs(uri, exp.scale)
    have = {(a, s) for e, a, s in runs if e == exp.name}
    elsewhere = {s for e, _, s in runs if e != exp.name}
    grid = [(a.name, s) for a in exp.arms for s in (seeds or exp.seeds)]
    missing = [k for k in grid if k not in have]
    if not missing or len(missing) == len(grid) or any(s in elsewhere for _, s in missing):
        return
    if _holds_complete_result(out):
        raise IncompleteGridError(
            f"{len(missing)} of {len(grid)} runs of {exp.name} [{exp.scale}] have not finished "
            f"({describe_missing(missing)}); {out} holds a complete result that this check "
            f"would replace: run `repro run {exp.name} --scale {exp.scale}` first (it trains "
            "only the missing runs), or pass --partial to overwrite it")


def _holds_complete_result(out: Path) -> bool:
    import json

    try:
        return not json.loads((out / "claims.json").read_text()).get("missing")
    except (OSError, ValueError):
        return False


def collect(exp: Experiment, uri: str, overrides: list[str] | None = None,
            seeds: list[int] | None = None, dm=None) -> Results:
    """Finished runs of every (arm, seed) of the experiment, found by run key."""
    overrides = list(overrides or [])
    seeds = list(seeds) if seeds else list(exp.seeds)
    runs: dict[tuple[str, int], RunRecord] = {}
    results_notes: list[str] = []
    for arm in exp.arms:
        for seed in seeds:
            if dm is None:
                dm = prepare_data(exp.run_config(arm, overrides), seed)
            rr = resolve_run(exp, arm, seed, overrides, dm)
            run = rr.config
            found = ts.find_finished(uri, None, rr.key)
            if found is None:
                # fallback: same experiment version, arm, seed, scale and data, but a config
                # whose serialized form changed (e.g. a new field with a default was added)
                found = _find_by_tags(uri, rr)
                if found is None:
                    continue
                results_notes.append(f"{arm.name}/seed {seed}: matched by tags (run "
                                     f"{found.info.run_id[:8]}, config hash "
                                     f"{found.data.tags.get(ts.T_HASH)}), not by run key")
            curve = ts.metric_history(uri, found.info.run_id, ts.M_VAL_LOSS)
            metrics = dict(found.data.metrics)
            warmup = run.train.warmup_steps
            metrics.update(spike_metrics(ts.metric_history(uri, found.info.run_id,
                                                           ts.M_TRAIN_LOSS), warmup))
            drops = ts.metric_history(uri, found.info.run_id, ts.M_DROP) if ts.M_DROP in metrics \
                else []
            if drops:
                metrics[ts.M_DROP_MEAN] = sum(v for _, v in drops) / len(drops)
            tags = found.data.tags
            mach = {"cpu_model": tags.get(ts.T_CPU_MODEL, ""),
                    "cpu_capability": tags.get(ts.T_CPU_CAPABILITY, ""),
                    "torch": tags.get(ts.T_TORCH, ""), "threads": tags.get(ts.T_THREADS, "")}
            runs[(arm.name, seed)] = RunRecord(
                arm.name, seed, found.info.run_id, curve, metrics, to_dict(run),
                ts.weights_path(tags.get(ts.T_WEIGHTS)), tags.get(ts.T_DEVICE), drops,
                machine=machine_label(mach), machine_tags=mach)
    return Results(runs, notes=results_notes)


# a "loss spike": train loss above 2x its best so far [ours, references.md §ST-MoE]
SPIKE_RATIO = 2.0
RECOVER_RATIO = 1.5  # ... that has not come back within 1.5x of that best by the end [ours]


def spike_metrics(train: list[tuple[int, float]], warmup: int) -> dict[str, float]:
    """Derived training-stability metrics from a logged train-loss curve [(step, loss)].

    ``train/max_spike``: max over logged steps after warmup of loss / (lowest loss before it);
    ``train/diverged``: 1.0 when that ratio exceeds SPIKE_RATIO and the final loss is still above
    RECOVER_RATIO x the lowest loss (references.md §ST-MoE: "a loss spike > 2x that does not
    recover"), or the curve ends non-finite; else 0.0.
    """
    pts = [(s, v) for s, v in train if s >= warmup]
    if len(pts) < 2:
        return {}
    best, worst = math.inf, 1.0
    for _, v in pts:
        if not math.isfinite(v):
            return {ts.M_MAX_SPIKE: math.inf, ts.M_DIVERGED: 1.0}
        if math.isfinite(best):
            worst = max(worst, v / best)
        best = min(best, v)
    diverged = worst > SPIKE_RATIO and pts[-1][1] > RECOVER_RATIO * best
    return {ts.M_MAX_SPIKE: worst, ts.M_DIVERGED: float(diverged)}


def _find_by_tags(uri: str, rr: ResolvedRun):
    runs = ts.search_runs(uri, rr.experiment, rr.tag_filter(), statuses=("FINISHED",))
    runs.sort(key=lambda r: r.info.start_time, reverse=True)
    return runs[0] if runs else None


def evaluate_claims(exp: Experiment, uri: str, overrides: list[str] | None,
                    seeds: list[int] | None, out: Path, partial: bool = True, echo=None,
                    write_to: Path | None = None):
    """Collect the finished runs, run the eval-time studies (their figures go to ``write_to``,
    default ``out``) and evaluate every claim under the experiment's registered seed design:
    ``(results, claim_results, study_files)`` (each claim's own, unadjusted verdict).

    Some (arm, seed) runs missing: ``results.missing`` lists them and ``echo`` says so; unless
    ``partial``, IncompleteGridError is raised (before anything is written) when ``out`` already
    holds a complete result, or one with more seeds than this check would use."""
    from repro.experiments.verdicts import design_of

    # one data module for run keys and eval-time studies (its fingerprint does not depend on seed)
    dm = prepare_data(exp.run_config(exp.arms[0], overrides), 0)
    grown = seeds is None  # the default: the experiment's seeds plus any grown by --seeds auto
    if grown:
        seeds = list(exp.seeds) + extra_seeds(exp, uri)
    results = collect(exp, uri, overrides, seeds, dm)
    if grown and len(seeds) > len(exp.seeds):
        # an extra seed counts only when every arm has finished it (a grid, never a ragged one)
        arms = [a.name for a in exp.arms]
        complete = [s for s in seeds[len(exp.seeds):] if all((a, s) in results.runs
                                                               for a in arms)]
        results.runs = {k: v for k, v in results.runs.items()
                        if k[1] in exp.seeds or k[1] in complete}
        seeds = list(exp.seeds) + complete
    if not results.runs:
        raise MissingRunsError(f"no finished runs of {exp.name!r} at scale {exp.scale!r} in "
                               f"{uri}; run `repro run {exp.name} --scale {exp.scale}` first")
    results.missing = missing = missing_runs(exp, results, seeds)
    have = _committed_seeds(out)
    if not partial and have > len(seeds):
        raise IncompleteGridError(f"{out} holds a result on {have} seeds; this check would "
                                  f"replace it with {len(seeds)} (runs of the other seeds are "
                                  f"not in this store): train them (`repro run {exp.name} "
                                  f"--scale {exp.scale} --seeds ...`), or pass --partial to "
                                  "overwrite it")
    if missing:
        total = len(missing) + len(results.runs)
        what = f"{len(missing)} of {total} runs of {exp.name} [{exp.scale}] have not finished " \
               f"({describe_missing(missing)})"
        if not partial and _holds_complete_result(out):
            raise IncompleteGridError(f"{what}; {out} holds a complete result that this check "
                                      f"would replace: run `repro run {exp.name} --scale "
                                      f"{exp.scale}` first, or pass --partial to overwrite it")
        if echo is not None:
            echo(f"[repro] partial check: {what}; results are marked partial")
    write_to = write_to or out
    write_to.mkdir(parents=True, exist_ok=True)
    extra_files: list[Path] = []
    if exp.analyses:
        from repro.experiments.analyses import AnalysisContext

        batches = list(dm.val_dataloader())
        ctx = AnalysisContext(batches=batches, out=write_to)
        for fn in exp.analyses:
            extra_files += fn(exp, results, ctx)
    design = design_of(exp)
    return results, [c.evaluate(results, design) for c in exp.claims], extra_files


def _committed_seeds(out: Path) -> int:
    """Seeds per arm of the result already in ``out`` (0 when none)."""
    import json

    try:
        seeds = json.loads((out / "claims.json").read_text()).get("seeds") or {}
    except (OSError, ValueError):
        return 0
    return max((len(v) for v in seeds.values()), default=0)


def check_experiment(exp: Experiment, uri: str | None = None, overrides: list[str] | None = None,
                     seeds: list[int] | None = None, out_dir: Path | None = None,
                     partial: bool = False, echo=print):
    """Collect, write the per-run files (summary.csv, curves.csv), judge the claims from those
    files alone (repro.experiments.verdicts, the same code `repro verify` runs), then re-adjust
    every result of the scale together."""
    from repro.experiments import verdicts as V

    uri = ts.resolve_uri(uri)
    out = out_dir or results_dir() / exp.name / exp.scale
    if not partial:
        refuse_incomplete_fast(exp, uri, seeds, out)
    # every file of this check is written into a staging folder beside ``out`` and swapped in
    # whole: a failure part-way (disk full, kill -9) never leaves a mix with the previous check
    with staged_dir(out, owned=is_check_output) as stage:
        results, _, extra_files = evaluate_claims(
            exp, uri, overrides, seeds, out, partial=partial, echo=echo, write_to=stage)
        files = [write_summary(exp, results, stage), write_curves(results, stage)]
        committed = V.results_from_folder(stage)
        committed.missing, committed.notes = list(results.missing), list(results.notes)
        payload = V.judge(exp, committed, V.read_lock(out), _env_line(exp, overrides, results),
                          {"studies": V.study_figures(stage)})
        V.adjust_scale([payload])  # provisional: write_scale below adjusts the whole scale
        files += write_claims(payload, stage)
        files += write_figures(exp, results, stage)
        files += extra_files
    files = [out / f.relative_to(stage) for f in files]
    # the scale's adjustment (gate, BH, Holm) spans every experiment checked at it
    V.write_scale(out.parent.parent, exp.scale)
    final = {e["name"]: e for e in json.loads((out / "claims.json").read_text())["claims"]}
    design = V.design_of(exp)
    claim_results = [c.evaluate(committed, design) for c in exp.claims]
    for r in claim_results:
        r.verdict = final[r.claim.name]["verdict"]
    _log_summary_run(exp, uri, files, claim_results, results)
    return claim_results, out


def _env_line(exp: Experiment, overrides: list[str] | None = None,
              results: Results | None = None) -> str:
    """Scale, version, device, torch, git (+ overrides). The device is where the runs trained
    (their ``repro.device`` tags); runs that predate the tag fall back to this process's."""
    import torch

    dev = "cuda:" + torch.cuda.get_device_name(0) if torch.cuda.is_available() else \
        cpu_label(torch.get_num_threads())
    if results is not None:
        tagged = sorted({r.trained_on for r in results.runs.values() if r.trained_on})
        untagged = sum(r.trained_on is None for r in results.runs.values())
        if tagged:
            dev = "; ".join(tagged) + (f"; {untagged} older runs untagged (checked on {dev})"
                                       if untagged else "")
    return (f"scale `{exp.scale}`, experiment version `{exp.version}`, device {dev}, "
            f"torch {torch.__version__}, git {ts.git_sha()}"
            + (f", overrides `{' '.join(overrides)}`" if overrides else ""))


# ---------------------------------------------------------------- one writer per output file
def write_summary(exp: Experiment, results: Results, out: Path) -> Path:
    """summary.csv: one row per (arm, seed): final val loss, the machine the run trained on,
    every summary metric, every study metric and every metric a claim reads."""
    from repro.experiments.verdicts import MACHINE_COLS, SUMMARY

    buf = io.StringIO()
    w = csv.writer(buf)
    study_cols = sorted({k for rec in results.runs.values() for k in rec.metrics
                         if "/" not in k and k not in ("epoch", ts.M_LR)})
    read = sorted({m for c in exp.claims for _, m in c.reads
                   if m != ts.M_FINAL_VAL_LOSS} - set(SUMMARY_METRICS) - set(study_cols))
    cols = [*SUMMARY_METRICS, *study_cols, *read]
    w.writerow(["experiment", "scale", "arm", "seed", "run_id", "final_val_loss", *MACHINE_COLS,
                *cols])
    for (a, s), rec in sorted(results.runs.items()):
        mach = rec.machine_tags or {}
        w.writerow([exp.name, exp.scale, a, s, rec.run_id, f"{rec.final_val_loss:.6f}",
                    *[mach.get(k, "") for k in MACHINE_COLS],
                    *[f"{rec.metrics[m]:.6g}" if m in rec.metrics else "" for m in cols]])
    path = out / SUMMARY
    atomic_write_text(path, buf.getvalue())
    return path


def write_curves(results: Results, out: Path) -> Path:
    """curves.csv: every run's val-loss curve and train drop-fraction curve, one row per
    (arm, seed, metric, step): what the speedup delta, the steady-state drop rate and the gap
    tables need, so `repro verify` recomputes them from results/ alone."""
    from repro.experiments.verdicts import CURVES

    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["arm", "seed", "metric", "step", "value"])
    for (a, s), rec in sorted(results.runs.items()):
        for metric, curve in ((ts.M_VAL_LOSS, rec.val_curve), (ts.M_DROP, rec.drop_curve)):
            for step, v in curve:
                w.writerow([a, s, metric, int(step), f"{v:.6g}"])
    path = out / CURVES
    atomic_write_text(path, buf.getvalue())
    return path


def write_claims(payload: dict, out: Path) -> list[Path]:
    """claims.json (the verdict engine's payload) and claims.md (rendered from it alone)."""
    from repro.experiments.verdicts import dumps, render_md

    paths = []
    for name, text in (("claims.json", dumps(payload)), ("claims.md", render_md(payload))):
        atomic_write_text(out / name, text)
        paths.append(out / name)
    return paths


def write_figures(exp: Experiment, results: Results, out: Path) -> list[Path]:
    """val_curves.png, drop_curves.png (when any run dropped tokens) and one gap figure per
    loss-gap claim."""
    from repro.experiments.plots import arm_curves_figure, gap_figure

    files = []
    arms = [a.name for a in exp.arms]
    for r in (c.evaluate(results) for c in exp.claims):
        if r.budget is not None:
            fig = out / f"gap-{r.claim.name}.png"
            gap_figure(r.budget, f"{exp.name} ({exp.scale}): {r.claim.name}", fig)
            files.append(fig)
    curves = {a: [results.get(a, s).val_curve for s in results.seeds(a)] for a in arms}
    target = None
    if exp.baseline and results.seeds(exp.baseline):
        target, _ = mean_std([results.get(exp.baseline, s).final_val_loss
                              for s in results.seeds(exp.baseline)])
    path = out / "val_curves.png"
    arm_curves_figure(curves, f"{exp.name} ({exp.scale}): validation loss, mean and min-max "
                      "over seeds", path, target)
    files.append(path)
    drop_curves = {a: [results.get(a, s).drop_curve for s in results.seeds(a)] for a in arms}
    if any(v > 0 for runs in drop_curves.values() for c in runs for _, v in c):
        path = out / "drop_curves.png"
        arm_curves_figure({a: c for a, c in drop_curves.items() if any(c)},
                          f"{exp.name} ({exp.scale}): train token drop fraction (each point "
                          "the mean over its log window), mean and min-max over seeds", path,
                          ylabel="dropped fraction of routed assignments", zoom=False)
        files.append(path)
    return files


def write_outputs(exp: Experiment, results: Results, claims: list[ClaimResult],
                  out: Path, overrides: list[str] | None = None) -> list[Path]:
    """Every per-experiment output file, one writer each (summary.csv, curves.csv, claims.json
    + claims.md, figures), judged from the written files; without the scale-wide adjustment."""
    from repro.experiments import verdicts as V

    files = [write_summary(exp, results, out), write_curves(results, out)]
    committed = V.results_from_folder(out)
    committed.missing, committed.notes = list(results.missing), list(results.notes)
    payload = V.judge(exp, committed, V.read_lock(out), _env_line(exp, overrides, results))
    V.adjust_scale([payload])
    return files + write_claims(payload, out) + write_figures(exp, results, out)


def _num(x: float) -> float | None:
    return None if x is None or math.isnan(x) or math.isinf(x) else float(x)


def _claim_stats(r: ClaimResult) -> dict:
    """The interval, effect, seeds needed and budget gaps of one claim, JSON-ready."""
    d = {"n": r.n, "mean": _num(r.mean), "sd": _num(r.std)}
    if r.decision is not None:
        iv = r.decision.interval
        d.update(ci95=[_num(iv.lo), _num(iv.hi)], effect=_num(r.decision.effect),
                 seeds_needed=r.decision.seeds_needed)
    if r.budget is not None:
        d["budget"] = {"plus": r.budget.plus, "minus": r.budget.minus,
                       "trend": r.budget.trend, "sign_since": r.budget.crossover,
                       "at": {str(f): {"step": st, "mean": _num(iv.mean), "ci95": [
                           _num(iv.lo), _num(iv.hi)]} for f, (st, iv) in r.budget.at.items()}}
    return d


def _log_summary_run(exp: Experiment, uri: str, files: list[Path], claims,
                     results: Results | None = None) -> None:
    """One ``summary-SCALE`` run per check: the files as artifacts, ``verdict.*`` tags and
    ``claim/*`` metrics, the claims and summary as MLflow tables, and links to the runs used."""
    from repro.tracking.lifecycle import tracked_run

    c = ts.client(uri)
    exp_id = ts.ensure_experiment(uri, exp.name, exp.mlflow_description())
    with tracked_run(c, exp_id, run_name=ts.run_name("summary", exp.scale),
                     tags={ts.T_ROLE: ts.ROLE_SUMMARY, ts.T_EXPERIMENT: exp.name,
                           ts.T_VERSION: exp.version, ts.T_SCALE: exp.scale,
                           ts.T_GIT: ts.git_sha()}) as run:
        for f in files:
            c.log_artifact(run.run_id, str(f))
        # the verdicts as columns of the runs table: a saved view (`repro ui` prints its link)
        ts.save_columns_view(c, exp_id, ts.VIEW_VERDICTS,
                             [f"verdict.{r.claim.name}" for r in claims])
        for r in claims:
            c.set_tag(run.run_id, f"verdict.{r.claim.name}", r.verdict)
            if not math.isnan(r.mean):
                c.log_metric(run.run_id, ts.claim_metric(r.claim.name), r.mean)
        _log_tables(c, run.run_id, claims, files)
        if results is not None:
            _link_runs(c, run.run_id, exp, claims, results)


def claims_frame(claims: list[ClaimResult]):
    """The claims table as a DataFrame: one row per claim (``claims.json``'s claims plus the
    numbers behind ``measured``: mean, std and seeds)."""
    import pandas as pd

    rows = []
    for r in claims:
        st = _claim_stats(r)
        lo, hi = st.get("ci95", [None, None])
        rows.append({"claim": r.claim.name, "statement": r.claim.statement,
                     "paper": r.claim.paper_figure, "source": r.claim.source,
                     "measured": r.measured, "mean": r.mean, "std": r.std, "seeds": r.n,
                     "ci95_lo": lo, "ci95_hi": hi, "effect": st.get("effect"),
                     "seeds_needed": st.get("seeds_needed"), "verdict": r.verdict,
                     "rule": r.rule})
    # claim and verdict first: the UI's table shows the first columns without scrolling
    return pd.DataFrame(rows, columns=["claim", "verdict", "measured", "statement", "paper",
                                       "source", "mean", "std", "seeds", "ci95_lo", "ci95_hi",
                                       "effect", "seeds_needed", "rule"])


def _log_tables(c, run_id: str, claims: list[ClaimResult], files: list[Path]) -> None:
    """The claims table and summary.csv as MLflow tables of the summary run (the UI renders
    them; ``mlflow.load_table`` reads them back)."""
    import pandas as pd

    c.log_table(run_id, claims_frame(claims), ts.TABLE_CLAIMS)
    csv_file = next((f for f in files if f.name == "summary.csv"), None)
    if csv_file is not None:  # the table is the file: one row per (arm, seed), run id included
        df = pd.read_csv(csv_file, dtype={"experiment": str, "scale": str, "arm": str,
                                          "run_id": str})
        c.log_table(run_id, df, ts.TABLE_SUMMARY)


def verdict_totals(claims: list[ClaimResult]) -> str:
    """``"3 claims: 1 reproduced, 0 not reproduced, 2 inconclusive"`` (every verdict named)."""
    from repro.experiments.claims import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED

    counts = {v: 0 for v in (REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE)}
    for r in claims:
        counts[r.verdict] = counts.get(r.verdict, 0) + 1
    return (f"{len(claims)} claim{'s' if len(claims) != 1 else ''}: "
            + ", ".join(f"{n} {v}" for v, n in counts.items()))


def _link_runs(c, run_id: str, exp: Experiment, claims: list[ClaimResult],
               results: Results) -> None:
    """Summary run <-> train runs: ``repro.uses_runs`` on the summary run, ``repro.checked_by``
    (newest first) on each train run it used, and a description (``mlflow.note.content``) with
    the verdict totals, each claim's verdict and links to the runs."""
    used = [rec.run_id for _, rec in sorted(results.runs.items())]
    c.set_tag(run_id, ts.T_USES, ts.join_ids(used))
    links = []
    for (arm, seed), rec in sorted(results.runs.items()):
        train = c.get_run(rec.run_id)
        before = [i for i in train.data.tags.get(ts.T_CHECKED_BY, "").split(",")
                  if i and i != run_id]
        c.set_tag(rec.run_id, ts.T_CHECKED_BY, ts.join_ids([run_id, *before][:ts.CHECKED_BY_MAX]))
        links.append(f"[{arm} s{seed}](#/experiments/{train.info.experiment_id}/runs/"
                     f"{rec.run_id})")
    lines = [f"**{exp.name}** (scale `{exp.scale}`, version `{exp.version}`): "
             f"{verdict_totals(claims)}.", "", "| claim | measured | verdict |", "|---|---|---|"]
    lines += [f"| {r.claim.name} | {r.measured} | {r.verdict} |" for r in claims]
    lines += ["", f"Tables: `{ts.TABLE_CLAIMS}`, `{ts.TABLE_SUMMARY}` (Artifacts). "
              f"Runs used ({len(used)}): " + ", ".join(links)]
    note = "\n".join(lines)
    if len(note) > ts.TAG_MAX:  # keep the totals and the claim table
        note = "\n".join(lines[:-1]) + f"\n\nRuns used: {len(used)} (tag `{ts.T_USES}`)"
    c.set_tag(run_id, ts.T_NOTE, note[:ts.TAG_MAX])
