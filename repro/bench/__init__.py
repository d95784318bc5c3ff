"""Speed benchmarks: MoE dispatch backends against the dense SwiGLU of equal activated FLOPs, the
scaling over E at fixed activated FLOPs, and the training-loop overhead (``repro bench``)."""

from repro.bench.run import BenchSpec, format_table, run_bench, verdicts

__all__ = ["BenchSpec", "format_table", "run_bench", "verdicts"]
