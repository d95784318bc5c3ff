"""Contention records: which repro processes count as peers, found in a (fabricated) /proc."""

from __future__ import annotations

import math

from repro.lit.contention import ContentionSampler, peer_label, training_peers


def _proc(tmp_path, pid: int, argv: list[str], ppid: int = 1):
    d = tmp_path / str(pid)
    d.mkdir()
    (d / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")
    (d / "stat").write_text(f"{pid} (python3) S {ppid} 0 0")


def test_peer_labels():
    child = ["python3", "-c", "import sys; from repro.cli import main", "run", "moe-vs-dense",
             "--arm", "dense", "--seeds", "0", "--no-progress"]
    assert peer_label(child) == "run moe-vs-dense --arm dense --seeds 0"
    assert peer_label(["/venv/bin/repro", "run", "all", "--jobs", "2"]) is None  # a waiting parent
    assert peer_label(["/venv/bin/repro", "run", "all", "--jobs", "1"]) == "run all"
    assert peer_label(["python", "-m", "repro.bench.lm_throughput"]) == "bench lm_throughput"
    assert peer_label(["python", "-m", "pytest", "tests/test_cli.py"]) is None
    assert peer_label(["/venv/bin/repro", "ls"]) is None


def test_training_peers_skip_self_and_ancestors(tmp_path):
    _proc(tmp_path, 10, ["/venv/bin/repro", "run", "x", "--jobs", "1"])  # my parent
    _proc(tmp_path, 11, ["/venv/bin/repro", "run", "x", "--arm", "a"], ppid=10)  # me
    _proc(tmp_path, 12, ["/venv/bin/repro", "run", "y", "--arm", "b"])  # a peer
    _proc(tmp_path, 13, ["bash"])
    assert training_peers(tmp_path, me=11) == {12: "run y --arm b"}
    s = ContentionSampler(tmp_path)
    s.proc = tmp_path
    s.sample()
    out = s.summary()
    assert out["peers_max"] >= 1 and math.isfinite(out["load_mean"])
    again = ContentionSampler(tmp_path)
    again.load_state_dict(s.state_dict())  # survives a resume
    assert again.summary() == out
