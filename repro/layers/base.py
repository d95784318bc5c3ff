"""What every FFN block shares: its registry and its output contract (the config family is
``repro.layers.base_config``).

House rule 2 (return, don't stash): a block returns ``FFNOutput(y, aux, stats)``; the training
system turns ``aux`` into the loss and ``stats`` into metrics. Nothing is read off module
attributes after the fact.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from repro.config import ComponentRegistry
from repro.layers.base_config import FFNConfig
from repro.routers.base import AuxLoss  # noqa: F401  (re-export; torch-only router contract)


def _load_blocks() -> None:
    from repro.layers import load_components

    load_components()


# name -> nn.Module class with its own ``Config`` (an FFNConfig subclass, named with ``@variant``
# in its torch-free ``<block>_config.py``), registered with ``@FFN_BLOCKS.add`` under that name
# (see ``repro.config.ComponentRegistry``); the first lookup imports every block module
FFN_BLOCKS: ComponentRegistry = ComponentRegistry("FFN block", base=nn.Module,
                                                  config_base=FFNConfig, load=_load_blocks)


@dataclass
class FFNOutput:
    y: torch.Tensor  # [B, T, D]
    aux: dict[str, AuxLoss] = field(default_factory=dict)
    stats: dict[str, torch.Tensor] = field(default_factory=dict)  # detached diagnostics


def build_ffn(cfg: FFNConfig, d_model: int):
    cls = FFN_BLOCKS.get(cfg.kind, field="model.ffn.kind")
    return cls(cfg, d_model)
