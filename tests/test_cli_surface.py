"""The CLI surface (every subcommand, option, default, choice and nargs) against a snapshot.

A flag added, removed, renamed or re-defaulted fails here until ``tests/golden/cli_surface.json``
is regenerated on purpose (``REPRO_UPDATE_GOLDEN=1 python -m pytest tests/test_cli_surface.py``)
and README.md's flag notes are checked against it. Help texts are not part of the snapshot.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from repro.cli import build_parser

SNAPSHOT = Path(__file__).parent / "golden" / "cli_surface.json"


def _jsonable(v):
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    return repr(v)


def _options(p: argparse.ArgumentParser) -> dict:
    out = {}
    for a in p._actions:  # argparse keeps no public list of actions
        if isinstance(a, (argparse._HelpAction, argparse._SubParsersAction)):
            continue
        name = a.option_strings[-1] if a.option_strings else a.dest
        out[name] = {"flags": list(a.option_strings), "dest": a.dest,
                     "action": type(a).__name__, "nargs": _jsonable(a.nargs),
                     "default": _jsonable(a.default), "choices": _jsonable(a.choices),
                     "required": a.required, "hidden": a.help == argparse.SUPPRESS}
    return out


def surface() -> dict:
    p = build_parser()
    sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
    return {"repro": _options(p),
            **{name: _options(sp) for name, sp in sorted(sub.choices.items())}}


def test_cli_surface_matches_snapshot():
    got = surface()
    if os.environ.get("REPRO_UPDATE_GOLDEN") == "1":
        SNAPSHOT.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n")
    want = json.loads(SNAPSHOT.read_text())
    assert sorted(got) == sorted(want), "subcommands changed"
    for cmd in want:
        changed = sorted(set(got[cmd]) ^ set(want[cmd])) or "a default, choice or nargs"
        assert got[cmd] == want[cmd], (f"`repro {cmd}` options changed: {changed}; regenerate "
                                       "tests/golden/cli_surface.json on purpose")


def test_snapshot_is_the_real_surface():
    """Guards an empty or stale regeneration: the flags the README documents are present."""
    want = json.loads(SNAPSHOT.read_text())
    for cmd, flag in (("run", "--seeds"), ("run", "--jobs"), ("check", "--seeds"),
                      ("sweep", "--workers"), ("show", "--arm"), ("ui", "--host"),
                      ("bench", "--backends")):
        assert flag in want[cmd], (cmd, flag)
    # accepted only to refuse them in one line (README: which subcommand takes which flag)
    assert want["report"]["--tracking-uri"]["hidden"] and want["check"]["--arm"]["hidden"]
