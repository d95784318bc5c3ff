"""The one exception type of ``repro.data``."""

from __future__ import annotations

from repro.errors import UserError


class DataError(UserError, ValueError):
    """A user-facing data problem. ``str()`` is one line: what is wrong, where, and the fix."""
