"""The experiment flow's commands: ``repro run`` (and ``doctor`` for runs a dead process left
RUNNING), ``repro sweep`` (tune one arm), ``repro check``, and the results/ commands ``lock``,
``report`` and ``verify``: the flags turned into the runner's, checker's, sweep's and verdict
engine's calls, the summary lines and the ``Next:`` hints. ``repro.cli`` parses and decides how
an error ends; this module says what the commands do. Nothing heavy at import time (the CLI
parses without torch, Lightning or MLflow).
"""

from __future__ import annotations

import argparse
import os
import sys

from repro import flags
from repro.errors import UserError

MAX_SEEDS = 10  # default cap of `repro run --seeds auto`


def experiment_of(args):
    from repro.experiments.base import get_experiment

    return get_experiment(args.name, args.scale)


def need_device(args) -> None:
    """Training at ``--scale gpu`` needs CUDA; `show` (analytic) and `check` (reads the store)
    work on any machine, so a gpu run's accounting and verdicts can be read on a laptop."""
    if args.scale == "gpu":
        import torch

        if not torch.cuda.is_available():
            raise UserError("--scale gpu: no CUDA device is available; use --scale cpu "
                            "(or smoke) on this machine")


def _all_experiments(args) -> list:
    from repro.experiments.base import EXPERIMENTS, load_experiments

    load_experiments()
    return [experiment_of(argparse.Namespace(**{**vars(args), "name": n}))
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
    need_device(args)
    if args.name == "all":
        if args.arm is not None:
            raise UserError("--arm: cannot be combined with `repro run all` (arms belong to one "
                            "experiment); name the experiment instead")
        seeds = flags.seeds(args.seeds)
        outcomes = run_suite(_all_experiments(args), _run_options(args), seeds=seeds)
        print(f"[repro] done: {len(outcomes)} runs. Next: repro check all --scale {args.scale}")
        return 0
    exp = experiment_of(args)
    arms = flags.arms(args.arm)
    opts = _run_options(args)
    if args.seeds == "auto":
        from repro.experiments.autoseeds import run_auto_seeds
        from repro.tracking.store import resolve_uri

        if arms:
            raise UserError("--seeds auto: decides claims over every arm; drop --arm")
        outcomes = []
        from repro.experiments.verdicts import design_of

        cap = design_of(exp).max_seeds
        if args.max_seeds is not None and args.max_seeds > cap:
            raise UserError(f"--max-seeds: {exp.name}'s registered design allows at most {cap} "
                            "seeds (its lock hashes the design); a larger maximum is a new "
                            "design: change max_seeds in its definition and re-lock before "
                            "training, or drop --max-seeds")
        seeds = run_auto_seeds(exp, lambda s: outcomes.extend(run_experiment(exp, opts, seeds=s)),
                               resolve_uri(args.tracking_uri), args.set or [],
                               flags.positive("--max-seeds", args.max_seeds
                                              if args.max_seeds is not None else cap))
        outcomes = list({o.run_id: o for o in outcomes}.values())
        print(f"[repro] --seeds auto settled on seeds {','.join(map(str, seeds))}")
    else:
        outcomes = run_experiment(exp, opts, arms=arms, seeds=flags.seeds(args.seeds))
    trained = sum(o.status == "trained" for o in outcomes)
    print(f"[repro] done: {trained} trained, {len(outcomes) - trained} reused. "
          + _next_after_run(exp, args, {(o.arm, o.seed) for o in outcomes}))
    return 0


def _next_after_run(exp, args, done: set[tuple[str, int]]) -> str:
    """``Next:`` only with commands that will work: `check` once the experiment's grid has
    finished (``done``: this command's finished (arm, seed)s, trained or reused, plus the
    experiment's finished runs in the store); else the command that trains the rest (it
    reuses what is finished) and `check --partial` for a look now."""
    import shlex

    from repro.tracking.store import finished_arm_seeds, resolve_uri

    extra = ""
    if args.set:
        extra += " --set " + " ".join(shlex.quote(o) for o in args.set)
    if args.tracking_uri:
        extra += f" --tracking-uri {shlex.quote(args.tracking_uri)}"
    check = f"repro check {exp.name} --scale {exp.scale}{extra}"
    have = done | finished_arm_seeds(resolve_uri(args.tracking_uri), exp.name, exp.scale)
    missing = [(a.name, s) for a in exp.arms for s in exp.seeds if (a.name, s) not in have]
    if not missing:
        return f"Next: {check}"
    n = len(exp.arms) * len(exp.seeds)
    jobs = f" --jobs {args.jobs}" if args.jobs > 1 else ""
    return (f"{len(missing)} of the {n} runs of the grid are not finished yet. Next: repro run "
            f"{exp.name} --scale {exp.scale}{extra}{jobs}"
            f" (trains only those), then {check}; or now `{check} --partial` (verdicts over the "
            "finished runs, marked partial)")


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
    exp = experiment_of(args)
    results, out = check_experiment(exp, uri=args.tracking_uri, overrides=args.set or [],
                                    seeds=flags.seeds(args.seeds), partial=args.partial)
    _print_verdicts(results, out)
    return 0


def _print_verdicts(results, out, prefix: str = "") -> None:
    for r in results:
        print(f"{r.verdict:>15s}  {prefix}{r.claim.name}: {r.measured}")
    print(f"[repro] wrote {out}")


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


def cmd_report(args) -> int:
    from repro.experiments.report import write_report

    if args.tracking_uri is not None:
        raise UserError("--tracking-uri: `repro report` reads only the claims.json files that "
                        "`repro check` wrote under results/ (REPRO_RESULTS_DIR), never MLflow; "
                        "pass --tracking-uri to `repro check`")

    path = write_report()
    print(f"[repro] wrote {path}")
    return 0


def cmd_verify(args) -> int:
    """Recompute every committed verdict, adjustment, lock hash and results/README.md from
    results/ alone; exit 1 naming each mismatch."""
    from repro.experiments.report import render_report
    from repro.experiments.verdicts import LEGACY_SCALES, verify
    from repro.paths import results_dir

    root = results_dir()
    problems, checked = verify(root, [args.name] if args.name else None)
    readme = root / "README.md"
    if not args.name and readme.exists() and readme.read_text() != render_report(root):
        problems.append(f"{readme}: differs from what the committed claims.json files render "
                        "to (run `repro report`)")
    if problems:
        for p in problems:
            print(f"repro verify: MISMATCH {p}", file=sys.stderr)
        print(f"repro verify: FAILED: {len(problems)} mismatch(es) in results/ ({checked} claims "
              "recomputed)", file=sys.stderr)
        return 1
    print(f"[repro] verify: {checked} claims recomputed from {root} (verdicts, p-values, "
          f"adjustments, lock hashes) match; legacy scales not re-judged: "
          f"{', '.join(LEGACY_SCALES)}")
    return 0


def cmd_lock(args) -> int:
    """Write results/NAME/SCALE/lock.json: the canonical form and SHA-256 of every claim."""
    import json

    from repro.experiments.verdicts import LOCK, make_lock
    from repro.paths import atomic_write_text, results_dir
    from repro.tracking.store import git_sha

    exp = experiment_of(args)
    path = results_dir() / exp.name / exp.scale / LOCK
    if path.exists() and not args.force:
        raise UserError(f"--force: {path} exists; a lock is written once, before the runs it "
                        "governs (re-locking after results are seen makes every claim "
                        "post hoc: pass --force and --status saying so)")
    lock = make_lock(exp, args.status, git_sha())
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(lock, indent=1) + "\n")
    print(f"[repro] wrote {path} ({len(lock['claims'])} claims, status: {args.status})")
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
