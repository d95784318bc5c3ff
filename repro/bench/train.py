"""Training-loop overhead: the Lightning training step (``LMSystem`` + ``Trainer`` configured as the
runner does) against a bare PyTorch loop on the same model, data, optimizer and schedule.

Three loops, interleaved in rounds in one process (each round trains a fresh, identically seeded
model), first ``skip`` steps of each excluded:
* ``bare``: forward, CE + aux, backward, clip, AdamW step, LR schedule step;
* ``bare+metrics``: the same plus the routing-metric updates and periodic log computation that
  ``LMSystem.training_step`` does (the part of the gap that is ours, not Lightning's);
* ``lightning``: ``Trainer.fit`` on ``LMSystem`` (no logger, no checkpoints, no validation).
"""

from __future__ import annotations

import statistics
import time

import torch


def _run_config(steps: int, batch: int, seq_len: int, n_experts: int, vocab: int, d_model: int):
    from repro.layers.moe import MoEConfig
    from repro.lit.config import RunConfig, TrainConfig, TrainerConfig
    from repro.models.lm import ModelConfig
    from repro.routers.topk import TopKRouterConfig

    model = ModelConfig(vocab_size=vocab, d_model=d_model, n_layers=2, n_heads=4,
                        ffn=MoEConfig(n_experts=n_experts, d_expert=d_model,
                                      router=TopKRouterConfig(top_k=2)))
    train = TrainConfig(max_steps=steps, batch_size=batch, warmup_steps=2, eval_every=10 * steps,
                        log_every=10)
    from repro.data.config import DataConfig

    data = DataConfig(seq_len=seq_len)
    return RunConfig(model=model, train=train, data=data, trainer=TrainerConfig(accelerator="cpu"))


def _data(steps: int, batch: int, seq_len: int, vocab: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, vocab, (steps * batch, seq_len + 1), generator=g)
    ds = torch.utils.data.TensorDataset(idx[:, :-1].contiguous(), idx[:, 1:].contiguous())
    return torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=False, drop_last=True)


def _system(run, seed: int):
    from repro.lit.system import LMSystem

    torch.manual_seed(seed)
    return LMSystem(run)


def _bare(run, loader, seed: int, skip: int, metrics: bool) -> float:
    system = _system(run, seed)
    model = system.model.train()
    cfg = system.configure_optimizers()
    opt, sched = cfg["optimizer"], cfg["lr_scheduler"]["scheduler"]
    params = [p for p in model.parameters()]
    tokens, t_start, step = 0, None, 0
    log_every = run.train.log_every
    for x, y in loader:
        if step == skip:
            t_start = time.perf_counter()
        ce, out = model.loss(x, y)
        loss = ce
        for term in out.aux.values():
            loss = loss + term.coef * term.value
        if metrics and system.train_routing is not None:
            for m, s in zip(system.train_routing, out.stats):
                m.update(s)
            if (step + 1) % log_every == 0:  # the cadence of LMSystem.training_step
                system._routing_logs(system.train_routing, "train")
                float(loss.detach())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, run.train.grad_clip)
        opt.step()
        sched.step()
        if step >= skip:
            tokens += x.numel()
        step += 1
    return tokens / (time.perf_counter() - t_start)


def _lightning(run, loader, seed: int, skip: int) -> float:
    import lightning as L

    class Timer(L.Callback):
        def __init__(self):
            self.t0 = self.t1 = None
            self.tokens = 0

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if batch_idx == skip:
                self.t0 = time.perf_counter()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if batch_idx >= skip:
                self.tokens += batch[0].numel()
                self.t1 = time.perf_counter()

    system = _system(run, seed)
    timer = Timer()
    t = run.train
    trainer = L.Trainer(max_steps=t.max_steps, logger=False, callbacks=[timer],
                        enable_checkpointing=False, gradient_clip_val=t.grad_clip or None,
                        precision="32-true", deterministic=True, accelerator="cpu", devices=1,
                        enable_progress_bar=False, enable_model_summary=False,
                        num_sanity_val_steps=0, limit_val_batches=0,
                        log_every_n_steps=t.log_every)
    trainer.fit(system, train_dataloaders=loader)
    return timer.tokens / (timer.t1 - timer.t0)


def training_overhead(*, steps: int = 30, batch: int = 16, seq_len: int = 128, n_experts: int = 8,
                      vocab: int = 4096, d_model: int = 128, rounds: int = 2, skip: int = 3,
                      seed: int = 0) -> list[dict]:
    """Rows: tokens/s medians of each loop and the median per-round ratio to ``bare``."""
    import logging
    import warnings

    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="lightning")
    run = _run_config(steps, batch, seq_len, n_experts, vocab, d_model)
    loader = _data(steps, batch, seq_len, vocab, seed)
    was_det = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)  # as the runner's CPU Trainer sets it, for both
    res: dict[str, list[float]] = {"bare": [], "bare+metrics": [], "lightning": []}
    try:
        for r in range(rounds):
            loops = [("bare", lambda: _bare(run, loader, seed, skip, False)),
                     ("bare+metrics", lambda: _bare(run, loader, seed, skip, True)),
                     ("lightning", lambda: _lightning(run, loader, seed, skip))]
            k = r % len(loops)
            for name, fn in loops[k:] + loops[:k]:
                res[name].append(fn())
    finally:
        torch.use_deterministic_algorithms(was_det)
    rows = []
    for name, v in res.items():
        ratio = statistics.median(a / b for a, b in zip(v, res["bare"]))
        rows.append(dict(section="train", router="topk", backend=name, n_experts=n_experts,
                         top_k=2, d_model=d_model, d_expert=d_model, tokens=batch * seq_len,
                         reps=rounds, tokens_per_s=statistics.median(v), ratio=ratio,
                         ratio_min=min(a / b for a, b in zip(v, res["bare"])),
                         ratio_max=max(a / b for a, b in zip(v, res["bare"])),
                         note=f"{steps} steps/round, first {skip} excluded; tokens_per_s median"))
    return rows
