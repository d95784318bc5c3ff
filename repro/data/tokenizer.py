"""Byte-level BPE (HF ``tokenizers``), trained on the train split only and cached on disk.

Cache file: ``cache_dir("tokenizers")/<corpus_hash>-v<vocab>.json``, keyed by the content hash
of the source and the requested vocab size, written atomically; a present file is reloaded, never
retrained. Byte-level (GPT-2 style pre-tokenizer and decoder) so any text round-trips and no
token is ever unknown. ``<|endoftext|>`` is the only special token (id 0) and is placed after
every document, so documents are separated by it in the token stream.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from repro.data.errors import DataError
from repro.paths import atomic_write_text, cache_dir, read_owned_bytes

EOT = "<|endoftext|>"


def tokenizer_path(corpus_hash: str, vocab_size: int) -> Path:
    return cache_dir("tokenizers") / f"{corpus_hash}-v{vocab_size}.json"


def _train_bpe(docs: Iterable[str], vocab_size: int) -> Tokenizer:
    tok = Tokenizer(models.BPE())
    # add_prefix_space=False: text is tokenized as written (documents are joined by EOT, not
    # spaces); use_regex=True: the GPT-2 split so merges never cross word/number/space classes.
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,  # a merge seen once is memorization, not a subword
        special_tokens=[EOT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # all 256 bytes, even unseen ones
        show_progress=False,
    )
    tok.train_from_iterator(docs, trainer=trainer)
    return tok


def get_tokenizer(train_docs: Iterable[str] | None, vocab_size: int,
                  corpus_hash: str) -> tuple[Tokenizer, str]:
    """``(tokenizer, tokenizer_hash)``: load the cached one for ``(corpus_hash, vocab_size)``, or
    train on ``train_docs`` and cache it. ``train_docs`` may be None when the cache must exist."""
    path = tokenizer_path(corpus_hash, vocab_size)
    if not path.exists():
        if train_docs is None:
            raise DataError(f"no cached tokenizer at {path}; call prepare_data() first")
        tok = _train_bpe(train_docs, vocab_size)
        if tok.token_to_id(EOT) != 0:  # guaranteed by special_tokens order; checked, not assumed
            raise DataError(f"tokenizer training put {EOT} at id {tok.token_to_id(EOT)}, not 0")
        atomic_write_text(path, tok.to_str())
    text = read_owned_bytes(path).decode("utf-8", errors="replace")  # never via a link/FIFO
    try:
        tok = Tokenizer.from_str(text)
    except Exception as e:  # a truncated or hand-edited cache file
        raise DataError(f"cached tokenizer {path} is unreadable ({e}); "
                        "delete it to retrain") from None
    return tok, hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
