"""FFN blocks and building layers; importing this package registers every FFN block."""

from repro.layers import dense, finedeep, moe  # noqa: F401  (registration side effect)
from repro.layers.base import FFN_BLOCKS, AuxLoss, FFNConfig, FFNOutput, build_ffn

__all__ = ["FFN_BLOCKS", "AuxLoss", "FFNConfig", "FFNOutput", "build_ffn"]
