"""Experiment, Arm and the experiment registry.

An experiment definition (a function in the top-level ``experiments/`` package, registered with
``@register_experiment``) takes a scale name and returns an ``Experiment``: named arms (each a
typed model config), the matched quantity, a recipe, data, seeds and claims. Before anything
trains, ``Experiment.validate()`` checks the arms are matched by analytic accounting.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

from repro.compute import ModelCount, check_matched, model_count
from repro.config import ConfigError, UnknownKeyError, apply_overrides, split_arm_scope
from repro.data.config import DataConfig
from repro.experiments.produced import check_claim_metrics
from repro.lit.config import RunConfig, TrainConfig, TrainerConfig
from repro.models.lm_config import ModelConfig
from repro.registry import Registry

EXPERIMENTS: Registry[Callable[[str], Experiment]] = Registry("experiment")
SCALES = ("smoke", "cpu", "cpu-v1", "gpu")


@dataclass(frozen=True)
class Arm:
    name: str
    model: ModelConfig
    description: str = ""
    overrides: tuple[str, ...] = ()  # extra dotted overrides of the run config for this arm


@dataclass(frozen=True)
class Experiment:
    name: str
    version: str
    title: str
    paper: str
    arms: tuple[Arm, ...]
    matched: str  # a repro.compute.MATCHABLE quantity, or "none"
    recipe: TrainConfig
    data: DataConfig
    seeds: tuple[int, ...]  # the planned seeds (the fixed-n design's count)
    claims: tuple = ()
    scale: str = "cpu"
    match_groups: tuple[tuple[str, ...], ...] | None = None  # default: all arms one group
    baseline: str | None = None  # the reference arm (e.g. target curves)
    # further matched quantities, each over its own arm groups: (quantity, ((arm, ...), ...))
    also_matched: tuple[tuple[str, tuple[tuple[str, ...], ...]], ...] = ()
    # eval-time studies run by `repro check`: fn(exp, results, ctx) -> list of written files;
    # they add per-run metrics (RunRecord.metrics) that claims can read
    analyses: tuple = ()
    trainer: TrainerConfig = TrainerConfig()
    notes: str = ""
    extra: dict = field(default_factory=dict)
    # the registered seed design: None = fixed-n at len(seeds); a larger count = the
    # group-sequential design of repro.experiments.sequential up to this many seeds (<= 10)
    max_seeds: int | None = None

    def arm(self, name: str) -> Arm:
        for a in self.arms:
            if a.name == name:
                return a
        reg = Registry("arm")
        for a in self.arms:
            reg.register(a.name, a)
        return reg.get(name, field="--arm")

    def run_config(self, arm: Arm | str, overrides: list[str] | None = None,
                   vocab_size: int | None = None) -> RunConfig:
        arm = self.arm(arm) if isinstance(arm, str) else arm
        model = arm.model if vocab_size is None else replace(arm.model, vocab_size=vocab_size)
        run = RunConfig(model=model, data=self.data, train=self.recipe, trainer=self.trainer)
        run = apply_overrides(run, list(arm.overrides))
        plain, scoped = self.split_overrides(overrides)
        try:  # plain `--set KEY=VALUE` reaches every arm; `--set ARM:KEY=VALUE` only ARM
            run = apply_overrides(run, plain)
        except UnknownKeyError:
            self.check_override_scope(plain)  # the key exists on some arms: say which
            raise
        run = apply_overrides(run, scoped.get(arm.name, []))
        if vocab_size is None and run.model.vocab_size != run.data.vocab_size:
            # the LM's vocabulary is the data's (training sets it from the tokenizer too), so
            # `--set data.vocab_size=...` moves the accounting with it
            run = replace(run, model=replace(run.model, vocab_size=run.data.vocab_size))
        return run

    def split_overrides(self, overrides: list[str] | None
                        ) -> tuple[list[str], dict[str, list[str]]]:
        """Plain overrides (every arm) and arm-scoped ones, ``ARM:KEY=VALUE``, by arm; an unknown
        arm is refused with the experiment's arms."""
        plain: list[str] = []
        scoped: dict[str, list[str]] = {}
        for text in overrides or []:
            arm, rest = split_arm_scope(text)
            if arm is None:
                plain.append(text)
                continue
            if arm not in {a.name for a in self.arms}:
                import difflib

                names = [a.name for a in self.arms]
                close = difflib.get_close_matches(arm, names, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise ConfigError("--set", f"{text!r}: {self.name} has no arm {arm!r}{hint} "
                                  f"(arms: {', '.join(names)})")
            scoped.setdefault(arm, []).append(rest)
        return plain, scoped

    def check_override_scope(self, overrides: list[str] | None) -> None:
        """Refuse a plain override whose key exists on some arms but not on others: one line
        naming the arms where it exists and the ``ARM:`` form (nothing to say when it exists
        nowhere: applying it gives the unknown-key error)."""
        from repro.config import parse_override

        plain, _ = self.split_overrides(overrides)
        for text in plain:
            have = []
            for a in self.arms:
                base = RunConfig(model=a.model, data=self.data, train=self.recipe,
                                 trainer=self.trainer)
                try:
                    apply_overrides(apply_overrides(base, list(a.overrides)), [text])
                except UnknownKeyError:
                    continue
                except ConfigError:
                    pass  # the key exists there (its value is another matter)
                have.append(a.name)
            if have and len(have) < len(self.arms):
                key, value = parse_override(text)
                lack = [a.name for a in self.arms if a.name not in have]
                forms = " ".join(f"{a}:{key}={value}" for a in have)
                raise ConfigError("--set", f"{key} exists only on arm(s) {', '.join(have)} of "
                                  f"{self.name} (not on {', '.join(lack)}); scope it to those "
                                  f"arms: --set {forms}")

    def counts(self, overrides: list[str] | None = None) -> dict[str, ModelCount]:
        return {a.name: model_count(self.run_config(a, overrides).model, self.data.seq_len)
                for a in self.arms}

    def validate(self, overrides: list[str] | None = None) -> dict[str, float]:
        """Refuse unmatched arms (2% tolerance) and claims on a metric their arm never produces
        (``repro.experiments.produced``) before any training; returns deviations. A plain
        override whose key only some arms have is refused first (``ARM:KEY=VALUE`` scopes it)."""
        self.check_override_scope(overrides)
        check_claim_metrics(self, overrides)
        if self.matched == "none" and not self.also_matched:
            return {}
        if self.matched == "none":
            counts = self.counts(overrides)
            dev: dict[str, float] = {}
            for quantity, qgroups in self.also_matched:
                for k, v in check_matched(counts, quantity, 0.02, [list(g) for g in qgroups]
                                          ).items():
                    dev[k] = max(dev.get(k, 0.0), v)
            return dev
        counts = self.counts(overrides)
        groups = [list(g) for g in self.match_groups] if self.match_groups else None
        dev = check_matched(counts, self.matched, 0.02, groups)
        for quantity, qgroups in self.also_matched:
            extra = check_matched(counts, quantity, 0.02, [list(g) for g in qgroups])
            for k, v in extra.items():
                dev[k] = max(dev.get(k, 0.0), v)
        return dev

    def mlflow_description(self) -> str:
        """The MLflow experiment's description (markdown, shown above its runs table): the
        paper, the arms and the claims, and where the verdicts are."""
        lines = [f"{self.title} (`{self.name}` v{self.version}, scale `{self.scale}`)", "",
                 f"Paper: {self.paper}", "",
                 f"Arms, matched on {self.matched_description()}:"]
        lines += [f"- `{a.name}`: {a.description}" if a.description else f"- `{a.name}`"
                  for a in self.arms]
        lines += ["", "Claims (the `summary-SCALE` run holds the verdicts: one `verdict.CLAIM` "
                  "column each in the runs table, and the claims table):"]
        lines += [f"- `{c.name}`: {c.statement} [paper: {c.paper_figure}; {c.source}]"
                  for c in self.claims]
        return "\n".join(lines)

    def matched_description(self) -> str:
        """The matched quantities; FLOPs are matched per *routed* token (k experts, no drops,
        no capacity padding: ``FFNCount.flops_padded``, repro/layers/base_config.py, is the
        padded cost)."""
        def name(q: str) -> str:
            return f"{q} (per routed token)" if "flops" in q else q

        parts = [name(self.matched)] + [f"{name(q)} within {' / '.join('+'.join(g) for g in gs)}"
                                        for q, gs in self.also_matched]
        return "; ".join(parts)


def register_experiment(name: str):
    def deco(fn: Callable[[str], Experiment]):
        EXPERIMENTS.register(name, fn)
        fn.experiment_name = name
        return fn

    return deco


def load_builtin_experiments() -> None:
    """Import the top-level ``experiments`` package (registration happens on import)."""
    import experiments  # noqa: F401


def load_experiments() -> None:
    """The built-in experiments, then the plugins' (``repro.plugins``: files named by
    ``--plugin`` / ``REPRO_PLUGINS``, installed packages' entry points)."""
    from repro.plugins import load_plugins

    load_builtin_experiments()
    load_plugins()


def get_experiment(name: str, scale: str = "cpu") -> Experiment:
    load_experiments()
    if scale not in SCALES:
        raise ConfigError("--scale", f"unknown scale {scale!r} (allowed: {', '.join(SCALES)})")
    exp = EXPERIMENTS.get(name, field="experiment")(scale)
    if exp.name != name:
        raise ConfigError("experiment", f"definition registered as {name!r} returned {exp.name!r}")
    return exp
