"""A seeded, learnable synthetic token source: a sparse random first-order Markov chain.

Each state ``t`` of ``V`` has ``k`` successors with Dirichlet(1) probabilities. Successor 0 is
always ``(t + 1) mod V``, so the chain is one irreducible cycle plus random shortcuts: no state
is absorbing and every token keeps appearing (a purely random sparse graph can trap the walk in a
small closed set). An LM can learn it: the best possible loss is the chain's entropy rate
(about ``log k`` minus a bit, see ``entropy_rate``), far below the unigram ``log V``. The chain is
fixed by ``data_seed``; the train/val/test streams are independent walks on that same chain.
"""

from __future__ import annotations

import bisect

import numpy as np

GENERATOR_VERSION = 1  # bump when the sampling below changes (it is part of the data fingerprint)
_SPLIT_IDS = {"train": 0, "val": 1, "test": 2}


def markov_chain(vocab_size: int, branching: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(successors [V, k] int64, probs [V, k] float64)`` of the chain fixed by ``seed``."""
    rng = np.random.default_rng([seed, GENERATOR_VERSION, 0xC4A1])
    V, k = vocab_size, branching
    succ = np.empty((V, k), dtype=np.int64)
    succ[:, 0] = (np.arange(V) + 1) % V  # the cycle that makes the chain irreducible
    succ[:, 1:] = rng.integers(0, V, size=(V, k - 1))
    probs = rng.dirichlet(np.ones(k), size=V)  # [V, k]
    return succ, probs


def sample_chain(succ: np.ndarray, probs: np.ndarray, n_tokens: int, seed: int) -> np.ndarray:
    """One walk of ``n_tokens`` states, uniform random start; int32 [n_tokens]."""
    rng = np.random.default_rng([seed, GENERATOR_VERSION, 0x5A3F])
    V = succ.shape[0]
    cum = np.cumsum(probs, axis=1)
    cum[:, -1] = 1.0  # guard against rounding so bisect never runs off the end
    succ_l, cum_l = succ.tolist(), cum.tolist()  # plain lists: ~10x faster per step than numpy
    u = rng.random(n_tokens).tolist()
    out = [0] * n_tokens
    cur = int(rng.integers(V))
    for i in range(n_tokens):
        out[i] = cur
        cur = succ_l[cur][bisect.bisect_right(cum_l[cur], u[i])]
    return np.asarray(out, dtype=np.int32)


def synthetic_splits(vocab_size: int, branching: int, seed: int,
                     sizes: dict[str, int]) -> dict[str, np.ndarray]:
    """``{split: tokens}``: independent walks of the given lengths on the chain of ``seed``."""
    succ, probs = markov_chain(vocab_size, branching, seed)
    return {s: sample_chain(succ, probs, n, seed * 8 + _SPLIT_IDS[s] + 1) for s, n in sizes.items()}


def entropy_rate(vocab_size: int, branching: int, seed: int, iters: int = 2000) -> float:
    """The chain's entropy rate in nats/token: the loss floor of a perfect model."""
    succ, probs = markov_chain(vocab_size, branching, seed)
    pi = np.full(vocab_size, 1.0 / vocab_size)
    for _ in range(iters):  # power iteration; lazy step (0.5 I + 0.5 P) guarantees convergence
        nxt = np.bincount(succ.ravel(), weights=(pi[:, None] * probs).ravel(),
                          minlength=vocab_size)
        pi = 0.5 * pi + 0.5 * nxt
    # merge duplicate successors of a state before taking the entropy
    h = 0.0
    for t in range(vocab_size):
        p = np.bincount(np.searchsorted(np.unique(succ[t]), succ[t]), weights=probs[t])
        p = p[p > 0]
        h -= pi[t] * float(np.sum(p * np.log(p)))
    return h
