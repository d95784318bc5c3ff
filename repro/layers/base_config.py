"""The config every FFN block config derives from (torch-free: experiment definitions,
``repro ls`` / ``show`` and ``--set`` validation use it without importing torch). The block
contract itself (``FFN_BLOCKS``, ``FFNOutput``) is ``repro.layers.base``."""

from __future__ import annotations

from dataclasses import dataclass

from repro.config import config, variant_family


# The counting vocabulary every block config's ``count`` speaks; the conventions (what is a FLOP,
# what is activated) are stated once in ``repro.compute``, which sums and matches these counts.
@dataclass(frozen=True)
class FFNCount:
    total: int  # parameters of the block
    activated: float  # parameters applied per token (expected); MoNE: convention B
    flops: float  # forward FLOPs per token
    activated_conv_a: float | None = None  # MoNE convention A (full W_gate + kept rows), else None
    # forward FLOPs per token that a capacity-padded dispatch executes in training: every one of
    # the E*C expert slots is computed, filled or not (None: the method has no capacity). The
    # matched quantity ``flops`` counts FLOPs per *routed* token (k_eff experts, no drops).
    flops_padded: float | None = None


def swiglu_params(d_model: int, d_ff: int) -> int:
    return 3 * d_model * d_ff  # W_gate, W_up [D, F] and W_down [F, D]


def router_params(router_cfg, d_model: int, n_experts: int) -> int:
    """The router's parameters; each router config counts its own (``RouterConfig.param_count``,
    next to its ``experts_per_token`` and ``slots_per_token``)."""
    return router_cfg.param_count(d_model, n_experts)


@variant_family
@config
class FFNConfig:
    """Base of the FFN block configs; ``kind`` names the block (``@variant`` on each subclass)."""

    kind: str = ""

    def count(self, d_model: int) -> FFNCount:
        """Parameters and forward FLOPs per token of this block at width ``d_model``, by the
        conventions of ``repro.compute`` (a test compares them with the built module)."""
        raise NotImplementedError(f"{type(self).__name__} does not count its parameters/FLOPs")
