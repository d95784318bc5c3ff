"""``LMDataModule``: fixed-length next-token windows over the token streams of ``tokens.py``.

Batches are ``(x, y)``, both int64 ``[B, T]``, with ``y[:, t] == stream[start + t + 1]`` (x
shifted by one).

Train order. The train set is a map-style dataset whose *index* already encodes the shuffled order,
so the loader does not shuffle (``SequentialSampler``) and under DDP the train loader gets
``DistributedSampler(shuffle=False)`` (``repro.dist.shard_train_loader``; Lightning's own would
shuffle a train loader), which deals indices round-robin to ranks: disjoint shards, and with a per-
rank batch of B/W the union of one step's shards is the single-process batch. Item ``i`` belongs to
pass ``p = i // n`` where ``n`` is the number of non-overlapping windows; pass ``p`` cuts the
stream into windows at a random phase in ``[0, T)`` and visits them in a random permutation, both
drawn from a ``torch.Generator`` seeded by ``(seed, p)``. Every pass therefore sees every token
(but the last <= T) once, with fresh window boundaries. The dataset holds
``ceil(train_epoch_windows / n)`` passes (>= 2**20 windows by default), so one Lightning epoch
outlasts any realistic ``max_steps``; drive training by steps. (DistributedSampler pads with a few
repeated indices when the length is not divisible by the world size.)

Val/test. Non-overlapping windows from the start of the split at phase 0, no shuffle; when the
split holds more than ``val_windows`` of them, ``val_windows`` windows evenly spaced over that
grid (not the first ``val_windows``, which on the shipped corpus would all come from the opening
scenes of one play). Always the same windows for a given fingerprint.
"""

from __future__ import annotations

import hashlib
import json
import math

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from repro.data.config import DataConfig
from repro.data.errors import DataError
from repro.data.tokens import TokenSplits, build_token_splits

# Bump when windowing or batching semantics change: part of ``fingerprint``.
DATA_VERSION = 1


def _window(tokens: np.ndarray, start: int, T: int) -> tuple[torch.Tensor, torch.Tensor]:
    chunk = torch.from_numpy(np.asarray(tokens[start:start + T + 1], dtype=np.int64))  # [T+1]
    return chunk[:-1], chunk[1:]  # x [T], y [T]


def _pass_seed(seed: int, p: int) -> int:
    digest = hashlib.sha256(f"repro.data.train/{seed}/{p}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


class TrainWindows(Dataset):
    """Seeded random windows; see the module docstring for the order."""

    def __init__(self, tokens: np.ndarray, seq_len: int, seed: int, min_items: int, split="train"):
        N, T = len(tokens), seq_len
        if N < T + 1:
            raise DataError(f"{split} split has {N} tokens, fewer than seq_len+1={T + 1}; "
                            "lower seq_len or use more data")
        self.tokens, self.T, self.seed = tokens, T, seed
        self.n = max(1, (N - T) // T)                      # windows per pass
        self.max_phase = min(T - 1, N - 1 - self.n * T)  # every phase keeps n full windows
        self.passes = math.ceil(min_items / self.n)
        self._cache: dict[int, tuple[int, torch.Tensor]] = {}

    def __len__(self) -> int:
        return self.passes * self.n

    def order(self, p: int) -> tuple[int, torch.Tensor]:
        """``(phase, permutation of window indices)`` of pass ``p``."""
        if p not in self._cache:
            g = torch.Generator().manual_seed(_pass_seed(self.seed, p))
            phase = int(torch.randint(0, self.max_phase + 1, (1,), generator=g))
            self._cache = {p: (phase, torch.randperm(self.n, generator=g))}  # keep one pass
        return self._cache[p]

    def start(self, i: int) -> int:
        p, j = divmod(i, self.n)
        phase, perm = self.order(p)
        return phase + int(perm[j]) * self.T

    def __getitem__(self, i: int):
        if not 0 <= i < len(self):
            raise IndexError(i)
        return _window(self.tokens, self.start(i), self.T)


class EvalWindows(Dataset):
    """Fixed non-overlapping windows at phase 0; at most ``max_windows``, evenly spaced."""

    def __init__(self, tokens: np.ndarray, seq_len: int, max_windows: int, split: str):
        N, T = len(tokens), seq_len
        grid = (N - 1) // T
        if grid < 1:
            raise DataError(f"{split} split has {N} tokens, fewer than seq_len+1={T + 1}; "
                            "lower seq_len or use more data")
        k = min(max_windows, grid)
        self.tokens, self.T = tokens, T
        self.starts = [(i * grid // k) * T for i in range(k)]  # distinct since k <= grid

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, i: int):
        return _window(self.tokens, self.starts[i], self.T)


class _Skip(Dataset):
    """``ds`` without its first ``offset`` items: the train stream of a resumed run."""

    def __init__(self, ds: Dataset, offset: int):
        self.ds, self.offset = ds, offset

    def __len__(self) -> int:
        return max(0, len(self.ds) - self.offset)

    def __getitem__(self, i: int):
        return self.ds[i + self.offset]


class LMDataModule(L.LightningDataModule):
    def __init__(self, cfg: DataConfig, batch_size: int, seed: int = 0,
                 eval_batch_size: int | None = None, num_workers: int = 0):
        super().__init__()
        if batch_size < 1:
            raise DataError(f"batch_size={batch_size} < 1")
        self.cfg = cfg
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.seed = seed
        self.num_workers = num_workers
        self._data: TokenSplits | None = None
        self.train_set: TrainWindows | None = None
        self.val_set: EvalWindows | None = None
        self.test_set: EvalWindows | None = None
        # resume: train windows already consumed (global_step x global batch); the loader then
        # continues the same (seed, index) stream where the interrupted run stopped
        self.train_offset = 0

    # ------------------------------------------------------------------------------ lifecycle
    def _ensure(self) -> TokenSplits:
        if self._data is None:
            self._data = build_token_splits(self.cfg)  # cache hits after the first call anywhere
        return self._data

    def prepare_data(self) -> None:
        """Train/cache the tokenizer and the token streams (Lightning: once per node)."""
        self._ensure()

    def setup(self, stage: str | None = None) -> None:
        d, c = self._ensure(), self.cfg
        if self.train_set is None:
            self.train_set = TrainWindows(d.tokens["train"], c.seq_len, self.seed,
                                          c.train_epoch_windows)
            self.val_set = EvalWindows(d.tokens["val"], c.seq_len, c.val_windows, "val")
            self.test_set = EvalWindows(d.tokens["test"], c.seq_len, c.val_windows, "test")

    def _need(self) -> TokenSplits:
        if self._data is None:
            raise DataError("LMDataModule: call prepare_data() or setup() first")
        return self._data

    # ----------------------------------------------------------------------------- properties
    @property
    def vocab_size(self) -> int:
        """The tokenizer's actual vocab size (incl. <|endoftext|>); synthetic: cfg.vocab_size."""
        return self._need().vocab_size

    @property
    def fingerprint(self) -> str:
        """Short hash of data content + tokenizer + windowing: equal fingerprints, same data."""
        d, c = self._need(), self.cfg
        return hashlib.sha256(json.dumps({
            "v": DATA_VERSION, "source": d.source_fingerprint, "tokenizer": d.tokenizer_hash,
            "seq_len": c.seq_len, "val_windows": c.val_windows,
            "train_epoch_windows": c.train_epoch_windows,
        }, sort_keys=True).encode()).hexdigest()[:12]

    @property
    def tokens(self) -> dict[str, np.ndarray]:
        return self._need().tokens

    def decode(self, ids) -> str:
        """Text of a token id sequence (list, array or 1-D tensor), for debugging."""
        ids = [int(i) for i in (ids.tolist() if hasattr(ids, "tolist") else ids)]
        tok = self._need().tokenizer
        if tok is None:
            return " ".join(str(i) for i in ids)
        return tok.decode(ids, skip_special_tokens=False)

    def encode(self, text: str) -> list[int]:
        tok = self._need().tokenizer
        if tok is None:
            raise DataError("synthetic data has no tokenizer; encode() needs a text source")
        return tok.encode(text, add_special_tokens=False).ids

    # ---------------------------------------------------------------------------- dataloaders
    def _loader(self, ds: Dataset, batch_size: int, drop_last: bool) -> DataLoader:
        if ds is None:
            raise DataError("LMDataModule: call setup() before asking for a dataloader")
        # own generator: creating a loader iterator draws a base seed, which must not come from
        # (and shift) the global torch RNG that routing noise uses (exact resume, determinism)
        return DataLoader(ds, batch_size=batch_size, shuffle=False, drop_last=drop_last,
                          num_workers=self.num_workers,
                          generator=torch.Generator().manual_seed(self.seed),
                          persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        # shuffle=False on purpose: the seeded order lives in TrainWindows' indexing
        ds = self.train_set
        if self.train_offset and ds is not None:
            ds = _Skip(ds, self.train_offset)
        from repro.dist import shard_train_loader  # DDP: round-robin shards, never shuffled

        return shard_train_loader(self._loader(ds, self.batch_size, drop_last=True),
                                  getattr(self, "trainer", None))

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, self.eval_batch_size, drop_last=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, self.eval_batch_size, drop_last=False)
