"""The metric names an experiment's runs can produce, per arm, and the claim check built on it.

A claim on a metric that its arm never produces reads NaN for every seed, the NaNs are dropped,
and the claim comes out a plausible *inconclusive*. ``Experiment.validate`` refuses such a claim
before anything trains (``check_claim_metrics``), with the close matches.

What an arm produces (every name from ``repro.tracking.names``):

* every run: the train / val losses, ``lr``, ``perf/tokens_per_s``, and what ``repro check``
  derives (``final_val_loss``, ``train/max_spike``, ``train/diverged``);
* an arm whose FFN block is ``moe``: the routing statistics its router's ``RouterConfig.STATS`` give
  (``repro.metrics.routing.logged_stats``), per split, mean over layers and per layer, and
  ``train_routing/drop_frac_mean``;
* the metrics each of the experiment's analyses adds for the arms it studies
  (``fn.metrics`` / ``fn.arms``, ``repro.experiments.analyses``).

Not counted: the per-term aux losses ``train/aux_<name>`` (which terms a router returns depends
on its weights at run time), so a claim on one is refused.
"""

from __future__ import annotations

import difflib

from repro.config import ConfigError
from repro.tracking import names as N

# logged by every training run (repro.lit.system, repro.experiments.runner) or derived from it
# by `repro check` (repro.experiments.check.collect)
EVERY_RUN = (N.M_TRAIN_LOSS, N.M_TRAIN_CE, N.M_TRAIN_AUX, N.M_TRAIN_PPL, N.M_LR, N.M_VAL_LOSS,
             N.M_VAL_PPL, N.M_TOKENS_PER_S, N.M_FINAL_VAL_LOSS, N.M_MAX_SPIKE, N.M_DIVERGED,
             *N.CONTENTION_METRICS)


def routing_metrics(model) -> set[str]:
    """The routing metrics a model config logs: LMSystem tracks the router of every ``moe``
    block (``repro.metrics.routing.n_experts_of``); other blocks log none."""
    from repro.metrics.logged import logged_stats, n_experts_of

    if not n_experts_of(model.ffn):
        return set()
    stats = logged_stats(type(model.ffn.router).STATS)  # the config's class declares them
    out = {N.routing_metric(split, s, layer) for split in (N.TRAIN, N.VAL) for s in stats
           for layer in (None, *range(model.n_layers))}
    if N.S_DROP_FRAC in stats:
        out.add(N.M_DROP_MEAN)
    return out


def arm_metrics(exp, arm: str, overrides: list[str] | None = None) -> set[str]:
    """Every metric name the runs of ``arm`` can have in their records (``RunRecord.metrics``
    after ``repro check``)."""
    out = set(EVERY_RUN) | routing_metrics(exp.run_config(arm, overrides).model)
    for fn in exp.analyses:
        if arm in getattr(fn, "arms", ()):
            out |= set(getattr(fn, "metrics", ()))
    return out


def check_claim_metrics(exp, overrides: list[str] | None = None) -> None:
    """Refuse (ConfigError, one line) a claim that reads a metric its arm does not produce."""
    produced: dict[str, set[str]] = {}

    def of(arm: str) -> set[str]:
        if arm not in produced:
            exp.arm(arm)  # an unknown arm: the registry's error, with close matches
            produced[arm] = arm_metrics(exp, arm, overrides)
        return produced[arm]

    for claim in exp.claims:
        for arm, metric in claim.reads:
            if metric in of(arm):
                continue
            by = [a.name for a in exp.arms if metric in of(a.name)]
            if by:
                why = f"produced only by arm(s) {', '.join(by)}"
            else:
                close = difflib.get_close_matches(metric, sorted(of(arm)), n=3, cutoff=0.6)
                why = (f"did you mean {' or '.join(repr(c) for c in close)}?" if close else
                       "no arm or analysis of this experiment produces it")
            raise ConfigError(f"claims.{claim.name}.metric",
                              f"arm {arm!r} never produces metric {metric!r} ({why})")
