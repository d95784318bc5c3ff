"""Typed configuration: frozen keyword-only dataclasses plus one override path.

* ``to_dict`` / ``from_dict`` round-trip any config (nested dataclasses, tuples, variants).
* ``apply_overrides(cfg, ["model.ffn.top_k=4", ...])`` is the single override path used by the
  CLI (``--set``) and by Optuna trials; values are coerced by the field annotation.
* ``config_hash`` is a stable short hash of the canonical JSON form.
* ``ConfigError`` always names the dotted path of the offending field.
* Every numeric field has a declared *domain* (a ``DOMAINS`` class attribute: ``"> 0"``,
  ``">= 1"``, ``"[0, 1)"``, ...). ``@config`` checks it, and finiteness of every float, before the
  class's own ``__post_init__`` (which keeps the cross-field checks): ``nan``/``inf``, a negative
  seed or a zero learning rate never reach training.

Polymorphic fields (the FFN block of a model, say) are *variant* families: a base dataclass with a
``kind`` field and a registry of subclasses. ``from_dict`` dispatches on ``kind``; an override that
changes ``kind`` resets that node to the new variant's defaults before other overrides apply.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import types
import typing
from collections.abc import Callable
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

from repro.errors import UserError
from repro.registry import Registry, RegistryError

C = TypeVar("C")


class ConfigError(UserError, ValueError):
    """A user-facing configuration error. ``str()`` is one line: ``path: problem (fix)``."""

    def __init__(self, path: str, message: str):
        self.path = path
        self.message = message
        super().__init__(f"{path}: {message}" if path else message)

    def prefixed(self, prefix: str) -> ConfigError:
        if not prefix:
            return self
        return ConfigError(f"{prefix}.{self.path}" if self.path else prefix, self.message)


class UnknownKeyError(ConfigError):
    """An override or config key that does not exist in this config (a ConfigError: one line)."""


def check(cond: bool, field: str, message: str) -> None:
    """Validation helper for ``__post_init__``: raise ``ConfigError(field, message)`` unless
    ``cond``."""
    if not cond:
        raise ConfigError(field, message)


def config(cls: type[C]) -> type[C]:
    """Decorator: a frozen, keyword-only dataclass whose numeric fields are checked against their
    declared domains (``DOMAINS``, merged over the bases) before its own ``__post_init__``."""
    domains: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        domains.update(vars(klass).get("DOMAINS", {}))
    cls.__domains__ = {k: Domain.parse(v) for k, v in domains.items()}
    own = vars(cls).get("__post_init__")
    inherited = any("__post_init__" in vars(k) for k in cls.__mro__[1:])
    if own is not None or not inherited:
        def __post_init__(self, _own=own):
            check_domains(self)
            if _own is not None:
                _own(self)

        __post_init__.__wrapped__ = own
        cls.__post_init__ = __post_init__
    return dataclasses.dataclass(frozen=True, kw_only=True)(cls)


# ---------------------------------------------------------------------------------------- domains
@dataclasses.dataclass(frozen=True)
class Domain:
    """An interval of allowed values: ``"> 0"``, ``">= 1"``, ``"[0, 1)"``, ``"(0, 0.5)"``,
    ``"any"`` (finite, any sign). Floats must also be finite; ``None`` is allowed exactly when the
    field's annotation allows it."""

    text: str
    lo: float = -math.inf
    hi: float = math.inf
    lo_open: bool = True
    hi_open: bool = True

    @classmethod
    def parse(cls, text: str) -> Domain:
        t = text.strip()
        if t == "any":
            return cls(t)
        for op in (">=", "<=", ">", "<"):
            if t.startswith(op):
                v = float(eval_number(t[len(op):]))
                if op[0] == ">":
                    return cls(t, lo=v, lo_open=op == ">")
                return cls(t, hi=v, hi_open=op == "<")
        if t[0] in "[(" and t[-1] in "])" and "," in t:
            a, b = t[1:-1].split(",")
            return cls(t, lo=float(eval_number(a)), hi=float(eval_number(b)),
                       lo_open=t[0] == "(", hi_open=t[-1] == ")")
        raise ValueError(f"bad domain {text!r}")

    def contains(self, v: float) -> bool:
        if isinstance(v, float) and not math.isfinite(v):
            return False
        above = v > self.lo if self.lo_open else v >= self.lo
        below = v < self.hi if self.hi_open else v <= self.hi
        return above and below

    def describe(self, tp: type = float) -> str:
        fin = " and finite" if tp is float else ""
        if self.text == "any":
            return "finite" if tp is float else "an integer"
        return f"{self.text}{fin}" if self.text[0] in "<>" else f"in {self.text}{fin}"


def eval_number(text: str) -> float:
    """``"0"``, ``"1e-3"``, ``"2**32"``: the numbers a domain may name."""
    t = text.strip()
    if "**" in t:
        base, exp = t.split("**")
        return float(base) ** float(exp)
    return float(t)


def numeric_fields(cls) -> dict[str, tuple[type, bool]]:
    """``{name: (int | float, None allowed)}`` for the int/float fields of a config class."""
    out = {}
    for f in dataclasses.fields(cls):
        tp = _hints(cls)[f.name]
        args = get_args(tp) if get_origin(tp) in (Union, types.UnionType) else (tp,)
        base = [a for a in args if a is not type(None)]
        if len(base) == 1 and base[0] in (int, float):
            out[f.name] = (base[0], type(None) in args)
    return out


def check_domains(cfg: Any) -> None:
    """Raise ConfigError (one line: field, value, allowed domain, fix) for the first numeric field
    of ``cfg`` outside its declared domain; every float must be finite."""
    domains = getattr(type(cfg), "__domains__", {})
    for name, (tp, none_ok) in numeric_fields(type(cfg)).items():
        v = getattr(cfg, name)
        if v is None or isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        dom = domains.get(name)
        ok = dom.contains(v) if dom is not None else (
            not isinstance(v, float) or math.isfinite(v))
        if not ok:
            allowed = dom.describe(tp) if dom is not None else "finite"
            default = next((f.default for f in dataclasses.fields(cfg) if f.name == name), None)
            fix = "a value in that domain" + (", or none" if none_ok else "")
            if default is not None and default is not dataclasses.MISSING:
                fix = f"e.g. {default} (the default)"
            elif none_ok:
                fix += " (the default)"
            raise ConfigError(name, f"must be {allowed}{' (or none)' if none_ok else ''}, got "
                              f"{v}; set {fix}")


# --------------------------------------------------------------------------------------- variants
_VARIANT_ATTR = "__variants__"


def variant_family(base: type[C]) -> type[C]:
    """Mark ``base`` (a config dataclass with a ``kind: str`` field) as a variant family."""
    setattr(base, _VARIANT_ATTR, Registry(f"{base.__name__} kind"))
    return base


def variant(name: str):
    """Register a config subclass under ``name`` in its base's family and make ``name`` its
    ``kind`` default. A component's config (router, FFN block) is named this way in its
    torch-free module; ``ComponentRegistry.add`` registers the component under the same name."""

    def deco(cls):
        fam = _family_of(cls)
        if fam is None:
            raise TypeError(f"{cls.__name__} has no variant_family base")
        if _VARIANT_ATTR in vars(cls):
            raise TypeError(f"{cls.__name__} is a variant family base; register a subclass")
        fields = vars(cls).get("__dataclass_fields__", {})
        kind = fields.get("kind")
        if kind is None or not (cls.__init__.__kwdefaults__ or {}).keys() >= {"kind"}:
            raise TypeError(f"{cls.__name__} must be a @config dataclass with a kind field")
        inherited = getattr(cls, "KIND", "")  # a subclass of a registered config inherits it
        if kind.default not in ("", name, inherited):
            raise TypeError(f"{cls.__name__}: kind default {kind.default!r} disagrees with the "
                            f"registered name {name!r}; drop the kind default (registration "
                            "sets it)")
        fam.register(name, cls)
        if kind.default != name:  # set the dataclass default after the fact: field, __init__
            kind = copy.copy(kind)  # the Field object is shared with the base class
            kind.default = name
            fields["kind"] = kind
            cls.__init__.__kwdefaults__["kind"] = name
            cls.kind = name
        cls.KIND = name
        return cls

    return deco


class ComponentRegistry(Registry):
    """Registry of model components (routers, FFN blocks): classes derived from ``base`` whose
    ``Config`` is their own subclass of the variant family ``config_base``.

    A component's name is written once, on its config, in a torch-free module:
    ``@variant("name")``. That is what ``from_dict``, ``--set ...kind=name``, experiment
    definitions and ``repro ls`` / ``show`` use, without importing torch. The component class is
    registered with ``@REG.add``, which takes the name from its ``Config`` and makes it the class's
    ``KIND``. ``REG.register("name", cls)`` is the same with the name spelled out: it must agree
    with the config's, or, for a config without a name (a throwaway test component), it names
    the config. ``unregister`` undoes both.

    ``load`` (optional) imports the component modules; it runs on the first lookup, so the
    registry is complete however it was imported and torch loads only when a component is needed.
    """

    def __init__(self, label: str, *, base: type, config_base: type,
                 load: Callable[[], object] | None = None):
        super().__init__(label, base=base)
        self.config_base = config_base
        self._load = load
        self._loading = False

    def _ensure_loaded(self) -> None:
        if self._load is None or self._loading:
            return
        self._loading = True  # the modules it imports register themselves (no lookups)
        try:
            self._load()
            self._load = None
        finally:
            self._loading = False

    def add(self, cls):
        """``@REG.add`` on a component class: register it under its ``Config``'s name."""
        cfg = vars(cls).get("Config") if isinstance(cls, type) else None
        name = vars(cfg).get("KIND") if isinstance(cfg, type) else None
        if not name:
            what = cls.__name__ if isinstance(cls, type) else type(cls).__name__ + " instance"
            raise RegistryError(f"{self.label} {what}: its Config has no name; name the config "
                                f"with @variant(\"name\") in its torch-free config module")
        return self.register(name, cls)

    def _stamp(self, name: str, cls) -> None:
        cfg = vars(cls).get("Config")
        if not (isinstance(cfg, type) and issubclass(cfg, self.config_base)
                and cfg is not self.config_base):
            raise RegistryError(f"{self.label} {name!r}: {cls.__name__} needs its own Config, a "
                                f"@config subclass of {self.config_base.__name__}")
        registered = vars(cfg).get("KIND")
        if registered is None:
            try:
                variant(name)(cfg)
            except TypeError as e:
                raise RegistryError(f"{self.label} {name!r}: {e}") from None
        elif registered != name:
            raise RegistryError(f"{self.label} {name!r}: its Config {cfg.__name__} is named "
                                f"{registered!r}; use one name (register the class with .add, "
                                "which takes its Config's)")
        cls.KIND = name

    def unregister(self, name: str):
        cls = super().unregister(name)
        fam = _family_of(self.config_base)
        if fam is not None and name in fam:
            fam.unregister(name)
        return cls


def family_of(cls: type) -> Registry | None:
    """The variant registry (kind -> config class) of ``cls``'s family, None outside one."""
    return _family_of(cls)


def _family_of(cls) -> Registry | None:
    for klass in cls.__mro__:
        if _VARIANT_ATTR in vars(klass):
            return vars(klass)[_VARIANT_ATTR]
    return None


def variant_names(base: type) -> list[str]:
    fam = _family_of(base)
    return fam.names() if fam else []


# ------------------------------------------------------------------------------------ dict forms
def to_dict(cfg: Any) -> Any:
    """Plain JSON-able dict of a config (tuples become lists)."""
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        return {f.name: to_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
    if isinstance(cfg, (list, tuple)):
        return [to_dict(v) for v in cfg]
    if isinstance(cfg, dict):
        return {k: to_dict(v) for k, v in cfg.items()}
    return cfg


def _hints(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def from_dict(cls: type[C], data: Any, path: str = "") -> C:
    """Build ``cls`` from a plain dict, validating keys and types; errors name the dotted path."""
    if not isinstance(data, dict):
        raise ConfigError(path, f"expected a mapping for {cls.__name__}, got {type(data).__name__}")
    fam = _family_of(cls)
    if fam is not None:
        kind = data.get("kind", getattr(cls, "KIND", None))
        if kind not in fam:
            raise ConfigError(_join(path, "kind"), fam.unknown_message(kind))
        cls = fam.get(kind)
    hints = _hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = [k for k in data if k not in fields]
    if unknown:
        import difflib

        k = unknown[0]
        close = difflib.get_close_matches(k, list(fields), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(_join(path, k), f"unknown config key{hint} "
                          f"(keys of {cls.__name__}: {', '.join(fields)})")
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _convert(hints[name], value, _join(path, name))
    try:
        return cls(**kwargs)
    except ConfigError as e:
        raise e.prefixed(path) from None


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _convert(tp: Any, value: Any, path: str) -> Any:
    """Convert a JSON-ish value (or a string from the command line) to annotation ``tp``."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if type(None) in args:
                return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _convert(a, value, path)
            except ConfigError as e:
                errors.append(e.message)
        raise ConfigError(path, errors[0] if errors else f"invalid value {value!r}")
    if origin is Literal:
        allowed = get_args(tp)
        for a in allowed:
            if value == a or (isinstance(value, str) and str(a) == value):
                return a
        raise ConfigError(path, f"invalid value {value!r} "
                          f"(allowed: {', '.join(map(str, allowed))})")
    if origin in (tuple, list):
        args = get_args(tp)
        if isinstance(value, str):
            s = value.strip().strip("[]()")
            value = [v.strip() for v in s.split(",") if v.strip()] if s else []
        if not isinstance(value, (list, tuple)):
            raise ConfigError(path, f"expected a list, got {value!r}")
        elem = args[0] if args else Any
        out = [_convert(elem, v, f"{path}[{i}]") for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        return from_dict(tp, value, path)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("false", "0", "no", "off"):
            return False
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise ConfigError(path, f"expected a boolean (true/false), got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(path, f"expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                f = float(value)
                if f.is_integer() and "." not in value.strip().lstrip("-").split("e")[0]:
                    return int(f)
                if f.is_integer():
                    return int(f)
            except ValueError:
                pass
        raise ConfigError(path, f"expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(path, f"expected a number, got {value!r}")
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(path, f"expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(path, f"expected a string, got {value!r}")
    return value


# ------------------------------------------------------------------------------------ overrides
def parse_override(text: str) -> tuple[str, str]:
    """``"a.b.c=value"`` -> ``("a.b.c", "value")``; malformed input raises ConfigError."""
    if not isinstance(text, str) or "=" not in text:
        raise ConfigError("--set", f"malformed override {text!r}: expected KEY=VALUE, "
                          "e.g. --set model.ffn.top_k=2")
    key, value = text.split("=", 1)
    key = key.strip()
    if not key or any(not p for p in key.split(".")):
        raise ConfigError("--set", f"malformed override {text!r}: empty key segment "
                          "(use a dotted path like model.ffn.top_k)")
    return key, value.strip()


def split_arm_scope(text: str) -> tuple[str | None, str]:
    """``"ARM:a.b.c=value"`` -> ``("ARM", "a.b.c=value")``; a plain ``"a.b.c=value"`` ->
    ``(None, text)``. The scope is read from the key only (a value may hold colons)."""
    key = text.split("=", 1)[0] if isinstance(text, str) else ""
    if ":" not in key:
        return None, text
    arm, rest = text.split(":", 1)
    if not arm.strip():
        raise ConfigError("--set", f"malformed override {text!r}: empty arm name before ':' "
                          "(use ARM:KEY=VALUE, e.g. --set switch-e4:model.ffn.n_experts=8)")
    return arm.strip(), rest


def apply_overrides(cfg: C, overrides: list[str] | dict[str, Any] | None) -> C:
    """Return a new config with dotted-path overrides applied and re-validated."""
    if not overrides:
        return cfg
    items = list(overrides.items()) if isinstance(overrides, dict) else [
        parse_override(o) for o in overrides]
    # ``kind`` switches first (shallowest first), so later keys land on the new variant
    items.sort(key=lambda kv: (not kv[0].endswith(".kind") and kv[0] != "kind", kv[0].count(".")))
    data = to_dict(cfg)
    cls = type(cfg)
    for key, value in items:
        parts = key.split(".")
        node, node_cls = data, cls
        for i, part in enumerate(parts[:-1]):
            sub = _field_type(node_cls, part, ".".join(parts[: i + 1]))
            if not isinstance(node.get(part), dict):
                raise UnknownKeyError(".".join(parts[: i + 1]), "is not a config section; "
                                      f"cannot set {key!r}")
            node, node_cls = node[part], _resolve_variant(sub, node[part])
        leaf = parts[-1]
        tp = _field_type(node_cls, leaf, key)
        if leaf == "kind" and _family_of(node_cls) is not None:
            fam = _family_of(node_cls)
            if value not in fam:
                raise ConfigError(key, fam.unknown_message(value))
            new_cls = fam.get(value)
            if node.get("kind") != value:
                node.clear()
                node.update(to_dict(new_cls()))
            continue
        node[leaf] = _convert(tp, value, key)
        node[leaf] = to_dict(node[leaf])
    return from_dict(cls, data)


def _resolve_variant(tp, node: dict):
    fam = _family_of(tp) if isinstance(tp, type) else None
    if fam is not None and "kind" in node and node["kind"] in fam:
        return fam.get(node["kind"])
    return tp


def _field_type(cls, name: str, path: str):
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        raise UnknownKeyError(path, "is not a config section")
    hints = _hints(cls)
    if name not in hints or name not in {f.name for f in dataclasses.fields(cls)}:
        import difflib

        names = [f.name for f in dataclasses.fields(cls)]
        close = difflib.get_close_matches(name, names, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise UnknownKeyError(path, f"unknown config key{hint} (keys here: {', '.join(names)})")
    tp = hints[name]
    if get_origin(tp) in (Union, types.UnionType):
        dcs = [a for a in get_args(tp) if dataclasses.is_dataclass(a)]
        if dcs:
            return dcs[0]
    return tp


def config_hash(cfg: Any, n: int = 12) -> str:
    """Stable short hash of the canonical JSON of a config (or any JSON-able value)."""
    blob = json.dumps(to_dict(cfg), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:n]


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (the same keys as ``--set`` and MLflow params)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else k
        if isinstance(v, dict):
            out.update(flatten(v, key))
        else:
            out[key] = v
    return out
