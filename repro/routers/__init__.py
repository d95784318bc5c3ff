"""Routers: importing this package registers every router in ``ROUTERS``."""

from repro.routers import switch, topk  # noqa: F401  (registration side effect)
from repro.routers.base import ROUTERS, Router, RouterConfig, Routing

__all__ = ["ROUTERS", "Router", "RouterConfig", "Routing"]
