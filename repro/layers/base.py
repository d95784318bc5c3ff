"""What every FFN block shares: its config family, its registry and its output contract.

House rule 2 (return, don't stash): a block returns ``FFNOutput(y, aux, stats)``; the training
system turns ``aux`` into the loss and ``stats`` into metrics. Nothing is read off module
attributes after the fact.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from repro.config import ComponentRegistry, config, variant_family
from repro.routers.base import AuxLoss  # noqa: F401  (re-export; torch-only router contract)


@variant_family
@config
class FFNConfig:
    """Base of the FFN block configs; ``kind`` names the block in ``FFN_BLOCKS``."""

    kind: str = ""


# name -> nn.Module class with its own ``Config`` (an FFNConfig subclass); registering stamps the
# name onto both (see ``repro.config.ComponentRegistry``)
FFN_BLOCKS: ComponentRegistry = ComponentRegistry("FFN block", base=nn.Module,
                                                  config_base=FFNConfig)


@dataclass
class FFNOutput:
    y: torch.Tensor  # [B, T, D]
    aux: dict[str, AuxLoss] = field(default_factory=dict)
    stats: dict[str, torch.Tensor] = field(default_factory=dict)  # detached diagnostics


def build_ffn(cfg: FFNConfig, d_model: int):
    cls = FFN_BLOCKS.get(cfg.kind, field="model.ffn.kind")
    return cls(cfg, d_model)
