"""Plugins: routers, FFN blocks, experiments and search spaces from the user's own code.

A plugin is ordinary Python that registers components the way the built-in ones do
(``@variant("name")`` on a config, ``@ROUTERS.add`` / ``@FFN_BLOCKS.add`` on the module,
``@register_experiment``, ``register_space``); nothing in this repository is edited. Sources, in
the order they load:

* files and folders named by ``repro --plugin PATH`` (repeatable) or in the environment variable
  ``REPRO_PLUGINS`` (``os.pathsep``-separated). A file is imported as a module named by its stem;
  a folder with ``__init__.py`` is imported as a package named by the folder; any other folder has
  each of its ``*.py`` files (not starting with ``_``) imported, in name order. A file's folder is
  appended to ``sys.path``, so files can import their neighbours (``from my_router_config import
  ...``), and a module name already taken is refused (rename the file);
* installed packages that declare an entry point in the group ``moe_repro.plugins``
  (``[project.entry-points."moe_repro.plugins"] my_router = "my_pkg.router"``): the entry point's
  module is imported (an entry point naming a function, ``my_pkg:register``, is also called).

The command line passes ``--plugin`` paths on through ``REPRO_PLUGINS``, so the child processes of
``--jobs`` and sweep workers load the same plugins. Every registry records where each entry came
from (``Registry.origin``: ``built-in``, the file or folder, or ``package NAME VERSION``), which
``repro ls`` prints. A plugin that fails to import, or that registers a name already taken, is a
``PluginError``: one line naming the file and the fix (the CLI exits 2).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import sys
from pathlib import Path

from repro.registry import RegistryError, registering_from

ENV = "REPRO_PLUGINS"
GROUP = "moe_repro.plugins"

_loaded: dict[str, str] = {}  # source key (resolved path or entry point) -> origin label
_busy = [False]


_TAKEN = re.compile(r"duplicate (?P<label>.+?) name '(?P<name>[^']*)': already registered "
                    r"\((?P<origin>.*)\)$")
# the registries' labels as a user names them (a config's name is its component's name)
_LABELS = {"RouterConfig kind": "router", "FFNConfig kind": "FFN block"}


class PluginError(RegistryError):
    """A plugin that cannot be loaded; ``str()`` is one line: the file, the problem, the fix."""


def add_paths(paths: list[str]) -> None:
    """Add ``--plugin`` paths (checked, made absolute) to ``REPRO_PLUGINS``, so this process and
    every child it starts load them."""
    have = env_paths()
    for p in paths:
        path = Path(p).expanduser()
        if not path.exists():
            raise PluginError(f"--plugin {p}: no such file or folder; give the path of a .py "
                              "file or a folder of them")
        if not (path.is_dir() or path.suffix == ".py"):
            raise PluginError(f"--plugin {p}: not a .py file or a folder; give a Python file "
                              "(my_router.py) or a folder of them")
        s = str(path.resolve())
        if s not in have:
            have.append(s)
    if have:
        os.environ[ENV] = os.pathsep.join(have)


def env_paths() -> list[str]:
    return [p for p in os.environ.get(ENV, "").split(os.pathsep) if p.strip()]


def load_plugins() -> list[str]:
    """Import every plugin not imported yet (``REPRO_PLUGINS``, then entry points); returns the
    origin labels loaded so far. Idempotent and cheap once done; the built-in components are
    imported first, so a plugin can never take a built-in name unnoticed."""
    if _busy[0]:
        return list(_loaded.values())
    _busy[0] = True
    try:
        _load_builtins()
        for p in env_paths():
            path = Path(p).expanduser()
            key = str(path.resolve()) if path.exists() else p
            if key not in _loaded:
                if not path.exists():
                    raise PluginError(f"{ENV}: plugin path {p} does not exist; fix or remove it "
                                      f"from {ENV}")
                _load_path(path)
                _loaded[key] = str(path)
        for ep in _entry_points():
            key = f"entry point {ep.name} = {ep.value}"
            if key not in _loaded:
                origin = _ep_origin(ep)
                _loaded[key] = origin
                _import(lambda ep=ep: _call_if_function(ep.load()), origin,
                        f"{origin} (entry point {ep.name} = {ep.value} in group {GROUP})")
    finally:
        _busy[0] = False
    return list(_loaded.values())


def loaded() -> list[str]:
    """The plugin sources loaded in this process (file / folder paths, packages)."""
    return list(_loaded.values())


def _load_builtins() -> None:
    import repro.layers  # noqa: F401  (registers the built-in block configs)
    import repro.routers  # noqa: F401  (registers the built-in router configs)
    # built-in experiments: ``repro.experiments.base.load_experiments`` imports them before it
    # calls this function (the experiment layer sits above this module, so it calls down)
    # built-in search spaces register when repro.sweeps.spaces is imported (heavy: not here), and
    # a plugin's ``register_space`` imports it first, so a taken space name is still refused


def _entry_points():
    from importlib.metadata import entry_points

    return sorted(entry_points(group=GROUP), key=lambda ep: ep.name)


def _ep_origin(ep) -> str:
    dist = getattr(ep, "dist", None)
    if dist is not None:
        return f"package {dist.metadata['Name']} {dist.version}"
    return f"package entry point {ep.value}"


def _call_if_function(obj) -> None:
    import types

    if callable(obj) and not isinstance(obj, (type, types.ModuleType)):
        obj()


def _load_path(path: Path) -> None:
    origin = str(path)
    if path.is_file():
        _on_path(path.parent)  # a file may import its neighbours (its config module, say)
        _import(lambda: _import_module_named(path.stem, path), origin, str(path))
    elif (path / "__init__.py").exists():
        _import(lambda: _import_file(path / "__init__.py", path.name, package=path), origin,
                str(path))
    else:
        _on_path(path)  # the folder's files import each other by name
        for f in sorted(path.glob("*.py")):
            if not f.name.startswith("_"):
                _import(lambda f=f: _import_module_named(f.stem, f), origin, str(f))


def _on_path(folder: Path) -> None:
    """Append ``folder`` to ``sys.path`` (after everything installed: a plugin never shadows)."""
    f = str(folder.resolve())
    if f not in sys.path:
        sys.path.append(f)


def _import_module_named(name: str, file: Path) -> None:
    mod = sys.modules.get(name)
    if mod is not None:  # already imported by a sibling (``from my_router_config import ...``)
        if Path(getattr(mod, "__file__", "") or "").resolve() != file.resolve():
            raise PluginError(f"plugin {file}: its module name {name!r} is already taken by "
                              f"{getattr(mod, '__file__', None) or 'a built-in module'}; rename "
                              "the file")
        return
    _import_file(file, name)


def _import_file(file: Path, name: str, package: Path | None = None) -> None:
    if name in sys.modules:
        raise PluginError(f"plugin {file}: its module name {name!r} is already taken by "
                          f"{getattr(sys.modules[name], '__file__', None) or 'a built-in module'}"
                          "; rename the file (or folder)")
    spec = importlib.util.spec_from_file_location(
        name, file, submodule_search_locations=[str(package)] if package is not None else None)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    try:
        spec.loader.exec_module(mod)
    except BaseException:
        sys.modules.pop(name, None)
        raise


def _import(fn, origin: str, where: str) -> None:
    """Run one plugin import with its registrations recorded as ``origin``; any failure becomes
    one line naming ``where`` and the fix."""
    try:
        with registering_from(origin):
            fn()
    except PluginError:
        raise
    except RegistryError as e:
        msg = str(e)
        taken = _TAKEN.match(msg)
        if taken:  # "duplicate RouterConfig kind name 'x': already registered (built-in)"
            what = _LABELS.get(taken["label"], taken["label"])
            raise PluginError(f"plugin {where}: the {what} name {taken['name']!r} is already "
                              f"taken ({taken['origin']}); give it another name in that "
                              "file") from None
        raise PluginError(f"plugin {where}: {msg}; fix the registration in that file") from None
    except SyntaxError as e:
        raise PluginError(f"plugin {where}: cannot import it: SyntaxError: {e.msg} (line "
                          f"{e.lineno}); fix the file, or drop it from --plugin / {ENV}") from None
    except Exception as e:  # noqa: BLE001 - any import failure of user code is reported
        first = (str(e).strip().splitlines() or [""])[0]
        raise PluginError(f"plugin {where}: cannot import it: {type(e).__name__}: {first}; fix "
                          f"the file, or drop it from --plugin / {ENV}") from None
