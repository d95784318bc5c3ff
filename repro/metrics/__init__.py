from repro.metrics.routing import ActivationSparsity, RoutingMetric, batch_scalars, cv

__all__ = ["ActivationSparsity", "RoutingMetric", "batch_scalars", "cv"]
