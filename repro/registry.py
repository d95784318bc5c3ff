"""A small generic registry: register / get / names, with loud failures.

Every component chosen by name (routers, FFN blocks, experiments, search spaces) lives in one of
these. Duplicate names raise; unknown names raise with close matches ("did you mean"). A registry
made with ``base=`` refuses anything that is not a subclass of ``base``. Model components (routers,
FFN blocks) use ``repro.config.ComponentRegistry``: a component is registered under the name its
torch-free config carries, so the name is written once, and the registry imports its component
modules on first lookup.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Generic, TypeVar

from repro.errors import UserError

T = TypeVar("T")

BUILTIN = "built-in"
# where the entries being registered right now come from: "built-in", or a plugin's source (a
# file path, "package NAME VERSION"); ``repro.plugins`` sets it while it imports a plugin
_ORIGIN = [BUILTIN]


_BUILTIN_PACKAGES = ("repro", "experiments")


def _is_builtin(obj) -> bool:
    """Whether ``obj`` was defined by this project's own code: a class or function by its
    module, an instance (a search space) by the functions it holds. A built-in module that a
    plugin's import pulls in registers as built-in, not as that plugin."""
    import types

    mods = []
    if isinstance(obj, (type, types.FunctionType)):
        mods = [obj.__module__]
    elif hasattr(obj, "__dict__"):
        mods = [v.__module__ for v in vars(obj).values() if isinstance(v, types.FunctionType)]
    return bool(mods) and all((m or "").split(".")[0] in _BUILTIN_PACKAGES for m in mods)


@contextmanager
def registering_from(origin: str):
    """Entries registered inside this block are recorded as coming from ``origin``."""
    _ORIGIN.append(origin)
    try:
        yield
    finally:
        _ORIGIN.pop()


class RegistryError(UserError, KeyError):
    """Unknown or duplicate registry name. ``str()`` is a single human-readable line."""

    def __str__(self) -> str:  # KeyError would otherwise repr() the message
        return str(self.args[0]) if self.args else ""


class Registry(Generic[T]):
    def __init__(self, label: str, *, base: type | None = None):
        self.label = label  # what the entries are, for messages, e.g. "router"
        self.base = base  # when set, only subclasses of it may be registered
        self._items: dict[str, T] = {}
        self._origins: dict[str, str] = {}  # name -> "built-in" or the plugin it came from

    def register(self, name: str, obj: T | None = None) -> Callable[[T], T] | T:
        """``reg.register("x", obj)`` or as a decorator ``@reg.register("x")``."""
        if obj is None:
            return lambda o: self.register(name, o)  # type: ignore[return-value]
        if not name or not isinstance(name, str):
            raise RegistryError(f"{self.label} name must be a non-empty string, got {name!r}")
        if name in self._items:
            raise RegistryError(f"duplicate {self.label} name {name!r}: already registered "
                                f"({self._origins.get(name, BUILTIN)})")
        if self.base is not None and not (isinstance(obj, type) and issubclass(obj, self.base)):
            got = obj.__name__ if isinstance(obj, type) else type(obj).__name__ + " instance"
            raise RegistryError(f"{self.label} {name!r}: {got} is not a subclass of "
                                f"{self.base.__name__}; derive it from {self.base.__name__}")
        self._stamp(name, obj)
        self._items[name] = obj
        self._origins[name] = BUILTIN if _is_builtin(obj) else _ORIGIN[-1]
        return obj

    def origin(self, name: str) -> str:
        """Where ``name`` came from: "built-in", or the plugin (file, folder or package)."""
        self._ensure_loaded()
        if name not in self._items:
            raise RegistryError(self.unknown_message(name))
        return self._origins.get(name, BUILTIN)

    def _stamp(self, name: str, obj: T) -> None:
        """Hook run before ``obj`` is stored (subclasses stamp the name onto it; may raise)."""

    def _ensure_loaded(self) -> None:
        """Hook run before every lookup (a registry filled on first use loads its entries)."""

    def unregister(self, name: str) -> T:
        """Remove ``name`` and return what was registered (tests register throwaway entries)."""
        self._ensure_loaded()
        if name not in self._items:
            raise RegistryError(self.unknown_message(name))
        self._origins.pop(name, None)
        return self._items.pop(name)

    def get(self, name: str, *, field: str | None = None) -> T:
        self._ensure_loaded()
        try:
            return self._items[name]
        except (KeyError, TypeError):
            raise RegistryError(self.unknown_message(name, field=field)) from None

    def unknown_message(self, name: object, *, field: str | None = None) -> str:
        self._ensure_loaded()
        where = f"{field}: " if field else ""
        close = difflib.get_close_matches(str(name), list(self._items), n=3, cutoff=0.5)
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        return (f"{where}unknown {self.label} {name!r}{hint} "
                f"(choose one of: {', '.join(sorted(self._items))})")

    def names(self) -> list[str]:
        self._ensure_loaded()
        return sorted(self._items)

    def items(self) -> list[tuple[str, T]]:
        self._ensure_loaded()
        return sorted(self._items.items())

    def __contains__(self, name: object) -> bool:
        self._ensure_loaded()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        self._ensure_loaded()
        return len(self._items)


def component_members(package_dir) -> tuple[str, ...]:
    """The components of a package, read from its files: every ``<member>_config.py`` except
    ``base_config.py`` names one member (its torch module is ``<member>.py``). So the list of
    built-in routers or FFN blocks cannot drift from the files (tests/test_registry.py checks
    that each member's two modules exist and register the member's name)."""
    import pkgutil

    mods = {m.name for m in pkgutil.iter_modules([str(package_dir)])}
    return tuple(sorted(m.removesuffix("_config") for m in mods
                        if m.endswith("_config") and m != "base_config"))


def component_package(package: str, members: tuple[str, ...], torch_names: tuple[str, ...],
                      base_module: str):
    """The lazy loading shared by ``repro.routers`` and ``repro.layers``: import every member's
    torch-free ``<member>_config`` module now, and return ``(load_components, __getattr__)``
    for the package: ``load_components()`` imports every member's torch module (each registers
    itself), and the package's ``torch_names`` load from ``base_module`` on first use (PEP 562),
    after every component is registered."""
    from importlib import import_module

    for member in members:
        import_module(f"{package}.{member}_config")

    def load_components() -> None:
        for member in members:
            import_module(f"{package}.{member}")

    def __getattr__(name: str):
        if name in torch_names:
            load_components()
            return getattr(import_module(base_module), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return load_components, __getattr__
