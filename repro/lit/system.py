"""The LightningModule ("system"): owns the loss, the optimizer and the metrics.

loss = cross-entropy + sum_l sum_name coef * aux_{l,name}   (aux terms returned by the FFN blocks)

Models never know they are trained (house rule 1): everything Lightning-specific lives here.
"""

from __future__ import annotations

import math

import lightning as L
import torch
from torchmetrics import MeanMetric

from repro.config import to_dict
from repro.lit.config import RunConfig
from repro.metrics import RoutingMetric
from repro.metrics.logged import n_experts_of
from repro.models.lm import LM
from repro.tracking import names as N


class LMSystem(L.LightningModule):
    def __init__(self, run: RunConfig):
        super().__init__()
        self.save_hyperparameters({"run": to_dict(run)})  # checkpoints carry the plain form
        self.run_cfg: RunConfig = run
        self.model = LM(self.run_cfg.model)
        E = n_experts_of(self.run_cfg.model.ffn)
        L_ = self.run_cfg.model.n_layers
        # train accumulators persist in checkpoints: a resume mid log-window continues the window
        self.train_routing = torch.nn.ModuleList(
            RoutingMetric(E, persistent=True) for _ in range(L_)) if E else None
        self.val_routing = torch.nn.ModuleList(RoutingMetric(E) for _ in range(L_)) if E else None
        self.val_loss = MeanMetric()
        self.tokens_seen = 0

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Checkpoints written before the train routing accumulators were persisted lack their
        keys: start those windows empty instead of refusing the checkpoint."""
        sd = checkpoint.get("state_dict", {})
        for k, v in self.state_dict().items():
            if k.startswith("train_routing.") and k not in sd:  # the attribute below
                sd[k] = torch.zeros_like(v)

    # ------------------------------------------------------------------ steps
    def _loss(self, batch):
        x, y = batch  # [B, T], [B, T]
        ce, out = self.model.loss(x, y)
        aux_total = ce.new_zeros(())
        for term in out.aux.values():
            aux_total = aux_total + term.coef * term.value
        return ce, aux_total, out

    def training_step(self, batch, batch_idx):
        ce, aux_total, out = self._loss(batch)
        loss = ce + aux_total
        self.tokens_seen += batch[0].numel()
        step = self.global_step
        if self.train_routing is not None:
            for m, s in zip(self.train_routing, out.stats):
                m.update(s)
        # log on the steps Lightning flushes ((step + 1) % log_every == 0, its
        # log_every_n_steps rule): a value logged on another step waited in Lightning's cache
        # for the next flush, was recorded under that later step, and was lost when a SIGTERM
        # stop fell in between
        if (step + 1) % self.run_cfg.train.log_every == 0 or \
                step == self.run_cfg.train.max_steps - 1:
            logs = {N.M_TRAIN_LOSS: loss.detach(), N.M_TRAIN_CE: ce.detach(),
                    N.M_TRAIN_AUX: aux_total.detach(), N.M_TRAIN_PPL: torch.exp(ce.detach()),
                    N.M_LR: self.optimizers().param_groups[0]["lr"]}
            by_name: dict[str, float] = {}
            for k, term in out.aux.items():
                name = k.split(".", 1)[1]
                by_name[name] = by_name.get(name, 0.0) + float(term.value.detach())
            for name, v in by_name.items():
                logs[N.aux_metric(name)] = v / self.run_cfg.model.n_layers
            if self.train_routing is not None:
                logs.update(self._routing_logs(self.train_routing, N.TRAIN))
            # sync_dist: under DDP the logged train loss is the mean over ranks (the global batch)
            self.log_dict(logs, on_step=True, on_epoch=False, batch_size=batch[0].shape[0],
                          sync_dist=True)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite loss {float(loss.detach())} at step {step}")
        return loss

    def _routing_logs(self, metrics, split: str) -> dict[str, float]:
        logs: dict[str, float] = {}
        agg: dict[str, list[float]] = {}
        for i, m in enumerate(metrics):
            vals = m.compute() if m.has_data else {}
            for k, v in vals.items():
                logs[N.routing_metric(split, k, layer=i)] = float(v)
                agg.setdefault(k, []).append(float(v))
            m.reset()
        for k, vs in agg.items():
            logs[N.routing_metric(split, k)] = sum(vs) / len(vs)  # mean over layers
        return logs

    def validation_step(self, batch, batch_idx):
        ce, _, out = self._loss(batch)
        self.val_loss.update(ce.detach(), weight=batch[0].numel())
        if self.val_routing is not None:
            for m, s in zip(self.val_routing, out.stats):
                m.update(s)

    def on_validation_epoch_end(self):
        loss = self.val_loss.compute()
        self.val_loss.reset()
        logs = {N.M_VAL_LOSS: loss, N.M_VAL_PPL: torch.exp(loss)}
        if self.val_routing is not None:
            logs.update(self._routing_logs(self.val_routing, N.VAL))
        # callbacks (checkpointing, pruning) read these; the logger gets them below at the true
        # optimizer step (Lightning's own logging step for validation lags by one)
        self.log_dict(logs, on_step=False, on_epoch=True, sync_dist=False, logger=False)
        if self.logger is not None and self.trainer.is_global_zero and \
                not self.trainer.sanity_checking:
            self.logger.log_metrics({k: float(v) for k, v in logs.items()},
                                    step=self.global_step)

    # ------------------------------------------------------------- optimizer
    def configure_optimizers(self):
        t = self.run_cfg.train
        decay, no_decay = [], []
        for _name, p in self.model.named_parameters():
            # weight decay on matrices (incl. stacked experts); not on norms/gains (GPT-2 practice)
            (decay if p.dim() >= 2 else no_decay).append(p)
        opt = torch.optim.AdamW(
            [{"params": decay, "weight_decay": t.weight_decay},
             {"params": no_decay, "weight_decay": 0.0}],
            lr=t.lr, betas=(t.beta1, t.beta2))
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, t))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def lr_factor(step: int, t) -> float:
    """Linear warmup to 1 over warmup_steps, then cosine to min_lr_ratio at max_steps."""
    if t.warmup_steps > 0 and step < t.warmup_steps:
        return (step + 1) / t.warmup_steps
    span = max(1, t.max_steps - t.warmup_steps)
    progress = min(1.0, (step - t.warmup_steps) / span)
    return t.min_lr_ratio + (1 - t.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
