"""``repro show NAME``: an experiment's recipe, its arms with their parameter and FLOP
accounting and the matching status, and its claims. Analytic only: nothing heavy is imported
(tests/test_cli_imports.py), so it answers in about a second on any machine."""

from __future__ import annotations

from repro.compute import fmt_count, model_count
from repro.config import ConfigError, to_dict
from repro.experiments.base import Experiment


def print_experiment(exp: Experiment, overrides: list[str], only: list[str] | None,
                     verbose: bool = False) -> None:
    """Print the experiment: recipe, arms with their accounting (``only``: these arms' rows;
    matching is still checked over every arm), claims; ``verbose``: each resolved config."""
    for a in only or []:
        exp.arm(a)  # unknown arm -> one line with close matches
    exp.check_override_scope(overrides)  # a key only some arms have: refused, not "unmatched"
    print(f"{exp.name} v{exp.version} [{exp.scale}]: {exp.title}")
    print(f"paper: {exp.paper}")
    run0 = exp.run_config(exp.arms[0], overrides)  # the resolved config, --set included
    r, d = run0.train, run0.data
    tokens = r.max_steps * r.batch_size * d.seq_len
    print(f"seeds: {list(exp.seeds)}   steps: {r.max_steps}   batch: {r.batch_size} x "
          f"{d.seq_len}   tokens/run: {fmt_count(tokens)}{_epochs(d, tokens)}   data: "
          f"{d.source} (vocab {d.vocab_size})")
    try:
        dev = exp.validate(overrides)
        worst = 100 * max(dev.values(), default=0)
        status = f"matched on {exp.matched_description()} (max deviation {worst:.2f}%)"
    except Exception as e:  # noqa: BLE001 - show, don't fail
        if not isinstance(e, ConfigError):
            raise
        dev, status = {}, f"NOT MATCHED: {e}"
    print(f"arms ({status}):")
    print(f"  {'arm':18s} {'total':>9s} {'activated':>10s} {'FFN act.':>9s} {'FFN FLOPs/tok':>14s} "
          f"{'FLOPs/tok':>10s} {'FFN/attn/head':>14s}  description")
    padded = []
    shown = [a for a in exp.arms if only is None or a.name in only]
    for arm in shown:
        run = exp.run_config(arm, overrides)
        c = model_count(run.model, run.data.seq_len)
        split = "/".join(f"{100 * v:.0f}" for v in c.flop_split().values()) + "%"
        print(f"  {arm.name:18s} {fmt_count(c.total_params):>9s} "
              f"{fmt_count(c.activated_params):>10s}"
              f" {fmt_count(c.ffn_activated_params):>9s} {fmt_count(c.ffn_flops):>14s} "
              f"{fmt_count(c.flops):>10s} {split:>14s}  {arm.description}")
        if c.ffn_flops_padded is not None and abs(c.ffn_flops_padded / c.ffn_flops - 1) > 1e-3:
            padded.append(f"{arm.name} {c.ffn_flops_padded / c.ffn_flops:.2f}x")
    print("  FLOPs are forward, per token (training = 3x, same split); FFN FLOPs count each "
          "routed token once (k experts, no drops).")
    if padded:
        print("  capacity-padded dispatch executes more FFN FLOPs than it routes (every E*C "
              f"slot computed): {', '.join(padded)}; the match above is per routed token.")
    print("claims:")
    for c in exp.claims:
        print(f"  - {c.name}: {c.statement} [paper: {c.paper_figure}; {c.source}]")
    if verbose:
        import json

        for arm in shown:
            print(f"--- {arm.name}")
            print(json.dumps(to_dict(exp.run_config(arm, overrides)), indent=1))


def _epochs(data, tokens: int) -> str:
    """" = N epochs of the train split" when its token stream is already cached (building it
    trains a tokenizer: not something `show` should start)."""
    try:
        from repro.data.sources import cheap_fingerprint
        from repro.data.tokenizer import tokenizer_path

        fp = cheap_fingerprint(data)
        if fp is None or not (data.is_synthetic or tokenizer_path(fp, data.vocab_size).exists()):
            return " (epochs: run once to cache the tokens)"
        from repro.data.tokens import build_token_splits

        n = len(build_token_splits(data).tokens["train"])
    except Exception:  # noqa: BLE001 - show, don't fail
        return ""
    return f" = {tokens / max(n, 1):.2f} epochs of {fmt_count(n)} train tokens"
