"""Routing and activation statistics. ``repro.metrics.logged`` is torch-free; the torchmetrics
classes load on first use (PEP 562), so importing this package imports no torch."""

from repro.metrics.logged import logged_stats, n_experts_of

_TORCH = ("ActivationSparsity", "RoutingMetric", "batch_scalars", "cv")
__all__ = ["logged_stats", "n_experts_of", *_TORCH]


def __getattr__(name: str):
    if name in _TORCH:
        from repro.metrics import routing

        return getattr(routing, name)
    raise AttributeError(f"module 'repro.metrics' has no attribute {name!r}")
