"""Scale presets shared by experiments: model size, data, recipe and seeds per scale.

* smoke:  seconds per run on synthetic data (tests);
* cpu:    the calibrated CPU scale (docs/scales.md): the shipped Shakespeare corpus with a
          512-token BPE vocabulary, d=128, L=2, T=128, d_ff=384, 1000 steps of 32 x 128 tokens
          (4.1M tokens, 1.7 epochs of the 2.41M-token train split). The FFN carries 53% of the
          training FLOPs (attention 35%, LM head 12%), so an MoE layer moves most of the model;
          about 6-8 minutes per run on one thread of a Xeon with AMX;
* cpu-v1: the first CPU preset (V=4096, d_ff=344, 400 steps of 32 x 128 = 1.6M tokens), kept so
          its committed results (results/*/cpu-v1) stay reproducible. Its LM head was 53% of the
          FLOPs and the FFN 27%: the MoE could move a quarter of the model;
* gpu:    one GPU: d=256, L=4, T=256, V=2048, d_ff=704 (FFN 51% of FLOPs; it was 36% at V=8192,
          d_ff=688). 3000 steps of 64 x 256 tokens is 49M tokens, about 20 epochs of the shipped
          corpus at this vocabulary, so it trains on WikiText-103 (``GPU_DATASET``, from the
          hub once, then from the local cache); ``--set data.source=shakespeare`` offline.

The FFN unit d_ff is 8/3 d (the SwiGLU width with a 4d GELU FFN's parameters) rounded *up* to a
multiple of 64 (the LLaMA "multiple_of" rule, which also keeps GEMMs on fast tile sizes).
"""

from __future__ import annotations

from dataclasses import dataclass

from repro.data.config import DataConfig
from repro.lit.config import TrainConfig
from repro.models.lm_config import ModelConfig

# the gpu scale's default corpus: WikiText-103 raw on the Hugging Face hub, pinned to the commit
# that stored it as Parquet ("Convert dataset to Parquet (#8)")
GPU_DATASET = "hf:Salesforce/wikitext:wikitext-103-raw-v1"
GPU_DATASET_REVISION = "b08601e04326c79dfdd32d625aee71d232d685c3"


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
        # docs/scales.md: V=512 puts the head at 12% of FLOPs; d_ff = 8/3*128 = 341 rounded up to
        # 384; 1000 steps x 4096 tokens = 4.1M tokens = 1.7 epochs of the V=512 train split;
        # warmup 10% of steps; 256 val windows (33K tokens, a quarter of the val split) so that
        # small paired gaps are not buried in eval noise; eval every 50 steps (20 points)
        d_model=128, n_layers=2, n_heads=4, d_ff=384,
        data=DataConfig(source="shakespeare", vocab_size=512, seq_len=128, val_windows=256),
        recipe=TrainConfig(max_steps=1000, batch_size=32, lr=2e-3, warmup_steps=100,
                           eval_every=50, log_every=10),
        seeds=(0, 1, 2)),
    "cpu-v1": ScalePreset(
        d_model=128, n_layers=2, n_heads=4, d_ff=344,
        data=DataConfig(source="shakespeare", vocab_size=4096, seq_len=128, val_windows=96),
        recipe=TrainConfig(max_steps=400, batch_size=32, lr=2e-3, warmup_steps=40,
                           eval_every=25, log_every=10),
        seeds=(0, 1, 2)),
    "gpu": ScalePreset(
        d_model=256, n_layers=4, n_heads=4, d_ff=704,
        # WikiText-103 raw (Merity et al. 2016, CC BY-SA): 1.80M train rows (paragraphs and
        # headings) ~103M words, 315 MB of Parquet on the hub at the pinned revision, cached by
        # datasets under HF_HOME (~/.cache/huggingface); docs/cost.md "The gpu scale"
        data=DataConfig(source=GPU_DATASET, hf_revision=GPU_DATASET_REVISION, vocab_size=2048,
                        seq_len=256, val_windows=256),
        recipe=TrainConfig(max_steps=3000, batch_size=64, lr=1e-3, warmup_steps=200,
                           eval_every=100, log_every=20),
        seeds=(0, 1, 2)),
}


def preset(scale: str) -> ScalePreset:
    return PRESETS[scale]
