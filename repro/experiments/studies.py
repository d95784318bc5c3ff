"""Eval-time studies on trained checkpoints (no retraining): the measurements themselves, over a
model and validation batches. ``repro.experiments.analyses`` attaches them to experiments (which
runs, which metric names, which plots) for ``repro check``.

* ``pruning_curve``: MoNE's training-free study [S-MoNE]: inside every activated expert (or the
  dense FFN) keep only the top-rho neurons per token ranked by |SiLU(x W_gate)|; val loss vs rho.
* ``expert_masking_curve``: DeepSeekMoE §4.5 [P-DSM]: disable the top-r share of routed experts
  per token (by router probability) and re-select top-K among the rest.
* ``drop_shared``: disable the shared expert(s) and activate one more routed expert instead.
* ``vary_active``: change the number of activated routed experts without retraining.
* ``activation_sparsity``: NSAR(tau) per layer and an activation histogram
  (references.md §Finedeep).

All of them patch modules only inside a context manager and restore them afterwards.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Iterable

import torch

from repro.layers.dense import DenseFFN
from repro.layers.moe import MoEFFN
from repro.layers.mone import keep_top_neurons, neurons_kept
from repro.metrics import ActivationSparsity
from repro.models.lm import LM
from repro.routers.base import Routing


def load_model(config: dict, weights: str) -> LM:
    """Rebuild an LM from a run's resolved config and load its final weights (weights only)."""
    from repro.config import from_dict
    from repro.lit.config import RunConfig

    run = from_dict(RunConfig, config["run"] if "run" in config else config)
    model = LM(run.model)
    try:
        import io

        from repro.paths import read_owned_bytes

        blob = read_owned_bytes(weights)  # never a link, FIFO or device in the store
        state = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except Exception as e:  # noqa: BLE001 - missing, truncated, not ours: one line with the path
        from repro.lit.checkpoint import CheckpointError

        msg = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
        raise CheckpointError(f"final weights {weights} are unreadable or corrupt ("
                              f"{type(e).__name__}: {msg}); delete them and retrain that "
                              "(arm, seed) with `repro run NAME --arm ARM --seeds SEED --force`"
                              ) from None
    return model.eval()


@torch.no_grad()
def eval_loss(model: LM, batches: Iterable) -> float:
    """Token-weighted mean next-token cross-entropy over the given (x, y) batches."""
    model.eval()
    total, n = 0.0, 0
    for x, y in batches:
        ce, _ = model.loss(x, y)
        total += float(ce) * y.numel()
        n += y.numel()
    return total / max(n, 1)


def moe_blocks(model: LM) -> list[MoEFFN]:
    return [b.ffn for b in model.blocks if isinstance(b.ffn, MoEFFN)]


@contextlib.contextmanager
def _patched(obj, name: str, value):
    old = obj.__dict__.get(name, None)
    had = name in obj.__dict__
    setattr(obj, name, value) if not isinstance(obj, torch.nn.Module) else object.__setattr__(
        obj, name, value)
    try:
        yield
    finally:
        if had:
            object.__setattr__(obj, name, old)
        else:
            object.__delattr__(obj, name)


@contextlib.contextmanager
def neuron_ratio(model: LM, rho: float, score: str = "silu"):
    """Keep the top ceil(rho F) neurons per token in every FFN (routed experts or dense)."""
    with contextlib.ExitStack() as stack:
        for blk in model.blocks:
            ffn = blk.ffn
            if isinstance(ffn, MoEFFN):
                if score != "silu":
                    raise ValueError("routed experts rank neurons by |SiLU(gate)| only")
                stack.enter_context(_patched(ffn, "cfg", dataclasses.replace(
                    ffn.cfg, neuron_ratio=min(1.0, rho) * ffn.cfg.neuron_ratio)))
            elif isinstance(ffn, DenseFFN):
                stack.enter_context(_patched(ffn, "forward", _dense_topk_forward(ffn, rho, score)))
        yield


def _dense_topk_forward(ffn: DenseFFN, rho: float, score: str):
    from repro.layers.base import FFNOutput

    k = neurons_kept(rho, ffn.cfg.d_ff)

    def forward(x):  # x: [B, T, D]
        a, u = ffn.ffn.hidden(x)  # [B, T, F] each
        if k < ffn.cfg.d_ff:
            flat_a, flat_u = a.reshape(-1, a.shape[-1]), u.reshape(-1, u.shape[-1])
            if score == "silu":
                a = keep_top_neurons(flat_a, k).view_as(a)
            else:  # |gate * up|: the alternative ranking (references.md §MoNE)
                idx = (flat_a * flat_u).abs().topk(k, dim=-1).indices
                mask = torch.zeros_like(flat_a, dtype=torch.bool).scatter_(1, idx, True)
                a = (flat_a * mask).view_as(a)
        return FFNOutput((a * u) @ ffn.ffn.w_down)

    return forward


def pruning_curve(model: LM, batches: list, ratios: Iterable[float], score: str = "silu"
                  ) -> dict[float, float]:
    out = {}
    for rho in ratios:
        with neuron_ratio(model, rho, score):
            out[float(rho)] = eval_loss(model, batches)
    return out


# -------------------------------------------------------------------- DeepSeekMoE interventions
def _masked_topk_routing(mask_frac: float, top_k_delta: int = 0):
    """Routing override: mask the top ceil(r*E) experts of each token, take top-K of the rest.

    Gates are the router's softmax probabilities of the selected experts (renormalised only if
    the router config renormalises), as in [P-DSM] Eq. 11.
    """

    def route(block: MoEFFN, xf: torch.Tensor) -> Routing:
        cfg = block.cfg.router
        E = block.cfg.n_experts
        k = getattr(cfg, "top_k", 1) + top_k_delta
        n_mask = int(math.ceil(mask_frac * E - 1e-9))
        if k < 1 or k + n_mask > E:
            raise ValueError(f"cannot select top-{k} after masking {n_mask} of {E} experts")
        probs = block.router.logits(xf).softmax(-1)  # [N, E]
        scores = probs.clone()
        if n_mask > 0:
            top = probs.topk(n_mask, dim=-1).indices  # [N, n_mask]
            scores.scatter_(1, top, -1.0)
        gate, idx = scores.topk(k, dim=-1)  # [N, k]
        if getattr(cfg, "normalize", False):
            gate = gate / gate.sum(-1, keepdim=True)
        N = xf.shape[0]
        token = torch.arange(N, device=xf.device).repeat_interleave(k)
        return Routing(token, idx.reshape(-1), gate.reshape(-1))

    return route


@contextlib.contextmanager
def routing_override(model: LM, fn, drop_shared_experts: bool = False):
    with contextlib.ExitStack() as stack:
        for ffn in moe_blocks(model):
            def fwd(x, _ffn=ffn):
                return MoEFFN.forward(_ffn, x, routing_override=fn)

            stack.enter_context(_patched(ffn, "forward", fwd))
            if drop_shared_experts:
                stack.enter_context(_patched(ffn, "shared", None))
        yield


def expert_masking_curve(model: LM, batches: list, fracs: Iterable[float]) -> dict[float, float]:
    out = {}
    for r in fracs:
        with routing_override(model, _masked_topk_routing(r)):
            out[float(r)] = eval_loss(model, batches)
    return out


def drop_shared(model: LM, batches: list, extra_routed: int = 1) -> float:
    """Disable shared experts and activate ``extra_routed`` more routed experts ([P-DSM] §4.5)."""
    with routing_override(model, _masked_topk_routing(0.0, extra_routed), drop_shared_experts=True):
        return eval_loss(model, batches)


def vary_active(model: LM, batches: list, ks: Iterable[int]) -> dict[int, float]:
    out = {}
    for k in ks:
        delta = k - getattr(moe_blocks(model)[0].cfg.router, "top_k", 1)
        with routing_override(model, _masked_topk_routing(0.0, delta)):
            out[int(k)] = eval_loss(model, batches)
    return out


# ---------------------------------------------------------------------------- activation sparsity
@torch.no_grad()
def activation_sparsity(model: LM, batches: list, taus=ActivationSparsity.TAUS, bins: int = 60,
                        lim: float = 1.0) -> dict:
    """NSAR(tau) and mean |a| per layer over FFN gate activations, plus a pooled histogram.

    Activations are each FFN's SiLU(z W_gate) outputs (routed experts: over routed tokens).
    """
    model.eval()
    metrics = [ActivationSparsity(tuple(taus)) for _ in model.blocks]
    hist = torch.zeros(bins, dtype=torch.float64)
    captured: dict[int, torch.Tensor] = {}
    hooks = []
    for i, blk in enumerate(model.blocks):
        hooks.append(blk.ffn.register_forward_pre_hook(
            lambda m, args, i=i: captured.__setitem__(i, args[0])))
    try:
        for x, _ in batches:
            captured.clear()
            model(x)
            for i, blk in enumerate(model.blocks):
                a = blk.ffn.activations(captured[i])
                metrics[i].update(a)
                hist += torch.histc(a.float().clamp(-lim, lim), bins=bins, min=-lim, max=lim
                                    ).double()
    finally:
        for h in hooks:
            h.remove()
    per_layer = [{k: float(v) for k, v in m.compute().items()} for m in metrics]
    mean = {k: sum(p[k] for p in per_layer) / len(per_layer) for k in per_layer[0]}
    edges = torch.linspace(-lim, lim, bins + 1).tolist()
    return {"per_layer": per_layer, "mean": mean, "hist": hist.tolist(), "edges": edges}
