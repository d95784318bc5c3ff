"""Config of the Finedeep FFN block [S-FD] (references.md §Finedeep): its fields, checks and
compute accounting.

Torch-free, like every ``*_config`` module (experiment definitions, ``repro ls`` / ``show`` and
``--set`` validation use it without torch); the block itself is ``repro.layers.finedeep``.
"""

from __future__ import annotations

from repro.config import check, config, variant
from repro.layers.base_config import FFNConfig, FFNCount, swiglu_params

GATES = ("sigmoid", "softmax", "none")


@variant("finedeep")
@config
class FinedeepConfig(FFNConfig):
    d_ff: int = 352  # hidden width of the dense SwiGLU being partitioned
    n_sublayers: int = 2  # M sequential sub-layers (NF in the sources)
    n_experts: int = 4  # K experts per sub-layer (NF in the sources)
    gate: str = "sigmoid"  # sigmoid (paper) | softmax | none
    norm: bool = True  # RMSNorm before each sub-layer ("RMSNorm residuals", placement ours)

    DOMAINS = {"d_ff": ">= 1", "n_sublayers": ">= 1", "n_experts": ">= 1"}

    def __post_init__(self):
        check(self.d_ff >= 1, "d_ff", f"must be >= 1, got {self.d_ff}")
        check(self.n_sublayers >= 1, "n_sublayers", f"must be >= 1, got {self.n_sublayers}")
        check(self.n_experts >= 1, "n_experts", f"must be >= 1, got {self.n_experts}")
        mk = self.n_sublayers * self.n_experts
        check(self.d_ff % mk == 0, "n_experts",
              f"n_sublayers*n_experts={self.n_sublayers}*{self.n_experts}={mk} must divide "
              f"d_ff={self.d_ff}; pick M, K with M*K dividing d_ff (or change d_ff)")
        check(self.gate in GATES, "gate",
              f"unknown gate {self.gate!r} (allowed: {', '.join(GATES)})")

    @property
    def d_expert(self) -> int:
        return self.d_ff // (self.n_sublayers * self.n_experts)  # f = d_ff / (M*K)

    def count(self, d_model: int) -> FFNCount:
        """[S-FD], references.md §Finedeep: the dense SwiGLU weights (3*D*d_ff) plus M*K router
        vectors R_{j,i} [D] and M RMSNorm weights [D] (when ``norm``); FLOPs 6*D*d_ff + 2*M*K*D
        (the score dot products o_i . R_{j,i}; elementwise work excluded)."""
        D, M, K = d_model, self.n_sublayers, self.n_experts
        total = swiglu_params(D, self.d_ff) + M * K * D + (M * D if self.norm else 0)
        return FFNCount(total, float(total), 2.0 * swiglu_params(D, self.d_ff) + 2.0 * M * K * D)
