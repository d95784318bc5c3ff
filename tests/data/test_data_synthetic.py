"""Synthetic Markov-chain tokens: deterministic per seed, different across seeds, learnable."""

import numpy as np

from repro.data.synthetic import entropy_rate, synthetic_splits

SIZES = {"train": 20_000, "val": 5_000, "test": 5_000}


def test_deterministic_per_seed_and_differs_across_seeds():
    a = synthetic_splits(64, 4, 0, SIZES)
    b = synthetic_splits(64, 4, 0, SIZES)
    c = synthetic_splits(64, 4, 1, SIZES)
    for s in SIZES:
        assert len(a[s]) == SIZES[s] and np.array_equal(a[s], b[s])
        assert not np.array_equal(a[s], c[s])
    assert not np.array_equal(a["train"][:5000], a["val"])  # splits are independent walks
    assert a["train"].min() >= 0 and a["train"].max() < 64
    assert len(np.unique(a["train"])) == 64  # irreducible: every token keeps appearing


def test_learnable_bigram_beats_unigram():
    V = 64
    d = synthetic_splits(V, 4, 0, SIZES)
    tr, va = d["train"].astype(np.int64), d["val"].astype(np.int64)
    uni = np.bincount(tr, minlength=V) + 1.0
    uni /= uni.sum()
    big = np.ones((V, V))
    np.add.at(big, (tr[:-1], tr[1:]), 1.0)
    big /= big.sum(1, keepdims=True)
    h_uni = -np.mean(np.log(uni[va[1:]]))
    h_big = -np.mean(np.log(big[va[:-1], va[1:]]))
    h_rate = entropy_rate(V, 4, 0)
    assert h_big < h_uni - 2.0  # a model that learns transitions gains > 2 nats/token
    assert h_rate <= h_big < h_rate + 0.3 and h_rate < np.log(4)
