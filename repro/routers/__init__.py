"""Routers. A routing method is two modules: ``<method>_config.py``, its config (fields, checks,
compute accounting; torch-free; the method's name is written there once, ``@variant("name")``),
and ``<method>.py``, the torch router (``@ROUTERS.add`` registers it under its config's name).

Importing this package registers every router *config* and loads no torch: experiment
definitions, ``repro ls`` / ``show`` and ``--set ...router.kind=`` resolve names with them. The
torch side (``ROUTERS``, ``Router``, ``Routing``) loads on first use of those names (PEP 562), and
the first lookup in ``ROUTERS`` imports every router module. A new built-in router is its two
modules and nothing else: ``METHODS`` is read from the files (every ``<method>_config.py``). A
router from the user's own code (a plugin, ``repro.plugins``) touches no file here.
"""

from pathlib import Path

from repro.registry import component_members, component_package
from repro.routers.base_config import GatedRouterConfig, RouterConfig

METHODS = component_members(Path(__file__).parent)  # the built-in routing methods
_TORCH = ("ROUTERS", "Router", "GatedRouter", "Routing")
__all__ = ["METHODS", "GatedRouterConfig", "RouterConfig", "load_components", *_TORCH]

# load_components(): import every router's torch module (each registers itself in ROUTERS)
load_components, __getattr__ = component_package("repro.routers", METHODS, _TORCH,
                                                 "repro.routers.base")
