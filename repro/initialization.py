"""Where a parameter's initial values come from: the global RNG in module order (``global``, the
first build's behaviour) or one random stream per parameter (``per_param``, common random
numbers), chosen by ``ModelConfig.init_rng``.

``per_param``: parameter ``path`` (its dotted name in the LM, e.g. ``blocks.0.attn.qkv.weight``)
is drawn from its own generator seeded with ``stream_seed(seed, path)``, so two models built
with one seed start with identical values in every parameter they share by path and shape
(embeddings, attention, norms, head) whatever else differs (an FFN of another kind or width,
a router). Under ``global`` the draws of every later part shift with the size of every earlier
one, so two arms of one seed share the data order but not their initial attention weights
after the first FFN: the paired gap between arms then carries init noise of parts that are
identical in both (docs/cost.md, "Common random numbers").

Values are drawn on the CPU and copied to the parameter's device, so a model starts identical on
any device. Modules use ``normal_`` / ``zeros_`` from here instead of ``torch.nn.init`` so the
choice reaches them without their knowing it. Torch and the standard library only (a leaf: the
routers, layers and models all import it).
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib

import torch
from torch import nn

# id(parameter) -> its stream seed, while ``streams`` is active; None: the global RNG
_SEEDS: contextvars.ContextVar[dict[int, int] | None] = contextvars.ContextVar(
    "repro_init_seeds", default=None)


def stream_seed(seed: int, path: str) -> int:
    """The seed of parameter ``path``'s stream under run seed ``seed``: the first 63 bits of
    SHA-256("<seed>/<path>"), so streams of different paths or seeds are unrelated."""
    digest = hashlib.sha256(f"{int(seed)}/{path}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


@contextlib.contextmanager
def streams(module: nn.Module, seed: int):
    """Inside the block, ``normal_`` draws each of ``module``'s parameters from its own stream
    (``stream_seed(seed, name)`` with ``name`` from ``module.named_parameters()``)."""
    token = _SEEDS.set({id(p): stream_seed(seed, name) for name, p in module.named_parameters()})
    try:
        yield
    finally:
        _SEEDS.reset(token)


@torch.no_grad()
def normal_(p: torch.Tensor, std: float) -> torch.Tensor:
    """p ~ N(0, std^2) in place: from p's own stream inside ``streams``, else the global RNG."""
    seeds = _SEEDS.get()
    if seeds is None or id(p) not in seeds:
        return nn.init.normal_(p, std=std)
    g = torch.Generator().manual_seed(seeds[id(p)])
    draw = torch.empty(p.shape, dtype=torch.float32).normal_(0.0, std, generator=g)
    return p.copy_(draw)


@torch.no_grad()
def zeros_(p: torch.Tensor) -> torch.Tensor:
    return nn.init.zeros_(p)  # draws nothing: the same under either choice
