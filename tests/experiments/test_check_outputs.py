"""What `repro check` writes for the calibrated-scale issue: whole-run drop rates, intervals,
effect sizes and the loss gap along the budget (smoke runs in an isolated store)."""

import csv
import json
import math
import subprocess
import sys

from repro.cli import main
from repro.experiments.base import get_experiment


def test_check_writes_whole_run_drops_intervals_and_gaps(tmp_runs):
    from repro.tracking import store as ts

    assert main(["run", "switch-vs-dense", "--scale", "smoke", "--arm", "dense,switch-e4",
                 "--seeds", "0,1", "--no-progress"]) == 0
    assert main(["check", "switch-vs-dense", "--scale", "smoke", "--seeds", "0,1"]) == 0
    out = tmp_runs / "results" / "switch-vs-dense" / "smoke"
    rows = list(csv.DictReader((out / "summary.csv").open()))
    uri = ts.resolve_uri()
    for row in rows:
        if row["arm"] != "switch-e4":
            assert row[ts.M_DROP_MEAN] == ""  # dense: no routing, no drop metric
            continue
        hist = ts.metric_history(uri, row["run_id"], ts.M_DROP)
        assert len(hist) >= 3  # a curve over the run, not one final value
        mean = sum(v for _, v in hist) / len(hist)
        assert math.isclose(float(row[ts.M_DROP_MEAN]), mean, rel_tol=1e-5)
        assert float(row[ts.M_DROP_MEAN]) > 0  # capacity 1.25 drops some tokens at this size
    assert (out / "drop_curves.png").stat().st_size > 0
    payload = json.loads((out / "claims.json").read_text())
    assert payload["verdict_rule"] == "v2-registered"  # the registered engine (issue 28)
    speed = next(c for c in payload["claims"] if c["name"] == "speedup-e4")
    # curves.csv is committed with the check, so the uncensored speedup delta is computed
    assert speed["seeds"]["used"] == 2 and len(speed["ci"]) == 2 and speed["p"] is not None
    assert speed["ci"][0] <= speed["estimate"] <= speed["ci"][1]
    assert len(speed["per_seed"]["delta"]) == 2
    assert set(speed["budget"]["at"]) == {"0.25", "0.5", "1.0"}
    assert (out / "curves.csv").stat().st_size > 0
    assert (out / "gap-speedup-e4.png").stat().st_size > 0
    # every claim of a smoke check without a lock is exploratory; no scale gate was checked
    assert {c["lock"] for c in payload["claims"]} <= {"no lock", "registered exploratory"}
    md = (out / "claims.md").read_text()
    assert "t 95% CI" in md and "Loss gaps along the training" in md
    assert "| family | test | seeds used / planned / max |" in md


def test_check_includes_seeds_grown_beyond_the_experiments(tmp_runs):
    """After `--seeds auto` grew an experiment, a plain `repro check` uses every seed that all
    arms finished; a seed only some arms have (a ragged grid) is left out."""
    sets = ["--set", "train.max_steps=4", "--set", "train.eval_every=2"]
    base = ["moe-vs-dense", "--scale", "smoke", *sets]
    assert main(["run", *base, "--seeds", "0,1,5", "--no-progress"]) == 0
    assert main(["run", *base, "--arm", "dense", "--seeds", "6", "--no-progress"]) == 0
    assert main(["check", *base]) == 0
    out = tmp_runs / "results" / "moe-vs-dense" / "smoke"
    payload = json.loads((out / "claims.json").read_text())
    arms = [a.name for a in get_experiment("moe-vs-dense", "smoke").arms]
    assert payload["seeds"] == {a: [0, 1, 5] for a in arms}
    assert all(c["seeds"]["used"] == 3 for c in payload["claims"] if not c["pending"])
    # a check on fewer seeds never replaces the committed 3-seed result (issue 28)
    before = (out / "claims.json").read_bytes()
    assert main(["check", *base, "--seeds", "0,1"]) == 2
    assert (out / "claims.json").read_bytes() == before


def _snapshot(out):
    return {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}


def test_check_on_a_full_disk_names_the_file_and_leaves_no_half_written_file(tmp_runs,
                                                                              monkeypatch,
                                                                              capsys):
    """ENOSPC in the middle of `repro check`: exit 1, one line naming the file; that file keeps
    its previous complete content, every other file is complete (old or new), no temp file is
    left. With too little free space up front, check refuses before writing anything."""
    import errno
    import os

    sets = ["--set", "train.max_steps=4", "--set", "train.eval_every=2"]
    base = ["switch-vs-dense", "--scale", "smoke", *sets, "--seeds", "0,1"]
    assert main(["run", *base, "--arm", "dense,switch-e4", "--no-progress"]) == 0
    assert main(["check", *base]) == 0
    out = tmp_runs / "results" / "switch-vs-dense" / "smoke"
    before = _snapshot(out)
    assert {"claims.json", "claims.md", "summary.csv"} <= set(before)

    # the disk fills during the third result file: its write fails half-way through
    real_fdopen, written = os.fdopen, []

    class Full:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, data):
            self.f.write(data[:len(data) // 2])
            self.f.flush()
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def fdopen(fd, mode="r", *a, **kw):
        f = real_fdopen(fd, mode, *a, **kw)
        target = os.readlink(f"/proc/self/fd/{fd}")
        if mode == "wb" and target.startswith(str(out)) and target.endswith(".tmp"):
            written.append(target)
            if len(written) == 3:
                return Full(f)
        return f

    capsys.readouterr()
    monkeypatch.setattr(os, "fdopen", fdopen)
    assert main(["check", *base]) == 1
    monkeypatch.setattr(os, "fdopen", real_fdopen)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "No space left on device" in err[0], err
    name = os.path.basename(written[2]).split(".")[1:-2]  # .NAME.EXT.<random>.tmp
    failed = ".".join(name)
    assert f"cannot write {out / failed}:" in err[0]
    after = _snapshot(out)
    assert after[failed] == before[failed]  # the file being written when the disk filled
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]  # no temp left
    assert set(after) == set(before)
    json.loads(after["claims.json"])  # every file complete: JSON parses, PNGs end properly
    assert all(v.endswith(b"IEND\xaeB`\x82") for k, v in after.items() if k.endswith(".png"))
    # every file of a check is staged beside the folder and swapped in whole: the previous
    # complete folder is byte-identical, no staging folder is left
    assert after == before
    assert sorted(p.name for p in out.parent.iterdir()) == ["smoke"]

    # a check killed (-9) part-way left its staging folder (and a temp file in the results
    # folder from before staging); the next check removes them and replaces the folder whole
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    left = out.parent / f"smoke.staging-{dead.pid}-x1y2"
    left.mkdir()
    (left / "claims.md").write_text("half")
    (out / "sweep-switch-e4-capacity.json").write_text("{}")  # another command's file
    stale = out / ".claims.md.k3x9abcd.tmp"
    stale.write_text("half")
    os.utime(stale, (0, 0))
    assert main(["check", *base]) == 0
    assert not stale.exists()
    assert sorted(p.name for p in out.parent.iterdir()) == ["smoke"]
    assert (out / "sweep-switch-e4-capacity.json").read_text() == "{}"  # kept
    after = _snapshot(out)

    # almost no space left: refused before anything is written, the results unchanged
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10**9, 10**9 - 2**20, 2**20))
    assert main(["check", *base]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"cannot write {tmp_runs / 'results'}: only 1.0 MiB free" in err[0]
    assert _snapshot(out) == after
