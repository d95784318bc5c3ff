"""Small configs for every registered router and FFN block (shared by the layer/router tests).

Driven by the registries: a router or FFN block is built from its own config's defaults, with the
few overrides below where a default does not fit the tiny test shapes (D=16, E=4). A newly
registered component therefore gets every registry-wide test without an edit here.
"""

from __future__ import annotations

import torch

from repro.layers import FFN_BLOCKS
from repro.layers.moe import MoEConfig
from repro.routers import ROUTERS

D = 16  # model width used by the small tests
E = 4  # routed experts
F_EXPERT = 8  # hidden width of one expert

# test-size overrides of config defaults; a component not listed runs with its defaults
ROUTER_TEST_KW: dict[str, dict] = {
    "noisy_topk": dict(top_k=2),  # default k=4 would route to every one of E=4 experts
}
FFN_TEST_KW: dict[str, dict] = {
    "dense": dict(d_ff=32),
    "finedeep": dict(d_ff=32, n_sublayers=2, n_experts=2),
}


def router_cfg(name: str, **kw):
    """The registered router ``name``'s config at test size (``kw`` override)."""
    cls = ROUTERS.get(name).Config
    return cls(**{**ROUTER_TEST_KW.get(name, {}), **kw})


def moe_cfg(router: str = "topk", **kw) -> MoEConfig:
    rkw = kw.pop("router_kw", {})
    return MoEConfig(n_experts=kw.pop("n_experts", E), d_expert=kw.pop("d_expert", F_EXPERT),
                     router=router_cfg(router, **rkw), **kw)


def ffn_cfg(name: str):
    """The registered FFN block ``name``'s config at test size (the MoE block: top-k routed
    experts plus one shared expert)."""
    if name == "moe":
        return moe_cfg("topk", n_shared=1)
    return FFN_BLOCKS.get(name).Config(**FFN_TEST_KW.get(name, {}))


def init_module(mod: torch.nn.Module, std: float = 0.2) -> torch.nn.Module:
    """Initialise every sub-module that has ``init_weights`` (as LM.reset_parameters does)."""
    for m in mod.modules():
        if hasattr(m, "init_weights"):
            m.init_weights(std, std)
    return mod
