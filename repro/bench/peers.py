"""Peer column: Hugging Face transformers 5 MoE blocks timed beside ours, same shape, same weights.

Optional (``pip install 'moe-repro[peers]'``): nothing in the harness imports transformers except
this module, and only when ``repro bench --peers`` asks for it.

Which blocks. transformers 5 gives its MoE models an experts module of stacked weights whose
forward is chosen by ``config.experts_implementation``: ``eager`` (a Python loop over the experts
that hold tokens, the pre-v5 style), ``batched_mm`` and ``grouped_mm``. We time OLMoE's
``OlmoeSparseMoeBlock`` with each of them, and Qwen3-MoE's ``Qwen3MoeSparseMoeBlock`` with
``grouped_mm``; both are softmax top-k token-choice blocks with SwiGLU experts.

Same work. A peer runs only for our ``topk`` router (softmax top-k, renormalised gates: OLMoE
and Qwen3 with ``norm_topk_prob=True``), at the case's E, k, D and expert width F. Its router and
expert weights are copied from our block (ours: W_r [D, E], w_gate / w_up [E, D, F], w_down
[E, F, D]; theirs: gate.weight [E, D], gate_up_proj [E, 2F, D], down_proj [E, D, F]), and its
output and input gradient are checked against our ``loop`` backend before it is timed, like every
backend of ours. Our block also computes its balance loss and routing statistics; theirs do not
(the comparison slightly favours the peer).
"""

from __future__ import annotations

import importlib.util

import torch

# (column name, transformers model type, experts_implementation)
PEERS = (("hf-olmoe-grouped_mm", "olmoe", "grouped_mm"),
         ("hf-olmoe-batched_mm", "olmoe", "batched_mm"),
         ("hf-olmoe-eager", "olmoe", "eager"),
         ("hf-qwen3moe-grouped_mm", "qwen3_moe", "grouped_mm"))
PEER_ROUTER = "topk"  # the only router of ours with the peers' gating


def available() -> str | None:
    """None when transformers >= 5 is importable, else why not (one line)."""
    if importlib.util.find_spec("transformers") is None:
        return "transformers is not installed (pip install 'moe-repro[peers]')"
    import transformers

    major = int(transformers.__version__.split(".")[0])
    if major < 5:
        return f"transformers {transformers.__version__} < 5 has no experts_implementation"
    return None


def _block(model_type: str, impl: str, E: int, k: int, D: int, F: int):
    if model_type == "olmoe":
        from transformers.models.olmoe.configuration_olmoe import OlmoeConfig
        from transformers.models.olmoe.modeling_olmoe import OlmoeSparseMoeBlock as Block

        cfg = OlmoeConfig(hidden_size=D, intermediate_size=F, num_experts=E,
                          num_experts_per_tok=k, norm_topk_prob=True, hidden_act="silu")
    elif model_type == "qwen3_moe":
        from transformers.models.qwen3_moe.configuration_qwen3_moe import Qwen3MoeConfig
        from transformers.models.qwen3_moe.modeling_qwen3_moe import (
            Qwen3MoeSparseMoeBlock as Block,
        )

        cfg = Qwen3MoeConfig(hidden_size=D, moe_intermediate_size=F, num_experts=E,
                             num_experts_per_tok=k, norm_topk_prob=True, hidden_act="silu")
    else:
        raise ValueError(f"unknown peer model type {model_type!r}")
    cfg._experts_implementation = impl
    return Block(cfg)


class PeerBlock(torch.nn.Module):
    """A transformers MoE block with our block's weights; forward(x [B, T, D]) -> y [B, T, D]."""

    def __init__(self, ours, model_type: str, impl: str):
        super().__init__()
        ex, E = ours.experts, ours.cfg.n_experts
        k = ours.cfg.router.top_k
        self.block = _block(model_type, impl, E, k, ex.d_model, ex.d_expert)
        with torch.no_grad():
            self.block.gate.weight.copy_(ours.router.w.t())  # [E, D] <- [D, E]
            gate_up = torch.cat([ex.w_gate, ex.w_up], dim=2)  # [E, D, 2F]: gate rows first
            self.block.experts.gate_up_proj.copy_(gate_up.transpose(1, 2))  # [E, 2F, D]
            self.block.experts.down_proj.copy_(ex.w_down.transpose(1, 2))  # [E, D, F]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return y[0] if isinstance(y, tuple) else y  # some versions also return router logits


def build(name: str, ours, device, dtype) -> PeerBlock:
    _, model_type, impl = next(p for p in PEERS if p[0] == name)
    return PeerBlock(ours, model_type, impl).to(device=device, dtype=dtype)
