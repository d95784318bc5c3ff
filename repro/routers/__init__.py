"""Routers: importing this package registers every router in ``ROUTERS``."""

from repro.routers import (  # noqa: F401  (registration side effect)
    expert_choice,
    gshard,
    noisy_topk,
    switch,
    topk,
)
from repro.routers.base import ROUTERS, Router, RouterConfig, Routing

__all__ = ["ROUTERS", "Router", "RouterConfig", "Routing"]
