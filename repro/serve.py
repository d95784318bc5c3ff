"""``repro ui`` and ``repro dashboard``: serve the MLflow store or the Optuna storage on a local
port, and stop the server and every process it started when this process is stopped.

Standard library only at import time (``repro.cli`` imports nothing heavy to parse a command line).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from repro.errors import UserError


def warn_exposed(host: str, what: str, port: int) -> None:
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


def port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
            return True
        except OSError:
            return False


SERVE_GRACE_S = 5.0  # after SIGTERM, how long a server gets before SIGKILL


def check_port(host: str, port: int) -> None:
    """``--port``: a valid port that nothing listens on yet (one line otherwise)."""
    if not 1 <= port <= 65535:
        raise UserError(f"--port: {port} is not a valid port (1-65535)")
    if not port_free(host, port):
        raise UserError(f"--port: {host}:{port} is already in use; pass another --port")


def signal_group(pgid: int, sig: int) -> bool:
    """Send ``sig`` to process group ``pgid``; False when the group has no process left."""
    try:
        os.killpg(pgid, sig)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def stop_group(pgid: int, grace: float = SERVE_GRACE_S) -> None:
    """SIGTERM every process of the group, SIGKILL what is left after ``grace`` seconds."""
    import signal
    import time

    if not signal_group(pgid, signal.SIGTERM):
        return
    end = time.monotonic() + grace
    while time.monotonic() < end:
        if not signal_group(pgid, 0):
            return
        time.sleep(0.05)
    signal_group(pgid, signal.SIGKILL)


def serve(cmd: list[str], env: dict | None = None) -> int:
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
            signal_group(p.pid, signal.SIGTERM)  # the wait below then returns

    sigs = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    old = {s: signal.signal(s, on_signal) for s in sigs}  # before the start: no gap
    try:
        procs.append(subprocess.Popen(cmd, start_new_session=True, env=env))
        proc = procs[0]
        if got:  # a signal came while it started
            signal_group(proc.pid, signal.SIGTERM)
        kill_at = None
        while True:
            try:
                rc = proc.wait(timeout=0.2)
                break
            except subprocess.TimeoutExpired:
                if got and kill_at is None:
                    kill_at = time.monotonic() + SERVE_GRACE_S
                elif kill_at is not None and time.monotonic() > kill_at:
                    signal_group(proc.pid, signal.SIGKILL)  # it ignored SIGTERM
    finally:
        for p in procs:
            stop_group(p.pid)  # workers that outlived their parent (or an error above)
        for s, h in old.items():
            signal.signal(s, h)
    if got:
        print(f"[repro] stopped the server ({signal.Signals(got[0]).name})", file=sys.stderr)
        return 0 if got[0] == signal.SIGINT else 128 + got[0]
    return rc


def ui_main(args) -> int:
    from repro.tracking.store import resolve_uri

    uri = resolve_uri(args.tracking_uri)
    check_port(args.host, args.port)
    # the registry store named (MLflow otherwise says "Registry store URI not provided")
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri,
           "--registry-store-uri", uri, "--host", args.host, "--port", str(args.port)]
    if uri.startswith("sqlite:"):
        from repro.tracking.store import artifact_root

        cmd += ["--default-artifact-root", artifact_root()]
    warn_exposed(args.host, "MLflow store", args.port)
    base = f"http://{args.host}:{args.port}"
    # MLflow 3's UI opens in its GenAI view unless asked (its sidebar switch, remembered by the
    # browser, or this URL parameter); the experiments' mlflow.experimentKind tag says the same
    print(f"[repro] MLflow UI on {base}/#/experiments?{UI_TRAINING_VIEW} (store {uri}); "
          "Ctrl-C to stop")
    if not args.dry_run:
        for name, url in verdict_view_urls(uri, base):
            print(f"[repro]   {name}: verdicts as columns: {url}")
    if args.dry_run:
        print(" ".join(cmd))
        return 0
    # the server's own start-up noise that MLflow lets us drop: Starlette's deprecation of the
    # WSGI middleware MLflow still imports (one per worker)
    env = dict(os.environ, PYTHONWARNINGS="ignore:starlette.middleware.wsgi is deprecated")
    return serve(cmd, env)


UI_TRAINING_VIEW = "workflowType=machine_learning"  # MLflow 3's model-training view


def verdict_view_urls(uri: str, base: str) -> list[tuple[str, str]]:
    """(experiment, URL) for each experiment with the runs-table view `repro check` saved (the
    summary run's verdict tags as columns: ``ts.VIEW_VERDICTS``)."""
    from repro.tracking import store as ts

    try:
        exps = ts.client(uri).search_experiments()
    except ts.TrackingError:
        return []
    return [(e.name, f"{base}/#/experiments/{e.experiment_id}/runs?{UI_TRAINING_VIEW}&"
                     f"viewStateShareKey={ts.VIEW_VERDICTS}")
            for e in exps if ts.T_SHARED_VIEW + ts.VIEW_VERDICTS in e.tags]


def dashboard_main(args) -> int:
    import importlib.util
    import shutil

    from repro.sweeps.storage import default_storage, redact

    if importlib.util.find_spec("optuna_dashboard") is None:
        raise UserError("optuna-dashboard is not installed; `pip install optuna-dashboard` "
                        "(or browse the sweep in `repro ui`)")
    storage = args.storage or default_storage()
    check_port(args.host, args.port)
    exe = shutil.which("optuna-dashboard", path=os.path.dirname(sys.executable)) or shutil.which(
        "optuna-dashboard")
    if exe is None:
        raise UserError("optuna-dashboard is installed but its command is not on PATH; "
                        "reinstall it with `pip install optuna-dashboard`")
    cmd = [exe, storage, "--host", args.host, "--port", str(args.port)]
    warn_exposed(args.host, "Optuna storage", args.port)
    print(f"[repro] Optuna dashboard on http://{args.host}:{args.port} (storage "
          f"{redact(storage)}); Ctrl-C to stop")
    if args.dry_run:
        print(" ".join(redact(c) for c in cmd))
        return 0
    return serve(cmd)
