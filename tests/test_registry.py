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
