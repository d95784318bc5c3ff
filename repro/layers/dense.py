"""Dense SwiGLU feed-forward block (Shazeer 2020, "GLU Variants Improve Transformer")."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from repro import initialization as init
from repro.layers.base import FFN_BLOCKS, FFNOutput
from repro.layers.dense_config import DenseFFNConfig  # noqa: F401  (re-export)


class SwiGLU(nn.Module):
    """y = W_down (SiLU(W_gate x) * W_up x); weights stored [D, F] / [F, D] for x @ W."""

    def __init__(self, d_model: int, d_ff: int):
        super().__init__()
        self.w_gate = nn.Parameter(torch.empty(d_model, d_ff))
        self.w_up = nn.Parameter(torch.empty(d_model, d_ff))
        self.w_down = nn.Parameter(torch.empty(d_ff, d_model))

    def init_weights(self, std: float, out_std: float) -> None:
        init.normal_(self.w_gate, std=std)
        init.normal_(self.w_up, std=std)
        init.normal_(self.w_down, std=out_std)

    def hidden(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Gate activation SiLU(x W_gate) and up projection, each [..., F]."""
        return F.silu(x @ self.w_gate), x @ self.w_up

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [..., D]
        a, u = self.hidden(x)
        return (a * u) @ self.w_down


@FFN_BLOCKS.add  # under its Config's name, "dense" (dense_config.py)
class DenseFFN(nn.Module):
    Config = DenseFFNConfig

    def __init__(self, cfg: DenseFFNConfig, d_model: int):
        super().__init__()
        self.cfg = cfg
        self.ffn = SwiGLU(d_model, cfg.d_ff)

    def forward(self, x: torch.Tensor) -> FFNOutput:  # x: [B, T, D]
        return FFNOutput(self.ffn(x))

    def activations(self, x: torch.Tensor) -> torch.Tensor:
        """SiLU gate activations [B*T, F] for activation-sparsity studies (NSAR)."""
        return self.ffn.hidden(x.reshape(-1, x.shape[-1]))[0]
