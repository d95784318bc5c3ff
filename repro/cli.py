"""``repro`` command line: ls | show | run | doctor | check | ui | sweep | dashboard.

Every user mistake ends in one line on stderr naming the field and the fix, exit code 2, and no
traceback unless ``--debug`` is given.
"""

from __future__ import annotations

import argparse
import errno
import os
import socket
import subprocess
import sys

EXIT_USER = 2


class UserError(Exception):
    """A mistake the user can fix; printed as one line."""


# The exception classes that mean "the user can fix this", by defining module. An exception of
# one of them can only exist if its module was imported, so classifying one never imports
# anything (importing repro.lit.checkpoint for the check would load Lightning: seconds).
_USER_ERROR_CLASSES = (("repro.compute", "MatchError"), ("repro.config", "ConfigError"),
                       ("repro.data.errors", "DataError"),
                       ("repro.experiments.check", "MissingRunsError"),
                       ("repro.experiments.check", "IncompleteGridError"),
                       ("repro.lit.checkpoint", "CheckpointError"),
                       ("repro.registry", "RegistryError"),
                       ("repro.tracking.store", "TrackingError"))


def _user_errors() -> tuple[type[BaseException], ...]:
    return (UserError, *(getattr(sys.modules[m], n) for m, n in _USER_ERROR_CLASSES
                         if m in sys.modules))


def _parse_seeds(text: str | None) -> list[int] | None:
    if text is None:
        return None
    if text == "auto":
        raise UserError("--seeds auto: only `repro run NAME` grows seeds automatically; pass "
                        "a list like 0,1,2 here")
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise UserError(f"--seeds: expected comma-separated integers like 0,1,2 (or auto for "
                        f"`repro run`), got {text!r}") from None
    if not seeds:
        raise UserError("--seeds: empty list; pass e.g. --seeds 0,1,2")
    bad = [s for s in seeds if not 0 <= s < 2**32]
    if bad:
        raise UserError(f"--seeds: {bad[0]} is out of range (allowed: 0 <= seed < 2**32)")
    if len(set(seeds)) != len(seeds):
        dup = next(s for s in seeds if seeds.count(s) > 1)
        raise UserError(f"--seeds: seed {dup} is listed twice; list each seed once")
    return seeds


def _positive(flag: str, value: int | None) -> int | None:
    if value is not None and value < 1:
        raise UserError(f"{flag}: expected a whole number >= 1, got {value} (e.g. {flag} 2)")
    return value


MAX_JOBS_PER_CPU = 4
MAX_SEEDS = 10  # default cap of `repro run --seeds auto`
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def _jobs(value: int | None) -> int | None:
    """``--jobs``: >= 1 and at most 4x the CPU count (more processes only thrash)."""
    _positive("--jobs", value)
    cap = MAX_JOBS_PER_CPU * (os.cpu_count() or 1)
    if value is not None and value > cap:
        raise UserError(f"--jobs: {value} is more than {MAX_JOBS_PER_CPU}x the {os.cpu_count()} "
                        f"CPUs of this machine (allowed: 1..{cap}); use e.g. --jobs "
                        f"{os.cpu_count() or 1}")
    return value


def _arms(text: str | None) -> list[str] | None:
    """``--arm a,b``; an empty name (``--arm ''``, ``a,,b``) is refused, never "every arm"."""
    if text is None:
        return None
    arms = [a.strip() for a in text.split(",")]
    if not all(arms):
        raise UserError(f"--arm: empty arm name in {text!r}; give arm names separated by commas "
                        "(see `repro show NAME`), or leave --arm out for every arm")
    return arms


def _check_overrides(args) -> None:
    """``--set``: each key once (the last would silently win)."""
    from repro.config import parse_override

    seen: dict[str, str] = {}
    for text in getattr(args, "set", None) or []:
        key, _ = parse_override(text)
        if key in seen:
            raise UserError(f"--set: key {key} is given twice ({seen[key]!r} and {text!r}); "
                            "give each key once")
        seen[key] = text


def _warn_exposed(host: str, what: str, port: int) -> None:
    """A non-loopback --host serves the store to the network: say so."""
    import ipaddress

    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        print(f"[repro] warning: --host {host} is not a loopback address: anyone who can reach "
              f"this machine on port {port} can read and change the {what} (no authentication); "
              "use the default 127.0.0.1 and an SSH tunnel unless that is intended",
              file=sys.stderr)


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
    from repro.compute import fmt_count, model_count
    from repro.config import to_dict

    exp = _experiment(args)
    overrides = args.set or []
    only = _arms(args.arm)
    for a in only or []:
        exp.arm(a)  # unknown arm -> one line with close matches
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
        from repro.config import ConfigError

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
    if args.verbose:
        import json

        for arm in shown:
            print(f"--- {arm.name}")
            print(json.dumps(to_dict(exp.run_config(arm, overrides)), indent=1))
    return 0


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
    from repro.compute import fmt_count

    return f" = {tokens / max(n, 1):.2f} epochs of {fmt_count(n)} train tokens"


def _all_experiments(args) -> list:
    from repro.experiments.base import EXPERIMENTS, load_experiments

    load_experiments()
    return [_experiment(argparse.Namespace(**{**vars(args), "name": n}))
            for n in EXPERIMENTS.names()]


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
        outcomes = run_suite(_all_experiments(args), seeds=_parse_seeds(args.seeds),
                             overrides=args.set or [], uri=args.tracking_uri,
                             progress=not args.no_progress, force=args.force,
                             jobs=_jobs(args.jobs),
                             threads=_positive("--threads", args.threads))
        print(f"[repro] done: {len(outcomes)} runs. Next: repro check all --scale {args.scale}")
        return 0
    exp = _experiment(args)
    arms = _arms(args.arm)
    kw = dict(arms=arms, overrides=args.set or [], uri=args.tracking_uri,
              progress=not args.no_progress, force=args.force,
              jobs=_jobs(args.jobs), threads=_positive("--threads", args.threads))
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
        seeds = run_auto_seeds(exp, lambda s: outcomes.extend(run_experiment(exp, seeds=s, **kw)),
                               resolve_uri(args.tracking_uri), args.set or [],
                               _positive("--max-seeds", args.max_seeds
                                         if args.max_seeds is not None else cap))
        outcomes = list({o.run_id: o for o in outcomes}.values())
        print(f"[repro] --seeds auto settled on seeds {','.join(map(str, seeds))}")
    else:
        outcomes = run_experiment(exp, seeds=_parse_seeds(args.seeds), **kw)
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
                                                 seeds=_parse_seeds(args.seeds),
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
                                    seeds=_parse_seeds(args.seeds), partial=args.partial)
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

    exp = _experiment(args)
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


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
            return True
        except OSError:
            return False


SERVE_GRACE_S = 5.0  # after SIGTERM, how long a server gets before SIGKILL


def _signal_group(pgid: int, sig: int) -> bool:
    """Send ``sig`` to process group ``pgid``; False when the group has no process left."""
    try:
        os.killpg(pgid, sig)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def _stop_group(pgid: int, grace: float = SERVE_GRACE_S) -> None:
    """SIGTERM every process of the group, SIGKILL what is left after ``grace`` seconds."""
    import signal
    import time

    if not _signal_group(pgid, signal.SIGTERM):
        return
    end = time.monotonic() + grace
    while time.monotonic() < end:
        if not _signal_group(pgid, 0):
            return
        time.sleep(0.05)
    _signal_group(pgid, signal.SIGKILL)


def _serve(cmd: list[str]) -> int:
    """Run a server command (``mlflow ui``, ``optuna-dashboard``) until it exits or this process
    gets SIGINT / SIGTERM / SIGHUP; then stop the server *and every process it started*.

    The server runs in its own session (process group), so its workers (gunicorn / uvicorn
    children) can be stopped as one group: before, a SIGTERM to ``repro ui`` killed only this
    process and left the server running. Returns the server's exit code, 0 after Ctrl-C, or
    128 + the signal number after SIGTERM / SIGHUP."""
    import signal
    import time

    got: list[int] = []
    procs: list[subprocess.Popen] = []

    def on_signal(signum, frame):
        got.append(signum)
        for p in procs:
            _signal_group(p.pid, signal.SIGTERM)  # the wait below then returns

    sigs = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    old = {s: signal.signal(s, on_signal) for s in sigs}  # before the start: no gap
    try:
        procs.append(subprocess.Popen(cmd, start_new_session=True))
        proc = procs[0]
        if got:  # a signal came while it started
            _signal_group(proc.pid, signal.SIGTERM)
        kill_at = None
        while True:
            try:
                rc = proc.wait(timeout=0.2)
                break
            except subprocess.TimeoutExpired:
                if got and kill_at is None:
                    kill_at = time.monotonic() + SERVE_GRACE_S
                elif kill_at is not None and time.monotonic() > kill_at:
                    _signal_group(proc.pid, signal.SIGKILL)  # it ignored SIGTERM
    finally:
        for p in procs:
            _stop_group(p.pid)  # workers that outlived their parent (or an error above)
        for s, h in old.items():
            signal.signal(s, h)
    if got:
        print(f"[repro] stopped the server ({signal.Signals(got[0]).name})", file=sys.stderr)
        return 0 if got[0] == signal.SIGINT else 128 + got[0]
    return rc


def cmd_ui(args) -> int:
    from repro.tracking.store import resolve_uri

    uri = resolve_uri(args.tracking_uri)
    if not 1 <= args.port <= 65535:
        raise UserError(f"--port: {args.port} is not a valid port (1-65535)")
    if not _port_free(args.host, args.port):
        raise UserError(f"--port: {args.host}:{args.port} is already in use; pass another "
                        "--port")
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", args.host,
           "--port", str(args.port)]
    if uri.startswith("sqlite:"):
        from repro.tracking.store import artifact_root

        cmd += ["--default-artifact-root", artifact_root()]
    _warn_exposed(args.host, "MLflow store", args.port)
    print(f"[repro] MLflow UI on http://{args.host}:{args.port} (store {uri}); Ctrl-C to stop")
    if args.dry_run:
        print(" ".join(cmd))
        return 0
    return _serve(cmd)


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


def cmd_dashboard(args) -> int:
    import importlib.util
    import shutil

    from repro.sweeps.study import default_storage, redact

    if importlib.util.find_spec("optuna_dashboard") is None:
        raise UserError("optuna-dashboard is not installed; `pip install optuna-dashboard` "
                        "(or browse the sweep in `repro ui`)")
    storage = args.storage or default_storage()
    if not 1 <= args.port <= 65535:
        raise UserError(f"--port: {args.port} is not a valid port (1-65535)")
    if not _port_free(args.host, args.port):
        raise UserError(f"--port: {args.host}:{args.port} is already in use; pass another --port")
    exe = shutil.which("optuna-dashboard", path=os.path.dirname(sys.executable)) or shutil.which(
        "optuna-dashboard")
    if exe is None:
        raise UserError("optuna-dashboard is installed but its command is not on PATH; "
                        "reinstall it with `pip install optuna-dashboard`")
    cmd = [exe, storage, "--host", args.host, "--port", str(args.port)]
    _warn_exposed(args.host, "Optuna storage", args.port)
    print(f"[repro] Optuna dashboard on http://{args.host}:{args.port} (storage "
          f"{redact(storage)}); Ctrl-C to stop")
    if args.dry_run:
        print(" ".join(redact(c) for c in cmd))
        return 0
    return _serve(cmd)


# --------------------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="repro", description="MoE reproduction harness")
    p.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = p.add_subparsers(dest="cmd", required=True)

    def common(sp, name=True):
        if name:
            sp.add_argument("name", help="experiment name (see `repro ls`); `run` and "
                            "`check` also take `all`")
        sp.add_argument("--scale", default="cpu", help="smoke | cpu | cpu-v1 | gpu (default "
                        "cpu; cpu-v1 = the first, uncalibrated cpu preset)")
        sp.add_argument("--set", action="extend", nargs="+", metavar="KEY=VALUE",
                        help="override a config field, e.g. --set train.max_steps=200")
        sp.add_argument("--tracking-uri", default=None,
                        help="MLflow tracking URI (default: MLFLOW_TRACKING_URI or "
                             "sqlite:///runs/mlflow.db)")
        sp.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)

    sp = sub.add_parser("ls", help="list experiments, FFN blocks and routers")
    sp.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)
    sp.set_defaults(fn=cmd_ls)
    sp = sub.add_parser("show", help="arms, compute accounting and claims of an experiment")
    common(sp)
    sp.add_argument("--arm", help="only these arms in the table (comma-separated; matching "
                    "is still checked over every arm)")
    sp.add_argument("-v", "--verbose", action="store_true", help="print resolved configs")
    sp.set_defaults(fn=cmd_show)
    sp = sub.add_parser("run", help="train every (arm, seed) of an experiment")
    common(sp)
    sp.add_argument("--arm", help="only these arms (comma-separated)")
    sp.add_argument("--seeds", help="comma-separated seeds (default: the experiment's), or "
                    "auto: follow the experiment's registered group-sequential design (one seed "
                    "per look from the planned count to its maximum, HSD alpha spending; "
                    "docs/verdicts.md)")
    sp.add_argument("--max-seeds", type=int, default=None,
                    help="stop --seeds auto earlier than the registered maximum (default: the "
                    f"design's, at most {MAX_SEEDS})")
    sp.add_argument("-v", "--verbose", action="store_true",
                    help="show Lightning's INFO lines and third-party deprecation warnings")
    sp.add_argument("--force", action="store_true", help="retrain even if a finished run exists")
    sp.add_argument("--no-progress", action="store_true", help="no progress bars")
    sp.add_argument("--jobs", type=int, default=1,
                    help="train this many (arm, seed) runs at once, one process each "
                         "(default 1); logs in runs/logs/NAME/SCALE/")
    sp.add_argument("--threads", type=int, default=None,
                    help="intra-op threads per --jobs process (default: cores // jobs)")
    sp.set_defaults(fn=cmd_run)
    sp = sub.add_parser("doctor", help="mark runs left RUNNING by a dead process FAILED")
    sp.add_argument("name", nargs="?", default=None, help="only this experiment (default: all)")
    sp.add_argument("--tracking-uri", default=None)
    sp.add_argument("--killed", action="store_true", help="mark them KILLED instead of FAILED")
    sp.add_argument("--dry-run", action="store_true", help="only list them")
    sp.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)
    sp.set_defaults(fn=cmd_doctor)
    sp = sub.add_parser("check", help="evaluate claims over seeds, write results/NAME/")
    common(sp)
    sp.add_argument("--seeds", help="comma-separated seeds (default: the experiment's, plus "
                    "seeds that every arm finished)")
    sp.add_argument("--arm", help=argparse.SUPPRESS)  # refused with the reason (cmd_check)
    sp.add_argument("--partial", action="store_true",
                    help="with some (arm, seed) runs missing, overwrite a complete result "
                         "anyway (the new one is marked partial)")
    sp.set_defaults(fn=cmd_check)
    sp = sub.add_parser("report", help="regenerate results/README.md over all experiments "
                        "(reads results/ only)")
    sp.add_argument("--tracking-uri", default=None, help=argparse.SUPPRESS)  # refused: cmd_report
    sp.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)
    sp.set_defaults(fn=cmd_report)
    sp = sub.add_parser("verify", help="recompute every committed verdict, adjustment and "
                        "lock hash from results/ alone (no store, no training)")
    sp.add_argument("name", nargs="?", default=None, help="only this experiment")
    sp.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)
    sp.set_defaults(fn=cmd_verify)
    sp = sub.add_parser("lock", help="register an experiment's claims: write "
                        "results/NAME/SCALE/lock.json (before its runs)")
    sp.add_argument("name", help="experiment name")
    sp.add_argument("--scale", default="cpu")
    sp.add_argument("--status", default="locked before runs",
                    help="what the lock says about its timing (default: locked before runs)")
    sp.add_argument("--force", action="store_true", help="replace an existing lock")
    sp.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)
    sp.set_defaults(fn=cmd_lock)
    sp = sub.add_parser("ui", help="MLflow UI on the same store (127.0.0.1 by default)")
    sp.add_argument("--port", type=int, default=5000)
    sp.add_argument("--host", default="127.0.0.1")
    sp.add_argument("--tracking-uri", default=None)
    sp.add_argument("--dry-run", action="store_true", help="print the command, do not start")
    sp.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)
    sp.set_defaults(fn=cmd_ui)
    sp = sub.add_parser("sweep", help="Optuna sweep of one arm (resumable, parallel, in MLflow)")
    common(sp)
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
    sp.set_defaults(fn=cmd_sweep)
    sp = sub.add_parser("dashboard", help="optuna-dashboard on the sweep storage (127.0.0.1)")
    sp.add_argument("--storage", default=None, help="Optuna storage URL (default runs/optuna.db)")
    sp.add_argument("--port", type=int, default=8080)
    sp.add_argument("--host", default="127.0.0.1")
    sp.add_argument("--dry-run", action="store_true", help="print the command, do not start")
    sp.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)
    sp.set_defaults(fn=cmd_dashboard)
    sp = sub.add_parser("bench", help="dispatch speed: MoE vs dense at equal activated FLOPs")
    from repro.bench.cli import add_arguments

    add_arguments(sp)
    sp.set_defaults(fn=cmd_bench)
    return p


def main(argv: list[str] | None = None) -> int:
    # glibc: keep big tensors in the heap instead of fresh mmaps each step (references.md §Perf)
    os.environ.setdefault("MALLOC_MMAP_MAX_", "0")
    parser = build_parser()
    args = parser.parse_args(argv)
    # `repro --debug CMD` too: each subparser's own --debug default would otherwise overwrite it
    args.debug = args.debug or "--debug" in (sys.argv[1:] if argv is None else argv)
    try:
        _check_overrides(args)
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
        # both classes exist only if their modules were imported (see _user_errors)
        RunInterrupted = getattr(sys.modules.get("repro.lit.checkpoint"), "RunInterrupted", ())
        RunFailed = getattr(sys.modules.get("repro.experiments.runner"), "RunFailed", ())
        if RunInterrupted and isinstance(e, RunInterrupted) and not args.debug:
            print(f"repro: {e}", file=sys.stderr)
            return 128 + e.signum
        if RunFailed and isinstance(e, RunFailed) and not args.debug:
            print(f"repro: error: {e}", file=sys.stderr)
            return 1
        if args.debug or not isinstance(e, _user_errors()):
            if not args.debug:
                print(f"repro: internal error: {type(e).__name__}: {e} (rerun with --debug for "
                      "the traceback)", file=sys.stderr)
                return 1
            raise
        print(f"repro: error: {e}", file=sys.stderr)
        return EXIT_USER


if __name__ == "__main__":
    # `python -m repro.cli` runs this file as __main__; use the imported repro.cli instead, so
    # that UserError raised by modules that import it is the class main() catches
    from repro.cli import main as _main

    sys.exit(_main())
