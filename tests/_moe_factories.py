"""Small configs for every registered router and FFN block (shared by the layer/router tests).

Adding a router or FFN block to a registry without a factory here fails the registry-wide tests,
on purpose: every registered component gets the same checks.
"""

from __future__ import annotations

import torch

from repro.layers.dense import DenseFFNConfig
from repro.layers.finedeep import FinedeepConfig
from repro.layers.moe import MoEConfig
from repro.routers.expert_choice import ExpertChoiceRouterConfig
from repro.routers.gshard import GShardRouterConfig
from repro.routers.noisy_topk import NoisyTopKRouterConfig
from repro.routers.switch import SwitchRouterConfig
from repro.routers.topk import TopKRouterConfig

D = 16  # model width used by the small tests
E = 4  # routed experts
F_EXPERT = 8  # hidden width of one expert


def router_cfg(name: str, **kw):
    base = {
        "topk": lambda: TopKRouterConfig(top_k=2, **kw),
        "switch": lambda: SwitchRouterConfig(**kw),
        "noisy_topk": lambda: NoisyTopKRouterConfig(top_k=2, **kw),
        "gshard": lambda: GShardRouterConfig(**kw),
        "expert_choice": lambda: ExpertChoiceRouterConfig(**kw),
    }
    if name not in base:
        raise KeyError(f"no test factory for router {name!r}: add one to tests/_moe_factories.py")
    return base[name]()


def moe_cfg(router: str = "topk", **kw) -> MoEConfig:
    rkw = kw.pop("router_kw", {})
    return MoEConfig(n_experts=kw.pop("n_experts", E), d_expert=kw.pop("d_expert", F_EXPERT),
                     router=router_cfg(router, **rkw), **kw)


def ffn_cfg(name: str):
    base = {
        "dense": lambda: DenseFFNConfig(d_ff=32),
        "moe": lambda: moe_cfg("topk", n_shared=1),
        "finedeep": lambda: FinedeepConfig(d_ff=32, n_sublayers=2, n_experts=2),
    }
    if name not in base:
        raise KeyError(f"no test factory for FFN block {name!r}: "
                       "add one to tests/_moe_factories.py")
    return base[name]()


def init_module(mod: torch.nn.Module, std: float = 0.2) -> torch.nn.Module:
    """Initialise every sub-module that has ``init_weights`` (as LM.reset_parameters does)."""
    for m in mod.modules():
        if hasattr(m, "init_weights"):
            m.init_weights(std, std)
    return mod
