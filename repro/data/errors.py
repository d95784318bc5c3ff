"""The one exception type of ``repro.data``."""

from __future__ import annotations


class DataError(ValueError):
    """A user-facing data problem. ``str()`` is one line: what is wrong, where, and the fix."""
