"""``repro`` command line: ls | show | run | doctor | check | ui | sweep | dashboard.

Every user mistake ends in one line on stderr naming the field and the fix, exit code 2, and no
traceback unless ``--debug`` is given.
"""

from __future__ import annotations

import argparse
import errno
import os
import sys

from repro import flags, serve
from repro.errors import EXIT_USER, UserError

MAX_SEEDS = 10  # default cap of `repro run --seeds auto`
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def _experiment(args):
    from repro.experiments.base import get_experiment

    return get_experiment(args.name, args.scale)


def _need_device(args) -> None:
    """Training at ``--scale gpu`` needs CUDA; `show` (analytic) and `check` (reads the store)
    work on any machine, so a gpu run's accounting and verdicts can be read on a laptop."""
    if args.scale == "gpu":
        import torch

        if not torch.cuda.is_available():
            raise UserError("--scale gpu: no CUDA device is available; use --scale cpu "
                            "(or smoke) on this machine")


# ------------------------------------------------------------------------------------ commands
def cmd_ls(args) -> int:
    from repro.config import variant_names
    from repro.experiments.base import EXPERIMENTS, load_experiments
    from repro.layers import FFNConfig
    from repro.routers import RouterConfig

    load_experiments()
    print("experiments:")
    for name, fn in EXPERIMENTS.items():
        exp = fn("smoke")
        print(f"  {name:32s} {exp.title}")
    # the names come from the torch-free configs: the same names FFN_BLOCKS / ROUTERS register
    print("ffn blocks: " + ", ".join(variant_names(FFNConfig)))
    print("routers:    " + ", ".join(variant_names(RouterConfig)))
    return 0


def cmd_show(args) -> int:
    from repro.experiments.show import print_experiment

    print_experiment(_experiment(args), args.set or [], flags.arms(args.arm), args.verbose)
    return 0


def _all_experiments(args) -> list:
    from repro.experiments.base import EXPERIMENTS, load_experiments

    load_experiments()
    return [_experiment(argparse.Namespace(**{**vars(args), "name": n}))
            for n in EXPERIMENTS.names()]


def _run_options(args):
    """`repro run`'s flags as the run path's one options value."""
    from repro.experiments.options import RunOptions

    return RunOptions(overrides=args.set or [], uri=args.tracking_uri,
                      progress=not args.no_progress, force=args.force,
                      jobs=flags.jobs(args.jobs), threads=flags.positive("--threads", args.threads))


def cmd_run(args) -> int:
    if args.verbose:
        os.environ["REPRO_VERBOSE"] = "1"  # repro.experiments.runner.VERBOSE_ENV; children too
    from repro.experiments.runner import run_experiment, run_suite

    if args.max_seeds is not None and args.seeds != "auto":
        raise UserError("--max-seeds: only applies to --seeds auto (it caps how many seeds auto "
                        "may grow to); add --seeds auto or drop --max-seeds")
    _need_device(args)
    if args.name == "all":
        if args.arm is not None:
            raise UserError("--arm: cannot be combined with `repro run all` (arms belong to one "
                            "experiment); name the experiment instead")
        seeds = flags.seeds(args.seeds)
        outcomes = run_suite(_all_experiments(args), _run_options(args), seeds=seeds)
        print(f"[repro] done: {len(outcomes)} runs. Next: repro check all --scale {args.scale}")
        return 0
    exp = _experiment(args)
    arms = flags.arms(args.arm)
    opts = _run_options(args)
    if args.seeds == "auto":
        from repro.experiments.autoseeds import run_auto_seeds
        from repro.tracking.store import resolve_uri

        if arms:
            raise UserError("--seeds auto: decides claims over every arm; drop --arm")
        outcomes = []
        seeds = run_auto_seeds(exp, lambda s: outcomes.extend(run_experiment(exp, opts, seeds=s)),
                               resolve_uri(args.tracking_uri), args.set or [],
                               flags.positive("--max-seeds", args.max_seeds
                                         if args.max_seeds is not None else MAX_SEEDS))
        outcomes = list({o.run_id: o for o in outcomes}.values())
        print(f"[repro] --seeds auto settled on seeds {','.join(map(str, seeds))}")
    else:
        outcomes = run_experiment(exp, opts, arms=arms, seeds=flags.seeds(args.seeds))
    trained = sum(o.status == "trained" for o in outcomes)
    print(f"[repro] done: {trained} trained, {len(outcomes) - trained} reused. "
          f"Next: repro check {exp.name} --scale {exp.scale}")
    return 0


def cmd_doctor(args) -> int:
    """Find RUNNING runs whose process died (tags repro.pid + repro.host) and mark them."""
    from repro.tracking import store as ts

    uri = ts.resolve_uri(args.tracking_uri)
    status = "KILLED" if args.killed else "FAILED"
    stale = ts.mark_stale(uri, args.name, status=status, dry_run=args.dry_run)
    verb = "would mark" if args.dry_run else "marked"
    for r in stale:
        t = r.data.tags
        print(f"[repro] {verb} {status}: run {r.info.run_id[:8]} {t.get(ts.T_EXPERIMENT)} "
              f"{t.get(ts.T_ARM)} seed {t.get(ts.T_SEED)} (kind {t.get(ts.T_KIND)}; process "
              f"{t.get(ts.T_PID)} on {t.get(ts.T_HOST)} is gone)")
    running = ts.search_runs(uri, args.name, statuses=("RUNNING",))
    live = [r for r in running if r.info.run_id not in {s.info.run_id for s in stale}]
    print(f"[repro] doctor: {len(stale)} stale run(s) {verb} {status}, {len(live)} still "
          "RUNNING (live, or on another host). Rerun `repro run` to resume interrupted runs.")
    return 0


def cmd_check(args) -> int:
    from repro.experiments.check import IncompleteGridError, MissingRunsError, check_experiment
    from repro.paths import check_free_space, results_dir

    check_free_space(results_dir())  # disk full: refuse before any result file is replaced
    if args.arm is not None:
        raise UserError("--arm: `repro check` evaluates claims that compare the experiment's "
                        "arms, so it always reads every arm (a subset would replace results/ "
                        "with claims it cannot evaluate); drop --arm (`repro run --arm` trains "
                        "a subset)")

    if args.name == "all":
        checked, missing, kept = 0, [], []
        for exp in _all_experiments(args):
            try:
                results, out = check_experiment(exp, uri=args.tracking_uri,
                                                 overrides=args.set or [],
                                                 seeds=flags.seeds(args.seeds),
                                                 partial=args.partial)
            except MissingRunsError:
                missing.append(exp.name)
                continue
            except IncompleteGridError as e:
                print(f"[repro] kept {exp.name}: {e}", file=sys.stderr)
                kept.append(exp.name)
                continue
            checked += 1
            _print_verdicts(results, out, f"{exp.name} / ")
        print(f"[repro] checked {checked} experiments" + (
            f"; no finished runs yet for {', '.join(missing)} (run `repro run all --scale "
            f"{args.scale}`)" if missing else "") + (
            f"; kept the complete results of {', '.join(kept)} (runs missing; --partial "
            "overwrites)" if kept else "") + ". Next: repro report")
        if not checked:
            raise UserError(f"no experiment has finished runs at scale {args.scale!r}; run "
                            f"`repro run all --scale {args.scale}` first")
        return 0
    exp = _experiment(args)
    results, out = check_experiment(exp, uri=args.tracking_uri, overrides=args.set or [],
                                    seeds=flags.seeds(args.seeds), partial=args.partial)
    _print_verdicts(results, out)
    return 0


def _print_verdicts(results, out, prefix: str = "") -> None:
    for r in results:
        print(f"{r.verdict:>15s}  {prefix}{r.claim.name}: {r.measured}")
    print(f"[repro] wrote {out}")


def cmd_report(args) -> int:
    from repro.experiments.report import write_report

    if args.tracking_uri is not None:
        raise UserError("--tracking-uri: `repro report` reads only the claims.json files that "
                        "`repro check` wrote under results/ (REPRO_RESULTS_DIR), never MLflow; "
                        "pass --tracking-uri to `repro check`")

    path = write_report()
    print(f"[repro] wrote {path}")
    return 0


def cmd_sweep(args) -> int:
    from repro.sweeps import SweepSpec, show, sweep, worker_main

    if not args.arm.strip():
        raise UserError("--arm: empty arm name; give the arm to sweep (see `repro show NAME`)")
    spec = SweepSpec(experiment=args.name, arm=args.arm, trials=args.trials, space=args.space,
                     scale=args.scale, overrides=tuple(args.set or []), workers=args.workers,
                     storage=args.storage, timeout=args.timeout, pruner=args.pruner,
                     seed=args.seed, tracking_uri=args.tracking_uri,
                     progress=args.progress)
    if args.show:
        show(spec)
    elif args.worker:
        if not args.parent_run:
            raise UserError("--worker needs --parent-run (workers are started by `repro sweep`)")
        return worker_main(spec, args.parent_run, args.deadline)
    else:
        sweep(spec)
    return 0


def cmd_bench(args) -> int:
    from repro.bench.cli import bench_main

    return bench_main(args)


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
    sp.add_argument("--scale", default="cpu", help="smoke | cpu | cpu-v1 | gpu (default cpu; "
                    "cpu-v1 = the first, uncalibrated cpu preset)")
    sp.add_argument("--set", action="extend", nargs="+", metavar="KEY=VALUE",
                    help="override a config field, e.g. --set train.max_steps=200")


def _server_flags(sp, port: int) -> None:
    sp.add_argument("--port", type=int, default=port)
    sp.add_argument("--host", default="127.0.0.1")
    sp.add_argument("--dry-run", action="store_true", help="print the command, do not start")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="repro", description="MoE reproduction harness")
    p.add_argument("--debug", action="store_true", help="show tracebacks on errors")
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
    sp = add("run", cmd_run, "train every (arm, seed) of an experiment", [experiment])
    sp.add_argument("--arm", help="only these arms (comma-separated)")
    sp.add_argument("--seeds", help="comma-separated seeds (default: the experiment's), or "
                    "auto: train the default seeds, then add seeds while a claim is inconclusive "
                    "and its seeds-needed figure is within --max-seeds")
    sp.add_argument("--max-seeds", type=int, default=None,
                    help=f"cap for --seeds auto (default {MAX_SEEDS})")
    sp.add_argument("-v", "--verbose", action="store_true",
                    help="show Lightning's INFO lines and third-party deprecation warnings")
    sp.add_argument("--force", action="store_true", help="retrain even if a finished run exists")
    sp.add_argument("--no-progress", action="store_true", help="no progress bars")
    sp.add_argument("--jobs", type=int, default=1,
                    help="train this many (arm, seed) runs at once, one process each "
                         "(default 1); logs in runs/logs/NAME/SCALE/")
    sp.add_argument("--threads", type=int, default=None,
                    help="intra-op threads per --jobs process (default: cores // jobs)")
    sp = add("doctor", cmd_doctor, "mark runs left RUNNING by a dead process FAILED", [store])
    sp.add_argument("name", nargs="?", default=None, help="only this experiment (default: all)")
    sp.add_argument("--killed", action="store_true", help="mark them KILLED instead of FAILED")
    sp.add_argument("--dry-run", action="store_true", help="only list them")
    sp = add("check", cmd_check, "evaluate claims over seeds, write results/NAME/", [experiment])
    sp.add_argument("--seeds", help="comma-separated seeds (default: the experiment's, plus "
                    "seeds that every arm finished)")
    sp.add_argument("--arm", help=argparse.SUPPRESS)  # refused with the reason (cmd_check)
    sp.add_argument("--partial", action="store_true",
                    help="with some (arm, seed) runs missing, overwrite a complete result "
                         "anyway (the new one is marked partial)")
    sp = add("report", cmd_report, "regenerate results/README.md over all experiments (reads "
             "results/ only)")
    sp.add_argument("--tracking-uri", default=None, help=argparse.SUPPRESS)  # refused: cmd_report
    sp = add("ui", serve.ui_main, "MLflow UI on the same store (127.0.0.1 by default)", [store])
    _server_flags(sp, port=5000)
    sp = add("sweep", cmd_sweep, "Optuna sweep of one arm (resumable, parallel, in MLflow)",
             [experiment])
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
    sp = add("dashboard", serve.dashboard_main,
             "optuna-dashboard on the sweep storage (127.0.0.1)")
    sp.add_argument("--storage", default=None, help="Optuna storage URL (default runs/optuna.db)")
    _server_flags(sp, port=8080)
    sp = add("bench", cmd_bench, "dispatch speed: MoE vs dense at equal activated FLOPs")
    from repro.bench.cli import add_arguments

    add_arguments(sp)
    return p


def main(argv: list[str] | None = None) -> int:
    # glibc: keep big tensors in the heap instead of fresh mmaps each step (references.md §Perf)
    os.environ.setdefault("MALLOC_MMAP_MAX_", "0")
    parser = build_parser()
    args = parser.parse_args(argv)
    # `repro --debug CMD` too: each subparser's own --debug default would otherwise overwrite it
    args.debug = args.debug or "--debug" in (sys.argv[1:] if argv is None else argv)
    try:
        flags.check_overrides(args)
        return args.fn(args) or 0
    except KeyboardInterrupt:
        print("repro: interrupted", file=sys.stderr)
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
            print(f"repro: {e}", file=sys.stderr)
            return 128 + e.signum
        if RunFailed and isinstance(e, RunFailed) and not args.debug:
            print(f"repro: error: {e}", file=sys.stderr)
            return 1
        if args.debug:
            raise
        if not isinstance(e, UserError):  # the one place that decides "one line, exit 2"
            print(f"repro: internal error: {type(e).__name__}: {e} (rerun with --debug for "
                  "the traceback)", file=sys.stderr)
            return 1
        print(f"repro: error: {e}", file=sys.stderr)
        return EXIT_USER


if __name__ == "__main__":
    sys.exit(main())
