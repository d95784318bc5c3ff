"""Config of Switch Transformer top-1 routing [P-SW] §2.1-2.2: its fields, checks and compute
accounting.

Torch-free, like every ``*_config`` module (experiment definitions, ``repro ls`` / ``show`` and
``--set`` validation use it without torch); the router itself is ``repro.routers.switch``.
"""

from __future__ import annotations

from repro.config import check, config, variant
from repro.routers.base_config import GatedRouterConfig


@variant("switch")
@config
class SwitchRouterConfig(GatedRouterConfig):
    # [P-ST] trains at 1.25 and evaluates at 2.0. None = no capacity in that mode: the dropless
    # variant (every token reaches its expert; the sorted/grouped backends then run exactly N
    # expert rows, the padded bmm backend sizes its slots to the largest group)
    capacity_factor: float | None = 1.25
    eval_capacity_factor: float | None = 2.0
    alpha: float = 0.01  # load-balance alpha [P-SW Eq. 4], chosen by their 1e-1..1e-5 sweep
    z_loss: float = 1e-3  # router z-loss c_z [P-ST Eq. 5-6]

    DOMAINS = {"capacity_factor": "> 0", "eval_capacity_factor": "> 0", "alpha": ">= 0"}

    def __post_init__(self):
        self._check_common()
        for name in ("capacity_factor", "eval_capacity_factor"):
            v = getattr(self, name)
            check(v is None or v > 0, name, f"must be > 0 (or none for no capacity), got {v}")
        check(self.alpha >= 0, "alpha", f"must be >= 0, got {self.alpha}")

    def experts_per_token(self, n_experts: int) -> float:
        return 1.0

    def slots_per_token(self, n_experts: int) -> float | None:
        return self.capacity_factor  # E * C / N = capacity_factor (k = 1)
