"""Config of the dense SwiGLU FFN block (Shazeer 2020): its fields, checks and compute accounting.

Torch-free, like every ``*_config`` module (experiment definitions, ``repro ls`` / ``show`` and
``--set`` validation use it without torch); the block itself is ``repro.layers.dense``.
"""

from __future__ import annotations

from repro.config import check, config, variant
from repro.layers.base_config import FFNConfig, FFNCount, swiglu_params


@variant("dense")
@config
class DenseFFNConfig(FFNConfig):
    d_ff: int = 352  # SwiGLU hidden width; ~8/3 * d_model keeps params equal to a 4d GELU FFN

    DOMAINS = {"d_ff": ">= 1"}

    def __post_init__(self):
        check(self.d_ff >= 1, "d_ff", f"must be >= 1, got {self.d_ff}")

    def count(self, d_model: int) -> FFNCount:
        p = swiglu_params(d_model, self.d_ff)  # every weight multiplies every token
        return FFNCount(p, float(p), 2.0 * p)
