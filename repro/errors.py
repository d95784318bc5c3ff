"""The one base class of every mistake a user can fix.

``repro.cli.main`` prints a ``UserError`` as one line on stderr and exits 2 (no traceback unless
``--debug``); the runner lets it end the whole command instead of marking one run FAILED. Every
such error type derives from it (``ConfigError``, ``RegistryError``, ``DataError``,
``CheckpointError``, ``TrackingError``, ``MissingRunsError``, ``IncompleteGridError`` and
``MatchError`` through ``ConfigError``), so that decision is made in one place: ``isinstance(e,
UserError)``. Standard library only: every layer of the package may import it.
"""

from __future__ import annotations

EXIT_USER = 2  # the exit code of a user mistake


class UserError(Exception):
    """A mistake the user can fix; ``str()`` is one line naming the field and the fix."""


CLIP_WORD = 200  # a longer run of non-blanks in an error line is shortened [ours]


def clip_words(msg: str, limit: int = CLIP_WORD) -> str:
    """An error line with each over-long word (a 100,000-character ``--set`` value echoed back)
    cut to its head and tail and the count of characters left out: errors are for people."""
    import re

    def cut(m: re.Match) -> str:
        w = m.group(0)
        return f"{w[:limit // 2]}...({len(w) - limit // 2 - 20} characters)...{w[-20:]}"

    return re.sub(r"\S{" + str(limit + 1) + ",}", cut, msg)
