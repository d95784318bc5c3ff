"""``repro check``: read finished runs back from MLflow, evaluate claims, write results/.

Outputs go to ``results/<experiment>/<scale>/``: ``claims.md`` (claim, paper figure, measured
figure, verdict, rule), ``claims.json`` (read by ``repro report``), ``summary.csv`` (one row per
arm x seed) and PNG plots; the same files are logged as artifacts of one MLflow "summary" run.
Runs are found by run key (``repro.experiments.resolve``), the same identity training records.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

from repro.config import to_dict
from repro.errors import UserError
from repro.experiments.base import Experiment
from repro.experiments.claims import ClaimResult, Results, RunRecord, mean_std
from repro.experiments.resolve import ResolvedRun, prepare_data, resolve_run
from repro.experiments.stats import RULE
from repro.machine import cpu_label
from repro.paths import atomic_write_text, results_dir, staged_dir
from repro.tracking import store as ts

VERDICT_RULE_ID = "t95-paired"  # claims.json marker of the verdict rule in repro.experiments.stats

SUMMARY_METRICS = (ts.M_VAL_PPL, ts.M_TOKENS_PER_S,
                   *(ts.routing_metric(ts.VAL, s) for s in (ts.S_LOAD_CV, ts.S_MAX_MEAN_LOAD,
                                                             ts.S_IMPORTANCE_CV, ts.S_DROP_FRAC)),
                   ts.M_DROP, ts.M_DROP_MEAN,
                   *(ts.routing_metric(ts.VAL, s) for s in (ts.S_ENTROPY, ts.S_Z)),
                   ts.M_MAX_SPIKE, ts.M_DIVERGED)


def is_check_output(name: str) -> bool:
    """Whether a file of ``results/<experiment>/<scale>/`` is written by ``repro check`` (a
    check replaces all of these; other files there, e.g. sweep summaries, are kept)."""
    return name in ("claims.md", "claims.json", "summary.csv") or name.endswith(".png")


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
            runs[(arm.name, seed)] = RunRecord(arm.name, seed, found.info.run_id, curve,
                                               metrics, to_dict(run),
                                               found.data.tags.get(ts.T_WEIGHTS),
                                               found.data.tags.get(ts.T_DEVICE), drops)
    res = Results(runs)
    res.notes = results_notes
    return res


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
    default ``out``) and evaluate every claim: ``(results, claim_results, study_files)``.

    Some (arm, seed) runs missing: ``results.missing`` lists them and ``echo`` says so; unless
    ``partial``, IncompleteGridError is raised (before anything is written) when ``out`` already
    holds a complete result."""
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
    return results, [c.evaluate(results) for c in exp.claims], extra_files


def check_experiment(exp: Experiment, uri: str | None = None, overrides: list[str] | None = None,
                     seeds: list[int] | None = None, out_dir: Path | None = None,
                     partial: bool = False, echo=print):
    uri = ts.resolve_uri(uri)
    out = out_dir or results_dir() / exp.name / exp.scale
    if not partial:
        refuse_incomplete_fast(exp, uri, seeds, out)
    # every file of this check is written into a staging folder beside ``out`` and swapped in
    # whole: a failure part-way (disk full, kill -9) never leaves a mix with the previous check
    with staged_dir(out, owned=is_check_output) as stage:
        results, claim_results, extra_files = evaluate_claims(
            exp, uri, overrides, seeds, out, partial=partial, echo=echo, write_to=stage)
        files = write_outputs(exp, results, claim_results, stage, overrides) + extra_files
    files = [out / f.relative_to(stage) for f in files]
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


def write_outputs(exp: Experiment, results: Results, claims: list[ClaimResult],
                  out: Path, overrides: list[str] | None = None) -> list[Path]:
    from repro.experiments.plots import arm_curves_figure, gap_figure

    files = []
    arms = [a.name for a in exp.arms]
    # ---- claims.md
    lines = [f"# {exp.name}: {exp.title}", "", f"Paper: {exp.paper}", "",
             f"Run at {_env_line(exp, overrides, results)}.", "",
             f"Seeds per arm: {', '.join(str(len(results.seeds(a))) for a in arms)} "
             f"({', '.join(arms)}). Matched: `{exp.matched_description()}`.", "",
             *([f"**Partial**: no finished run for {describe_missing(results.missing)}.", ""]
               if getattr(results, "missing", None) else []),
             "| claim | paper | source | measured (ours) | verdict | effect; seeds needed | "
             "rule |", "|---|---|---|---|---|---|---|"]
    for r in claims:
        lines.append(f"| {r.claim.statement} | {r.claim.paper_figure} | {r.claim.source} | "
                     f"{r.measured} | **{r.verdict}** | {r.extra} | {r.rule} |")
    lines += ["", RULE, ""]
    gap_claims = [r for r in claims if r.budget is not None]
    if gap_claims:
        lines += ["## Loss gaps along the training budget", "",
                  "Paired val-loss gap (loser minus winner of the claim, so > 0 means the claim "
                  "holds at that step) at 25/50/100% of the steps, its trend over the second "
                  "half (opening / closing / flat against the final interval's half-width) and "
                  "the step since which it has kept its final sign.", "",
                  "| claim | 25% | 50% | 100% | trend | sign since | figure |",
                  "|---|---|---|---|---|---|---|"]
        for r in gap_claims:
            b = r.budget
            cells = [f"{iv.mean:+.4f} [{iv.lo:+.4f}, {iv.hi:+.4f}] (step {st})" if iv.n >= 2
                     else f"{iv.mean:+.4f} (step {st})" for st, iv in b.at.values()]
            fig = out / f"gap-{r.claim.name}.png"
            gap_figure(b, f"{exp.name} ({exp.scale}): {r.claim.name}", fig)
            files.append(fig)
            lines.append(f"| {r.claim.name} | {' | '.join(cells)} | {b.trend} | "
                         f"{b.crossover if b.crossover is not None else 'start'} | "
                         f"[{fig.name}]({fig.name}) |")
        lines.append("")
    lines += ["## Final validation loss per arm", "",
              "| arm | final val loss (mean ± std) | seeds | tokens/s |", "|---|---|---|---|"]
    for a in arms:
        seeds = results.seeds(a)
        m, s = mean_std([results.get(a, x).final_val_loss for x in seeds])
        tps, _ = mean_std([results.get(a, x).metrics.get(ts.M_TOKENS_PER_S, math.nan)
                           for x in seeds])
        lines.append(f"| {a} | {m:.4f} ± {s:.4f} | {len(seeds)} | {tps:,.0f} |")
    if exp.notes:
        lines += ["", "## Notes", "", exp.notes]
    if getattr(results, "notes", None):
        lines += ["", "Runs found by tags rather than exact run key (the config serialization "
                  "changed after they ran):", ""] + [f"- {n}" for n in results.notes]
    path = out / "claims.md"
    atomic_write_text(path, "\n".join(lines) + "\n")
    files.append(path)
    # ---- claims.json (machine-readable, aggregated by `repro report`)
    import json

    import torch

    payload = {
        "experiment": exp.name, "version": exp.version, "title": exp.title, "scale": exp.scale,
        "paper": exp.paper, "env": _env_line(exp, overrides, results), "torch": torch.__version__,
        "seeds": {a: results.seeds(a) for a in arms}, "verdict_rule": VERDICT_RULE_ID,
        "control": bool(exp.extra.get("control")),
        "missing": [list(m) for m in getattr(results, "missing", [])],
        "claims": [{"name": r.claim.name, "statement": r.claim.statement,
                    "paper": r.claim.paper_figure, "source": r.claim.source,
                    "measured": r.measured, "verdict": r.verdict, "rule": r.rule,
                    **_claim_stats(r)}
                   for r in claims]}
    path = out / "claims.json"
    atomic_write_text(path, json.dumps(payload, indent=1) + "\n")
    files.append(path)
    # ---- summary.csv
    buf = io.StringIO()
    w = csv.writer(buf)
    study_cols = sorted({k for rec in results.runs.values() for k in rec.metrics
                         if "/" not in k and k not in ("epoch", ts.M_LR)})
    cols = [*SUMMARY_METRICS, *study_cols]
    w.writerow(["experiment", "scale", "arm", "seed", "run_id", "final_val_loss", *cols])
    for (a, s), rec in sorted(results.runs.items()):
        w.writerow([exp.name, exp.scale, a, s, rec.run_id, f"{rec.final_val_loss:.6f}",
                    *[f"{rec.metrics[m]:.6g}" if m in rec.metrics else "" for m in cols]])
    path = out / "summary.csv"
    atomic_write_text(path, buf.getvalue())
    files.append(path)
    # ---- plots
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
