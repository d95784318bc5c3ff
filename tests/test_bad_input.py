"""Every user mistake: one line on stderr naming the field, the allowed values and the fix; exit
code 2; no traceback (unless --debug).

Each case runs ``repro ...`` in its own process (forked from the test process, see _forkcli.py)
against a fresh runs/ directory. tests/test_cli.py covers the same contract through a real
``python -m repro.cli`` subprocess for a few cases (unknown experiment / arm, bad scale,
malformed --set, bad --seeds); this table covers the rest.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from _forkcli import fork_cli, seed_store

SMOKE = ["--scale", "smoke"]
SHZ = ["run", "shazeer-balance-ablation", *SMOKE, "--no-progress"]  # all arms noisy top-2 of 16
RESUME = ["run", "shazeer-balance-ablation", *SMOKE, "--arm", "imp0.1-load0.1", "--seeds", "0",
          "--no-progress"]


def _interrupted_run_with_checkpoint(payload: bytes | None):
    """In the child: an interrupted (KILLED) run of RESUME's (arm, seed) whose last.ckpt is
    ``payload`` (None: a directory where the file should be)."""
    def setup():
        from dataclasses import replace

        from repro.experiments.base import get_experiment
        from repro.experiments.runner import checkpoint_dir, prepare_data, run_key
        from repro.tracking import store

        exp = get_experiment("shazeer-balance-ablation", "smoke")
        base = exp.run_config("imp0.1-load0.1", [])
        dm = prepare_data(base, 0)
        run = replace(base, model=replace(base.model, vocab_size=dm.vocab_size))
        key = run_key(run, dm.fingerprint, 0)
        uri = store.resolve_uri()
        c = store.client(uri)
        rid = c.create_run(store.ensure_experiment(uri, exp.name),
                           tags={store.T_KEY: key, store.T_KIND: "train"}).info.run_id
        c.set_terminated(rid, "KILLED")
        path = checkpoint_dir(key) / "last.ckpt"
        path.parent.mkdir(parents=True)
        if payload is None:
            path.mkdir()
        else:
            path.write_bytes(payload)
    return setup


# (id, argv, extra env, setup in child, fragments that must all appear in the one line)
CASES = [
    ("unknown-experiment", ["show", "swich-vs-dense", *SMOKE], {}, None,
     ["did you mean", "switch-vs-dense"]),
    ("unknown-arm", ["run", "switch-vs-dense", *SMOKE, "--arm", "switch-e5"], {}, None,
     ["did you mean", "switch-e4"]),
    ("unknown-router", [*SHZ, "--set", "model.ffn.router.kind=noisy-topk"], {}, None,
     ["model.ffn.router.kind", "noisy_topk", "choose one of"]),
    ("unknown-space", ["sweep", "switch-vs-dense", *SMOKE, "--arm", "dense", "--space", "lrr",
                       "--show"], {}, None, ["--space", "lr", "choose one of"]),
    ("malformed-set", [*SHZ, "--set", "model.ffn.router.top_k"], {}, None,
     ["--set", "KEY=VALUE"]),
    ("unknown-key", [*SHZ, "--set", "model.ffn.top_k=2"], {}, None,
     ["model.ffn.top_k", "unknown config key", "keys here"]),
    ("wrong-type", [*SHZ, "--set", "model.ffn.router.top_k=2.5"], {}, None,
     ["model.ffn.router.top_k", "integer"]),
    ("k-greater-than-E", [*SHZ, "--set", "model.ffn.router.top_k=17"], {}, None,
     ["model.ffn.router.top_k", "n_experts=16", "top_k <= n_experts"]),
    ("k-below-1", [*SHZ, "--set", "model.ffn.router.top_k=0"], {}, None,
     ["model.ffn.router.top_k", ">= 1"]),
    ("capacity-factor-zero", ["run", "ec-capacity-factor-sweep", *SMOKE, "--set",
                              "model.ffn.router.capacity_factor=0"], {}, None,
     ["model.ffn.router.capacity_factor", "> 0"]),
    ("all-with-arm", ["run", "all", *SMOKE, "--arm", "dense"], {}, None,
     ["--arm", "repro run all", "name the experiment"]),
    ("jobs-zero", [*SHZ, "--jobs", "0"], {}, None, ["--jobs", ">= 1", "--jobs 2"]),
    ("rho-above-1", [*SHZ, "--set", "model.ffn.neuron_ratio=1.5"], {}, None,
     ["model.ffn.neuron_ratio", "(0, 1]"]),
    ("rho-zero", [*SHZ, "--set", "model.ffn.neuron_ratio=0"], {}, None,
     ["model.ffn.neuron_ratio", "(0, 1]"]),
    ("MxK-not-dividing-d_ff", ["run", "finedeep-mk-ablation", *SMOKE, "--set",
                               "model.ffn.n_experts=3"], {}, None,
     ["model.ffn.n_experts", "must divide d_ff", "pick M, K"]),
    ("unmatched-arms", ["run", "deepseekmoe-ablation", *SMOKE, "--set", "model.ffn.n_shared=2"],
     {}, None, ["total_params", "2% tolerance", "repro.compute.match_"]),
    ("missing-corpus", ["run", "switch-vs-dense", "--arm", "dense", "--seeds", "0"],
     {"REPRO_CORPUS_PATH": "/nonexistent/shakespeare.jsonl.xz"}, None,
     ["/nonexistent/shakespeare.jsonl.xz", "missing or unreadable", "REPRO_CORPUS_PATH"]),
    ("corrupt-corpus", ["run", "switch-vs-dense", "--arm", "dense", "--seeds", "0"],
     {"REPRO_CORPUS_PATH": "{tmp}/corrupt.jsonl.xz"}, None,
     ["corrupt", "sha256", "expected 446534b9e04b"]),
    ("corrupt-checkpoint", RESUME, {}, _interrupted_run_with_checkpoint(b"not a checkpoint"),
     ["last.ckpt", "corrupt", "delete", "--force"]),
    ("truncated-checkpoint", RESUME, {}, _interrupted_run_with_checkpoint(b"PK\x03\x04" * 8),
     ["last.ckpt", "corrupt", "delete"]),
    ("unreadable-checkpoint", RESUME, {}, _interrupted_run_with_checkpoint(None),
     ["last.ckpt", "unreadable", "delete"]),
    ("unwritable-runs-dir", ["run", "switch-vs-dense", *SMOKE],
     {"REPRO_RUNS_DIR": "{tmp}/a-file/runs"}, None,
     ["not writable", "REPRO_RUNS_DIR", "--tracking-uri"]),
    ("tracking-uri-unreachable", ["run", "switch-vs-dense", *SMOKE, "--tracking-uri",
                                  "http://127.0.0.1:9"], {}, None,
     ["http://127.0.0.1:9", "unreachable", "start the server"]),
    ("scale-gpu-without-gpu", ["run", "switch-vs-dense", "--scale", "gpu"],
     {"CUDA_VISIBLE_DEVICES": ""}, None, ["--scale gpu", "no CUDA device", "--scale cpu"]),
    ("ui-port-in-use", ["ui", "--port", "{port}", "--dry-run"], {}, None,
     ["--port", "already in use", "another --port"]),
    ("doctor-unreachable-store", ["doctor", "--tracking-uri", "http://127.0.0.1:9"], {}, None,
     ["unreachable"]),
]


@pytest.fixture(scope="module")
def busy_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    yield s.getsockname()[1]
    s.close()


@pytest.mark.parametrize("name, argv, env, setup, fragments", CASES, ids=[c[0] for c in CASES])
def test_bad_input_one_line_exit_2(name, argv, env, setup, fragments, tmp_path, busy_port):
    if name == "scale-gpu-without-gpu":
        import torch

        if torch.cuda.is_available():
            pytest.skip("a GPU is present")
    seed_store(tmp_path / "runs")
    (tmp_path / "a-file").write_text("a file where runs/ should be a directory\n")
    good = Path(__file__).resolve().parents[1] / "repro" / "data" / "corpus" / \
        "shakespeare.jsonl.xz"
    blob = bytearray(good.read_bytes())
    blob[len(blob) // 2] ^= 0xFF  # one flipped byte in a copy; the shipped file is untouched
    (tmp_path / "corrupt.jsonl.xz").write_bytes(bytes(blob))
    fmt = {"tmp": str(tmp_path), "port": str(busy_port)}
    env = {"REPRO_RUNS_DIR": str(tmp_path / "runs"), "REPRO_RESULTS_DIR": str(tmp_path / "res"),
           "MLFLOW_TRACKING_URI": "", **{k: v.format(**fmt) for k, v in env.items()}}
    argv = [a.format(**fmt) for a in argv]
    rc, out, err = fork_cli(argv, env=env, setup=setup)
    lines = err.strip().splitlines()
    assert rc == 2, f"rc={rc}\nstdout:\n{out[-1500:]}\nstderr:\n{err[-3000:]}"
    assert len(lines) == 1 and "Traceback" not in err, err[-3000:]
    assert lines[0].startswith("repro: error: ")
    for frag in fragments:
        assert frag in lines[0], (frag, lines[0])


def test_debug_shows_the_traceback(tmp_path):
    rc, _, err = fork_cli(["--debug", "show", "switch-vs-dense", "--scale", "smoke", "--set",
                           "model.ffn.d_ff=x"], env={"REPRO_RUNS_DIR": str(tmp_path)})
    assert rc == 1 and "Traceback" in err and "ConfigError" in err


def test_ui_binds_localhost_by_default(tmp_path, capsys, monkeypatch):
    from repro.cli import main

    monkeypatch.setenv("REPRO_RUNS_DIR", str(tmp_path))
    assert main(["ui", "--dry-run", "--port", "5999"]) == 0
    out = capsys.readouterr().out
    assert "--host 127.0.0.1" in out and "0.0.0.0" not in out
