"""One base class decides "one line, exit 2": every error type a user can fix derives from
``repro.errors.UserError``, ``repro.cli.main`` classifies by it alone, and the runner lets it end
the command instead of marking one run FAILED."""

from __future__ import annotations

import pytest

from repro import cli
from repro.errors import EXIT_USER, UserError

USER_ERRORS = [("repro.config", "ConfigError"), ("repro.compute", "MatchError"),
               ("repro.registry", "RegistryError"), ("repro.data.errors", "DataError"),
               ("repro.lit.checkpoint", "CheckpointError"),
               ("repro.tracking.store", "TrackingError"),
               ("repro.experiments.check", "MissingRunsError"),
               ("repro.experiments.check", "IncompleteGridError"), ("repro.paths", "NoProjectRoot")]


@pytest.mark.parametrize("module,name", USER_ERRORS)
def test_every_user_error_derives_from_the_base(module, name):
    import importlib

    cls = getattr(importlib.import_module(module), name)
    assert issubclass(cls, UserError)


def _raising(exc):
    def fn(args):
        raise exc
    return fn


def test_main_prints_any_user_error_as_one_line_exit_2(monkeypatch, capsys):
    class NewMistake(UserError):  # a user error type main() has never heard of by name
        pass

    monkeypatch.setattr(cli, "cmd_ls", _raising(NewMistake("--x: bad; use --x 1")))
    assert cli.main(["ls"]) == EXIT_USER
    assert capsys.readouterr().err == "repro: error: --x: bad; use --x 1\n"


def test_main_calls_other_exceptions_internal_errors(monkeypatch, capsys):
    monkeypatch.setattr(cli, "cmd_ls", _raising(ValueError("boom")))
    assert cli.main(["ls"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("repro: internal error: ValueError: boom") and err.count("\n") == 1
    with pytest.raises(ValueError):  # --debug: the traceback
        cli.main(["ls", "--debug"])


def test_the_runner_stops_the_command_on_a_user_error_only():
    from repro.config import ConfigError
    from repro.experiments.runner import _stops_the_command

    assert _stops_the_command(ConfigError("train.lr", "must be > 0"))
    assert _stops_the_command(UserError("anything the user can fix"))
    assert not _stops_the_command(FloatingPointError("loss diverged"))
