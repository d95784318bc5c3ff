"""A throwaway router that exists only in tests: it proves that registering a router is all a
new method needs for the registry-driven tests and benchmarks to cover it.

``register()`` does what a new router's two decorators do: names its config
(``@variant(NAME)`` in ``<method>_config.py``) and registers the router under that name
(``@ROUTERS.add`` in ``<method>.py``); ``unregister()`` removes both again.
"""

from __future__ import annotations

import torch

from repro.config import config, variant
from repro.routers import ROUTERS
from repro.routers.topk import TopKRouter, TopKRouterConfig

NAME = "probe_sigmoid_topk"


@config
class ProbeRouterConfig(TopKRouterConfig):
    normalize: bool = False  # sigmoid gates are used as they are


class ProbeRouter(TopKRouter):
    """Top-k over sigmoid scores (gate = sigmoid(logit) of each selected expert)."""

    Config = ProbeRouterConfig

    def select(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        scores = logits.sigmoid()  # [N, E]
        gate, idx = scores.topk(self.cfg.top_k, dim=-1)  # [N, K]
        probs = scores / scores.sum(-1, keepdim=True)  # [N, E] for the balance loss
        return probs, gate, idx


def register() -> None:
    variant(NAME)(ProbeRouterConfig)
    ROUTERS.add(ProbeRouter)


def unregister() -> None:
    ROUTERS.unregister(NAME)
