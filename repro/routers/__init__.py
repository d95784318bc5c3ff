"""Routers. A routing method is two modules: ``<method>_config.py``, its config (fields, checks,
compute accounting; torch-free; the method's name is written there once, ``@variant("name")``),
and ``<method>.py``, the torch router (``@ROUTERS.add`` registers it under its config's name).

Importing this package registers every router *config* and loads no torch: experiment
definitions, ``repro ls`` / ``show`` and ``--set ...router.kind=`` resolve names with them. The
torch side (``ROUTERS``, ``Router``, ``Routing``) loads on first use of those names (PEP 562), and
the first lookup in ``ROUTERS`` imports every router module. A new router adds its name to
``METHODS``.
"""

from importlib import import_module

from repro.routers.base_config import RouterConfig

METHODS = ("expert_choice", "gshard", "noisy_topk", "switch", "topk")

for _method in METHODS:
    import_module(f"repro.routers.{_method}_config")

_TORCH = ("ROUTERS", "Router", "Routing")

__all__ = ["METHODS", "RouterConfig", "load_components", *_TORCH]


def load_components() -> None:
    """Import every router's torch module (each registers itself in ``ROUTERS``)."""
    for method in METHODS:
        import_module(f"repro.routers.{method}")


def __getattr__(name: str):
    if name in _TORCH:
        load_components()
        return getattr(import_module("repro.routers.base"), name)
    raise AttributeError(f"module 'repro.routers' has no attribute {name!r}")
