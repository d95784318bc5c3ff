"""Config of the decoder-only LM (``repro.models.lm``): width, depth, heads, vocabulary and its
FFN block. Torch-free, like every ``*_config`` module."""

from __future__ import annotations

from repro.config import ConfigError, check, config, family_of
from repro.layers import FFNConfig
from repro.layers.dense_config import DenseFFNConfig

INIT_RNG = ("global", "per_param")  # ModelConfig.init_rng values (repro.initialization)


@config
class ModelConfig:
    vocab_size: int = 8192
    d_model: int = 128
    n_layers: int = 2
    n_heads: int = 4
    ffn: FFNConfig = DenseFFNConfig()
    tie_embeddings: bool = True
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    init_std: float = 0.02  # GPT-2 style N(0, 0.02); output projections scaled by 1/sqrt(2L)
    # where initial values come from (repro.initialization): "global" (the global RNG in module
    # order) | "per_param" (one stream per parameter path: arms of one seed share the initial
    # values of every part they share; docs/cost.md, "Common random numbers")
    init_rng: str = "global"

    DOMAINS = {"vocab_size": ">= 2", "d_model": ">= 2", "n_layers": ">= 1", "n_heads": ">= 1",
               "rope_theta": "> 0", "norm_eps": "> 0", "init_std": "> 0"}

    def __post_init__(self):
        check(self.vocab_size >= 2, "vocab_size", f"must be >= 2, got {self.vocab_size}")
        check(self.d_model >= 2, "d_model", f"must be >= 2, got {self.d_model}")
        check(self.n_layers >= 1, "n_layers", f"must be >= 1, got {self.n_layers}")
        check(self.n_heads >= 1 and self.d_model % self.n_heads == 0, "n_heads",
              f"d_model={self.d_model} must be divisible by n_heads={self.n_heads}")
        check((self.d_model // self.n_heads) % 2 == 0, "n_heads",
              "head dim d_model/n_heads must be even for RoPE")
        check(self.init_rng in INIT_RNG, "init_rng",
              f"unknown init_rng {self.init_rng!r} (allowed: {', '.join(INIT_RNG)})")
        blocks = family_of(FFNConfig)  # the FFN block configs (torch-free), by name
        if self.ffn.kind not in blocks:
            raise ConfigError("ffn.kind", blocks.unknown_message(self.ffn.kind))
