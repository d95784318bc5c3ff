"""The language model. ``ModelConfig`` is torch-free (``repro.models.lm_config``); ``LM`` and
``LMOutput`` load torch on first use (PEP 562)."""

from importlib import import_module

from repro.models.lm_config import ModelConfig

_TORCH = ("LM", "LMOutput")

__all__ = ["ModelConfig", *_TORCH]


def __getattr__(name: str):
    if name in _TORCH:
        return getattr(import_module("repro.models.lm"), name)
    raise AttributeError(f"module 'repro.models' has no attribute {name!r}")
