"""LMDataModule: shapes, shift, seeded order, DDP-safe sharding, fixed eval windows."""

import numpy as np
import pytest
import torch
from torch.utils.data import DistributedSampler

from repro.data import DataConfig, DataError, LMDataModule
from repro.data.datamodule import EvalWindows, TrainWindows

T = 16


def make(tmp_path, monkeypatch, seed=0, **kw):
    monkeypatch.setenv("REPRO_RUNS_DIR", str(tmp_path))
    cfg = DataConfig(**{"source": "synthetic", "vocab_size": 64, "seq_len": T,
                        "synthetic_tokens": 20_000, "val_windows": 8, **kw})
    dm = LMDataModule(cfg, batch_size=4, seed=seed, eval_batch_size=3)
    dm.prepare_data()
    dm.setup("fit")
    return dm


def batches(loader, n):
    it = iter(loader)
    return [next(it) for _ in range(n)]


def test_batches_shape_dtype_and_shift(tmp_path, monkeypatch):
    dm = make(tmp_path, monkeypatch)
    stream = torch.from_numpy(np.asarray(dm.tokens["train"], dtype=np.int64))
    for i, (x, y) in enumerate(batches(dm.train_dataloader(), 3)):
        assert x.shape == y.shape == (4, T) and x.dtype == y.dtype == torch.int64
        assert torch.equal(y[:, :-1], x[:, 1:])
        for b in range(4):
            s = dm.train_set.start(i * 4 + b)
            assert torch.equal(x[b], stream[s:s + T]) and torch.equal(y[b], stream[s + 1:s + T + 1])
    assert dm.vocab_size == 64 and int(x.max()) < 64
    assert dm.decode(x[0][:3]) == " ".join(str(int(v)) for v in x[0][:3])


def test_same_seed_same_batches_other_seed_differs(tmp_path, monkeypatch):
    a = batches(make(tmp_path, monkeypatch, seed=0).train_dataloader(), 5)
    b = batches(make(tmp_path, monkeypatch, seed=0).train_dataloader(), 5)
    c = batches(make(tmp_path, monkeypatch, seed=1).train_dataloader(), 5)
    assert all(torch.equal(p[0], q[0]) for p, q in zip(a, b))
    assert not all(torch.equal(p[0], q[0]) for p, q in zip(a, c))


def test_a_pass_visits_every_window_once_with_fresh_phases(tmp_path, monkeypatch):
    ds = make(tmp_path, monkeypatch).train_set
    n = ds.n
    assert n == (20_000 - T) // T and len(ds) >= 1 << 20 and len(ds) % n == 0
    for p in range(3):
        starts = [ds.start(p * n + j) for j in range(n)]
        phase = starts[0] % T
        assert all(s % T == phase for s in starts) and len(set(starts)) == n
        assert max(starts) + T + 1 <= 20_000
    phases = {ds.start(p * n) % T for p in range(20)}
    assert len(phases) > 1  # window boundaries move between passes


def test_distributed_shards_are_disjoint(tmp_path, monkeypatch):
    ds = make(tmp_path, monkeypatch).train_set
    ds_small = torch.utils.data.Subset(ds, range(4 * ds.n))
    shards = [set(DistributedSampler(ds_small, num_replicas=4, rank=r, shuffle=False))
              for r in range(4)]
    assert sum(len(s) for s in shards) == len(ds_small)
    assert set().union(*shards) == set(range(len(ds_small)))


def test_val_and_test_windows_are_fixed(tmp_path, monkeypatch):
    dm = make(tmp_path, monkeypatch)
    v1 = torch.cat([x for x, _ in dm.val_dataloader()])
    v2 = torch.cat([x for x, _ in make(tmp_path, monkeypatch, seed=7).val_dataloader()])
    assert v1.shape == (8, T) and torch.equal(v1, v2)  # independent of the training seed
    starts = dm.val_set.starts
    assert starts == sorted(starts) and all(b - a >= T for a, b in zip(starts, starts[1:]))
    assert len(dm.test_set) == 8 and len(list(dm.test_dataloader())) == 3  # 3 + 3 + 2
    few = EvalWindows(np.arange(8 * T + 1), T, 1000, "val")  # fewer windows than asked: all
    assert few.starts == [i * T for i in range(8)]
    many = EvalWindows(np.arange(100 * T + 1), T, 8, "val")  # more: evenly spaced over the split
    assert many.starts == [i * 100 // 8 * T for i in range(8)]


def test_fingerprint(tmp_path, monkeypatch):
    fp = make(tmp_path, monkeypatch).fingerprint
    assert fp == make(tmp_path, monkeypatch, seed=3).fingerprint  # seed is the run's, not data's
    assert fp != make(tmp_path, monkeypatch, data_seed=1).fingerprint
    assert fp != make(tmp_path, monkeypatch, synthetic_tokens=30_000).fingerprint
    dm = LMDataModule(DataConfig(source="synthetic", seq_len=T), batch_size=2)
    with pytest.raises(DataError, match="prepare_data"):
        _ = dm.vocab_size


def test_too_short_split_is_a_clear_error():
    with pytest.raises(DataError, match="lower seq_len"):
        TrainWindows(np.zeros(T, dtype=np.uint16), T, 0, 1)
    with pytest.raises(DataError, match="val split.*lower seq_len"):
        EvalWindows(np.zeros(T, dtype=np.uint16), T, 4, "val")
    assert len(TrainWindows(np.zeros(T + 1, dtype=np.uint16), T, 0, 5)) == 5  # one window, phase 0


def test_shakespeare_end_to_end(tmp_path, monkeypatch):
    import repro.data.tokenizer as tokmod

    monkeypatch.setenv("REPRO_RUNS_DIR", str(tmp_path))
    cfg = DataConfig(vocab_size=512, seq_len=64, val_windows=16)
    dm = LMDataModule(cfg, batch_size=8, seed=0)
    dm.prepare_data()
    dm.setup("fit")
    assert dm.vocab_size == 512
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (8, 64) and torch.equal(y[:, :-1], x[:, 1:])
    assert len(dm.decode(x[0])) > 64  # BPE tokens are longer than a byte on average
    assert len(dm.val_set) == 16
    monkeypatch.setattr(tokmod, "_train_bpe", lambda *a: pytest.fail("retrained"))
    dm2 = LMDataModule(cfg, batch_size=8, seed=0)
    dm2.setup("fit")  # setup alone works, from the caches
    assert dm2.fingerprint == dm.fingerprint
    assert torch.equal(next(iter(dm2.train_dataloader()))[0], x)


def test_lightning_trainer_drives_it(tmp_path, monkeypatch):
    import lightning as L

    dm = make(tmp_path, monkeypatch)

    class Bigram(L.LightningModule):
        def __init__(self, V):
            super().__init__()
            self.emb = torch.nn.Embedding(V, V)

        def training_step(self, batch, _):
            x, y = batch
            return torch.nn.functional.cross_entropy(self.emb(x).flatten(0, 1), y.flatten())

        def validation_step(self, batch, _):
            return self.training_step(batch, _)

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=0.1)

    trainer = L.Trainer(max_steps=3, limit_val_batches=2, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        default_root_dir=str(tmp_path), accelerator="cpu", devices=1)
    trainer.fit(Bigram(dm.vocab_size), datamodule=dm)
    assert trainer.global_step == 3
