"""Checks of command-line flag values, shared by the subcommands that take the flag: each bad
value is a ``UserError`` naming the flag, the allowed values and a fix (one line, exit 2).
Standard library only at import time (the CLI parses without heavy imports)."""

from __future__ import annotations

import os

from repro.errors import UserError

MAX_SEED_LIST = 100  # an explicit --seeds list longer than this is refused [ours: a typo guard;
# 20,000 seeds once queued ~5 h of smoke runs silently]


def seeds(text: str | None) -> list[int] | None:
    """``--seeds 0,1,2``: distinct integers in [0, 2**32); ``auto`` is `repro run`'s alone."""
    if text is None:
        return None
    if text == "auto":
        raise UserError("--seeds auto: only `repro run NAME` grows seeds automatically; pass "
                        "a list like 0,1,2 here")
    try:
        out = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise UserError(f"--seeds: expected comma-separated integers like 0,1,2 (or auto for "
                        f"`repro run`), got {text!r}") from None
    if not out:
        raise UserError("--seeds: empty list; pass e.g. --seeds 0,1,2")
    bad = [s for s in out if not 0 <= s < 2**32]
    if bad:
        raise UserError(f"--seeds: {bad[0]} is out of range (allowed: 0 <= seed < 2**32)")
    if len(out) > MAX_SEED_LIST:
        raise UserError(f"--seeds: {len(out)} seeds listed, more than {MAX_SEED_LIST} in one "
                        "command (each is a full training run per arm); list at most "
                        f"{MAX_SEED_LIST} and run the rest in further commands (finished runs "
                        "are reused), or use --seeds auto")
    if len(set(out)) != len(out):
        dup = next(s for s in out if out.count(s) > 1)
        raise UserError(f"--seeds: seed {dup} is listed twice; list each seed once")
    return out


def positive(flag: str, value: int | None) -> int | None:
    """A count flag (``--threads``, ``--max-seeds``): a whole number >= 1, or unset."""
    if value is not None and value < 1:
        raise UserError(f"{flag}: expected a whole number >= 1, got {value} (e.g. {flag} 2)")
    return value


MAX_JOBS_PER_CPU = 4


def jobs(value: int | None) -> int | None:
    """``--jobs``: >= 1 and at most 4x the CPU count (more processes only thrash)."""
    positive("--jobs", value)
    cap = MAX_JOBS_PER_CPU * (os.cpu_count() or 1)
    if value is not None and value > cap:
        raise UserError(f"--jobs: {value} is more than {MAX_JOBS_PER_CPU}x the {os.cpu_count()} "
                        f"CPUs of this machine (allowed: 1..{cap}); use e.g. --jobs "
                        f"{os.cpu_count() or 1}")
    return value


def arms(text: str | None) -> list[str] | None:
    """``--arm a,b``; an empty name (``--arm ''``, ``a,,b``) is refused, never "every arm"."""
    if text is None:
        return None
    arms = [a.strip() for a in text.split(",")]
    if not all(arms):
        raise UserError(f"--arm: empty arm name in {text!r}; give arm names separated by commas "
                        "(see `repro show NAME`), or leave --arm out for every arm")
    return arms


def check_overrides(args) -> None:
    """``--set``: each key once (the last would silently win)."""
    from repro.config import parse_override

    seen: dict[str, str] = {}
    for text in getattr(args, "set", None) or []:
        key, _ = parse_override(text)
        if key in seen:
            raise UserError(f"--set: key {key} is given twice ({seen[key]!r} and {text!r}); "
                            "give each key once")
        seen[key] = text
