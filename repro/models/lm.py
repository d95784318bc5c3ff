"""Decoder-only language model with a pluggable FFN block (nanoGPT-shaped, pre-RMSNorm, RoPE).

block(x) = x + Attn(RMSNorm(x));  x + FFN(RMSNorm(x))    with FFN any registered block.
Dimension legend: B batch, T tokens per sequence, D model width, V vocabulary.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from repro import initialization as init
from repro.layers import AuxLoss, build_ffn
from repro.layers.attention import CausalSelfAttention
from repro.layers.norms import RMSNorm
from repro.models.lm_config import ModelConfig  # noqa: F401  (re-export)


@dataclass
class LMOutput:
    logits: torch.Tensor  # [B, T, V]
    aux: dict[str, AuxLoss] = field(default_factory=dict)  # "layer{i}.{name}" -> term
    stats: list[dict[str, torch.Tensor]] = field(default_factory=list)  # one dict per layer


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.norm1 = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.attn = CausalSelfAttention(cfg.d_model, cfg.n_heads, cfg.rope_theta)
        self.norm2 = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.ffn = build_ffn(cfg.ffn, cfg.d_model)

    def forward(self, x: torch.Tensor):  # x: [B, T, D]
        x = x + self.attn(self.norm1(x))
        out = self.ffn(self.norm2(x))
        return x + out.y, out


class LM(nn.Module):
    """``seed``: the run seed the per-parameter init streams derive from (``init_rng =
    per_param``); None takes ``torch.initial_seed()``, the seed the runner's
    ``seed_everything`` set. Under ``per_param`` building the model draws nothing from the
    global RNG, so what draws from it later (router noise) starts from the same state in every
    arm of a seed."""

    def __init__(self, cfg: ModelConfig, seed: int | None = None):
        super().__init__()
        self.cfg = cfg
        per_param = cfg.init_rng == "per_param"
        # per_param: the modules' own constructor-time draws must not move the global RNG
        with torch.random.fork_rng(devices=[]) if per_param else contextlib.nullcontext():
            self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
            self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
            self.norm = RMSNorm(cfg.d_model, cfg.norm_eps)
            self.head = None if cfg.tie_embeddings else nn.Linear(cfg.d_model, cfg.vocab_size,
                                                                  bias=False)
        if per_param:
            with init.streams(self, torch.initial_seed() if seed is None else seed):
                self.reset_parameters()
        else:
            self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """GPT-2 style init: N(0, init_std); residual output projections N(0, init_std/sqrt(2L)).

        Modules with their own rule implement ``init_weights(std, out_std)`` (SwiGLU, Experts,
        routers: zero init for Shazeer [P-SHZ App. A], reduced scale otherwise [P-SW] §2.4).
        Draws go through ``repro.initialization`` (global RNG or per-parameter streams).
        """
        std = self.cfg.init_std
        out_std = std / math.sqrt(2 * self.cfg.n_layers)
        for mod in self.modules():
            if hasattr(mod, "init_weights"):
                mod.init_weights(std, out_std)
            elif isinstance(mod, RMSNorm):
                nn.init.ones_(mod.weight)
            elif isinstance(mod, nn.Embedding):
                init.normal_(mod.weight, std=std)
            elif isinstance(mod, nn.Linear):
                init.normal_(mod.weight, std=out_std if mod is getattr(
                    self._parent_attn(mod), "proj", None) else std)

    def _parent_attn(self, lin: nn.Module):
        for blk in self.blocks:
            if blk.attn.proj is lin:
                return blk.attn
        return None

    def forward(self, idx: torch.Tensor) -> LMOutput:  # idx: [B, T] int64
        x = self.embed(idx)  # [B, T, D]
        aux: dict[str, AuxLoss] = {}
        stats: list[dict[str, torch.Tensor]] = []
        for i, blk in enumerate(self.blocks):
            x, out = blk(x)
            for k, v in out.aux.items():
                aux[f"layer{i}.{k}"] = v
            stats.append(out.stats)
        x = self.norm(x)
        w = self.embed.weight if self.head is None else self.head.weight  # [V, D]
        return LMOutput(x @ w.t(), aux, stats)  # logits [B, T, V]

    def loss(self, idx: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, LMOutput]:
        """Mean next-token cross-entropy (float32) and the full output."""
        out = self(idx)
        ce = F.cross_entropy(out.logits.float().flatten(0, 1), targets.flatten())
        return ce, out
