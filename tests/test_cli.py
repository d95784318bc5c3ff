import subprocess
import sys

import pytest

from repro.cli import main


def run_cli(*args, check_rc=None):
    return subprocess.run([sys.executable, "-m", "repro.cli", *args], capture_output=True,
                          text=True, timeout=300)


def test_ls_lists_everything(capsys):
    assert main(["ls"]) == 0
    out = capsys.readouterr().out
    for name in ("switch-vs-dense", "dense", "moe", "switch", "topk"):
        assert name in out


def test_show_reports_matching(capsys):
    assert main(["show", "switch-vs-dense", "--scale", "smoke"]) == 0
    out = capsys.readouterr().out
    assert "matched on ffn_flops" in out and "switch-e16" in out


def test_show_gpu_scale_needs_no_gpu(capsys, monkeypatch):
    """The accounting is analytic: a gpu-scale plan reads on any machine (only `run` needs
    CUDA, see test_bad_input's scale-gpu-without-gpu)."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["show", "switch-vs-dense", "--scale", "gpu"]) == 0
    out = capsys.readouterr().out
    assert "[gpu]" in out and "steps: 3000" in out and "51/37/12%" in out


@pytest.mark.parametrize("args, fragment", [
    (["run", "swich-vs-dense", "--scale", "smoke"], "did you mean"),
    (["show", "switch-vs-dense", "--scale", "huge"], "unknown scale 'huge'"),
    (["show", "switch-vs-dense", "--scale", "smoke", "--set", "train.lr"], "malformed override"),
    (["show", "switch-vs-dense", "--scale", "smoke", "--set", "model.ffn.d_expert=x"],
     "model.ffn.d_expert"),
    (["run", "switch-vs-dense", "--scale", "smoke", "--arm", "swich-e4"], "did you mean"),
    (["run", "switch-vs-dense", "--scale", "smoke", "--seeds", "a,b"], "--seeds"),
])
def test_bad_input_is_one_line_exit_2(args, fragment, tmp_runs):
    r = run_cli(*args)
    assert r.returncode == 2, r.stderr
    err = r.stderr.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert fragment in err


def test_run_and_check_smoke_end_to_end(tmp_runs, capsys):
    from repro.tracking import store

    assert main(["run", "switch-vs-dense", "--scale", "smoke", "--no-progress", "--seeds",
                 "0,1"]) == 0
    uri = store.resolve_uri()
    assert uri.startswith("sqlite:///") and str(tmp_runs) in uri
    runs = store.search_runs(uri, "switch-vs-dense")
    train = [r for r in runs if r.data.tags.get(store.T_KIND) == "train"]
    assert len(train) == 8 and all(r.info.status == "FINISHED" for r in train)
    r0 = train[0]
    for tag in (store.T_ARM, store.T_SEED, store.T_GIT, store.T_HASH, store.T_SCALE,
                store.T_VERSION):
        assert r0.data.tags.get(tag)
    assert store.metric_history(uri, r0.info.run_id, "val/loss")
    # a second run reuses every finished (arm, seed)
    capsys.readouterr()
    assert main(["run", "switch-vs-dense", "--scale", "smoke", "--no-progress", "--seeds",
                 "0,1"]) == 0
    assert "0 trained, 8 reused" in capsys.readouterr().out
    assert main(["check", "switch-vs-dense", "--scale", "smoke", "--seeds", "0,1"]) == 0
    out_dir = tmp_runs / "results" / "switch-vs-dense" / "smoke"
    claims = (out_dir / "claims.md").read_text()
    _assert_verdicts_follow_the_rule(out_dir, claims)
    assert (out_dir / "summary.csv").read_text().count("\n") == 9
    assert (out_dir / "val_curves.png").stat().st_size > 1000
    summary = [r for r in store.search_runs(uri, "switch-vs-dense")
               if r.data.tags.get(store.T_KIND) == "summary"]
    assert len(summary) == 1 and summary[0].info.status == "FINISHED"
    assert main(["report"]) == 0
    report = (tmp_runs / "results" / "README.md").read_text()
    # smoke results test the pipeline, not the claims: never folded into the report
    assert "switch-vs-dense/smoke/claims.md" not in report
    assert "the step speedup grows with the number of experts" not in report
    assert "Smoke-scale results (switch-vs-dense/smoke)" in report


def _assert_verdicts_follow_the_rule(out_dir, claims_md):
    """Each claim's own verdict must be the one its test gives (p <= 0.05 in the direction of
    the smaller one-sided p, and, under a group-sequential design, the boundary crossed), and
    its interval must be the one its stated type gives for its stated mean / sd / n (the t 95%
    CI recomputed here with scipy; the repeated CI from the design's committed boundary)."""
    import json
    import math

    from scipy import stats as sps

    from repro.experiments.sequential import Design

    data = json.loads((out_dir / "claims.json").read_text())
    checked = 0
    for c in data["claims"]:
        assert f"**{c['verdict']}**" in claims_md, c["name"]
        n = c["seeds"]["used"]
        if c.get("p") is None or n < 2 or c["interval"] not in ("t 95% CI",
                                                                "repeated 95% CI (HSD)"):
            continue  # rates, deterministic and pending claims: tests/experiments/test_verdicts
        if c["interval"] == "t 95% CI":
            crit = sps.t.ppf(0.975, n - 1)
        else:
            crit = Design(c["seeds"]["planned"], c["seeds"]["max"]).boundary(n)
        half = crit * c["sd"] / math.sqrt(n)
        lo, hi = c["ci"]
        assert lo == pytest.approx(c["estimate"] - half, abs=1e-9), c["name"]
        assert hi == pytest.approx(c["estimate"] + half, abs=1e-9), c["name"]
        want = "inconclusive"
        if c["p"] <= 0.05 and c["crossed"]:
            want = "reproduced" if c["p_for"] <= c["p_against"] else "not reproduced"
        assert c["own_verdict"] == want, (c["name"], c["p"], c["own_verdict"])
        checked += 1
    assert checked >= 2, "no claim with a t-based interval was checked"
