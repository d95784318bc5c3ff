import torch

from repro.compute import count_module_params, model_count
from repro.layers.moe import MoEConfig
from repro.models.lm import LM, ModelConfig
from repro.routers.switch import SwitchRouterConfig


def small(ffn=None, **kw):
    return ModelConfig(vocab_size=64, d_model=32, n_layers=2, n_heads=2,
                       **({"ffn": ffn} if ffn else {}), **kw)


def test_dense_lm_overfits_one_batch():
    torch.manual_seed(0)
    model = LM(small())
    x = torch.randint(0, 64, (4, 16))
    y = torch.roll(x, -1, dims=1)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = None
    for _ in range(150):
        loss, _ = model.loss(x, y)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert first > 3.5 and loss.item() < 0.2, (first, loss.item())


def test_causal_lm_ignores_future_tokens():
    torch.manual_seed(0)
    model = LM(small()).eval()
    x = torch.randint(0, 64, (2, 12))
    x2 = x.clone()
    x2[:, 8:] = torch.randint(0, 64, (2, 4))
    with torch.no_grad():
        a, b = model(x).logits, model(x2).logits
    assert torch.allclose(a[:, :8], b[:, :8], atol=1e-6)
    assert not torch.allclose(a[:, 8:], b[:, 8:])


def test_every_parameter_gets_gradient_in_moe_lm():
    torch.manual_seed(0)
    ffn = MoEConfig(n_experts=4, d_expert=16, router=SwitchRouterConfig(capacity_factor=4.0),
                    n_shared=1)
    model = LM(small(ffn, tie_embeddings=False))
    x = torch.randint(0, 64, (8, 32))
    loss, out = model.loss(x, x)
    total = loss + sum(t.coef * t.value for t in out.aux.values())
    total.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_model_param_count_matches_module():
    for cfg in (small(), small(tie_embeddings=False),
                small(MoEConfig(n_experts=4, d_expert=24, n_shared=2, d_shared=8))):
        assert model_count(cfg).total_params == count_module_params(LM(cfg))


def test_same_seed_same_output():
    outs = []
    for _ in range(2):
        torch.manual_seed(3)
        m = LM(small(MoEConfig(n_experts=4, d_expert=16)))
        outs.append(m(torch.arange(32).view(2, 16) % 64).logits)
    assert torch.equal(outs[0], outs[1])
