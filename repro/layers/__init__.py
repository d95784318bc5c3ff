"""FFN blocks and building layers. A block is two modules: ``<block>_config.py``, its config
(fields, checks, compute accounting; torch-free; the block's name is written there once,
``@variant("name")``), and ``<block>.py``, the torch module (``@FFN_BLOCKS.add`` registers it under
its config's name).

Importing this package registers every block *config* and loads no torch (experiment
definitions, ``repro ls`` / ``show`` and ``--set model.ffn.kind=`` use them). The torch side
(``FFN_BLOCKS``, ``FFNOutput``, ``AuxLoss``, ``build_ffn``) loads on first use of those names
(PEP 562), and the first lookup in ``FFN_BLOCKS`` imports every block module. A new block is its two
modules and nothing else: ``BLOCKS`` is read from the files (every ``<block>_config.py``).
"""

from pathlib import Path

from repro.layers.base_config import FFNConfig
from repro.registry import component_members, component_package

BLOCKS = component_members(Path(__file__).parent)  # the built-in FFN blocks
_TORCH = ("FFN_BLOCKS", "AuxLoss", "FFNOutput", "build_ffn")
__all__ = ["BLOCKS", "FFNConfig", "load_components", *_TORCH]

# load_components(): import every block's torch module (each registers itself in FFN_BLOCKS)
load_components, __getattr__ = component_package("repro.layers", BLOCKS, _TORCH,
                                                 "repro.layers.base")
