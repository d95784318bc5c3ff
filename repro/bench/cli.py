"""Arguments and entry of ``repro bench`` (kept here so ``repro/cli.py`` only delegates; no torch
import at module level, so building the parser stays cheap)."""

from __future__ import annotations

from repro.errors import UserError


def add_arguments(sp) -> None:
    sp.add_argument("--device", default="cpu", help="cpu | cuda (default cpu)")
    sp.add_argument("--routers", default=None,
                    help="comma-separated routers (default: all registered)")
    sp.add_argument("--experts", default=None, help="comma-separated E values (default "
                    "8,16,64,256; k=2 below 64, k=8 from 64, activated FLOPs fixed)")
    sp.add_argument("--backends", default=None,
                    help="comma-separated dispatch backends (default auto,loop,grouped_mm,bmm; "
                    "static: auto's fallback rule)")
    sp.add_argument("--sweep-routers", default=None,
                    help="routers for the E values other than 8 and 64 (default: --routers)")
    sp.add_argument("--dtype", default="float32", help="float32 | bfloat16")
    sp.add_argument("--tokens", type=int, default=None, help="tokens per call (default 8192)")
    sp.add_argument("--d-model", type=int, default=None, help="model width D (default 256)")
    sp.add_argument("--hidden", type=int, default=None,
                    help="activated hidden width k*F = dense d_ff (default 2048)")
    sp.add_argument("--reps", type=int, default=None, help="interleaved rounds (default 5)")
    sp.add_argument("--no-train", action="store_true", help="skip the training-loop check")
    sp.add_argument("--quick", action="store_true",
                    help="tiny shapes, seconds: a smoke run (writes a *-quick.csv)")
    sp.add_argument("--update", action="store_true",
                    help="merge into the existing CSV, replacing only the re-measured rows")
    sp.add_argument("--out", default="", help="output folder (default: the project's "
                    "results/bench; see README 'Where runs and results live')")
    sp.add_argument("--threads", type=int, default=None,
                    help="intra-op CPU threads (default: torch's, at most the cores)")
    sp.add_argument("--peers", action="store_true",
                    help="also time transformers 5's OLMoE / Qwen3-MoE blocks on the same "
                    "weights (topk cases; needs the optional extra: pip install "
                    "'moe-repro[peers]')")


def _ints(text: str, flag: str) -> tuple[int, ...]:
    try:
        vals = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise UserError(f"{flag}: expected comma-separated integers like 8,16,64, got "
                        f"{text!r}") from None
    if not vals or min(vals) < 1:
        raise UserError(f"{flag}: expected positive integers like 8,16,64, got {text!r}")
    return vals


def _unknown_router(flag: str, name: str, names: list[str]) -> str:
    import difflib

    close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    return f"{flag}: unknown router {name!r}{hint} (choose one of: {', '.join(names)})"


def bench_main(args) -> int:
    kw = _spec_kwargs(args)  # every flag checked before torch is imported (a fast one-line error)
    import torch

    from repro.bench.run import BenchSpec, format_table, run_bench

    if args.device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available; use --device cpu")
    spec = BenchSpec.quick_spec(**kw) if args.quick else BenchSpec(**kw)
    if spec.tokens % min(spec.seq_len, spec.tokens):
        spec.seq_len = spec.tokens
    rows, path = run_bench(spec)
    print()
    print(format_table(rows, spec.device))
    print(f"[repro] wrote {path} (+ .png)")
    return 0


def _spec_kwargs(args) -> dict:
    """BenchSpec keyword arguments from the flags, torch-free; a UserError names a bad flag."""
    from repro.config import variant_names
    from repro.layers.moe_config import BACKENDS
    from repro.routers import RouterConfig

    router_names = sorted(variant_names(RouterConfig))
    if args.device not in ("cpu", "cuda"):
        raise UserError(f"--device: {args.device!r} is not cpu or cuda")
    if args.dtype not in ("float32", "bfloat16"):
        raise UserError(f"--dtype: {args.dtype!r} is not float32 or bfloat16")
    kw: dict = dict(device=args.device, dtype=args.dtype, out_dir=args.out,
                    train=not args.no_train, update=args.update)
    if args.peers:
        from repro.bench.peers import PEER_ROUTER, available

        why = available()
        if why:
            raise UserError(f"--peers: {why}; or drop --peers")
        kw["peers"] = True
        if args.routers and PEER_ROUTER not in args.routers.split(","):
            raise UserError(f"--peers: the peers run beside the {PEER_ROUTER!r} router (the one "
                            f"with their gating); add {PEER_ROUTER} to --routers")
    if args.routers:
        routers = tuple(r.strip() for r in args.routers.split(",") if r.strip())
        for r in routers:
            if r not in router_names:
                raise UserError(_unknown_router("--routers", r, router_names))
        kw["routers"] = routers
    if args.sweep_routers:
        kw["sweep_routers"] = tuple(r.strip() for r in args.sweep_routers.split(",") if r.strip())
        for r in kw["sweep_routers"]:
            if r not in router_names:
                raise UserError(_unknown_router("--sweep-routers", r, router_names))
    if args.backends:
        bs = tuple(b.strip() for b in args.backends.split(",") if b.strip())
        bad = [b for b in bs if b not in BACKENDS]
        if bad:
            raise UserError(f"--backends: unknown {bad[0]!r} (allowed: {', '.join(BACKENDS)})")
        kw["backends"] = bs  # loop always runs once as the reference; timed only if listed
    if args.experts:
        kw["experts"] = _ints(args.experts, "--experts")
    for name in ("tokens", "d_model", "hidden", "reps", "threads"):
        v = getattr(args, name)
        if v is not None:
            if v < 1:
                raise UserError(f"--{name.replace('_', '-')}: must be >= 1, got {v}")
            kw[name] = v
    return kw
