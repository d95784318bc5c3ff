import pytest

from repro.registry import Registry, RegistryError


def test_register_get_names():
    r = Registry("widget")
    r.register("alpha", 1)

    @r.register("beta")
    def beta():
        return 2

    assert r.get("alpha") == 1 and r.get("beta") is beta
    assert r.names() == ["alpha", "beta"] and "alpha" in r and len(r) == 2


def test_duplicate_raises():
    r = Registry("widget")
    r.register("alpha", 1)
    with pytest.raises(RegistryError, match="duplicate widget name 'alpha'"):
        r.register("alpha", 2)


def test_unknown_has_close_matches_and_one_line():
    r = Registry("router")
    for n in ("switch", "topk", "expert_choice"):
        r.register(n, n)
    with pytest.raises(RegistryError) as e:
        r.get("swich", field="model.ffn.router.kind")
    msg = str(e.value)
    assert "\n" not in msg
    assert "did you mean 'switch'" in msg and "model.ffn.router.kind" in msg
    assert "expert_choice, switch, topk" in msg


# ------------------------------------------------------------------- base class and stamping
def test_base_refuses_other_types_in_one_line():
    class Base:
        pass

    class Good(Base):
        pass

    r = Registry("widget", base=Base)
    r.register("good", Good)
    for bad, what in ((int, "int"), (Good(), "Good instance")):
        with pytest.raises(RegistryError) as e:
            r.register("bad", bad)
        msg = str(e.value)
        assert "\n" not in msg and f"widget 'bad': {what} is not a subclass of Base" in msg
    assert r.names() == ["good"]


def test_unregister():
    r = Registry("widget")
    r.register("a", 1)
    assert r.unregister("a") == 1 and "a" not in r
    with pytest.raises(RegistryError, match="unknown widget 'a'"):
        r.unregister("a")


def _throwaway_router(config_kind_default=None):
    """A router class with its own config (optionally with a hand-typed kind default)."""
    from repro.config import config
    from repro.routers import Router, RouterConfig

    if config_kind_default is None:
        @config
        class Cfg(RouterConfig):
            width: int = 3
    else:
        @config
        class Cfg(RouterConfig):
            kind: str = config_kind_default

    class R(Router):
        Config = Cfg

    return R


def test_router_registration_stamps_the_name_once():
    import dataclasses

    from repro.config import apply_overrides, from_dict, to_dict, variant_names
    from repro.layers.moe import MoEConfig
    from repro.routers import ROUTERS, RouterConfig

    R = _throwaway_router()
    ROUTERS.register("throwaway_stamp", R)
    try:
        assert R.KIND == "throwaway_stamp" and R.Config.KIND == "throwaway_stamp"
        assert R.Config().kind == "throwaway_stamp"
        assert {f.name: f.default for f in dataclasses.fields(R.Config)}["kind"] == \
            "throwaway_stamp"
        assert RouterConfig().kind == ""  # the base's default is untouched
        assert "throwaway_stamp" in variant_names(RouterConfig)
        # the config family finds it by name: dict round trip and --set ...kind=
        assert type(from_dict(RouterConfig, to_dict(R.Config()))) is R.Config
        moe = apply_overrides(MoEConfig(), ["router.kind=throwaway_stamp", "router.width=5"])
        assert type(moe.router) is R.Config and moe.router.width == 5
    finally:
        ROUTERS.unregister("throwaway_stamp")
    assert "throwaway_stamp" not in ROUTERS
    assert "throwaway_stamp" not in variant_names(RouterConfig)


def test_component_registry_refuses_wrong_base_missing_config_and_disagreeing_names():
    from torch import nn

    from repro.layers import FFN_BLOCKS
    from repro.routers import ROUTERS, Router, RouterConfig

    class NotARouter(nn.Module):
        Config = RouterConfig

    class NoOwnConfig(Router):
        pass

    cases = [
        (ROUTERS, NotARouter, "NotARouter is not a subclass of Router"),
        (ROUTERS, NoOwnConfig, "NoOwnConfig needs its own Config, a @config subclass of "
                               "RouterConfig"),
        (ROUTERS, _throwaway_router("topk"), "kind default 'topk' disagrees with the "
                                             "registered name 'throwaway_x'"),
        (FFN_BLOCKS, _throwaway_router(), "needs its own Config, a @config subclass of "
                                          "FFNConfig"),
    ]
    for reg, cls, msg in cases:
        with pytest.raises(RegistryError) as e:
            reg.register("throwaway_x", cls)
        assert msg in str(e.value) and "\n" not in str(e.value)
        assert "throwaway_x" not in reg
    from repro.config import variant_names
    assert "throwaway_x" not in variant_names(RouterConfig)


def test_registered_components_carry_their_registered_name():
    from repro.layers import FFN_BLOCKS
    from repro.routers import ROUTERS

    for reg in (ROUTERS, FFN_BLOCKS):
        for name, cls in reg.items():
            assert cls.KIND == name and cls.Config.KIND == name and cls.Config().kind == name


def test_component_names_are_known_without_torch():
    """The torch-free config modules name every router and FFN block (experiment definitions,
    `repro ls` / `show` and --set resolve kinds without torch), and the torch registries hold
    exactly those names."""
    import subprocess
    import sys

    code = ("import sys\n"
            "from repro.config import variant_names\n"
            "from repro.layers import FFNConfig\n"
            "from repro.routers import RouterConfig\n"
            "print(','.join(variant_names(RouterConfig)), ','.join(variant_names(FFNConfig)),\n"
            "      'torch' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    from repro.layers import FFN_BLOCKS
    from repro.routers import ROUTERS

    assert out == [",".join(ROUTERS.names()), ",".join(FFN_BLOCKS.names()), "False"]


def test_add_takes_the_name_from_the_config_and_refuses_a_second_name():
    from repro.config import config, variant, variant_names
    from repro.routers import ROUTERS, Router, RouterConfig

    @variant("throwaway_named")
    @config
    class Cfg(RouterConfig):
        width: int = 3

    class R(Router):
        Config = Cfg

    class Unnamed(Router):
        Config = _throwaway_router().Config

    try:
        assert Cfg.KIND == "throwaway_named" and "throwaway_named" in variant_names(RouterConfig)
        with pytest.raises(RegistryError) as e:
            ROUTERS.register("throwaway_other", R)
        assert "is named 'throwaway_named'; use one name" in str(e.value)
        assert "throwaway_other" not in ROUTERS
        with pytest.raises(RegistryError, match=r"its Config has no name; name the config with "
                                                r"@variant\(\"name\"\)"):
            ROUTERS.add(Unnamed)
        assert ROUTERS.add(R) is R and R.KIND == "throwaway_named"
        assert ROUTERS.get("throwaway_named") is R
    finally:
        ROUTERS.unregister("throwaway_named")
    assert "throwaway_named" not in variant_names(RouterConfig)


# ------------------------------------------------- the built-in lists are the files (no drift)
def file_problems(folder, strict: bool) -> list[str]:
    """What breaks "a component is its <name>_config.py + <name>.py pair" in ``folder``: a config
    without its module, and (``strict``: a package of components only, like repro/routers) a
    module without its config."""
    import pkgutil

    from repro.registry import component_members

    members = component_members(folder)
    mods = {m.name for m in pkgutil.iter_modules([str(folder)])}
    out = [f"{m}_config.py has no {m}.py" for m in members if m not in mods]
    if strict:
        out += [f"{m}.py has no {m}_config.py" for m in sorted(mods)
                if m not in {"base", "base_config"} and not m.endswith("_config")
                and m not in members]
    return out


@pytest.mark.parametrize("package", ["repro.routers", "repro.layers"])
def test_builtin_component_list_is_the_files(package):
    """Every built-in router / FFN block is exactly a ``<name>_config.py`` + ``<name>.py`` pair that
    registers ``name``, and ``METHODS`` / ``BLOCKS`` is that list."""
    import importlib
    from pathlib import Path

    from repro.config import family_of

    pkg = importlib.import_module(package)
    members = pkg.METHODS if package == "repro.routers" else pkg.BLOCKS
    here = Path(pkg.__file__).parent
    assert file_problems(here, strict=package == "repro.routers") == []
    reg = pkg.ROUTERS if package == "repro.routers" else pkg.FFN_BLOCKS
    builtin = {n for n in reg.names() if reg.origin(n) == "built-in"}
    assert builtin == set(members) and len(members) >= 3
    for name in members:
        cls = reg.get(name)
        assert cls.__module__ == f"{package}.{name}", (name, cls.__module__)
        assert cls.Config.__module__ == f"{package}.{name}_config", (name, cls.Config.__module__)
        assert family_of(cls.Config).get(name) is cls.Config


def test_a_router_file_without_its_config_or_a_dropped_name_fails(tmp_path):
    """The check above can fail: a router module added without its config, or a method dropped
    from the list (its config removed, its module left), is reported."""
    import shutil
    from pathlib import Path

    import repro.routers

    src = Path(repro.routers.__file__).parent
    dst = tmp_path / "routers"
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
    (dst / "hash_router.py").write_text("# a router without hash_router_config.py\n")
    (dst / "switch_config.py").unlink()
    assert file_problems(dst, strict=True) == ["hash_router.py has no hash_router_config.py",
                                               "switch.py has no switch_config.py"]
    (dst / "orphan_config.py").write_text("")
    assert "orphan_config.py has no orphan.py" in file_problems(dst, strict=True)
