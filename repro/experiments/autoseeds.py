"""``repro run NAME --seeds auto``: add seeds by the experiment's registered group-sequential
design (``repro.experiments.sequential``), never "until the interval clears".

The loop: train the planned seeds; evaluate the claims under the design; a claim *continues*
when its test has neither crossed its boundary at this look, nor hit the non-binding futility
bound (planned from the registered smallest effect of interest), nor reached the maximum. While
any registered (non-exploratory, decidable) claim continues, add exactly one seed (the next
look) and repeat; stop at the design's maximum. A fixed-n design (maximum == planned) trains the
planned seeds and stops: growing it would be an unregistered look.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

from repro.experiments.base import Experiment
from repro.experiments.claims import EXPLORATORY, INCONCLUSIVE
from repro.experiments.sequential import FIXED

DEFAULT_MAX_SEEDS = 10


def continues(r, design) -> bool:
    """Whether claim result ``r`` asks for the next look under ``design``."""
    o = r.outcome
    if r.claim.family == EXPLORATORY or r.pending or o is None or r.verdict != INCONCLUSIVE:
        return False
    if design.kind == FIXED or o.n >= design.max_seeds or math.isnan(o.t_for):
        return False
    return abs(o.t_for) >= design.futility(o.n)


def next_seeds(claims, n_now: int, design) -> tuple[int, list[str]]:
    """(the seed count for the next look, or ``n_now`` to stop; claims that continue)."""
    going = [r.claim.name for r in claims if continues(r, design)]
    if going and n_now < design.max_seeds:
        return n_now + 1, going
    return n_now, going


def run_auto_seeds(exp: Experiment, train, uri: str, overrides: list[str], max_seeds: int,
                   echo=print) -> list[int]:
    """Train ``exp`` with ``train(seeds)`` look by look under its registered design, up to
    ``min(max_seeds, design maximum)``; returns the seeds trained."""
    from dataclasses import replace

    from repro.experiments.check import evaluate_claims
    from repro.experiments.verdicts import design_of

    design = design_of(exp)
    seeds = list(exp.seeds)
    if design.kind == FIXED:
        train(seeds)
        echo(f"[repro] --seeds auto: {exp.name}'s registered design is fixed-n at "
             f"{design.planned} seeds (max_seeds == planned), so no seed is added")
        return seeds
    if max_seeds < design.max_seeds:  # stopping early is allowed (the boundaries stay valid)
        design = replace(design, max_seeds=max(design.planned, max_seeds))
    while True:
        train(seeds)
        with tempfile.TemporaryDirectory() as tmp:  # studies' figures: thrown away here
            _, claims, _ = evaluate_claims(exp, uri, overrides, seeds, Path(tmp))
        target, going = next_seeds(claims, len(seeds), design)
        if target <= len(seeds):
            echo(f"[repro] --seeds auto: stopped at look n={len(seeds)} of "
                 f"{design.planned}..{design.max_seeds} ({design.kind})"
                 + (f"; still undecided at the maximum: {', '.join(going)}" if going else
                    ": every registered claim crossed its boundary or stopped for futility"))
            return seeds
        new = max(seeds) + 1
        echo(f"[repro] --seeds auto: {len(going)} claim(s) continue ({', '.join(going)}); "
             f"next look adds seed {new}")
        seeds.append(new)
