"""Experiment definitions, one module per paper; importing this package registers them all."""

from experiments import switch  # noqa: F401
