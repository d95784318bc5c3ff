"""DeepSeekMoE (Dai et al. 2024) [P-DSM]: fine-grained experts plus shared-expert isolation.

All arms of the ablation keep total expert params = 16 FFN units and activated = 2 units
(references.md §DeepSeekMoE). The gate is the paper's form: raw softmax affinity of the selected
experts, no renormalisation [P-DSM Eq. 11], expert-level balance factor alpha_1 = 0.01, no token
dropping.

Arm names: the paper calls its baseline (a) "GShard" (16 experts, top-2). Ours is that layout
with the ``topk`` router and the DeepSeekMoE gate above, NOT the registered ``gshard`` router
(random second expert, capacity drops), so the arms are named ``topk2`` and ``topk2-x1.5``
(results committed before the rename call them ``gshard`` / ``gshard-x1.5``; runs are found by
run key, which does not contain the arm name, so the existing runs still match).
"""

from __future__ import annotations

from repro.experiments import analyses
from repro.experiments.base import Arm, Experiment, register_experiment
from repro.experiments.claims import (
    EXPLORATORY,
    IncreasingClaim,
    MetricClaim,
    PairedMetricClaim,
)
from repro.experiments.scales import preset
from repro.experiments.sequential import MAX_SEEDS_CAP
from repro.layers.moe_config import MoEConfig
from repro.routers.topk_config import TopKRouterConfig
from repro.tracking import names as N

SOURCE = "Dai et al. DeepSeekMoE (arXiv 2401.06066)"


def _unit(scale: str) -> int:
    # the FFN unit, divisible by 4 x 4 so the x4 segmentation keeps 16-byte aligned rows; at
    # smoke scale (d=32) a wide unit keeps the 63-expert router within the 2% matching tolerance
    return {"smoke": 512, "cpu": 384, "cpu-v1": 352, "gpu": 704}[scale]


def _arms(scale: str) -> dict[str, Arm]:
    p = preset(scale)
    U = _unit(scale)

    def moe(n_routed, width, top_k, n_shared=0):
        router = TopKRouterConfig(top_k=top_k, normalize=False, alpha=0.01)
        return p.model(MoEConfig(n_experts=n_routed, d_expert=width, router=router,
                                 n_shared=n_shared, d_shared=width if n_shared else None))

    return {
        "topk2": Arm("topk2", moe(16, U, 2), "(a) 0 shared + 16 routed of 1 unit, top-2 "
                       "([P-DSM]'s GShard layout)"),
        "shared": Arm("shared", moe(15, U, 1, 1), "(b) 1 shared + 15 routed of 1 unit, top-1"),
        "fine-x2": Arm("fine-x2", moe(31, U // 2, 3, 1),
                       "(c) 1 shared + 31 routed of 1/2 unit, top-3"),
        "deepseekmoe": Arm("deepseekmoe", moe(63, U // 4, 7, 1),
                           "(d) 1 shared + 63 routed of 1/4 unit, top-7"),
        "topk2-x1.5": Arm("topk2-x1.5", moe(16, U * 3 // 2, 2),
                          "(f) 16 routed of 1.5 units, top-2 ([P-DSM]'s GShard x1.5)"),
    }


@register_experiment("deepseekmoe-ablation")
def deepseekmoe_ablation(scale: str) -> Experiment:
    p = preset(scale)
    a = _arms(scale)
    order = ("topk2", "shared", "fine-x2", "deepseekmoe")
    claims = (
        PairedMetricClaim(name="dsm-beats-topk2", statement="DeepSeekMoE (d) ends below "
                          "the top-2 baseline (a) ([P-DSM]'s GShard) at equal total and "
                          "activated params",
                          paper_figure="Pile loss 1.808 vs 1.867 (2B)",
                          source="[P-DSM] Table 1", arm="topk2", other="deepseekmoe"),
        IncreasingClaim(name="ablation-order", statement="each step helps: top-2 (GShard) > "
                        "+shared > +fine x2 > +fine x4 in val loss",
                        paper_figure="improves a majority of "
                        "benchmarks at each step (normalised bars, no numbers)",
                        source="[P-DSM] §4.4, Fig. 3", arm_order=order,
                        quantity="final_val_loss"),
    )
    return Experiment(
        name="deepseekmoe-ablation", version="1", scale=scale,
        title="DeepSeekMoE ablation: shared expert and fine-grained segmentation", paper=SOURCE,
        arms=tuple(a[n] for n in order) + (a["topk2-x1.5"],), matched="total_params",
        match_groups=(order,), also_matched=(("activated_params", (order,)),),
        recipe=p.recipe, data=p.data, seeds=p.seeds, claims=claims,
        max_seeds=MAX_SEEDS_CAP,  # grown 3 -> 6 by --seeds auto under its cap of 10
        analyses=(analyses.routing_load(order),),
        notes="topk2-x1.5 (f, [P-DSM]'s GShard x1.5) is a reference with 1.5x the expert "
              "params and is not matched; it is the comparison partner of "
              "deepseekmoe-redundancy. Why the finest "
              "segmentation may not help at cpu scale: (d) has 63 routed experts of width "
              "d_ff/4 (96; 88 at cpu-v1), each seeing about 7/63 of the tokens for 1000 steps "
              "(400 at cpu-v1); the benefit of fine-grained combinations [P-DSM] needs experts "
              "that have specialised.")


@register_experiment("deepseekmoe-redundancy")
def deepseekmoe_redundancy(scale: str) -> Experiment:
    p = preset(scale)
    a = _arms(scale)
    claims = (
        PairedMetricClaim(name="less-redundant", statement="disabling the top 1/4 of routed "
                          "experts hurts DeepSeekMoE more than the top-2 x1.5 baseline "
                          "([P-DSM]'s GShard x1.5)",
                          paper_figure="DeepSeekMoE's Pile loss rises faster (curve only)",
                          source="[P-DSM] §4.5, Fig. 4", arm="deepseekmoe", other="topk2-x1.5",
                          metric=N.mask_delta_metric(0.25)),
        # tied to the paper's effect: 1.808 -> 2.414 is a rise of 0.606 nats, 33.5% of the
        # loss; ours asks for at least half of that relative rise (16.8%) [ours: a tiny model
        # trained 1000 steps may lean on its shared expert less, so half, stated, not 0.05]
        MetricClaim(name="shared-irreplaceable", statement="dropping the shared expert (and "
                    "activating one more routed expert) raises val loss by more than half the "
                    "paper's relative rise (> 16.8% of the loss)",
                    paper_figure="Pile loss 1.808 -> 2.414 (+33.5%)", source="[P-DSM] §4.5",
                    arm="deepseekmoe", metric=N.M_DROP_SHARED_DELTA,
                    threshold=round(0.5 * (2.414 - 1.808) / 1.808, 4), greater=True,
                    per_final_loss=True),
        MetricClaim(name="shared-irreplaceable-0.05", statement="dropping the shared expert "
                    "raises val loss by > 0.05 nats (the earlier, weaker threshold)",
                    paper_figure="Pile loss 1.808 -> 2.414", source="[P-DSM] §4.5",
                    arm="deepseekmoe", metric=N.M_DROP_SHARED_DELTA, threshold=0.05,
                    greater=True, family=EXPLORATORY),
    )
    return Experiment(
        name="deepseekmoe-redundancy", version="1", scale=scale,
        title="DeepSeekMoE: expert redundancy and the shared expert (eval-time)", paper=SOURCE,
        arms=(a["deepseekmoe"], a["topk2-x1.5"]), matched="none", recipe=p.recipe,
        data=p.data, seeds=p.seeds, claims=claims,
        max_seeds=MAX_SEEDS_CAP,  # grown 3 -> 6 by --seeds auto under its cap of 10
        analyses=(analyses.expert_masking(("deepseekmoe", "topk2-x1.5")),
                  analyses.shared_knockout("deepseekmoe", ks=(3, 4, 5, 6, 7))),
        notes="Eval-time interventions on the checkpoints of deepseekmoe-ablation (runs are "
              "shared by run key). The paper pairs the two arms because they start at the same "
              "loss; ours may not, so compare the deltas, not the levels. Masking the top 1/4 "
              "of routed experts removes both of topk2-x1.5's choices (top-2 of 16, 4 masked) "
              "and re-routes to its 5th/6th, while DeepSeekMoE keeps its shared expert, so it "
              "can degrade less whatever the routed experts' redundancy; the paper's claim "
              "rests on routed experts that specialised over 100B+ tokens.")
