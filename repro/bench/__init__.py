"""Speed benchmarks: MoE dispatch backends against the dense SwiGLU of equal activated FLOPs, the
scaling over E at fixed activated FLOPs, and the training-loop overhead (``repro bench``).

The names below load on first use (PEP 562): ``repro.cli`` builds its parser from
``repro.bench.cli``, which must not pull torch in with this package."""

from importlib import import_module

__all__ = ["BenchSpec", "format_table", "run_bench", "verdicts"]


def __getattr__(name: str):
    if name in __all__:
        return getattr(import_module("repro.bench.run"), name)
    raise AttributeError(f"module 'repro.bench' has no attribute {name!r}")
