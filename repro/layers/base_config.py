"""The config every FFN block config derives from (torch-free: experiment definitions,
``repro ls`` / ``show`` and ``--set`` validation use it without importing torch). The block
contract itself (``FFN_BLOCKS``, ``FFNOutput``) is ``repro.layers.base``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from repro.config import config, variant_family

if TYPE_CHECKING:
    from repro.compute import FFNCount


@variant_family
@config
class FFNConfig:
    """Base of the FFN block configs; ``kind`` names the block (``@variant`` on each subclass)."""

    kind: str = ""

    def count(self, d_model: int) -> FFNCount:
        """Parameters and forward FLOPs per token of this block at width ``d_model``, by the
        conventions of ``repro.compute`` (a test compares them with the built module)."""
        raise NotImplementedError(f"{type(self).__name__} does not count its parameters/FLOPs")
