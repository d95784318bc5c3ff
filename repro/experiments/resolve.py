"""A run's identity, derived in one place: ``resolve_run`` for train, plan and check alike.

A run is identified by its *run key*: hash(resolved run config, data fingerprint, seed). The
resolved config is the experiment's arm with the command's overrides applied and the model's
vocabulary set to the tokenizer's (the data module knows it). A FINISHED run with the same key is
reused by every experiment that needs it (shared arms), and ``repro check`` finds a run by it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace

from repro.config import config_hash, to_dict
from repro.experiments.base import Arm, Experiment
from repro.lit.config import RunConfig
from repro.tracking import store as ts


def run_key(run: RunConfig, data_fingerprint: str, seed: int) -> str:
    return config_hash({"run": to_dict(run), "data": data_fingerprint, "seed": seed}, n=16)


def prepare_data(run: RunConfig, seed: int):
    from repro.data import LMDataModule
    from repro.dist import per_rank_batch

    # train.batch_size is the global batch: each of the W ranks loads batch_size / W
    dm = LMDataModule(run.data, batch_size=per_rank_batch(run), seed=seed)
    dm.prepare_data()
    dm.setup("fit")
    return dm


def data_identity(run: RunConfig) -> str:
    """The data config as a stable string: runs with equal ones share a data fingerprint."""
    return json.dumps(to_dict(run.data), sort_keys=True)


class DataFingerprints:
    """(fingerprint, vocab size) per distinct data config, each data module built once: the
    fingerprint does not depend on the seed (planning a grid builds the data once per config)."""

    def __init__(self):
        self._seen: dict[str, tuple[str, int]] = {}

    def get(self, base: RunConfig, seed: int) -> tuple[str, int]:
        key = data_identity(base)
        if key not in self._seen:
            dm = prepare_data(base, seed)
            self._seen[key] = (dm.fingerprint, dm.vocab_size)
        return self._seen[key]


@dataclass(frozen=True)
class ResolvedRun:
    """Who a run is: names, resolved config, data fingerprint and run key."""

    experiment: str
    version: str
    scale: str
    arm: str
    seed: int
    config: RunConfig  # vocab_size set from the data
    data_fingerprint: str
    key: str

    @property
    def run_name(self) -> str:
        return ts.run_name(f"{self.arm}-s{self.seed}", self.scale)

    def identity_tags(self) -> dict[str, str]:
        """The tags that say which (experiment, arm, seed, config, data) a run trained."""
        return {ts.T_EXPERIMENT: self.experiment, ts.T_VERSION: self.version,
                ts.T_ARM: self.arm, ts.T_SEED: str(self.seed),
                ts.T_HASH: config_hash(self.config), ts.T_KEY: self.key,
                ts.T_SCALE: self.scale, ts.T_DATA_FP: self.data_fingerprint}

    def tag_filter(self) -> str:
        """MLflow filter for runs of the same arm, seed, scale, version and data (the fallback
        when a config's serialized form changed, e.g. a new field with a default was added)."""
        return (f"tags.`{ts.T_ARM}` = '{self.arm}' and tags.`{ts.T_SEED}` = '{self.seed}' and "
                f"tags.`{ts.T_SCALE}` = '{self.scale}' and tags.`{ts.T_VERSION}` = "
                f"'{self.version}' and tags.`{ts.T_DATA_FP}` = '{self.data_fingerprint}'")


def resolve_run(exp: Experiment, arm: Arm | str, seed: int, overrides: Sequence[str] | None,
                data, *, base: RunConfig | None = None) -> ResolvedRun:
    """The identity of (``exp``, ``arm``, ``seed``) under ``overrides``.

    ``data``: a prepared data module (training, checking: anything with ``fingerprint`` and
    ``vocab_size``) or a :class:`DataFingerprints` cache (planning). ``base``: the arm's run
    config under ``overrides`` when the caller has already computed it (not computed twice)."""
    if base is None:
        base = exp.run_config(arm, list(overrides or []))
    if isinstance(data, DataFingerprints):
        fp, vocab = data.get(base, seed)
    else:
        fp, vocab = data.fingerprint, data.vocab_size
    run = replace(base, model=replace(base.model, vocab_size=vocab))
    name = arm if isinstance(arm, str) else arm.name
    return ResolvedRun(exp.name, exp.version, exp.scale, name, seed, run, fp,
                       run_key(run, fp, seed))
