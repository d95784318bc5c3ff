"""FFN blocks and building layers. A block is two modules: ``<block>_config.py``, its config
(fields, checks, compute accounting; torch-free; the block's name is written there once,
``@variant("name")``), and ``<block>.py``, the torch module (``@FFN_BLOCKS.add`` registers it under
its config's name).

Importing this package registers every block *config* and loads no torch (experiment
definitions, ``repro ls`` / ``show`` and ``--set model.ffn.kind=`` use them). The torch side
(``FFN_BLOCKS``, ``FFNOutput``, ``AuxLoss``, ``build_ffn``) loads on first use of those names
(PEP 562), and the first lookup in ``FFN_BLOCKS`` imports every block module. A new block adds its
name to ``BLOCKS``.
"""

from importlib import import_module

from repro.layers.base_config import FFNConfig

BLOCKS = ("dense", "finedeep", "moe")

for _block in BLOCKS:
    import_module(f"repro.layers.{_block}_config")

_TORCH = ("FFN_BLOCKS", "AuxLoss", "FFNOutput", "build_ffn")

__all__ = ["BLOCKS", "FFNConfig", "load_components", *_TORCH]


def load_components() -> None:
    """Import every block's torch module (each registers itself in ``FFN_BLOCKS``)."""
    for block in BLOCKS:
        import_module(f"repro.layers.{block}")


def __getattr__(name: str):
    if name in _TORCH:
        load_components()
        return getattr(import_module("repro.layers.base"), name)
    raise AttributeError(f"module 'repro.layers' has no attribute {name!r}")
