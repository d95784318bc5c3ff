"""docs/own-router.md works verbatim: its files, written to a folder outside the package, load as a
plugin, pass `repro selftest`, and every `repro` command line on the page parses; the slow test
runs the page's experiment with `--jobs 2` (the children load the plugin through REPRO_PLUGINS)
and checks it."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from tests.test_plugins import repro

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "own-router.md"
FILE_RE = re.compile(r"File `(?P<path>[^`]+)`:\n\n```python\n(?P<code>.*?)```", re.S)


def doc_files() -> dict[str, str]:
    return {m["path"]: m["code"] for m in FILE_RE.finditer(DOC.read_text())}


def doc_commands() -> list[list[str]]:
    blocks = re.findall(r"```bash\n(.*?)```", DOC.read_text(), re.S)
    return [shlex.split(line) for b in blocks for line in b.splitlines()
            if line.startswith("repro ")]


def write_doc_plugin(tmp_path: Path) -> Path:
    for rel, code in doc_files().items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(code)
    return tmp_path / "my_routers"


def test_the_page_has_its_files_and_commands():
    assert set(doc_files()) == {"my_routers/mod_router_config.py", "my_routers/mod_router.py",
                                "my_routers/sig_topk_config.py", "my_routers/sig_topk.py",
                                "my_routers/mod_experiment.py"}
    cmds = doc_commands()
    assert any(c[1:4] == ["--plugin", "my_routers", "compare"] for c in cmds)
    from repro.cli import build_parser

    for argv in cmds:
        build_parser().parse_args(argv[1:])  # SystemExit (exit 2) on a flag the CLI lacks


def test_the_pages_plugin_lists_passes_the_selftest_and_scopes_overrides(tmp_path):
    plug = write_doc_plugin(tmp_path)
    res = repro(["--plugin", str(plug), "ls"], tmp_path)
    assert res.returncode == 0, res.stderr
    for name in ("mod_router", "sig_topk"):
        assert f"{name} [{plug}]" in res.stdout
    assert "mod-vs-dense" in res.stdout and f"[{plug}]" in res.stdout.split("mod-vs-dense")[1]
    res = repro(["--plugin", str(plug), "selftest", "mod_router,sig_topk"], tmp_path)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    assert res.stdout.count("7 passed, 0 failed") == 2
    # the page's arm-scoped override, shown (nothing trained), and its plain form refused
    cmd = ["--plugin", str(plug), "compare", "sig_topk", "--scale", "smoke", "--against",
           "dense,top2", "--show"]
    res = repro([*cmd, "--set", "sig_topk:model.ffn.router.alpha=0.1"], tmp_path)
    assert res.returncode == 0 and "nothing trained" in res.stdout, res.stderr
    res = repro([*cmd, "--set", "model.ffn.router.alpha=0.1"], tmp_path)
    assert res.returncode == 2 and "--set sig_topk:model.ffn.router.alpha=0.1" in res.stderr


@pytest.mark.slow  # two smoke runs in --jobs children, then check: ~1 min of CPU
def test_the_pages_experiment_runs_with_jobs_and_checks(tmp_path):
    plug = write_doc_plugin(tmp_path)
    steps = ["--set", "train.max_steps=4", "train.eval_every=2", "train.log_every=2",
             "train.warmup_steps=1"]
    res = repro(["--plugin", str(plug), "run", "mod-vs-dense", "--scale", "smoke", "--jobs", "2",
                 "--no-progress", *steps], tmp_path, timeout=900)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "done: 4 trained" in res.stdout, res.stdout[-2000:]
    res = repro(["--plugin", str(plug), "check", "mod-vs-dense", "--scale", "smoke", *steps],
                tmp_path, timeout=600)
    assert res.returncode == 0 and "mod-beats-dense" in res.stdout, res.stdout + res.stderr
