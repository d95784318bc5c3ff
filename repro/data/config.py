"""``DataConfig``: what text (or synthetic tokens) to train on and how to cut it into windows."""

from __future__ import annotations

from repro.config import check, config

# Source forms; the prefixed ones take an argument after the colon.
SOURCE_NAMES = ("shakespeare", "synthetic")
SOURCE_PREFIXES = ("hf:", "text:", "json:", "parquet:")
SOURCE_FORMS = ("shakespeare", "synthetic", "hf:NAME[:CONFIG]", "text:PATH_OR_GLOB", "json:PATH",
                "parquet:PATH_OR_GLOB")
SAMPLE_BY = ("document", "paragraph", "line")
N_SPECIAL_TOKENS = 1  # <|endoftext|>
MIN_BPE_VOCAB = 256 + N_SPECIAL_TOKENS  # byte-level BPE needs all 256 bytes plus the specials


@config
class DataConfig:
    # "shakespeare" (shipped), "synthetic", "hf:NAME[:CONFIG]" (hub, online), "text:PATH_OR_GLOB"
    # (local text files via the datasets "text" builder), "json:PATH_OR_GLOB" (local jsonl),
    # "parquet:PATH_OR_GLOB" (local Parquet files with a text_column, the hub's storage format)
    source: str = "shakespeare"
    text_column: str = "text"          # column holding the document text (hf:, json:, parquet:)
    vocab_size: int = 8192             # BPE vocab incl. <|endoftext|> (synthetic: its vocab)
    seq_len: int = 128                 # T, tokens per training window
    val_windows: int = 64              # max number of fixed val (and test) windows
    synthetic_tokens: int = 200_000    # synthetic train-split length in tokens
    synthetic_branching: int = 4       # successors per state of the synthetic Markov chain
    data_seed: int = 0                 # content seed: synthetic chain, val/test carving by document
    val_fraction: float = 0.05         # carved (by document) when a dataset has no val split
    test_fraction: float = 0.05        # carved (by document) when a dataset has no test split
    hf_train_split: str = "train"      # split names looked up in hf:/text:/json: datasets
    hf_val_split: str = "validation"
    hf_test_split: str = "test"
    hf_revision: str | None = None     # pin a hub dataset revision (hf: only)
    text_sample_by: str = "document"   # text: one document per file / paragraph / line
    train_epoch_windows: int = 1 << 20  # min windows in one (Lightning) train epoch; see datamodule

    DOMAINS = {"vocab_size": "[2, 2**31)", "seq_len": ">= 2", "val_windows": ">= 1",
               "synthetic_tokens": ">= 1", "synthetic_branching": ">= 1",
               "data_seed": "[0, 2**32)", "val_fraction": "(0, 0.5)", "test_fraction": "(0, 0.5)",
               "train_epoch_windows": ">= 1"}

    def __post_init__(self):
        s = self.source
        known = s in SOURCE_NAMES or any(s.startswith(p) and len(s) > len(p)
                                         for p in SOURCE_PREFIXES)
        check(known, "source", f"unknown source {s!r} (allowed: {', '.join(SOURCE_FORMS)})")
        check(bool(self.text_column), "text_column", "must be a non-empty column name")
        if self.is_synthetic:
            check(self.vocab_size >= 2, "vocab_size",
                  f"{self.vocab_size} < 2 (the synthetic chain needs at least 2 tokens)")
            check(1 <= self.synthetic_branching <= self.vocab_size, "synthetic_branching",
                  f"{self.synthetic_branching} not in [1, vocab_size={self.vocab_size}]")
            check(self.synthetic_tokens >= self.seq_len + 1, "synthetic_tokens",
                  f"{self.synthetic_tokens} < seq_len+1={self.seq_len + 1} (no full window)")
        else:
            check(self.vocab_size >= MIN_BPE_VOCAB, "vocab_size",
                  f"{self.vocab_size} < {MIN_BPE_VOCAB} (byte-level BPE needs 256 bytes + "
                  f"{N_SPECIAL_TOKENS} special token)")
        check(self.vocab_size <= 2**31 - 1, "vocab_size", f"{self.vocab_size} too large")
        check(self.seq_len >= 2, "seq_len", f"{self.seq_len} < 2")
        check(self.data_seed >= 0, "data_seed", f"{self.data_seed} < 0")
        check(self.val_windows >= 1, "val_windows", f"{self.val_windows} < 1")
        check(0.0 < self.val_fraction < 0.5, "val_fraction", f"{self.val_fraction} not in (0, 0.5)")
        check(0.0 < self.test_fraction < 0.5, "test_fraction",
              f"{self.test_fraction} not in (0, 0.5)")
        check(self.text_sample_by in SAMPLE_BY, "text_sample_by",
              f"invalid value {self.text_sample_by!r} (allowed: {', '.join(SAMPLE_BY)})")
        check(self.train_epoch_windows >= 1, "train_epoch_windows",
              f"{self.train_epoch_windows} < 1")

    @property
    def is_synthetic(self) -> bool:
        return self.source == "synthetic"

    @property
    def source_kind(self) -> str:
        """``shakespeare`` | ``synthetic`` | ``hf`` | ``text`` | ``json``."""
        return self.source.split(":", 1)[0]

    @property
    def argument(self) -> str:
        """What follows ``kind:`` in ``source`` (empty for the named sources)."""
        return self.source.split(":", 1)[1] if ":" in self.source else ""
