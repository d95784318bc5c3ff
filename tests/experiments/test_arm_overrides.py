"""`--set ARM:KEY=VALUE` reaches one arm only; a plain `--set` whose key exists on some arms only is
refused with the arms and the ARM: form; the matched-compute contract still decides."""

from __future__ import annotations

import pytest

from repro.cli import main
from repro.compute import MatchError
from repro.config import ConfigError
from repro.experiments.base import get_experiment
from repro.experiments.resolve import run_key

CF = "model.ffn.router.capacity_factor"


def test_arm_scoped_override_reaches_only_its_arm_and_its_run_key():
    exp = get_experiment("switch-vs-dense", "smoke")
    ov = [f"switch-e4:{CF}=2.0"]
    before = {a.name: exp.run_config(a) for a in exp.arms}
    after = {a.name: exp.run_config(a, ov) for a in exp.arms}
    assert after["switch-e4"].model.ffn.router.capacity_factor == 2.0
    assert before["switch-e4"].model.ffn.router.capacity_factor != 2.0
    for name in ("dense", "switch-e8", "switch-e16"):
        assert after[name] == before[name], name
        assert run_key(after[name], "fp", 0) == run_key(before[name], "fp", 0)
    assert run_key(after["switch-e4"], "fp", 0) != run_key(before["switch-e4"], "fp", 0)
    exp.validate(ov)  # capacity does not move the routed FLOPs: still matched


def test_plain_override_on_some_arms_is_refused_with_the_arms_and_the_arm_form(capsys):
    exp = get_experiment("switch-vs-dense", "smoke")
    with pytest.raises(ConfigError) as e:
        exp.validate([f"{CF}=2.0"])  # before anything trains, whichever arms are asked for
    msg = str(e.value)
    assert "\n" not in msg and "exists only on arm(s) switch-e4, switch-e8, switch-e16" in msg
    assert "(not on dense)" in msg and f"--set switch-e4:{CF}=2.0" in msg
    assert main(["show", "switch-vs-dense", "--scale", "smoke", "--set", f"{CF}=2.0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"switch-e8:{CF}=2.0" in err[0]


def test_a_key_that_exists_nowhere_keeps_the_unknown_key_error():
    exp = get_experiment("switch-vs-dense", "smoke")
    with pytest.raises(ConfigError, match="unknown config key"):
        exp.run_config("dense", ["model.ffn.nope=1"])


def test_unknown_arm_in_scope_is_refused_with_close_match():
    exp = get_experiment("switch-vs-dense", "smoke")
    with pytest.raises(ConfigError, match=r"has no arm 'switch-e5'.*did you mean 'switch-e"):
        exp.run_config("dense", [f"switch-e5:{CF}=2.0"])


def test_scoped_override_that_unmatches_the_arms_is_refused_with_the_deviation(capsys):
    exp = get_experiment("switch-vs-dense", "smoke")
    with pytest.raises(MatchError, match="switch-e4"):
        exp.validate(["switch-e4:model.ffn.d_expert=200"])
    rc = main(["run", "switch-vs-dense", "--scale", "smoke", "--arm", "switch-e4", "--set",
               "switch-e4:model.ffn.d_expert=200"])
    err = capsys.readouterr().err
    assert rc == 2 and "switch-e4" in err and "%" in err, err
