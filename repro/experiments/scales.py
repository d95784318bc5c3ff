"""Scale presets shared by experiments: model size, data, recipe and seeds per scale.

* smoke: seconds per run on synthetic data (tests);
* cpu:   the shipped Shakespeare corpus, 3-4 minutes per run on one CPU thread (papers.md §1 CPU
         config: d=128, L=2, T=128, batch 32);
* gpu:   the tiny reference config of papers.md §1 (d=256, L=4, T=256, batch 64) on one GPU.
"""

from __future__ import annotations

from dataclasses import dataclass

from repro.data.config import DataConfig
from repro.lit.config import TrainConfig
from repro.models.lm import ModelConfig


@dataclass(frozen=True)
class ScalePreset:
    d_model: int
    n_layers: int
    n_heads: int
    d_ff: int  # the dense SwiGLU "FFN unit" (~8/3 d, rounded to a multiple of 8)
    data: DataConfig
    recipe: TrainConfig
    seeds: tuple[int, ...]

    def model(self, ffn=None) -> ModelConfig:
        """The scale's LM with the given FFN block (vocab = the data's requested vocab)."""
        return ModelConfig(vocab_size=self.data.vocab_size, d_model=self.d_model,
                           n_layers=self.n_layers, n_heads=self.n_heads,
                           **({"ffn": ffn} if ffn is not None else {}))


PRESETS = {
    "smoke": ScalePreset(
        d_model=32, n_layers=1, n_heads=2, d_ff=88,
        data=DataConfig(source="synthetic", vocab_size=96, seq_len=32, val_windows=8,
                        synthetic_tokens=20_000),
        recipe=TrainConfig(max_steps=24, batch_size=8, lr=3e-3, warmup_steps=4, eval_every=8,
                           log_every=4),
        seeds=(0, 1)),
    "cpu": ScalePreset(
        d_model=128, n_layers=2, n_heads=4, d_ff=344,
        data=DataConfig(source="shakespeare", vocab_size=4096, seq_len=128, val_windows=96),
        recipe=TrainConfig(max_steps=400, batch_size=32, lr=2e-3, warmup_steps=40,
                           eval_every=25, log_every=10),
        seeds=(0, 1, 2)),
    "gpu": ScalePreset(
        d_model=256, n_layers=4, n_heads=4, d_ff=688,
        data=DataConfig(source="shakespeare", vocab_size=8192, seq_len=256, val_windows=256),
        recipe=TrainConfig(max_steps=3000, batch_size=64, lr=1e-3, warmup_steps=200,
                           eval_every=100, log_every=20),
        seeds=(0, 1, 2)),
}


def preset(scale: str) -> ScalePreset:
    return PRESETS[scale]
