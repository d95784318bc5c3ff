"""The shipped corpus: Shakespeare's works (public domain), split by work into train/val/test.

See ``corpus/PROVENANCE.md`` for the source, the boilerplate rule and the split lists, and
``build_corpus.py`` for how the archive is made.
"""

from __future__ import annotations

import hashlib
import json
import lzma
import os
from pathlib import Path

from repro.data.errors import DataError

SPLITS = ("train", "val", "test")
CORPUS_DIR = Path(__file__).resolve().parent / "corpus"
ARCHIVE_PATH = CORPUS_DIR / "shakespeare.jsonl.xz"
# The loader refuses any archive whose bytes do not hash to this (see PROVENANCE.md).
ARCHIVE_SHA256 = "446534b9e04bcf6535ac660a923b5929502e505a12a49ee97472cd0671443521"

_FIX = "reinstall moe-repro (pip install --force-reinstall) or restore it from git"
# Read the archive from elsewhere (tests point it at a corrupt copy; the sha256 check still
# applies, so only a byte-identical copy is accepted).
CORPUS_ENV = "REPRO_CORPUS_PATH"


def load_corpus_records(path: str | Path | None = None,
                        sha256: str = ARCHIVE_SHA256) -> list[dict]:
    """All records ``{"work", "split", "text"}`` of the archive, after checking its sha256."""
    from_env = path is None and bool(os.environ.get(CORPUS_ENV))
    if path is None:
        path = os.environ.get(CORPUS_ENV) or ARCHIVE_PATH
    path = Path(path)
    fix = f"unset {CORPUS_ENV} or point it at a good copy" if from_env else _FIX
    try:
        blob = path.read_bytes()
    except OSError as e:
        raise DataError(f"shipped corpus {path} is missing or unreadable ({e.strerror}); "
                        f"{fix}") from None
    digest = hashlib.sha256(blob).hexdigest()
    if digest != sha256:
        raise DataError(f"shipped corpus {path} is corrupt (sha256 {digest[:12]}..., expected "
                        f"{sha256[:12]}...); {fix}")
    try:
        lines = lzma.decompress(blob).decode("utf-8").splitlines()
        records = [json.loads(line) for line in lines if line]
    except (lzma.LZMAError, UnicodeDecodeError, json.JSONDecodeError) as e:  # hash matched: a bug
        raise DataError(f"shipped corpus {path} cannot be decoded ({e}); {_FIX}") from None
    return records


def load_corpus_splits(path: str | Path | None = None,
                       sha256: str = ARCHIVE_SHA256) -> dict[str, list[str]]:
    """``{"train": [text, ...], "val": [...], "test": [...]}``: one document per work, in order."""
    out: dict[str, list[str]] = {s: [] for s in SPLITS}
    for rec in load_corpus_records(path, sha256):
        out[rec["split"]].append(rec["text"])
    return out
