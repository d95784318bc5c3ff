"""Training data as MLflow dataset inputs: what each run trained and was validated on.

A training run logs one input per split it reads: ``train`` (context ``training``) and ``val``
(context ``validation``). Each is a ``TokenStream``, an ``mlflow.data`` meta dataset (the tokens
themselves stay in the cache):

* name ``SOURCE/SPLIT`` (``shakespeare/train``, ``synthetic/val``, ``hf:wikitext:.../train``);
* digest = the data fingerprint the run key already uses (``LMDataModule.fingerprint``: content,
  tokenizer and windowing), so runs on different data differ in the UI's Dataset column and a
  ``datasets.digest = '...'`` search finds every run on the same data;
* profile = the split's token count, window length and vocab size;
* source = where the text came from: the shipped archive or local files (``local``), the hub
  (``hugging_face``), or the synthetic generator's parameters (``code``).
"""

from __future__ import annotations

import json
import os
import warnings

from mlflow.data.meta_dataset import MetaDataset

from repro.data.config import DataConfig
from repro.tracking import store as ts

NAME_MAX = 500  # MLflow's limit on a dataset name

SPLIT_CONTEXTS = {"train": ts.CTX_TRAIN, "val": ts.CTX_VAL}  # split -> mlflow.data.context


class TokenStream(MetaDataset):
    """One split of a tokenized corpus as metadata: source, fingerprint (digest), token count
    (profile). ``MetaDataset`` carries no profile; this one does, so the UI shows the size."""

    def __init__(self, source, name: str, digest: str, profile: dict):
        self._profile = dict(profile)
        super().__init__(source=source, name=name, digest=digest)

    @property
    def profile(self) -> dict:
        return self._profile

    def to_dict(self) -> dict[str, str]:
        return {**super().to_dict(), "profile": json.dumps(self._profile)}


def dataset_source(cfg: DataConfig):
    """The ``mlflow.data`` source of ``cfg.source``: where its text (or tokens) come from."""
    from mlflow.data.code_dataset_source import CodeDatasetSource

    kind = cfg.source_kind
    if kind == "hf":
        from mlflow.data.huggingface_dataset_source import HuggingFaceDatasetSource

        name, _, config_name = cfg.argument.partition(":")
        return HuggingFaceDatasetSource(path=name, config_name=config_name or None,
                                        revision=cfg.hf_revision)
    if kind in ("shakespeare", "text", "json", "parquet"):
        from mlflow.data.dataset_source_registry import resolve_dataset_source

        from repro.data.corpus import ARCHIVE_PATH, CORPUS_ENV

        uri = (os.environ.get(CORPUS_ENV) or str(ARCHIVE_PATH)) if kind == "shakespeare" \
            else cfg.argument
        with warnings.catch_warnings():  # "can be interpreted in multiple ways": both are local
            warnings.simplefilter("ignore")
            return resolve_dataset_source(uri)
    # synthetic: tokens from a seeded Markov chain; its parameters are the source
    return CodeDatasetSource(tags={"generator": "repro.data.synthetic",
                                   "data_seed": str(cfg.data_seed),
                                   "vocab_size": str(cfg.vocab_size),
                                   "branching": str(cfg.synthetic_branching)})


def token_streams(dm) -> list[tuple[TokenStream, str]]:
    """``[(dataset, context)]`` for the train and val splits of a set-up ``LMDataModule``."""
    cfg: DataConfig = dm.cfg
    source = dataset_source(cfg)
    out = []
    for split, context in SPLIT_CONTEXTS.items():
        tokens = dm.tokens[split]  # [N] token ids of the whole split
        profile = {"source": cfg.source, "split": split, "tokens": int(tokens.shape[0]),
                   "seq_len": cfg.seq_len, "vocab_size": dm.vocab_size}
        out.append((TokenStream(source, name=f"{cfg.source}/{split}"[-NAME_MAX:],
                                digest=dm.fingerprint, profile=profile), context))
    return out


def _transient(e: BaseException) -> bool:
    """sqlite busy, or a concurrent process inserted the same dataset first (unique key of
    experiment, name, digest): the retry finds that row and reuses it."""
    text = str(e)
    return ts.is_locked_error(e) or "UNIQUE constraint" in text or "IntegrityError" in text \
        or "duplicate key" in text


def log_data_inputs(client, run_id: str, dm) -> None:
    """Log the train and val splits of ``dm`` as dataset inputs of run ``run_id`` (what
    ``mlflow.log_input(dataset, context=...)`` does for the active run, for a given run id)."""
    from mlflow.entities import DatasetInput, InputTag
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    from repro.tracking.locks import retry

    inputs = [DatasetInput(ds._to_mlflow_entity(), tags=[InputTag(MLFLOW_DATASET_CONTEXT, ctx)])
              for ds, ctx in token_streams(dm)]
    inner = getattr(client, "_inner", client)  # our own retry (RetryingClient knows only locks)
    retry(lambda: inner.log_inputs(run_id, datasets=inputs), is_transient=_transient)
