"""``repro.tracking.locks``: where run-key locks live, and retry with backoff of a busy store."""

from __future__ import annotations

import pytest

from repro.tracking.locks import lock_path, retry


class Busy(Exception):
    pass


def _flaky(failures: int, exc: Exception | None = None):
    exc = exc or Busy("database is locked")
    calls = []

    def fn():
        calls.append(1)
        if len(calls) <= failures:
            raise exc
        return "ok"

    return fn, calls


def test_lock_path_is_under_the_runs_dir(tmp_runs):
    p = lock_path("abc123")
    assert p == tmp_runs / "runs" / "locks" / "abc123.lock"


def test_retry_retries_transient_errors_until_success():
    fn, calls = _flaky(3)
    assert retry(fn, is_transient=lambda e: isinstance(e, Busy), base=0.0) == "ok"
    assert len(calls) == 4


def test_retry_raises_a_permanent_error_at_once():
    fn, calls = _flaky(3, ValueError("no such table"))
    with pytest.raises(ValueError, match="no such table"):
        retry(fn, is_transient=lambda e: isinstance(e, Busy), base=0.0)
    assert len(calls) == 1


def test_retry_gives_up_after_the_last_attempt():
    fn, calls = _flaky(10)
    with pytest.raises(Busy):
        retry(fn, is_transient=lambda e: True, attempts=4, base=0.0)
    assert len(calls) == 4


def test_retry_backoff_leaves_the_global_rng_alone():
    """Training determinism must not see retries: the jitter has its own generator."""
    import random

    random.seed(7)
    want = random.random()
    random.seed(7)
    fn, _ = _flaky(2)
    retry(fn, is_transient=lambda e: True, base=0.0)
    assert random.random() == want
