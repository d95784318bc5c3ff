"""The sweep's MLflow parent run, its summary, plots and ``results/`` file.

One parent run per study (tags ``repro.kind=sweep``, ``repro.study``, ``repro.optuna_storage``
= a hash of the storage URL): found again and reopened on resume. Each trial's run is a child
(``mlflow.parentRunId``) created by the runner with the trial's dotted keys as params. MLflow
params are immutable and a resumed sweep's best changes, so the parent's best params are tags
``best.<dotted key>`` (plus metric ``best_value`` and ``best_params.json``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import tempfile
import time
import warnings
from pathlib import Path

from optuna.trial import TrialState

from repro.paths import atomic_write_text, results_dir
from repro.sweeps.storage import redact
from repro.tracking import names as N
from repro.tracking.names import T_STORAGE, T_STUDY, T_TRIAL, T_TRIAL_STATE  # noqa: F401


def storage_key(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()[:12]


@contextlib.contextmanager
def parent_run(ctx):
    """The study's parent run for one sweep command, as a ``tracked_run``: reopened when the
    study has one (resume), else created with its params. FINISHED when the block ends with
    every trial done; KILLED with a reason when trials are left (``finalize``: time limit, or
    an interruption); FAILED with a reason when the launcher crashed."""
    from repro.tracking import store as ts
    from repro.tracking.lifecycle import owner_tags, tracked_run

    uri = ctx.uri
    key = storage_key(ctx.url)
    found = ts.search_runs(uri, ctx.exp.name,
                           f"tags.`{ts.T_ROLE}` = '{ts.ROLE_SWEEP}' and "
                           f"tags.`{T_STUDY}` = '{ctx.name}' and tags.`{T_STORAGE}` = '{key}'")
    c = ts.client(uri)
    if found:
        previous = sorted(found, key=lambda r: r.info.start_time)[0]
        with tracked_run(c, resume=previous) as run:
            yield run
        return
    exp_id = ts.ensure_experiment(uri, ctx.exp.name, ctx.exp.mlflow_description())
    tags = {ts.T_EXPERIMENT: ctx.exp.name, ts.T_VERSION: ctx.exp.version, ts.T_ARM: ctx.spec.arm,
            ts.T_SCALE: ctx.spec.scale, ts.T_ROLE: ts.ROLE_SWEEP, ts.T_GIT: ts.git_sha(),
            T_STUDY: ctx.name, T_STORAGE: key, N.T_STORAGE_URL: redact(ctx.url),
            **owner_tags()}
    with tracked_run(c, exp_id, tags=tags, run_name=ts.run_name(
            f"sweep-{ctx.spec.arm}-{ctx.space.name}", ctx.spec.scale)) as run:
        params = {"sweep.space": ctx.space.name, "sweep.arm": ctx.spec.arm,
                  "sweep.scale": ctx.spec.scale, "sweep.study": ctx.name,
                  "sweep.seed": ctx.seed, "sweep.overrides": json.dumps(list(ctx.overrides))}
        for p in ctx.params:
            params[f"space.{p.path}"] = p.describe()
        run.log_params(params)
        yield run


def close_dead_trial_runs(ctx, echo=print) -> list:
    """Trial runs (MLflow children) of this study left RUNNING by a worker that died (killed,
    OOM): its Optuna trial is failed and re-queued by ``reap``, but the child run only learns of
    it here. Each is marked FAILED with a ``repro.failure_reason`` and ``repro.trial_state=FAIL``;
    a run whose process is alive (``repro.pid`` / ``repro.pid_since``, see
    ``repro.tracking.store.is_stale``) is never touched. Every ``repro sweep`` of the study calls
    this (launcher, ``--show``) and the launcher again after a worker dies."""
    from repro.tracking import store as ts

    def reason(r) -> str:
        t = r.data.tags
        return (f"sweep worker process {t.get(ts.T_PID)} on {t.get(ts.T_HOST)} died while trial "
                f"{t.get(T_TRIAL, '?')} was RUNNING; the study re-queued the trial")

    closed = ts.mark_stale(ctx.uri, ctx.exp.name, filter_string=(
        f"tags.`{ts.T_ROLE}` = '{ts.ROLE_TRIAL}' and tags.`{T_STUDY}` = '{ctx.name}'"),
        reason=reason,
        tags={T_TRIAL_STATE: "FAIL"})
    if closed:
        echo(f"[sweep] marked {len(closed)} trial run(s) left RUNNING by dead workers FAILED "
             f"(trial {', '.join(r.data.tags.get(T_TRIAL, '?') for r in closed)})")
    return closed


def trial_rows(study) -> list[dict]:
    rows = []
    for t in study.get_trials(deepcopy=False):
        why = t.user_attrs.get(N.A_FAILURE) or t.user_attrs.get(N.A_LOST)
        state = t.state.name
        if t.state == TrialState.FAIL and N.A_FAILURE not in t.user_attrs:
            state = "FAIL(lost)"
        rows.append({"number": t.number, "state": state, "value": t.value,
                     "params": dict(t.params), "steps": t.user_attrs.get(N.A_STEPS),
                     "seconds": t.user_attrs.get(N.A_SECONDS),
                     "mlflow_run_id": t.user_attrs.get(N.A_RUN),
                     "failure": why if t.state == TrialState.FAIL else None})
    return rows


def state_counts(study) -> dict[str, int]:
    """Trials by state; a FAIL is "failed" when the trial recorded why (``A_FAILURE``), else
    "retried" (a dead worker's trial, re-queued)."""
    trials = study.get_trials(deepcopy=False)
    c = {"complete": 0, "pruned": 0, "failed": 0, "retried": 0, "running": 0, "waiting": 0}
    for t in trials:
        if t.state == TrialState.COMPLETE:
            c["complete"] += 1
        elif t.state == TrialState.PRUNED:
            c["pruned"] += 1
        elif t.state == TrialState.FAIL:
            c["failed" if N.A_FAILURE in t.user_attrs else "retried"] += 1
        elif t.state == TrialState.RUNNING:
            c["running"] += 1
        elif t.state == TrialState.WAITING:
            c["waiting"] += 1
    return c


def summarize(ctx) -> dict:
    study = ctx.study
    counts = state_counts(study)
    done = [t for t in study.get_trials(deepcopy=False)
            if t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
            and N.A_STEPS in t.user_attrs]
    max_steps = ctx.base.train.max_steps
    trained = sum(int(t.user_attrs.get(N.A_STEPS) or 0) for t in done)
    full = max_steps * len(done)
    secs = sum(float(t.user_attrs.get(N.A_SECONDS) or 0) for t in done)
    best = None
    with contextlib.suppress(ValueError):
        bt = study.best_trial
        best = {"number": bt.number, "value": bt.value, "params": dict(bt.params),
                "mlflow_run_id": bt.user_attrs.get(N.A_RUN),
                "set": [f"{k}={v}" for k, v in bt.params.items()]}
    import torch

    return {"experiment": ctx.exp.name, "version": ctx.exp.version, "arm": ctx.spec.arm,
            "scale": ctx.spec.scale, "space": ctx.space.name,
            "params": [p.describe() for p in ctx.params], "overrides": list(ctx.overrides),
            "study": ctx.name, "storage": redact(ctx.url), "pruner": ctx.spec.pruner,
            "trials_target": ctx.spec.trials, "counts": counts, "best": best,
            "steps": {"trained": trained, "without_pruning": full,
                      "saved_fraction": round(1 - trained / full, 4) if full else 0.0},
            "trial_seconds": round(secs, 1), "max_steps": max_steps,
            "torch": torch.__version__, "device": "cpu" if not torch.cuda.is_available()
            else torch.cuda.get_device_name(0), "written": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "trials": trial_rows(study)}


def result_path(ctx) -> Path:
    return (results_dir() / ctx.exp.name / ctx.spec.scale /
            f"sweep-{ctx.spec.arm}-{ctx.space.name}.json")


def finalize(ctx, parent, echo=print) -> dict:
    """Write the summary (results/ file, the parent run's tags, metrics, plots); ``parent`` is
    the ``parent_run`` TrackedRun, told to end KILLED when trials are left unfinished."""
    from repro.tracking import store as ts

    parent_run_id = parent.run_id
    s = summarize(ctx)
    out = result_path(ctx)
    atomic_write_text(out, json.dumps(s, indent=1, default=str) + "\n")
    c = ts.client(ctx.uri)
    c.set_tag(parent_run_id, N.T_TRIALS, json.dumps(s["counts"]))
    n_done = s["counts"]["complete"] + s["counts"]["pruned"] + s["counts"]["failed"]
    for k in ("complete", "pruned", "failed"):
        c.log_metric(parent_run_id, N.sweep_count_metric(k), s["counts"][k], step=n_done)
    c.log_metric(parent_run_id, N.M_STEPS_SAVED, s["steps"]["saved_fraction"],
                 step=n_done)
    if s["best"] is not None:
        c.log_metric(parent_run_id, N.M_BEST_VALUE, s["best"]["value"], step=n_done)
        c.set_tag(parent_run_id, N.T_BEST_TRIAL, str(s["best"]["number"]))
        c.set_tag(parent_run_id, N.T_BEST_VALUE, f"{s['best']['value']:.6f}")
        for k, v in s["best"]["params"].items():
            c.set_tag(parent_run_id, N.best_param_tag(k), str(v))
    with tempfile.TemporaryDirectory() as td:
        p = Path(td) / "best_params.json"
        p.write_text(json.dumps(s["best"], indent=1, default=str))
        c.log_artifact(parent_run_id, str(p))
        for path in plots(ctx.study, Path(td), len(ctx.params), echo=echo):
            c.log_artifact(parent_run_id, str(path), artifact_path="plots")
    unfinished = s["counts"]["running"] + s["counts"]["waiting"]
    if unfinished:
        parent.end_as("KILLED", f"{unfinished} of {ctx.spec.trials} trials unfinished "
                      f"({s['counts']['running']} running, {s['counts']['waiting']} waiting); "
                      "rerun the same command to continue the study")
    b = s["best"]
    st = s["steps"]
    echo(f"[sweep] {s['counts']['complete']} complete, {s['counts']['pruned']} pruned, "
         f"{s['counts']['failed']} failed, {unfinished} unfinished; pruning saved "
         f"{100 * st['saved_fraction']:.0f}% of {st['without_pruning']} steps")
    if b is not None:
        echo(f"[sweep] best trial {b['number']}: val loss {b['value']:.4f} with "
             f"{' '.join('--set ' + x for x in b['set'])}")
    echo(f"[sweep] wrote {out}; MLflow parent run {parent_run_id}")
    return s


def plots(study, outdir: Path, n_params: int, echo=print) -> list[Path]:
    """Optimisation history, slice and (>= 2 params, >= 4 complete) importance plots as PNG."""
    import optuna.visualization.matplotlib as ovm

    from repro.experiments.plots import save_figure  # sets the Agg backend

    complete = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    if not complete:
        return []
    todo = [("optimization_history", ovm.plot_optimization_history),
            ("slice", ovm.plot_slice),
            ("intermediate_values", ovm.plot_intermediate_values)]
    if n_params >= 2 and len(complete) >= 4:
        todo.append(("param_importances", ovm.plot_param_importances))
    out = []
    for name, fn in todo:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ax = fn(study)
                fig = (ax.flat[0] if hasattr(ax, "flat") else ax).figure
                fig.set_size_inches(max(6.0, 3.2 * (n_params if name == "slice" else 2)), 4.0)
                fig.tight_layout()
            path = outdir / f"{name}.png"
            save_figure(fig, path)
            out.append(path)
        except Exception as e:  # noqa: BLE001 - a plot must not fail the sweep
            echo(f"[sweep] plot {name} skipped: {type(e).__name__}: {e}")
    return out


def show(ctx, echo=print) -> dict:
    s = summarize(ctx)
    c = s["counts"]
    echo(f"study {ctx.name} ({s['storage']}): space {ctx.space.name}; "
         f"{c['complete']} complete, {c['pruned']} pruned, {c['failed']} failed, "
         f"{c['retried']} lost+retried, {c['running']} running, {c['waiting']} waiting")
    echo(f"  {'#':>4s} {'state':10s} {'value':>9s} {'steps':>6s} {'sec':>6s}  params")
    for r in s["trials"]:
        v = f"{r['value']:.4f}" if r["value"] is not None and math.isfinite(r["value"]) else "-"
        params = " ".join(f"{k}={_fmt(x)}" for k, x in r["params"].items())
        extra = f"  [{r['failure']}]" if r["failure"] else ""
        echo(f"  {r['number']:>4d} {r['state']:10s} {v:>9s} {str(r['steps'] or '-'):>6s} "
             f"{str(r['seconds'] or '-'):>6s}  {params}{extra}")
    b = s["best"]
    if b is None:
        echo("best: none yet (no complete trial)")
    else:
        echo(f"best: trial {b['number']} val loss {b['value']:.4f}: "
             f"{' '.join('--set ' + x for x in b['set'])}")
    return s


def _fmt(x) -> str:
    return f"{x:.4g}" if isinstance(x, float) else str(x)
