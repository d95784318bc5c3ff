"""Per-parameter init streams (common random numbers): two arms of one seed start identical in
every part they share; the stream depends on the seed and the parameter's path."""

from dataclasses import replace

import pytest
import torch

from repro.config import ConfigError
from repro.initialization import stream_seed
from repro.layers.dense_config import DenseFFNConfig
from repro.layers.moe_config import MoEConfig
from repro.models.lm import LM, ModelConfig
from repro.routers.noisy_topk_config import NoisyTopKRouterConfig


def _arms(init_rng: str):
    base = ModelConfig(vocab_size=64, d_model=32, n_layers=2, n_heads=2, init_rng=init_rng)
    dense = replace(base, ffn=DenseFFNConfig(d_ff=96))
    moe = replace(base, ffn=MoEConfig(n_experts=4, d_expert=24,
                                      router=NoisyTopKRouterConfig(top_k=2, init_scale=0.1)))
    return dense, moe


def _build(cfg, seed):
    torch.manual_seed(seed)
    model = LM(cfg)
    return model, torch.rand(4)  # the global RNG's next draws after building


def _shared(a, b):
    pa, pb = dict(a.named_parameters()), dict(b.named_parameters())
    names = [n for n in pa if not n.split(".")[2:3] == ["ffn"] and n in pb]
    return names, pa, pb


def test_two_arms_of_one_seed_share_identical_parts():
    dense, moe = _arms("per_param")
    a, ra = _build(dense, 3)
    b, rb = _build(moe, 3)
    names, pa, pb = _shared(a, b)
    assert {"embed.weight", "blocks.1.attn.qkv.weight", "blocks.1.attn.proj.weight",
            "norm.weight"} <= set(names)
    for n in names:
        assert torch.equal(pa[n], pb[n]), n
    assert torch.equal(ra, rb)  # building drew nothing from the global RNG: noise starts equal
    # different seed: different values; the init scale is still the configured one
    c, _ = _build(dense, 4)
    assert not torch.equal(pa["embed.weight"], dict(c.named_parameters())["embed.weight"])
    assert abs(pa["embed.weight"].std().item() - 0.02) < 0.002


def test_global_rng_keeps_module_order_draws():
    # the old behaviour, still selectable: later parts differ between arms of one seed
    dense, moe = _arms("global")
    (a, _), (b, _) = _build(dense, 3), _build(moe, 3)
    names, pa, pb = _shared(a, b)
    assert not torch.equal(pa["blocks.1.attn.qkv.weight"], pb["blocks.1.attn.qkv.weight"])


def test_stream_seed_depends_on_seed_and_path():
    s = stream_seed(0, "embed.weight")
    assert s == stream_seed(0, "embed.weight") and 0 <= s < 2**63
    assert s != stream_seed(1, "embed.weight") and s != stream_seed(0, "head.weight")


def test_unknown_init_rng_names_the_field():
    with pytest.raises(ConfigError, match="init_rng"):
        ModelConfig(init_rng="per_layer")
