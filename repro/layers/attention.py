"""Causal multi-head self-attention with rotary position embeddings (RoPE, Su et al. 2021)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def rope_cache(seq_len: int, head_dim: int, theta: float, device=None) -> tuple[torch.Tensor, ...]:
    """cos/sin tables [T, head_dim/2] for RoPE: angle_{t,i} = t * theta^(-2i/head_dim)."""
    inv = theta ** (-torch.arange(0, head_dim, 2, device=device, dtype=torch.float32) / head_dim)
    t = torch.arange(seq_len, device=device, dtype=torch.float32)
    ang = torch.outer(t, inv)  # [T, hd/2]
    return ang.cos(), ang.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate channel pairs (x_{2i}, x_{2i+1}) of x: [B, H, T, hd] by the angles in
    cos/sin [T, hd/2]."""
    xf = x.float()
    x1, x2 = xf[..., 0::2], xf[..., 1::2]  # [B, H, T, hd/2] each
    out = torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)  # [B, H, T, hd/2, 2]
    return out.flatten(-2).to(x.dtype)  # [B, H, T, hd]


class CausalSelfAttention(nn.Module):
    def __init__(self, d_model: int, n_heads: int, rope_theta: float = 10000.0):
        super().__init__()
        assert d_model % n_heads == 0
        self.n_heads = n_heads
        self.head_dim = d_model // n_heads
        self.rope_theta = rope_theta
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.proj = nn.Linear(d_model, d_model, bias=False)
        self._rope: tuple[int, torch.device, torch.Tensor, torch.Tensor] | None = None

    def _tables(self, T: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        if self._rope is None or self._rope[0] < T or self._rope[1] != device:
            cos, sin = rope_cache(max(T, 64), self.head_dim, self.rope_theta, device)
            self._rope = (max(T, 64), device, cos, sin)
        return self._rope[2][:T], self._rope[3][:T]

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [B, T, D]
        B, T, D = x.shape
        qkv = self.qkv(x).view(B, T, 3, self.n_heads, self.head_dim)  # [B, T, 3, H, hd]
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each [B, H, T, hd]
        cos, sin = self._tables(T, x.device)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # [B, H, T, hd]
        return self.proj(y.transpose(1, 2).reshape(B, T, D))  # [B, T, D]
