import pytest

from repro.config import (
    ConfigError,
    apply_overrides,
    config_hash,
    from_dict,
    parse_override,
    to_dict,
)
from repro.layers.dense import DenseFFNConfig
from repro.layers.moe import MoEConfig
from repro.lit.config import RunConfig
from repro.models.lm import ModelConfig
from repro.routers.switch import SwitchRouterConfig
from repro.routers.topk import TopKRouterConfig


def moe_run():
    return RunConfig(model=ModelConfig(ffn=MoEConfig(n_experts=8, router=TopKRouterConfig())))


def test_roundtrip_and_hash_stable():
    run = moe_run()
    d = to_dict(run)
    back = from_dict(RunConfig, d)
    assert back == run
    assert config_hash(back) == config_hash(run)
    assert config_hash(apply_overrides(run, ["train.lr=0.002"])) != config_hash(run)


def test_overrides_coerce_by_annotation():
    run = apply_overrides(moe_run(), ["model.ffn.router.top_k=4", "train.lr=3e-4",
                                      "model.tie_embeddings=false",
                                      "model.ffn.router.capacity_factor=1.5"])
    assert run.model.ffn.router.top_k == 4 and isinstance(run.model.ffn.router.top_k, int)
    assert run.train.lr == 3e-4 and run.model.tie_embeddings is False
    assert run.model.ffn.router.capacity_factor == 1.5
    run = apply_overrides(run, ["model.ffn.router.capacity_factor=none"])
    assert run.model.ffn.router.capacity_factor is None


def test_kind_switch_resets_variant_then_applies():
    run = apply_overrides(moe_run(), ["model.ffn.router.kind=switch",
                                      "model.ffn.router.capacity_factor=2"])
    assert isinstance(run.model.ffn.router, SwitchRouterConfig)
    assert run.model.ffn.router.capacity_factor == 2.0
    run = apply_overrides(run, ["model.ffn.kind=dense", "model.ffn.d_ff=100"])
    assert run.model.ffn == DenseFFNConfig(d_ff=100)


@pytest.mark.parametrize("override, path, fragment", [
    ("model.ffn.router.top_k=9", "model.ffn.router.top_k", "top_k=9 > n_experts=8"),
    ("model.ffn.router.top_k=0", "model.ffn.router.top_k", "must be >= 1"),
    ("model.ffn.router.top_k=two", "model.ffn.router.top_k", "expected an integer"),
    ("model.ffn.topk=2", "model.ffn.topk", "unknown config key"),
    ("train.lr=-1", "train.lr", "must be > 0"),
    ("model.ffn.router.kind=swich", "model.ffn.router.kind", "did you mean 'switch'"),
    ("model.ffn.neuron_ratio=1.5", "model.ffn.neuron_ratio", "(0, 1]"),
    ("model.ffn.router.capacity_factor=0", "model.ffn.router.capacity_factor", "> 0"),
])
def test_bad_overrides_name_the_path(override, path, fragment):
    with pytest.raises(ConfigError) as e:
        apply_overrides(moe_run(), [override])
    msg = str(e.value)
    assert msg.startswith(path + ":"), msg
    assert fragment in msg and "\n" not in msg


@pytest.mark.parametrize("text", ["model.ffn.top_k", "=3", "a..b=1"])
def test_malformed_override(text):
    with pytest.raises(ConfigError, match="malformed override"):
        parse_override(text)


def test_frozen_kw_only():
    cfg = DenseFFNConfig(d_ff=10)
    import dataclasses

    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.d_ff = 3  # type: ignore[misc]
    with pytest.raises(TypeError):
        DenseFFNConfig(10)  # type: ignore[misc]


def test_from_dict_unknown_key_suggests():
    with pytest.raises(ConfigError, match=r"train\.lrr: unknown config key; did you mean 'lr'"):
        from_dict(RunConfig, {"train": {"lrr": 1}})
