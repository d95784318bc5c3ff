"""The configs every router config derives from (torch-free: experiment definitions, ``repro ls``
/ ``show`` and ``--set`` validation use them without importing torch). The router contract itself
is ``repro.routers.base``.

Two bases, matching the two router bases there:
* ``RouterConfig``: what every router has (its ``kind``, its accounting hooks). A router without a
  learned gate (a hash or fixed assignment, say) derives its config from this one.
* ``GatedRouterConfig``: a router with a learned gate ``W_r: [D, E]`` and logits ``x W_r``. Only it
  carries the fields that act on logits (``z_loss``) or on the gate weight (``init_scale``).
"""

from __future__ import annotations

from repro.config import check, config, variant_family


@variant_family
@config
class RouterConfig:
    """Fields every router has: only its name (``kind``, set by ``@variant``)."""

    kind: str = ""

    # the keys of ``Routing.stats`` every call of this router returns (a class attribute, not a
    # field; tests/routers/test_routers.py checks them against real calls). The logged metrics
    # follow from them (repro.metrics.logged.logged_stats), so claims are checked without torch.
    # A router without logits still has a hard load per expert and a drop rate.
    STATS = ("load", "drop_frac")

    def experts_per_token(self, n_experts: int) -> float:
        """Expected number of experts applied per token (for compute accounting)."""
        raise NotImplementedError

    def slots_per_token(self, n_experts: int) -> float | None:
        """Expert slots per token that a capacity-padded dispatch computes in training (E*C/N,
        whether or not a token fills them); None for a method without capacity. Compute
        accounting uses it for the "executed" FLOPs next to the "per routed token" ones; a
        router whose config returns a number here reports its capacity (``Routing.capacity``)."""
        return None

    def param_count(self, d_model: int, n_experts: int) -> int:
        """Parameters of the router (compute accounting; a test compares it with the module).
        A router without a learned gate has none."""
        return 0

    def with_experts_per_token(self, k: int) -> RouterConfig:
        """This config set to apply ``k`` experts per token where the method has a free K (the
        benchmarks use it to run every router at one K); a fixed-K method returns itself."""
        return self

    def validate_for(self, n_experts: int) -> None:
        """Cross-field checks against the block (raise ConfigError with a field name)."""

    def _check_common(self) -> None:
        """Checks shared by the subclasses' ``__post_init__`` (none at this level)."""


@config
class GatedRouterConfig(RouterConfig):
    """A router with a learned gate W_r [D, E] and logits. ``z_loss``: ST-MoE router z-loss
    coefficient on the logits ([P-ST] Eq. 5)."""

    z_loss: float = 0.0
    # std of the router weight init; 0 gives zero init (Shazeer App. A). Default: Switch's
    # reduced-scale init, std = sqrt(0.1 / D) ([P-SW] §2.4 scales the init by s = 0.1).
    init_scale: float = 0.1

    DOMAINS = {"z_loss": ">= 0", "init_scale": ">= 0"}
    # with logits: gate probabilities (importance), their entropy and the z statistic too
    STATS = (*RouterConfig.STATS[:1], "importance", "drop_frac", "entropy", "z")

    def param_count(self, d_model: int, n_experts: int) -> int:
        return d_model * n_experts  # W_r: [D, E]

    def _check_common(self) -> None:
        check(self.z_loss >= 0, "z_loss", f"must be >= 0, got {self.z_loss}")
        check(self.init_scale >= 0, "init_scale", f"must be >= 0, got {self.init_scale}")
