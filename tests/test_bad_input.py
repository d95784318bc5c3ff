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

from tests._forkcli import fork_cli, seed_store

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
        from repro.experiments.resolve import prepare_data, run_key
        from repro.experiments.runner import checkpoint_dir
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
    # ---- issue 14: out-of-domain values (the class is in TestEveryNumericField; these go
    # through the CLI and must create no MLflow run)
    ("lr-inf", [*SHZ, "--set", "train.lr=inf"], {}, None,
     ["train.lr", "inf", "> 0 and finite", "0.001 (the default)"]),
    ("weight-decay-inf", [*SHZ, "--set", "train.weight_decay=inf"], {}, None,
     ["train.weight_decay", ">= 0 and finite"]),
    ("init-std-nan", [*SHZ, "--set", "model.init_std=nan"], {}, None,
     ["model.init_std", "nan", "> 0"]),
    ("rope-theta-zero", [*SHZ, "--set", "model.rope_theta=0"], {}, None,
     ["model.rope_theta", "> 0"]),
    ("norm-eps-negative", [*SHZ, "--set", "model.norm_eps=-1e-5"], {}, None,
     ["model.norm_eps", "> 0"]),
    ("data-seed-negative", [*SHZ, "--set", "data.data_seed=-1"], {}, None,
     ["data.data_seed", "[0, 2**32)"]),
    ("data-seed-2-32", [*SHZ, "--set", "data.data_seed=4294967296"], {}, None,
     ["data.data_seed", "[0, 2**32)"]),
    ("ec-capacity-inf", ["run", "ec-capacity-factor-sweep", *SMOKE, "--set",
                         "model.ffn.router.capacity_factor=inf"], {}, None,
     ["model.ffn.router.capacity_factor", "finite"]),
    ("switch-eval-capacity-inf", [*SHZ, "--set", "model.ffn.router.kind=switch",
                                  "model.ffn.router.eval_capacity_factor=inf"], {}, None,
     ["model.ffn.router.eval_capacity_factor", "finite", "(or none)"]),
    ("n-experts-huge", [*SHZ, "--set", "model.ffn.n_experts=10000000"], {}, None,
     ["model.ffn.n_experts", "GiB of training state", "<= 64 GiB"]),
    ("vocab-huge", [*SHZ, "--set", "data.vocab_size=1000000000"], {}, None,
     ["data.vocab_size", "GiB", "<= 64 GiB"]),
    # ---- Lightning-level settings
    ("unknown-strategy", [*SHZ, "--set", "trainer.strategy=dpp"], {}, None,
     ["trainer.strategy", "'dpp'", "allowed: auto, ddp"]),
    ("accelerator-gpu-without-gpu", [*SHZ, "--set", "trainer.accelerator=gpu"],
     {"CUDA_VISIBLE_DEVICES": ""}, None, ["trainer.accelerator", "no CUDA", "cpu"]),
    ("fp16-mixed-on-cpu", [*SHZ, "--set", "train.precision=16-mixed", "trainer.accelerator=cpu"],
     {}, None, ["train.precision", "16-mixed", "bf16", "32-true"]),
    # ---- data found bad before any run
    ("binary-text-source", [*SHZ, "--set", "data.source=text:{tmp}/garbage.bin",
                            "data.vocab_size=512"], {}, None,
     ["{tmp}/garbage.bin", "binary", "UTF-8"]),
    ("malformed-json-source", [*SHZ, "--set", "data.source=json:{tmp}/bad.jsonl",
                               "data.vocab_size=512"], {}, None,
     ["{tmp}/bad.jsonl", "line 2", "not valid JSON"]),
    ("hf-offline", [*SHZ, "--set", "data.source=hf:someone/some-dataset", "data.vocab_size=512"],
     {"HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_OFFLINE": "", "HF_DATASETS_OFFLINE": ""},
     None, ["hf:someone/some-dataset", "unreachable", "HF_HUB_OFFLINE=1"]),
    # ---- command line
    ("jobs-too-many", [*SHZ, "--jobs", "100000"], {}, None, ["--jobs", "100000", "CPUs"]),
    ("duplicate-set-key", [*SHZ, "--set", "train.lr=0.01", "train.lr=0.02"], {}, None,
     ["--set", "train.lr", "twice", "once"]),
    ("arm-empty", [*SHZ, "--arm", ""], {}, None, ["--arm", "empty arm name"]),
    ("arm-empty-entry", [*SHZ, "--arm", "imp0.1-load0.1,"], {}, None, ["--arm", "empty"]),
    ("sweep-timeout-nan", ["sweep", "switch-vs-dense", *SMOKE, "--arm", "dense", "--timeout",
                           "nan"], {}, None, ["--timeout", "finite", "nan"]),
    ("sweep-timeout-inf", ["sweep", "switch-vs-dense", *SMOKE, "--arm", "dense", "--timeout",
                           "inf"], {}, None, ["--timeout", "finite"]),
    ("sweep-timeout-negative", ["sweep", "switch-vs-dense", *SMOKE, "--arm", "dense",
                                "--timeout", "-5"], {}, None, ["--timeout", "> 0"]),
    ("sweep-seed-negative", ["sweep", "switch-vs-dense", *SMOKE, "--arm", "dense", "--seed",
                             "-1"], {}, None, ["--seed", "2**32"]),
    ("sweep-storage-under-file", ["sweep", "switch-vs-dense", *SMOKE, "--arm", "dense",
                                  "--storage", "sqlite:///{tmp}/a-file/optuna.db"], {}, None,
     ["--storage", "{tmp}/a-file", "a file is in the way"]),
    ("sweep-unknown-strategy", ["sweep", "switch-vs-dense", *SMOKE, "--arm", "dense", "--set",
                                "trainer.strategy=dpp"], {}, None, ["trainer.strategy", "dpp"]),
    ("results-dir-is-a-file-check", ["check", "switch-vs-dense", *SMOKE],
     {"REPRO_RESULTS_DIR": "{tmp}/a-file"}, None, ["REPRO_RESULTS_DIR", "regular file"]),
    ("results-dir-under-a-file-report", ["report"], {"REPRO_RESULTS_DIR": "{tmp}/a-file/res"},
     None, ["REPRO_RESULTS_DIR", "regular file"]),
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
    (tmp_path / "garbage.bin").write_bytes(bytes(range(256)) * 16)
    (tmp_path / "bad.jsonl").write_text('{"text": "to be"}\n{"text": or not to be}\n')
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
        frag = frag.format(**fmt)
        assert frag in lines[0], (frag, lines[0])
    if setup is None:  # refused before the first MLflow run was created
        assert _n_runs(tmp_path / "runs" / "mlflow.db") == 0, lines[0]


def _n_runs(db: Path) -> int:
    import sqlite3

    if not db.exists():
        return 0
    with sqlite3.connect(db) as con:
        return con.execute("select count(*) from runs").fetchone()[0]


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


# ------------------------------------------------------------------ every numeric field, by class
def _config_classes():
    """(class, dotted prefix in RunConfig, overrides that select it) for every registered config
    dataclass: the run, model, data, train and trainer configs, every FFN block, every router."""
    from repro.config import variant_names
    from repro.data.config import DataConfig
    from repro.layers.base import FFN_BLOCKS, FFNConfig
    from repro.lit.config import RunConfig, TrainConfig, TrainerConfig
    from repro.models.lm import ModelConfig
    from repro.routers.base import ROUTERS, RouterConfig

    out = [(RunConfig, "", []), (ModelConfig, "model", []), (DataConfig, "data", []),
           (TrainConfig, "train", []), (TrainerConfig, "trainer", [])]
    for kind in variant_names(FFNConfig):
        out.append((FFN_BLOCKS.get(kind).Config, "model.ffn", [f"model.ffn.kind={kind}"]))
    for kind in variant_names(RouterConfig):
        out.append((ROUTERS.get(kind).Config, "model.ffn.router",
                    ["model.ffn.kind=moe", f"model.ffn.router.kind={kind}"]))
    return out


def _field_cases():
    from repro.config import numeric_fields

    cases = []
    for cls, prefix, select in _config_classes():
        for name, (tp, _) in numeric_fields(cls).items():
            values = ["nan", "inf", "-inf", "-1", "0"] if tp is float else \
                ["-1", "0", str(2**64), "nan", "1.5"]
            for v in values:
                cases.append(pytest.param(cls, f"{prefix}.{name}", name, tp, select, v,
                                          id=f"{cls.__name__}.{name}={v}"))
    return cases


class TestEveryNumericField:
    """Property over the config classes: every int/float field of every registered config has a
    declared domain, and nan / inf / negative / zero / oversized values outside it are refused at
    construction with a ConfigError that starts with the field's dotted path (one line)."""

    def test_every_numeric_field_declares_a_domain(self):
        from repro.config import numeric_fields

        missing = [f"{cls.__name__}.{n}" for cls, _, _ in _config_classes()
                   for n in numeric_fields(cls) if n not in cls.__domains__]
        assert not missing, f"numeric fields without a declared domain (DOMAINS): {missing}"
        assert sum(len(numeric_fields(c)) for c, _, _ in _config_classes()) >= 50

    @pytest.mark.parametrize("cls, path, name, tp, select, value", _field_cases())
    def test_out_of_domain_value_names_the_field(self, cls, path, name, tp, select, value):
        import math

        from repro.config import ConfigError, apply_overrides
        from repro.lit.config import RunConfig

        base = apply_overrides(RunConfig(), select)
        assert type(eval("base." + path.rsplit(".", 1)[0]) if "." in path else base) is cls
        num = float(value)
        allowed = (tp is float or num.is_integer()) and math.isfinite(num) and \
            cls.__domains__[name].contains(int(num) if tp is int else num)
        try:
            apply_overrides(base, [*select, f"{path}={value}"])
        except ConfigError as e:
            msg = str(e)
            assert "\n" not in msg
            if not allowed:
                assert msg.startswith(f"{path}:") and value.lstrip("-") in msg, msg
                if num == num and not (tp is int and not num.is_integer()):
                    assert "must be" in msg and "set " in msg, msg  # the domain and the fix
            return
        assert allowed, f"{path}={value} was accepted outside its domain"

    @pytest.mark.parametrize("override, field", [
        ("model.ffn.n_experts=100000", "model.ffn.n_experts"),
        ("data.vocab_size=1000000000", "data.vocab_size"),
        ("model.d_model=400000", "model.d_model"),
        ("train.batch_size=100000000", "train.batch_size"),
    ])
    def test_memory_estimate_names_the_size_field(self, override, field):
        from repro.config import ConfigError, apply_overrides
        from repro.lit.config import RunConfig

        with pytest.raises(ConfigError) as e:
            apply_overrides(RunConfig(), ["model.ffn.kind=moe", override])
        assert str(e.value).startswith(f"{field}:") and "GiB" in str(e.value), str(e.value)

    def test_capacity_none_stays_allowed(self):
        from repro.config import apply_overrides
        from repro.lit.config import RunConfig

        for kind in ("switch", "topk"):
            run = apply_overrides(RunConfig(), [
                "model.ffn.kind=moe", f"model.ffn.router.kind={kind}",
                "model.ffn.router.capacity_factor=none",
                "model.ffn.router.eval_capacity_factor=none"])
            assert run.model.ffn.router.capacity_factor is None


# ------------------------------------------------------------- partial checks, report, CLI words
def _fake_results(runs):
    from repro.experiments.claims import Results, RunRecord

    return Results({(a, s): RunRecord(a, s, f"run-{a}-{s}", [(10, 3.0)]) for a, s in runs})


# a complete result as `repro check` writes it (the fields read_claims checks), no claims
COMPLETE = ('{"experiment": "switch-vs-dense", "scale": "smoke", "env": "e", "seeds": {}, '
            '"claims": [], "missing": []}\n')


class TestPartialCheck:
    """`repro check` on an incomplete grid says what is missing and never replaces a complete
    result unless --partial; `repro report` never folds smoke results in."""

    @pytest.fixture
    def exp(self, monkeypatch):
        from dataclasses import replace

        from repro.experiments import check
        from repro.experiments.base import get_experiment

        monkeypatch.setattr(check, "prepare_data", lambda *a, **k: None)
        monkeypatch.setattr(check, "collect", lambda *a, **k: _fake_results(
            [("dense", 0), ("dense", 1)]))
        monkeypatch.setattr(check, "extra_seeds", lambda *a, **k: [])  # no store here
        # the case: 2 of 12 (arm, seed) runs finished
        return replace(get_experiment("switch-vs-dense", "smoke"), analyses=(), claims=(),
                       seeds=(0, 1, 2))

    def test_refuses_to_replace_a_complete_result(self, exp, tmp_path):
        from repro.experiments.check import IncompleteGridError, check_experiment

        out = tmp_path / "res"
        out.mkdir()
        (out / "claims.json").write_text(COMPLETE)
        (out / "val_curves.png").write_bytes(b"complete")
        with pytest.raises(IncompleteGridError) as e:
            check_experiment(exp, uri="sqlite:///" + str(tmp_path / "m.db"), out_dir=out)
        msg = str(e.value)
        assert "\n" not in msg and "--partial" in msg and str(out) in msg
        assert msg.startswith("10 of 12 runs") and "dense seed 2;" in msg, msg
        assert "switch-e4 seeds 0,1,2" in msg, msg
        assert (out / "val_curves.png").read_bytes() == b"complete"  # nothing rewritten
        assert (out / "claims.json").read_text() == COMPLETE

    def test_partial_says_what_is_missing(self, exp, tmp_path):
        from repro.experiments.check import evaluate_claims

        said = []
        out = tmp_path / "res"
        out.mkdir()
        (out / "claims.json").write_text(COMPLETE)
        results, _, _ = evaluate_claims(exp, "unused", [], None, out, partial=True,
                                        echo=said.append)
        assert ("switch-e4", 0) in results.missing and ("dense", 2) in results.missing
        assert len(said) == 1 and "partial check" in said[0] and "10 of 12 runs" in said[0]

    def test_report_leaves_smoke_out(self, tmp_path):
        import json

        from repro.experiments.report import write_report

        claim = {"name": "c", "statement": "s", "paper": "p", "source": "x", "measured": "m",
                 "verdict": "supported"}
        for scale, missing in (("smoke", []), ("cpu", []), ("gpu", [["dense", 2]])):
            d = tmp_path / "exp" / scale
            d.mkdir(parents=True)
            (d / "claims.json").write_text(json.dumps({
                "experiment": "exp", "scale": scale, "seeds": {"dense": [0, 1]},
                "env": "e", "verdict_rule": "t95-paired", "claims": [claim],
                "missing": missing}))
        text = write_report(tmp_path).read_text()
        assert "| smoke |" not in text and "| cpu |" in text and "| gpu |" in text
        assert "partial: 1 runs missing" in text and "Smoke-scale results (exp/smoke)" in text
        # claims.json files of the earlier t95 rule are legacy: listed, never in a total
        assert "## Legacy results (not re-judged, not in any total)" in text
        assert "Totals" not in text
        # checked at cpu and gpu: one row across scales; the partial mark is not a change
        assert "## Verdicts across scales" in text
        assert "| exp | s | supported (2 seeds) | supported (partial: 1 runs missing) (2 seeds) " \
               "| no |" in text

    def test_report_lines_up_a_claims_verdicts_across_scales(self):
        from repro.experiments.report import across_scales

        def c(v, name="a"):
            return {"name": name, "statement": f"claim {name}", "verdict": v}

        rows = [("e", "cpu", c("reproduced"), 4, "", ""),
                ("e", "cpu-v1", {**c("not reproduced (±1 sd rule)"), "statement": "old words"},
                 3, "", ""),
                ("e", "cpu", c("inconclusive", "b"), 4, "", ""),  # one scale: left out
                ("f", "cpu-v1", c("inconclusive"), 3, "", ""),
                ("f", "cpu", c("inconclusive"), 3, "", "")]
        text = "\n".join(across_scales(rows))
        assert "| experiment | claim | cpu-v1 | cpu | changed |" in text  # older scale first
        assert "| e | claim a | not reproduced (±1 sd rule) (3 seeds) | reproduced (4 seeds) " \
               "| yes |" in text
        assert "| f | claim a | inconclusive (3 seeds) | inconclusive (3 seeds) | no |" in text
        assert "claim b" not in text and "(2)" in text and "old words" not in text
        assert across_scales(rows[2:3]) == []


class TestCommandLineWords:
    def test_ui_warns_on_a_non_loopback_host(self, tmp_path, capsys, monkeypatch):
        from repro.cli import main

        monkeypatch.setenv("REPRO_RUNS_DIR", str(tmp_path))
        assert main(["ui", "--dry-run", "--port", "5998", "--host", "0.0.0.0"]) == 0
        err = capsys.readouterr().err
        assert "warning: --host 0.0.0.0 is not a loopback address" in err and "MLflow" in err
        assert main(["ui", "--dry-run", "--port", "5998", "--host", "127.0.0.1"]) == 0
        assert "warning" not in capsys.readouterr().err

    def test_jobs_clamped_to_the_grid(self, monkeypatch):
        from repro.experiments import runner
        from repro.experiments.options import RunOptions

        seen = {}
        monkeypatch.setattr(runner, "_train_in_process",
                            lambda grid, *a: seen.setdefault("grid", grid) and ([], []))
        said = []
        runner._train_grid([("exp", "dense", 0)], RunOptions(uri="uri", progress=False,
                                                             echo=said.append, jobs=8))
        assert said == ["[repro] --jobs 8: only 1 run(s) to train; using 1 process(es)"]

    def test_truncated_final_weights_name_the_path(self, tmp_path):
        import torch

        from repro.config import to_dict
        from repro.experiments.studies import load_model
        from repro.lit.checkpoint import CheckpointError
        from repro.lit.config import RunConfig
        from repro.models.lm import LM

        run = RunConfig()
        path = tmp_path / "final.pt"
        torch.save(LM(run.model).state_dict(), path)
        blob = path.read_bytes()
        path.write_bytes(blob[: len(blob) // 2])
        with pytest.raises(CheckpointError) as e:
            load_model({"run": to_dict(run)}, str(path))
        assert str(path) in str(e.value) and "\n" not in str(e.value)
        assert "--force" in str(e.value)
