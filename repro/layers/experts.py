"""Stacked SwiGLU expert weights ``w_gate, w_up: [E, D, F]`` and ``w_down: [E, F, D]``.

The module only holds and initialises them; ``repro.layers.dispatch`` runs tokens through them
(``Experts.weights`` is what its backends take) and ``repro.layers.mone`` holds MoNE's activation.
"""

from __future__ import annotations

import torch
from torch import nn

from repro import initialization as init
from repro.layers.dispatch import ExpertWeights


class Experts(nn.Module):
    def __init__(self, n_experts: int, d_model: int, d_expert: int):
        super().__init__()
        self.n_experts, self.d_model, self.d_expert = n_experts, d_model, d_expert
        self.w_gate = nn.Parameter(torch.empty(n_experts, d_model, d_expert))  # [E, D, F]
        self.w_up = nn.Parameter(torch.empty(n_experts, d_model, d_expert))  # [E, D, F]
        self.w_down = nn.Parameter(torch.empty(n_experts, d_expert, d_model))  # [E, F, D]

    @property
    def weights(self) -> ExpertWeights:
        return ExpertWeights(self.w_gate, self.w_up, self.w_down)

    def init_weights(self, std: float, out_std: float) -> None:
        init.normal_(self.w_gate, std=std)
        init.normal_(self.w_up, std=std)
        init.normal_(self.w_down, std=out_std)
