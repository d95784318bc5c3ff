"""What the MLflow UI shows a person (repro.tracking.store, repro.experiments.plots): every
experiment in the model-training view with a description, the verdicts as runs-table columns,
and figures whose axes hold all their data. Read back through the MLflow client."""

from __future__ import annotations

import json
import math
from pathlib import Path

from repro.experiments.base import get_experiment


def test_experiments_carry_the_training_kind_and_a_description(tmp_runs):
    from repro.tracking import store as ts

    uri = ts.resolve_uri()
    c = ts.client(uri)
    exp = get_experiment("moe-vs-dense", "smoke")
    # an experiment made before the tags existed (an older store) is updated, not left as is
    old_id = c.create_experiment("moe-vs-dense")
    assert ts.T_EXPERIMENT_KIND not in c.get_experiment(old_id).tags
    assert ts.ensure_experiment(uri, exp.name, exp.mlflow_description()) == old_id
    tags = c.get_experiment(old_id).tags
    assert tags["mlflow.experimentKind"] == "custom_model_development"
    desc = tags["mlflow.note.content"]
    assert exp.paper in desc  # the paper, every arm and every claim
    assert all(f"`{a.name}`" in desc for a in exp.arms)
    assert all(f"`{cl.name}`: {cl.statement}" in desc for cl in exp.claims)
    # a new experiment is created with them
    new_id = ts.ensure_experiment(uri, "fresh", "about fresh")
    assert c.get_experiment(new_id).tags["mlflow.experimentKind"] == "custom_model_development"
    assert c.get_experiment(new_id).tags["mlflow.note.content"] == "about fresh"


def test_a_real_run_and_check_leave_kind_description_and_verdict_view(tmp_runs):
    """Through the real path: `repro run` creates the experiment with its kind and description;
    `repro check` saves the runs-table view whose columns are the verdict tags, and its claims
    table starts with claim and verdict."""
    from repro.cli import main
    from repro.tracking import store as ts

    name, over = "switch-vs-dense", ["train.max_steps=4", "train.eval_every=2"]
    assert main(["run", name, "--scale", "smoke", "--seeds", "0,1", "--arm", "dense,switch-e4",
                 "--no-progress", "--set", *over]) == 0
    uri = ts.resolve_uri()
    e = ts.client(uri).get_experiment_by_name(name)
    assert e.tags[ts.T_EXPERIMENT_KIND] == ts.EXPERIMENT_KIND_TRAINING
    assert "Switch" in e.tags[ts.T_NOTE]
    assert main(["check", name, "--scale", "smoke", "--seeds", "0,1", "--partial", "--set",
                 *over]) == 0
    e = ts.client(uri).get_experiment_by_name(name)
    view = json.loads(e.tags[ts.T_SHARED_VIEW + ts.VIEW_VERDICTS])
    exp = get_experiment(name, "smoke")
    assert view["selectedColumns"] == [f"tags.`verdict.{c.name}`" for c in exp.claims]
    from repro.serve import verdict_view_urls  # the link `repro ui` prints for it

    assert verdict_view_urls(uri, "http://h:1") == [(name, (
        f"http://h:1/#/experiments/{e.experiment_id}/runs?workflowType=machine_learning&"
        "viewStateShareKey=verdicts"))]
    (summary,) = ts.search_runs(uri, name, f"tags.`{ts.T_ROLE}` = '{ts.ROLE_SUMMARY}'")
    assert all(f"verdict.{c.name}" in summary.data.tags for c in exp.claims)
    table = json.loads(Path(tmp_runs / "results" / name / "smoke" / "claims.json").read_text())
    assert table  # the check wrote its result; the MLflow claims table:
    from mlflow import MlflowClient

    df = MlflowClient(uri).load_table(e.experiment_id, ts.TABLE_CLAIMS,
                                      run_ids=[summary.info.run_id])
    assert list(df.columns[:2]) == ["claim", "verdict"]


def _captured(monkeypatch):
    from repro.experiments import plots

    figs = []
    monkeypatch.setattr(plots, "save_figure", lambda fig, path, dpi=110: figs.append(fig))
    return figs


def test_val_curves_axes_hold_every_point(monkeypatch, tmp_path):
    """The summary's val_curves.png: the first panel's y-axis holds every drawn value (the
    initial drop included: nothing clipped); the zoomed panel holds every point in its window."""
    from repro.experiments.plots import arm_curves_figure

    figs = _captured(monkeypatch)
    curves = {"dense": [[(s, 1.3 + 3.3 * math.exp(-s / 20) + 0.01 * k) for s in range(8, 401, 8)]
                        for k in range(3)],
              "moe": [[(s, 1.25 + 3.3 * math.exp(-s / 18)) for s in range(8, 401, 8)]]}
    arm_curves_figure(curves, "moe-vs-dense (smoke): validation loss", tmp_path / "v.png", 1.31)
    (fig,) = figs
    full, zoom = fig.axes
    lo, hi = full.get_ylim()
    vals = [v for runs in curves.values() for r in runs for _, v in r]
    assert lo <= min(vals) and max(vals) <= hi
    x0, x1 = zoom.get_xlim()
    lo, hi = zoom.get_ylim()
    inside = [v for runs in curves.values() for r in runs for s, v in r if x0 <= s <= x1]
    assert inside and lo <= min(inside) and max(inside) <= hi
