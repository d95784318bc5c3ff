"""Plugins (``repro.plugins``): a router written in a folder outside the package is loaded from the
command line (``--plugin``), from ``REPRO_PLUGINS`` and from an installed package's entry point,
passes ``repro selftest``, and runs ``repro compare`` at smoke scale into a leaderboard; a broken
plugin is one line and exit 2. Every plugin command runs in a child process: loading a plugin
changes the registries of the process that loads it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# the router of docs/own-router.md: token i -> expert i mod E, gate 1 (no learned gate)
CONFIG = '''
from repro.config import config, variant
from repro.routers.base_config import RouterConfig


@variant("mod_router")
@config
class ModRouterConfig(RouterConfig):
    """Token i goes to expert i mod E with gate 1."""

    def experts_per_token(self, n_experts: int) -> float:
        return 1.0
'''
MODULE = '''
import torch

from repro.routers.base import ROUTERS, Router, Routing, routing_stats
from mod_router_config import ModRouterConfig


@ROUTERS.add
class ModRouter(Router):
    Config = ModRouterConfig

    def forward(self, x, shape=None):
        N = x.shape[0]  # x: [N, D]
        token = torch.arange(N, device=x.device)  # [N]
        expert = token % self.n_experts  # [N]
        weight = torch.ones(N, device=x.device)  # [N]
        stats = routing_stats(None, None, expert, N, self.n_experts)  # no logits
        return Routing(token, expert, weight, {}, stats)
'''


def write_plugin(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "mod_router_config.py").write_text(CONFIG)
    (folder / "mod_router.py").write_text(MODULE)
    return folder


def write_package(site: Path) -> Path:
    """An installed package (a .dist-info with an entry point in moe_repro.plugins) in ``site``."""
    pkg = site / "modrouterpkg"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(CONFIG + MODULE.replace(
        "from mod_router_config import ModRouterConfig\n", ""))
    info = site / "modrouterpkg-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: modrouterpkg\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[moe_repro.plugins]\nmod = modrouterpkg\n")
    return site


def repro(args: list[str], tmp: Path, env_extra: dict | None = None, timeout: int = 300):
    env = {**os.environ, "REPRO_HOME": str(tmp / "home"), "REPRO_RUNS_DIR": str(tmp / "runs"),
           "REPRO_RESULTS_DIR": str(tmp / "results"), **(env_extra or {})}
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("REPRO_PLUGINS", None) if "REPRO_PLUGINS" not in (env_extra or {}) else None
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *(env_extra or {}).get("PYTHONPATH", "")
                                         .split(os.pathsep)]).rstrip(os.pathsep)
    return subprocess.run([sys.executable, "-m", "repro.cli", *args], capture_output=True,
                          text=True, env=env, cwd=tmp, timeout=timeout)


def test_plugin_folder_from_the_command_line_is_listed(tmp_path):
    """(tests/test_own_router_doc.py runs the selftest on a --plugin folder)"""
    plug = write_plugin(tmp_path / "my_routers")
    res = repro(["--plugin", str(plug), "ls"], tmp_path)
    assert res.returncode == 0, res.stderr
    assert f"mod_router [{plug}]" in res.stdout and f"plugins:    {plug}" in res.stdout
    res = repro(["ls", "--plugin", str(plug)], tmp_path)  # after the command works too
    assert res.returncode == 0 and f"mod_router [{plug}]" in res.stdout, res.stderr


def test_plugin_from_the_environment_variable(tmp_path):
    plug = write_plugin(tmp_path / "my_routers")
    res = repro(["ls"], tmp_path, {"REPRO_PLUGINS": str(plug / "mod_router.py")})
    assert res.returncode == 0, res.stderr
    assert f"mod_router [{plug / 'mod_router.py'}]" in res.stdout


def test_plugin_from_an_installed_package_entry_point(tmp_path):
    site = write_package(tmp_path / "site")
    env = {"PYTHONPATH": str(site)}
    res = repro(["ls"], tmp_path, env)
    assert res.returncode == 0, res.stderr
    assert "mod_router [package modrouterpkg 0.1]" in res.stdout, res.stdout
    res = repro(["selftest", "mod_router"], tmp_path, env)
    assert res.returncode == 0 and "7 passed, 0 failed" in res.stdout, res.stdout + res.stderr


def test_selftest_fails_a_router_whose_accounting_is_wrong(tmp_path):
    """The contract can fail: a param_count that disagrees with the module is caught."""
    plug = write_plugin(tmp_path / "my_routers")
    cfg = plug / "mod_router_config.py"
    cfg.write_text(cfg.read_text() + textwrap.indent(textwrap.dedent('''
        def param_count(self, d_model: int, n_experts: int) -> int:
            return d_model * n_experts  # wrong: this router has no parameters
        '''), "    "))
    res = repro(["--plugin", str(plug), "selftest", "mod_router"], tmp_path)
    assert res.returncode == 1, res.stdout + res.stderr
    assert "FAIL params" in res.stdout and "FAIL flops" in res.stdout
    assert "PASS shapes" in res.stdout and "5 passed, 2 failed (params, flops)" in res.stdout


@pytest.mark.parametrize("case", ["syntax", "import", "taken-name", "missing-path"])
def test_a_broken_plugin_is_one_line_and_exit_2(tmp_path, case):
    bad = tmp_path / "bad_plugin.py"
    if case == "syntax":
        bad.write_text("x = (\n")
        want = [str(bad), "SyntaxError", "fix the file"]
    elif case == "import":
        bad.write_text("import no_such_module_anywhere\n")
        want = [str(bad), "ModuleNotFoundError", "no_such_module_anywhere", "fix the file"]
    elif case == "taken-name":
        bad.write_text(CONFIG.replace('"mod_router"', '"switch"'))
        want = [str(bad), "the router name 'switch' is already taken (built-in)",
                "give it another name in that file"]
    else:
        bad = tmp_path / "nope.py"
        want = ["--plugin", str(bad), "no such file"]
    res = repro(["--plugin", str(bad), "ls"], tmp_path)
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(lines) == 1, res.stderr
    assert all(w in lines[0] for w in want), lines[0]
    assert "Traceback" not in res.stderr


@pytest.mark.slow  # ~1 min of CPU (4 smoke runs in --jobs children, then all reused); the twin
# without a plugin is tests/experiments/test_compare.py
def test_compare_a_plugin_router_at_smoke_scale_into_a_leaderboard(tmp_path):
    plug = write_plugin(tmp_path / "my_routers")
    steps = ["--set", "train.max_steps=8", "train.eval_every=4", "train.log_every=2",
             "train.warmup_steps=2"]
    # --jobs 2: the children rebuild the plugin (REPRO_PLUGINS) and the comparison
    # (REPRO_COMPARE) themselves
    res = repro(["--plugin", str(plug), "compare", "mod_router", "--scale", "smoke",
                 "--against", "dense", "--no-progress", "--jobs", "2", *steps], tmp_path,
                timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    out = tmp_path / "runs" / "results" / "compare" / "mod_router" / "smoke"
    assert {p.name for p in out.iterdir()} == {"leaderboard.md", "leaderboard.csv",
                                               "leaderboard.json", "val_curves.png"}
    assert not (tmp_path / "results" / "compare").exists()  # smoke never lands in results/
    lb = json.loads((out / "leaderboard.json").read_text())
    assert lb["trained"] == 4 and lb["reused"] == 0 and lb["seeds"] == [0, 1]
    arms = {a["arm"]: a for a in lb["arms"]}
    assert set(arms) == {"mod_router", "dense"} and arms["mod_router"]["origin"] == str(plug)
    assert arms["mod_router"]["drop"] == 0.0 and arms["dense"]["total"] > 0
    (pair,) = lb["pairs"]
    assert (pair["router"], pair["baseline"]) == ("mod_router", "dense")
    assert pair["verdict"] in ("beats", "does not beat (worse)", "inconclusive")
    assert len(pair["gaps"]) == 2
    md = (out / "leaderboard.md").read_text()
    assert "| mod_router | dense |" in md and "Benjamini-Hochberg" in md
    assert "[repro] mod_router vs dense: gap" in res.stdout
    # a second call trains nothing: every (arm, seed) is reused by run key
    res = repro(["--plugin", str(plug), "compare", "mod_router", "--scale", "smoke",
                 "--against", "dense", "--no-progress", *steps], tmp_path, timeout=600)
    assert res.returncode == 0 and "0 runs trained, 4 reused" in res.stdout, res.stdout[-2000:]
    # the MLflow summary run carries the verdict
    code = ("from repro.tracking import store as ts\n"
            "runs = ts.search_runs(ts.resolve_uri(), 'compare-mod_router',\n"
            "                      statuses=('FINISHED',))\n"
            "s = [r for r in runs if r.data.tags.get(ts.T_KIND) == ts.ROLE_SUMMARY]\n"
            "print(len(s), s[0].data.tags.get('verdict.mod_router-beats-dense'),\n"
            "      'arm/mod_router/final_val_loss' in s[0].data.metrics)\n")
    env = {**os.environ, "REPRO_RUNS_DIR": str(tmp_path / "runs"),
           "PYTHONPATH": str(ROOT)}
    env.pop("MLFLOW_TRACKING_URI", None)
    got = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         cwd=tmp_path).stdout.split()
    assert got[0] == "2" and got[-1] == "True" and pair["verdict"].split()[0] in got[1], got


def test_a_broken_installed_plugin_names_its_package_and_entry_point(tmp_path):
    site = write_package(tmp_path / "site")
    (site / "modrouterpkg" / "__init__.py").write_text("raise RuntimeError('half-installed')\n")
    res = repro(["ls"], tmp_path, {"PYTHONPATH": str(site)})
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(lines) == 1, res.stderr
    assert "package modrouterpkg 0.1 (entry point mod = modrouterpkg in group " \
           "moe_repro.plugins)" in lines[0] and "RuntimeError: half-installed" in lines[0]


def test_a_plugin_search_space_is_marked_and_the_builtins_it_imports_stay_builtin(tmp_path):
    """A plugin's import pulls in repro.sweeps.spaces (the built-in spaces register then): they
    stay built-in; only the plugin's own space carries its origin."""
    space = tmp_path / "my_space.py"
    space.write_text("from repro.sweeps.spaces import SearchSpace, f, register_space\n"
                     "register_space(SearchSpace('my-lr', 'lr, narrow', ('train.lr',),\n"
                     "               lambda flat: [f('train.lr', 1e-3, 1e-2, log=True)]))\n")
    res = repro(["--plugin", str(space), "ls"], tmp_path)
    assert res.returncode == 0, res.stderr
    assert f"search spaces (plugins): my-lr [{space}]" in res.stdout, res.stdout[-1500:]


BLOCK = '''
import torch
from torch import nn

from repro.config import config, variant
from repro.layers.base import FFN_BLOCKS, FFNOutput
from repro.layers.base_config import FFNConfig, FFNCount


@variant("relu_ffn")
@config
class ReluFFNConfig(FFNConfig):
    d_ff: int = 128

    DOMAINS = {"d_ff": ">= 1"}

    def count(self, d_model: int) -> FFNCount:
        p = 2 * d_model * self.d_ff  # W_in [D, F], W_out [F, D]
        return FFNCount(p, float(p), 2.0 * p)


@FFN_BLOCKS.add
class ReluFFN(nn.Module):
    Config = ReluFFNConfig

    def __init__(self, cfg, d_model):
        super().__init__()
        self.w_in = nn.Parameter(torch.randn(d_model, cfg.d_ff) * 0.02)
        self.w_out = nn.Parameter(torch.randn(cfg.d_ff, d_model) * 0.02)

    def forward(self, x):  # x: [B, T, D]
        return FFNOutput(torch.relu(x @ self.w_in) @ self.w_out)
'''


def test_an_ffn_block_plugin_reaches_one_arm_through_the_arm_form(tmp_path):
    """A block from a plugin file, put on one arm of a registered experiment with --set ARM:
    (the kind switch first, then its width); the FLOP match still decides."""
    block = tmp_path / "relu_ffn.py"
    block.write_text(BLOCK)
    res = repro(["--plugin", str(block), "ls"], tmp_path)
    assert res.returncode == 0 and f"relu_ffn [{block}]" in res.stdout, res.stderr
    base = ["--plugin", str(block), "show", "moe-vs-dense", "--scale", "smoke", "--arm", "dense",
            "--set", "dense:model.ffn.kind=relu_ffn"]
    res = repro([*base, "dense:model.ffn.d_ff=132"], tmp_path)  # 4*32*132 = dense's 16.9K
    assert res.returncode == 0 and "max deviation" in res.stdout, res.stdout + res.stderr
    assert "relu_ffn" not in res.stderr
    res = repro([*base, "dense:model.ffn.d_ff=64"], tmp_path)  # half the FLOPs: not matched
    assert res.returncode == 0 and "NOT MATCHED" in res.stdout and "'dense'" in res.stdout
