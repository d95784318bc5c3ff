"""Data: the shipped Shakespeare corpus, HF datasets, byte-level BPE, synthetic tokens, DataModule.

    cfg = DataConfig(source="shakespeare", vocab_size=8192, seq_len=128)
    dm = LMDataModule(cfg, batch_size=32, seed=0)
    dm.prepare_data(); dm.setup("fit")
    model = build(vocab_size=dm.vocab_size, ...)   # x, y = next(iter(dm.train_dataloader()))
"""

from repro.data.config import DataConfig
from repro.data.corpus import load_corpus_splits
from repro.data.datamodule import LMDataModule
from repro.data.errors import DataError
from repro.data.sources import load_text_splits
from repro.data.tokens import TokenSplits, build_token_splits

__all__ = ["DataConfig", "DataError", "LMDataModule", "TokenSplits", "build_token_splits",
           "load_corpus_splits", "load_text_splits"]
