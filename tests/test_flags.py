"""The same flag means the same thing on every subcommand that takes it; a flag a subcommand
cannot honour is refused in one line saying why (exit 2)."""

from __future__ import annotations

import pytest

from repro.cli import build_parser, main

EXP = "switch-vs-dense"
SMOKE = ["--scale", "smoke"]


def test_show_takes_arm_like_run(capsys):
    assert main(["show", EXP, *SMOKE, "--arm", "dense,switch-e8"]) == 0
    out = capsys.readouterr().out
    table = out.split("arms (", 1)[1].split("claims:", 1)[0]
    assert "  dense " in table and "  switch-e8 " in table
    assert "switch-e4" not in table and "switch-e16" not in table
    assert "matched on" in out  # matching is still checked over every arm


def test_parsing_of_the_shared_flags():
    p = build_parser()
    for cmd in ("run", "show"):
        assert p.parse_args([cmd, EXP, "--arm", "a,b"]).arm == "a,b"
    for cmd in ("run", "check"):
        assert p.parse_args([cmd, EXP, "--seeds", "0,1"]).seeds == "0,1"
    for cmd in ("run", "check", "show", "sweep", "doctor", "ui"):
        extra = ["--arm", "x"] if cmd == "sweep" else []
        assert p.parse_args([cmd, EXP, *extra, "--tracking-uri", "sqlite:///x.db"]
                            if cmd not in ("ui",) else [cmd, "--tracking-uri", "sqlite:///x.db"]
                            ).tracking_uri == "sqlite:///x.db"
    assert p.parse_args(["run", EXP]).max_seeds is None  # the cap applies only with auto


@pytest.mark.parametrize("args, fragment", [
    (["check", EXP, *SMOKE, "--arm", "dense"], "--arm: `repro check` evaluates claims"),
    (["report", "--tracking-uri", "sqlite:///x.db"], "--tracking-uri: `repro report` reads only"),
    (["run", EXP, *SMOKE, "--max-seeds", "5"], "--max-seeds: only applies to --seeds auto"),
    (["run", "all", *SMOKE, "--max-seeds", "5"], "--max-seeds: only applies to --seeds auto"),
    (["run", EXP, *SMOKE, "--seeds", "auto", "--max-seeds", "0"], "--max-seeds: expected"),
    (["show", EXP, *SMOKE, "--arm", "swich-e4"], "did you mean"),
    (["show", EXP, *SMOKE, "--arm", ""], "--arm: empty arm name"),
    (["check", EXP, *SMOKE, "--seeds", "auto"], "--seeds auto: only `repro run NAME`"),
    (["check", EXP, *SMOKE, "--seeds", "1,1"], "seed 1 is listed twice"),
])
def test_flag_misuse_is_one_line_exit_2(args, fragment, tmp_runs, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and fragment in err, err
    assert not (tmp_runs / "results").exists()  # nothing written
