"""Data: the shipped Shakespeare corpus, HF datasets, byte-level BPE, synthetic tokens, DataModule.

    cfg = DataConfig(source="shakespeare", vocab_size=8192, seq_len=128)
    dm = LMDataModule(cfg, batch_size=32, seed=0)
    dm.prepare_data(); dm.setup("fit")
    model = build(vocab_size=dm.vocab_size, ...)   # x, y = next(iter(dm.train_dataloader()))
"""

from importlib import import_module

from repro.data.config import DataConfig
from repro.data.errors import DataError

# The rest loads on first use (PEP 562): LMDataModule imports Lightning (~5 s), and configs,
# `repro ls` and `repro show` need only DataConfig.
_LAZY = {"LMDataModule": "repro.data.datamodule", "TokenSplits": "repro.data.tokens",
         "build_token_splits": "repro.data.tokens", "load_corpus_splits": "repro.data.corpus",
         "load_text_splits": "repro.data.sources"}

__all__ = ["DataConfig", "DataError", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'repro.data' has no attribute {name!r}")
