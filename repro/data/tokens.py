"""Source -> tokenizer -> token streams, with every expensive step cached on disk.

Token cache: ``cache_dir("tokens")/<source_fp>-<tokenizer_hash>/<split>.npy`` (uint16 when the
vocab fits, else int32), written atomically. Each split is one stream: every document's tokens
followed by ``<|endoftext|>`` (id 0). Streams are memory-mapped on load, so DataLoader workers
and DDP ranks on a node share one copy in the page cache.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from tokenizers import Tokenizer

from repro.data.config import DataConfig
from repro.data.corpus import SPLITS
from repro.data.errors import DataError
from repro.data.sources import cheap_fingerprint, content_hash, load_text_splits, synthetic_sizes
from repro.data.tokenizer import get_tokenizer, tokenizer_path
from repro.paths import atomic_write_bytes, cache_dir, check_owned

_ENCODE_CHUNK = 256  # documents per encode_batch call (tokenizers parallelizes within a call)


@dataclass
class TokenSplits:
    tokens: dict[str, np.ndarray]      # split -> 1-D token stream (memory-mapped)
    vocab_size: int                    # actual vocab size (tokenizer's, or the synthetic one)
    tokenizer: Tokenizer | None        # None for synthetic data
    source_fingerprint: str
    tokenizer_hash: str                # "none" for synthetic data


def _dtype(vocab_size: int):
    return np.uint16 if vocab_size <= np.iinfo(np.uint16).max + 1 else np.int32


def _encode(docs: list[str], tok: Tokenizer, eot: int, dtype) -> np.ndarray:
    parts = []
    for i in range(0, len(docs), _ENCODE_CHUNK):
        for enc in tok.encode_batch(docs[i:i + _ENCODE_CHUNK], add_special_tokens=False):
            parts.append(np.asarray(enc.ids, dtype=dtype))
            parts.append(np.asarray([eot], dtype=dtype))
    return np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)


def _save_npy(path, arr: np.ndarray) -> None:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    atomic_write_bytes(path, buf.getvalue())


def build_token_splits(cfg: DataConfig) -> TokenSplits:
    """Token streams for ``cfg``: reuse the caches, build (and cache) what is missing."""
    docs: dict[str, list[str]] | None = None
    fp = cheap_fingerprint(cfg)
    if fp is None:  # hub data: the content hash needs the content
        docs = load_text_splits(cfg)
        fp = content_hash(docs)

    if cfg.is_synthetic:
        tok, tok_hash, vocab = None, "none", cfg.vocab_size
    else:
        if docs is None and not tokenizer_path(fp, cfg.vocab_size).exists():
            docs = load_text_splits(cfg)
        tok, tok_hash = get_tokenizer(docs["train"] if docs else None, cfg.vocab_size, fp)
        vocab = tok.get_vocab_size(with_added_tokens=True)

    out_dir = cache_dir("tokens", f"{fp}-{tok_hash}")
    paths = {s: out_dir / f"{s}.npy" for s in SPLITS}
    missing = [s for s in SPLITS if not paths[s].exists()]
    if missing:
        if cfg.is_synthetic:
            from repro.data.synthetic import synthetic_splits
            streams = synthetic_splits(cfg.vocab_size, cfg.synthetic_branching, cfg.data_seed,
                                       synthetic_sizes(cfg))
            streams = {s: a.astype(_dtype(vocab)) for s, a in streams.items()}
        else:
            docs = docs if docs is not None else load_text_splits(cfg)
            eot = tok.token_to_id("<|endoftext|>")
            streams = {s: _encode(docs[s], tok, eot, _dtype(vocab)) for s in missing}
        for s in missing:
            _save_npy(paths[s], streams[s])
    tokens = {}
    for s in SPLITS:
        check_owned(paths[s])  # a link, FIFO or device planted in the cache: refused
        try:
            tokens[s] = np.load(paths[s], mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as e:
            raise DataError(f"token cache {paths[s]} is unreadable ({e}); delete {out_dir} "
                            "to rebuild it") from None
    return TokenSplits(tokens, vocab, tok, fp, tok_hash)
