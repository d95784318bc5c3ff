"""``repro run NAME --seeds auto``: add seeds to an experiment until its claims are decided.

The loop: train the experiment's seeds; evaluate its claims (no results are written); for each
*inconclusive* claim read the seeds-needed figure (``repro.experiments.stats``: the number of
seeds at which the 95%-interval test decides with 80% power if the observed effect and spread
were true); grow the seed list to the largest such figure that is within ``max_seeds``; repeat
until no inconclusive claim can be decided within the cap. Each round re-estimates the figure
from all seeds so far, so a first estimate made from 3 seeds is corrected as seeds arrive.
Claims whose figure exceeds the cap (a near-zero effect) are reported, never chased.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from repro.experiments.base import Experiment
from repro.experiments.stats import INCONCLUSIVE

DEFAULT_MAX_SEEDS = 10


def next_seeds(claims, n_now: int, max_seeds: int) -> tuple[int, list[str]]:
    """(the seed count to grow to, or ``n_now`` to stop; reasons for claims left undecided)."""
    target, beyond = n_now, []
    for r in claims:
        if r.verdict != INCONCLUSIVE:
            continue
        need = r.seeds_needed
        if need is None:
            beyond.append(f"{r.claim.name} (effect 0: no number of seeds decides it)")
        elif need > max_seeds:
            beyond.append(f"{r.claim.name} (needs ~{need} seeds > cap {max_seeds})")
        else:
            target = max(target, need)
    return target, beyond


def run_auto_seeds(exp: Experiment, train, uri: str, overrides: list[str], max_seeds: int,
                   echo=print) -> list[int]:
    """Train ``exp`` with ``train(seeds)`` until its claims are decided or ``max_seeds`` is
    reached; returns the seeds trained."""
    from repro.experiments.check import evaluate_claims

    seeds = list(exp.seeds)
    while True:
        train(seeds)
        with tempfile.TemporaryDirectory() as tmp:  # studies' figures: thrown away here
            _, claims, _ = evaluate_claims(exp, uri, overrides, seeds, Path(tmp))
        target, beyond = next_seeds(claims, len(seeds), max_seeds)
        undecided = sum(r.verdict == INCONCLUSIVE for r in claims)
        if target <= len(seeds):
            echo(f"[repro] --seeds auto: {len(seeds)} seeds, {undecided} claim(s) inconclusive"
                 + (f"; beyond the cap: {'; '.join(beyond)}" if beyond else ""))
            return seeds
        new = [s for s in range(max(seeds) + 1, max(seeds) + 1 + target - len(seeds))]
        echo(f"[repro] --seeds auto: {undecided} claim(s) inconclusive; growing to {target} "
             f"seeds (adding {','.join(map(str, new))})")
        seeds += new
