"""Text sources: each yields ``{"train"|"val"|"test": [document, ...]}``.

* ``shakespeare``: the shipped corpus (``corpus.py``), already split by work.
* ``hf:NAME[:CONFIG]``: ``datasets.load_dataset(NAME, CONFIG)`` from the hub (online).
* ``text:PATH_OR_GLOB``: local files through the datasets ``text`` builder; ``text_sample_by``
  says what a document is (a whole file by default).
* ``json:PATH_OR_GLOB``: local JSON lines through the datasets ``json`` builder.
* ``parquet:PATH_OR_GLOB``: local Parquet files (a ``text_column`` of strings) through the
  datasets ``parquet`` builder: the format the hub stores datasets in (the ``gpu`` scale's
  WikiText-103 is Parquet there), so a hub dataset's files can be loaded offline.

Local files all form the ``train`` split. A missing val/test split is carved from train BY
DOCUMENT (never by line or window): a permutation of document indices seeded by ``data_seed``
puts ``round(test_fraction * n)`` documents (at least 1) in test and then ``round(val_fraction *
n)`` (at least 1) in val; the rest stays train in original order.

``cheap_fingerprint`` identifies a source's content without loading it where it can (archive
hash, file hashes); hub datasets are hashed after loading (``content_hash``).
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from repro.data.config import DataConfig
from repro.data.corpus import ARCHIVE_SHA256, SPLITS, load_corpus_splits
from repro.data.errors import DataError
from repro.paths import cache_dir

_CARVE_SALT = 0xCA4E


def _hash_json(obj) -> str:
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _split_params(cfg: DataConfig) -> dict:
    """Config fields that change which documents land in which split."""
    return {"text_column": cfg.text_column, "val_fraction": cfg.val_fraction,
            "test_fraction": cfg.test_fraction, "data_seed": cfg.data_seed,
            "splits": [cfg.hf_train_split, cfg.hf_val_split, cfg.hf_test_split]}


def local_files(cfg: DataConfig) -> list[Path]:
    """The files named by a ``text:``/``json:`` source (a file, a directory, or a glob), sorted."""
    from repro.paths import describe_kind

    pattern = os.path.expanduser(cfg.argument)
    if os.path.isdir(pattern):
        found = [p for p in Path(pattern).rglob("*") if not p.name.startswith(".")
                 and not p.is_dir()]
    else:
        found = [Path(p) for p in glob.glob(pattern, recursive=True) if not os.path.isdir(p)]
    files = sorted(p for p in found if p.is_file())
    if not files:
        others = sorted(p for p in found if p.exists() and not p.is_file())
        if others:  # a FIFO, /dev/zero, a socket: would block or never end; say what it is
            p = others[0]
            raise DataError(f"source {cfg.source!r}: {p} is {describe_kind(p, p.stat())}, not "
                            "a regular file; give a text file, a directory or a glob of files")
        raise DataError(f"source {cfg.source!r}: no files match {pattern!r}; "
                        "give an existing file, directory or glob")
    return files


CHECK_BYTES = 64 << 20  # check_source reads at most this much of each local file
HUB_PROBE_S = 3.0  # connect timeout of the hub reachability probe


def check_source(cfg: DataConfig) -> None:
    """Fail fast, with one line naming the file (or the hub), on a source that would only fail
    in the loader: local ``text:`` files that are not UTF-8 text (binary garbage), ``json:``
    files that are not JSON lines of objects with ``text_column``, an ``hf:`` dataset while the
    hub is unreachable (instead of ~60 s of retries). Called before any run is created."""
    kind = cfg.source_kind
    if kind in ("text", "json"):
        for path in local_files(cfg):
            _check_local_file(path, cfg, kind)
    elif kind == "parquet":
        for path in local_files(cfg):
            _check_parquet_file(path, cfg)
    elif kind == "hf":
        _check_hub(cfg)


def _check_parquet_file(path: Path, cfg: DataConfig) -> None:
    """A Parquet file whose schema has ``text_column`` as a string column."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        schema = pq.read_schema(path)
    except (OSError, pa.ArrowException) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:120]
        raise DataError(f"source {cfg.source!r}: {path} is not a readable Parquet file "
                        f"({first}); point the source at .parquet files") from None
    if cfg.text_column not in schema.names:
        raise DataError(f"source {cfg.source!r}: {path} has no column {cfg.text_column!r} "
                        f"(columns: {', '.join(schema.names[:8])}); set data.text_column")
    t = schema.field(cfg.text_column).type
    if not (pa.types.is_string(t) or pa.types.is_large_string(t)):
        raise DataError(f"source {cfg.source!r}: {path} column {cfg.text_column!r} is {t}, "
                        "not text; set data.text_column to the text column")


def _check_local_file(path: Path, cfg: DataConfig, kind: str) -> None:
    import codecs

    try:
        with open(path, "rb") as f:
            blob = f.read(CHECK_BYTES)
    except OSError as e:
        raise DataError(f"source {cfg.source!r}: cannot read {path} ({e.strerror or e})"
                        ) from None
    nul = blob.find(b"\x00")
    if nul >= 0:
        raise DataError(f"source {cfg.source!r}: {path} is binary, not text (NUL byte at offset "
                        f"{nul}); point the source at UTF-8 text files")
    try:
        text = codecs.getincrementaldecoder("utf-8")().decode(blob, final=len(blob) <
                                                                CHECK_BYTES)
    except UnicodeDecodeError as e:
        raise DataError(f"source {cfg.source!r}: {path} is not UTF-8 text (invalid byte at "
                        f"offset {e.start}); convert it to UTF-8 or drop it") from None
    if kind != "json":
        return
    lines = text.splitlines()
    if len(blob) == CHECK_BYTES:
        lines = lines[:-1]  # the last line may be cut by the read limit
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            if i == 1 and _whole_json(text, cfg, path):
                return
            raise DataError(f"source {cfg.source!r}: {path} line {i} is not valid JSON "
                            f"({e.msg} at column {e.colno}); give JSON lines, one object per "
                            "line") from None
        if i == 1 and isinstance(obj, list) and _whole_json(text, cfg, path):
            return  # one line holding the whole document: a list of objects
        if not isinstance(obj, dict):
            raise DataError(f"source {cfg.source!r}: {path} line {i} is a JSON "
                            f"{type(obj).__name__}, not an object; give one object per line")
        if cfg.text_column not in obj:
            raise DataError(f"source {cfg.source!r}: {path} line {i} has no key "
                            f"{cfg.text_column!r} (keys: {', '.join(list(obj)[:8])}); set "
                            "data.text_column")
        _check_text_value(obj[cfg.text_column], path, f"line {i}", cfg)


def _check_text_value(value, path: Path, where: str, cfg: DataConfig) -> None:
    """The text column holds text: a number, list or null there is a wrong column, not text."""
    if not isinstance(value, str):
        shown = json.dumps(value)[:40]
        kind = {type(None): "null", int: "an integer", float: "a number", bool: "a boolean",
                list: "a list", dict: "an object"}.get(type(value), type(value).__name__)
        raise DataError(f"source {cfg.source!r}: {path} {where}: {cfg.text_column!r} is "
                        f"{kind} ({shown}), not "
                        "text; give string values, or set data.text_column to the text field")


def _whole_json(text: str, cfg: DataConfig, path: Path) -> bool:
    """A whole-file JSON document the datasets json builder reads: a list of objects (whose
    text column holds text: else DataError)."""
    try:
        obj = json.loads(text)
    except json.JSONDecodeError:
        return False
    if not (isinstance(obj, list) and all(isinstance(o, dict) and cfg.text_column in o
                                          for o in obj)):
        return False
    for j, o in enumerate(obj):
        _check_text_value(o[cfg.text_column], path, f"item {j}", cfg)
    return True


def hub_offline() -> bool:
    return any(os.environ.get(k, "").strip().lower() in ("1", "true", "yes", "on")
               for k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))


def _check_hub(cfg: DataConfig) -> None:
    from repro.net import unreachable

    if hub_offline():
        return  # offline mode: the loader uses the local HF cache (and says so if it is not there)
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    why = unreachable(endpoint, HUB_PROBE_S, default_host="")
    if why:
        raise DataError(f"source {cfg.source!r}: the Hugging Face hub {endpoint} is unreachable "
                        f"({why}); connect to the network, or set HF_HUB_OFFLINE=1 to use a "
                        "copy in the local HF cache")


def cheap_fingerprint(cfg: DataConfig) -> str | None:
    """Content fingerprint computable without loading the data; None for hub datasets."""
    kind = cfg.source_kind
    if kind == "shakespeare":
        return _hash_json({"kind": kind, "archive": ARCHIVE_SHA256})
    if kind == "synthetic":
        from repro.data.synthetic import GENERATOR_VERSION
        return _hash_json({"kind": kind, "v": GENERATOR_VERSION, "vocab": cfg.vocab_size,
                           "branching": cfg.synthetic_branching, "seed": cfg.data_seed,
                           "sizes": synthetic_sizes(cfg)})
    if kind in ("text", "json", "parquet"):
        files = [hashlib.sha256(p.read_bytes()).hexdigest() for p in local_files(cfg)]
        extra = {"sample_by": cfg.text_sample_by} if kind == "text" else {}
        return _hash_json({"kind": kind, "files": files, **_split_params(cfg), **extra})
    return None


def content_hash(splits: dict[str, list[str]]) -> str:
    h = hashlib.sha256()
    for s in SPLITS:
        h.update(f"\x00split:{s}:{len(splits[s])}\x00".encode())
        for doc in splits[s]:
            b = doc.encode("utf-8")
            h.update(len(b).to_bytes(8, "little"))
            h.update(b)
    return h.hexdigest()[:16]


def synthetic_sizes(cfg: DataConfig) -> dict[str, int]:
    """Synthetic split lengths: ``synthetic_tokens`` for train; exactly enough for
    ``val_windows`` windows for val and test."""
    ev = cfg.val_windows * cfg.seq_len + 1
    return {"train": cfg.synthetic_tokens, "val": ev, "test": ev}


def carve(docs: list[str], cfg: DataConfig, need_val: bool,
          need_test: bool) -> dict[str, list[str]]:
    """Split ``docs`` into train/val/test by document (see module docstring)."""
    n = len(docs)
    n_test = max(1, round(cfg.test_fraction * n)) if need_test else 0
    n_val = max(1, round(cfg.val_fraction * n)) if need_val else 0
    if n - n_test - n_val < 1:
        raise DataError(f"source {cfg.source!r}: {n} document(s) cannot be carved into train/val/"
                        "test by document; add files, or set text_sample_by=paragraph")
    perm = np.random.default_rng([cfg.data_seed, _CARVE_SALT]).permutation(n)
    test_ids, val_ids = set(perm[:n_test].tolist()), set(perm[n_test:n_test + n_val].tolist())
    return {"train": [d for i, d in enumerate(docs) if i not in test_ids and i not in val_ids],
            "val": [docs[i] for i in sorted(val_ids)], "test": [docs[i] for i in sorted(test_ids)]}


def _from_dataset_dict(dd, cfg: DataConfig) -> dict[str, list[str]]:
    names = {"train": cfg.hf_train_split, "val": cfg.hf_val_split, "test": cfg.hf_test_split}
    if names["train"] not in dd:
        raise DataError(f"source {cfg.source!r} has no split {names['train']!r} (splits: "
                        f"{', '.join(dd)}); set hf_train_split")

    def docs(split: str) -> list[str]:
        ds = dd[split]
        if cfg.text_column not in ds.column_names:
            raise DataError(f"source {cfg.source!r} split {split!r} has no column "
                            f"{cfg.text_column!r} (columns: {', '.join(ds.column_names)}); "
                            "set text_column")
        return [t for t in ds[cfg.text_column] if isinstance(t, str) and t.strip()]

    out = {s: docs(names[s]) for s in SPLITS if names[s] in dd}
    need_val, need_test = "val" not in out, "test" not in out
    if need_val or need_test:
        carved = carve(out["train"], cfg, need_val, need_test)
        out = {s: out[s] if s in out else carved[s] for s in SPLITS}
        out["train"] = carved["train"]
    return out


def load_text_splits(cfg: DataConfig) -> dict[str, list[str]]:
    """Per-split document lists for any non-synthetic source."""
    kind = cfg.source_kind
    if kind == "shakespeare":
        return load_corpus_splits()
    if kind == "synthetic":
        raise DataError("source 'synthetic' has no text; use repro.data.synthetic")
    import datasets  # heavy; only the text sources need it

    check_source(cfg)
    # local files are built in a private (0700) folder that is removed as soon as their text is
    # read: the user's files never stay in the store as world-readable arrow copies, and input
    # refused below (too few documents, an empty split) leaves nothing behind
    with tempfile.TemporaryDirectory(dir=cache_dir(), prefix=".local-build-") as build:
        return _load_text_splits(cfg, kind, datasets, build)


def _load_text_splits(cfg: DataConfig, kind: str, datasets, build: str) -> dict[str, list[str]]:
    try:
        if kind == "hf":
            name, _, conf = cfg.argument.partition(":")
            dd = datasets.load_dataset(name, conf or None, revision=cfg.hf_revision)
        else:
            files = [str(p) for p in local_files(cfg)]
            kwargs = {"sample_by": cfg.text_sample_by} if kind == "text" else {}
            # not the user's HF cache: local builds are cheap to redo
            dd = datasets.load_dataset(kind, data_files={cfg.hf_train_split: files},
                                       cache_dir=build, **kwargs)
    except (OSError, ValueError, datasets.exceptions.DatasetGenerationError) as e:
        if isinstance(e, DataError):
            raise
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        hint = "set HF_HUB_OFFLINE=1 only for datasets in the local HF cache, or connect" if \
            kind == "hf" else "check the files"
        raise DataError(f"source {cfg.source!r}: the datasets loader failed "
                        f"({type(e).__name__}: {first}); {hint}") from None
    out = _from_dataset_dict(dd, cfg)
    for s in SPLITS:
        if not out[s]:
            raise DataError(f"source {cfg.source!r}: split {s!r} has no non-empty documents")
    return out
