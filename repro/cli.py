"""``repro`` command line: ls | show | run | doctor | check | compare | selftest | ui | sweep |
dashboard | bench.

Every user mistake ends in one line on stderr naming the field and the fix, exit code 2, and no
traceback unless ``--debug`` is given.
"""

from __future__ import annotations

import argparse
import errno
import os
import sys

from repro import experiment_commands as xc
from repro import flags, serve
from repro.errors import EXIT_USER, UserError, clip_words

_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


# ------------------------------------------------------------------------------------ commands
def cmd_ls(args) -> int:
    from repro.config import family_of
    from repro.experiments.base import EXPERIMENTS, load_experiments
    from repro.layers import FFNConfig
    from repro.plugins import loaded
    from repro.registry import BUILTIN
    from repro.routers import RouterConfig

    def named(reg, name: str) -> str:  # a plugin's entry says where it came from
        origin = reg.origin(name)
        return name if origin == BUILTIN else f"{name} [{origin}]"

    load_experiments()
    print("experiments:")
    for name, fn in EXPERIMENTS.items():
        exp = fn("smoke")
        where = "" if EXPERIMENTS.origin(name) == BUILTIN else f" [{EXPERIMENTS.origin(name)}]"
        print(f"  {name:32s} {exp.title}{where}")
    # the names come from the torch-free configs: the same names FFN_BLOCKS / ROUTERS register
    for label, base in (("ffn blocks: ", FFNConfig), ("routers:    ", RouterConfig)):
        fam = family_of(base)
        print(label + ", ".join(named(fam, n) for n in fam.names()))
    spaces = sys.modules.get("repro.sweeps.spaces")  # heavy to import: listed when a plugin did
    if spaces is not None:
        own = [named(spaces.SPACES, n) for n in spaces.SPACES.names()
               if spaces.SPACES.origin(n) != BUILTIN]
        if own:
            print("search spaces (plugins): " + ", ".join(own))
    print("plugins:    " + (", ".join(loaded()) if loaded() else
                            "none (unmarked names are built-in; add your own with --plugin PATH)"))
    return 0


def cmd_show(args) -> int:
    from repro.experiments.show import print_experiment

    print_experiment(xc.experiment_of(args), args.set or [], flags.arms(args.arm), args.verbose)
    return 0


def cmd_compare(args) -> int:
    """Your router(s) against the baselines at matched FLOPs: train what is missing, decide each
    pair, write the leaderboard (``repro.experiments.compare``)."""
    from repro.experiments.base import SCALES
    from repro.experiments.compare import BASELINES, METHODS, CompareSpec, parse_list
    from repro.routers import ROUTERS

    if args.scale not in SCALES:
        raise UserError(f"--scale: unknown scale {args.scale!r} (allowed: {', '.join(SCALES)})")
    xc.need_device(args)
    routers = parse_list("router", args.routers)
    for r in routers:
        if r not in METHODS:  # a built-in method (mone, finedeep, ...) may be put under test too
            ROUTERS.get(r, field="router")  # unknown: one line with close matches
    against = parse_list("--against", args.against, METHODS) if args.against else BASELINES
    if args.name is not None and not args.name.replace("-", "").replace("_", "").isalnum():
        raise UserError(f"--name: {args.name!r} must be letters, digits, - or _ (it names a "
                        "folder and an MLflow experiment)")
    spec = CompareSpec(routers=routers, against=against, scale=args.scale, name=args.name,
                       experts=flags.positive("--experts", args.experts))
    if args.show:  # the arms and their accounting; nothing trains
        from repro.experiments.compare import build, output_dir
        from repro.experiments.show import print_experiment

        print_experiment(build(spec), args.set or [], None)
        print(f"[repro] nothing trained (--show); the leaderboard would go to {output_dir(spec)}")
        return 0
    from repro.experiments.compare import run_compare

    plugins = [*(args.plugins or []), *(args.plugins_sub or [])]
    argv = " ".join([f"--plugin {p}" for p in plugins] + [f"compare {args.routers} --scale "
                                                          f"{args.scale}"]
                    + ([f"--against {args.against}"] if args.against else [])
                    + [f"--set {o}" for o in args.set or []]
                    + ([f"--seeds {args.seeds}"] if args.seeds else [])
                    + ([f"--jobs {args.jobs}"] if args.jobs and args.jobs > 1 else []))
    lb, out = run_compare(spec, uri=args.tracking_uri, overrides=args.set or [],
                          seeds=flags.seeds(args.seeds), progress=not args.no_progress,
                          force=args.force, jobs=flags.jobs(args.jobs),
                          threads=flags.positive("--threads", args.threads),
                          command=f"repro {argv}")
    for p in lb.pairs:
        print(f"[repro] {p.router} vs {p.baseline}: gap {p.mean:+.4f} "
              f"[{p.lo:+.4f}, {p.hi:+.4f}] -> {p.verdict}")
    print(f"[repro] leaderboard: {out / 'leaderboard.md'} ({lb.trained} runs trained, "
          f"{lb.reused} reused, {lb.wall_s:.0f} s)")
    return 0


def cmd_selftest(args) -> int:
    """The router contract (``repro.selftest``) on one or more routers, built in or plugin."""
    import time

    from repro.routers import ROUTERS

    names = ROUTERS.names() if args.router == "all" else flags.arms(args.router)
    for n in names:
        ROUTERS.get(n, field="router")  # unknown: one line with close matches, before any work
    from repro.selftest import F_EXPERT, D, E, run_selftest

    t0, failed = time.perf_counter(), 0
    for n in names:
        print(f"selftest {n} ({ROUTERS.origin(n)}), D={D} E={E} F={F_EXPERT}:")
        checks = run_selftest(n)
        bad = [c.name for c in checks if not c.ok]
        failed += bool(bad)
        print(f"  {len(checks) - len(bad)} passed, {len(bad)} failed"
              + (f" ({', '.join(bad)})" if bad else ""))
    print(f"[repro] selftest: {len(names) - failed} of {len(names)} router(s) passed in "
          f"{time.perf_counter() - t0:.1f} s")
    return 1 if failed else 0


def _load_plugins(args) -> None:
    """``--plugin PATH`` (before or after the command; repeatable) and ``REPRO_PLUGINS``: the
    user's own routers, blocks, experiments and search spaces (``repro.plugins``). The paths go
    into ``REPRO_PLUGINS`` so child processes (``--jobs``, sweep workers) load them too."""
    from repro.experiments.base import load_experiments
    from repro.plugins import add_paths

    add_paths([*(getattr(args, "plugins", None) or []),
               *(getattr(args, "plugins_sub", None) or [])])
    load_experiments()  # the built-in experiments first, then the plugins
    if os.environ.get("REPRO_COMPARE"):  # a child of `repro compare --jobs`: its comparison
        from repro.experiments.compare import register_from_env

        register_from_env()


# --------------------------------------------------------------------------------------- parser
def _flags(*adders) -> argparse.ArgumentParser:
    """A parent parser (``parents=[...]``) holding flags that several subcommands share."""
    parent = argparse.ArgumentParser(add_help=False)
    for add in adders:
        add(parent)
    return parent


def _debug_flag(sp) -> None:  # per subcommand too, so `repro CMD ... --debug` works
    sp.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)


def _store_flag(sp) -> None:
    sp.add_argument("--tracking-uri", default=None,
                    help="MLflow tracking URI (default: MLFLOW_TRACKING_URI or "
                         "sqlite:///runs/mlflow.db)")


def _experiment_flags(sp) -> None:
    sp.add_argument("name", help="experiment name (see `repro ls`); `run` and `check` also "
                    "take `all`")
    _scale_set_flags(sp)


def _scale_set_flags(sp) -> None:
    sp.add_argument("--scale", default="cpu", help="smoke | cpu | cpu-v1 | gpu (default cpu; "
                    "cpu-v1 = the first, uncalibrated cpu preset)")
    sp.add_argument("--set", action="extend", nargs="+", metavar="KEY=VALUE",
                    help="override a config field, e.g. --set train.max_steps=200; "
                         "ARM:KEY=VALUE sets it on that arm only")


def _train_flags(sp) -> None:
    sp.add_argument("--force", action="store_true", help="retrain even if a finished run exists")
    sp.add_argument("--no-progress", action="store_true", help="no progress bars")
    sp.add_argument("--threads", type=int, default=None, help="intra-op threads per process "
                    "(default: cores // --jobs)")


def _server_flags(sp, port: int) -> None:
    sp.add_argument("--port", type=int, default=port)
    sp.add_argument("--host", default="127.0.0.1")
    sp.add_argument("--dry-run", action="store_true", help="print the command, do not start")


def _sweep_flags(sp) -> None:
    sp.add_argument("--arm", required=True, help="the arm to sweep (see `repro show NAME`)")
    sp.add_argument("--trials", type=int, default=20,
                    help="trials in the study in total; a rerun finishes the remainder")
    sp.add_argument("--space", default=None,
                    help="search space (default: the experiment's, else lr): balance, capacity, "
                         "experts, finedeep, granularity, loss-weights, lr, mone, shazeer, topk,"
                         " zloss")
    sp.add_argument("--workers", type=int, default=1, help="worker processes on the study")
    sp.add_argument("--storage", default=None,
                    help="Optuna RDB URL (default sqlite:///runs/optuna.db); share one across "
                         "machines with e.g. postgresql://user@host/db")
    sp.add_argument("--timeout", type=float, default=None,
                    help="stop starting trials after SECONDS (running ones finish)")
    sp.add_argument("--pruner", default="median",
                    help="median | halving | none | always (debug: prune at the first report)")
    sp.add_argument("--seed", type=int, default=0, help="sampler seed (default 0)")
    sp.add_argument("--show", action="store_true",
                    help="print the study's trials and best params; no training")
    sp.add_argument("--progress", action="store_true", help="progress bars for trials")
    sp.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    sp.add_argument("--parent-run", default=None, help=argparse.SUPPRESS)
    sp.add_argument("--deadline", type=float, default=None, help=argparse.SUPPRESS)


def _compare_flags(sp) -> None:
    sp.add_argument("routers", metavar="ROUTER[,ROUTER...]",
                    help="router names (see `repro ls`; a plugin's with --plugin PATH)")
    _scale_set_flags(sp)
    sp.add_argument("--against", default=None, help="baselines, comma-separated (default: "
                    "dense,top2,switch,expert_choice,deepseekmoe)")
    sp.add_argument("--experts", type=int, default=8,
                    help="experts of each router under test (default 8; widths are derived)")
    sp.add_argument("--name", default=None, help="leaderboard name (default: the routers "
                    "joined by +); results/compare/NAME/SCALE/")
    sp.add_argument("--seeds", help="comma-separated seeds (default: the scale's)")
    _train_flags(sp)
    sp.add_argument("--jobs", type=int, default=1,
                    help="train this many (arm, seed) runs at once, one process each "
                         "(default 1)")
    sp.add_argument("--show", action="store_true",
                    help="print the arms with their accounting and matching; train nothing")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="repro", description="MoE reproduction harness")
    p.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    plugin_help = ("load routers, FFN blocks, experiments or search spaces from a .py file or a "
                   "folder of your own (repeatable; also REPRO_PLUGINS, and installed packages' "
                   "moe_repro.plugins entry points); see docs/own-router.md")
    p.add_argument("--plugin", dest="plugins", action="append", metavar="PATH", help=plugin_help)
    sub = p.add_subparsers(dest="cmd", required=True)
    debug = _flags(_debug_flag)
    store = _flags(_debug_flag, _store_flag)
    experiment = _flags(_experiment_flags, _store_flag, _debug_flag)

    def add(name: str, fn, help: str, parents=(debug,)):
        sp = sub.add_parser(name, help=help, parents=list(parents))
        sp.set_defaults(fn=fn)
        return sp

    add("ls", cmd_ls, "list experiments, FFN blocks and routers")
    sp = add("show", cmd_show, "arms, compute accounting and claims of an experiment",
             [experiment])
    sp.add_argument("--arm", help="only these arms in the table (comma-separated; matching "
                    "is still checked over every arm)")
    sp.add_argument("-v", "--verbose", action="store_true", help="print resolved configs")
    sp = add("run", xc.cmd_run, "train every (arm, seed) of an experiment", [experiment])
    sp.add_argument("--arm", help="only these arms (comma-separated)")
    sp.add_argument("--seeds", help="comma-separated seeds (default: the experiment's), or "
                    "auto: follow the experiment's registered group-sequential design (one seed "
                    "per look from the planned count to its maximum, HSD alpha spending; "
                    "docs/verdicts.md)")
    sp.add_argument("--max-seeds", type=int, default=None,
                    help="stop --seeds auto earlier than the registered maximum (default: the "
                    f"design's, at most {xc.MAX_SEEDS})")
    sp.add_argument("-v", "--verbose", action="store_true",
                    help="show Lightning's INFO lines and third-party deprecation warnings")
    _train_flags(sp)
    sp.add_argument("--jobs", type=int, default=1,
                    help="train this many (arm, seed) runs at once, one process each "
                         "(default 1); logs in runs/logs/NAME/SCALE/")
    sp = add("doctor", xc.cmd_doctor, "mark runs left RUNNING by a dead process FAILED", [store])
    sp.add_argument("name", nargs="?", default=None, help="only this experiment (default: all)")
    sp.add_argument("--killed", action="store_true", help="mark them KILLED instead of FAILED")
    sp.add_argument("--dry-run", action="store_true", help="only list them")
    sp = add("check", xc.cmd_check, "evaluate claims over seeds, write results/NAME/", [experiment])
    sp.add_argument("--seeds", help="comma-separated seeds (default: the experiment's, plus "
                    "seeds that every arm finished)")
    sp.add_argument("--arm", help=argparse.SUPPRESS)  # refused with the reason (cmd_check)
    sp.add_argument("--partial", action="store_true",
                    help="with some (arm, seed) runs missing, overwrite a complete result "
                         "anyway (the new one is marked partial)")
    sp = add("report", xc.cmd_report, "regenerate results/README.md over all experiments (reads "
             "results/ only)")
    sp.add_argument("--tracking-uri", default=None, help=argparse.SUPPRESS)  # refused: cmd_report
    sp = add("verify", xc.cmd_verify, "recompute every committed verdict, adjustment and lock "
             "hash from results/ alone (no store, no training)")
    sp.add_argument("name", nargs="?", default=None, help="only this experiment")
    sp = add("lock", xc.cmd_lock, "register an experiment's claims: write "
             "results/NAME/SCALE/lock.json (before its runs)")
    sp.add_argument("name", help="experiment name")
    sp.add_argument("--scale", default="cpu")
    sp.add_argument("--status", default="locked before runs",
                    help="what the lock says about its timing (default: locked before runs)")
    sp.add_argument("--force", action="store_true", help="replace an existing lock")
    sp = add("ui", serve.ui_main, "MLflow UI on the same store (127.0.0.1 by default)", [store])
    _server_flags(sp, port=5000)
    sp = add("sweep", xc.cmd_sweep, "Optuna sweep of one arm (resumable, parallel, in MLflow)",
             [experiment])
    _sweep_flags(sp)
    sp = add("dashboard", serve.dashboard_main,
             "optuna-dashboard on the sweep storage (127.0.0.1)")
    sp.add_argument("--storage", default=None, help="Optuna storage URL (default runs/optuna.db)")
    _server_flags(sp, port=8080)
    sp = add("compare", cmd_compare, "leaderboard: your router(s) vs dense, top-2, Switch, "
             "Expert Choice and DeepSeekMoE at matched FLOPs, with verdicts", [store])
    _compare_flags(sp)
    sp = add("selftest", cmd_selftest, "the router contract (shapes, gradients, backends, "
             "param/FLOP accounting, determinism, resume) on a router, e.g. a plugin")
    sp.add_argument("router", help="router name (see `repro ls`), comma-separated names, or all")
    from repro.bench import cli as bench  # torch-free: flags checked before torch loads

    bench.add_arguments(add("bench", bench.bench_main, "dispatch speed: MoE vs dense at equal "
                            "activated FLOPs"))
    for sp in sub.choices.values():  # `repro CMD ... --plugin PATH` works too
        sp.add_argument("--plugin", dest="plugins_sub", action="append", metavar="PATH",
                        help=plugin_help)
    return p


def _resume_command(args, argv: list[str] | None) -> str | None:
    """``repro run ...`` / ``repro compare ...``: the command as typed, without ``--force``
    (which would start the stopped runs over); None for commands that do not train."""
    import shlex

    if getattr(args, "fn", None) not in (xc.cmd_run, cmd_compare):
        return None
    words = [w for w in (sys.argv[1:] if argv is None else argv) if w != "--force"]
    return f"repro {shlex.join(words)}"


def main(argv: list[str] | None = None) -> int:
    # glibc: keep big tensors in the heap instead of fresh mmaps each step (references.md §Perf)
    os.environ.setdefault("MALLOC_MMAP_MAX_", "0")
    parser = build_parser()
    args = parser.parse_args(argv)
    # `repro --debug CMD` too: each subparser's own --debug default would otherwise overwrite it
    args.debug = args.debug or "--debug" in (sys.argv[1:] if argv is None else argv)
    try:
        flags.check_overrides(args)
        _load_plugins(args)
        return args.fn(args) or 0
    except KeyboardInterrupt:
        again = _resume_command(args, argv)
        print("repro: interrupted" + (f"; to resume: {again}" if again else ""), file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001
        if isinstance(e, OSError) and e.errno in _DISK_FULL and not args.debug:
            # disk full while writing (the atomic writers name the file, and leave the old one)
            print(f"repro: error: cannot write {e.filename or '(unknown file)'}: {e.strerror}; "
                  "free space (or set REPRO_RESULTS_DIR / REPRO_RUNS_DIR elsewhere) and rerun; "
                  "no file was left half-written", file=sys.stderr)
            return 1
        # both classes exist only if their modules were imported (importing them to check
        # would load Lightning: seconds)
        RunInterrupted = getattr(sys.modules.get("repro.lit.checkpoint"), "RunInterrupted", ())
        RunFailed = getattr(sys.modules.get("repro.experiments.runner"), "RunFailed", ())
        if RunInterrupted and isinstance(e, RunInterrupted) and not args.debug:
            again = _resume_command(args, argv)
            print(f"repro: {e}" + (f": {again}" if again else ""), file=sys.stderr)
            return 128 + e.signum
        if RunFailed and isinstance(e, RunFailed) and not args.debug:
            print(f"repro: error: {e}", file=sys.stderr)
            return 1
        if args.debug:
            raise
        if not isinstance(e, UserError):  # the one place that decides "one line, exit 2"
            print(f"repro: internal error: {type(e).__name__}: {clip_words(str(e))} (rerun "
                  "with --debug for the traceback)", file=sys.stderr)
            return 1
        print(f"repro: error: {clip_words(str(e))}", file=sys.stderr)
        return EXIT_USER


if __name__ == "__main__":
    sys.exit(main())
