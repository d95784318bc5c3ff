"""MLflow store access and run hierarchy; re-exports every tag / metric name (``names``).

MLflow experiment = repro experiment. One run per (arm, seed), named ``ARM-sSEED-SCALE`` and
tagged with the experiment version, arm, seed, git SHA, config hash, run key and scale. A finished
run with the same run key (arm config + recipe + data fingerprint + seed) is reused instead of
retrained; runs are always found by tags, never by name (older runs are named ``ARM-sSEED``).
"""

from __future__ import annotations

import contextlib
import functools
import os
import subprocess
from pathlib import Path

from repro.errors import UserError
from repro.paths import runs_dir

# every tag / metric / table name: repro.tracking.names (re-exported here as ts.T_*, ts.M_*, ...)
from repro.tracking.names import *  # noqa: F403
from repro.tracking.names import (
    EXPERIMENT_KIND_TRAINING,
    ROLE_TRAIN,
    T_ARM,
    T_EXPERIMENT_KIND,
    T_FAIL,
    T_HOST,
    T_KEY,
    T_KIND,
    T_NOTE,
    T_PID,
    T_PID_SINCE,
    T_SCALE,
    T_SEED,
    T_SHARED_VIEW,
)

CHECKED_BY_MAX = 50  # ... at most this many summary run ids in T_CHECKED_BY (33 characters each)
TAG_MAX = 8000  # characters in one MLflow tag value


def run_name(stem: str, scale: str) -> str:
    """The MLflow run name: ``stem`` plus the scale (``dense-s0-smoke``, ``summary-cpu``), so runs
    of different scales never look alike in the runs table. Display only: lookups use tags."""
    return f"{stem}-{scale}"


def join_ids(ids: list[str]) -> str:
    """Comma-separated run ids, as many as fit in one tag value (from the front)."""
    out = ""
    for i in ids:
        nxt = f"{out},{i}" if out else i
        if len(nxt) > TAG_MAX:
            break
        out = nxt
    return out


class TrackingError(UserError, RuntimeError):
    """The tracking store cannot be used (unreachable server, unwritable directory)."""


def default_uri() -> str:
    return f"sqlite:///{runs_dir() / 'mlflow.db'}"


def resolve_uri(override: str | None = None) -> str:
    uri = override or os.environ.get("MLFLOW_TRACKING_URI") or default_uri()
    if uri.startswith("sqlite:///"):
        path = Path(uri[len("sqlite:///"):])
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise TrackingError(f"tracking store directory {path.parent} is not writable ({e}); "
                                "set REPRO_RUNS_DIR or --tracking-uri to a writable place"
                                ) from None
        if not os.access(path.parent, os.W_OK):
            raise TrackingError(f"tracking store directory {path.parent} is not writable; "
                                "set REPRO_RUNS_DIR or --tracking-uri to a writable place")
        from repro.paths import check_owned

        check_owned(Path(str(path).split("?", 1)[0]), follow=True)  # a FIFO / device: refused
    return uri


def artifact_root() -> str:
    return (runs_dir() / "mlartifacts").as_uri()


# ------------------------------------------------------------------ a store copied or moved
def weights_tag(path: Path) -> str:
    """The ``repro.weights`` tag of a file in the store: its path relative to the store, so a
    copied or moved store finds its own copy (``weights_path``)."""
    try:
        return Path(path).resolve().relative_to(runs_dir().resolve()).as_posix()
    except ValueError:
        return str(path)


def weights_path(tag: str | None) -> Path | None:
    """The file a ``repro.weights`` tag names, resolved in *this* store: relative tags under
    runs_dir(); absolute ones (stores written before tags were relative) by their part from
    ``checkpoints/`` on, falling back to the absolute path only when this store lacks it."""
    if not tag:
        return None
    p = Path(tag)
    if not p.is_absolute():
        return runs_dir() / p
    if "checkpoints" in p.parts:
        i = len(p.parts) - 1 - p.parts[::-1].index("checkpoints")
        mine = runs_dir().joinpath(*p.parts[i:])
        return mine if mine.exists() or not p.exists() else p
    return p


def _own_store_db(uri: str) -> Path | None:
    """The sqlite file of ``uri`` when it is this store's own ``runs/mlflow.db`` (a regular
    file, not a link to a database shared with others); else None."""
    if not uri.startswith("sqlite:///"):
        return None
    db = Path(uri[len("sqlite:///"):].split("?", 1)[0])
    own = runs_dir() / "mlflow.db"
    try:
        if db.resolve() != own.resolve() or own.is_symlink():
            return None
    except OSError:
        return None
    return own


def relocate_artifacts(db: Path) -> list[str]:
    """A store copied or moved keeps its old absolute artifact locations (MLflow stores them
    per experiment and run): point this store's experiments and runs whose locations are an
    ``…/mlartifacts`` root other than ``artifact_root()`` at it, so new artifacts land in this
    store and old ones are read from its copy. Returns the old roots rewritten."""
    import sqlite3

    new = artifact_root()
    con = sqlite3.connect(db, timeout=120)
    try:
        olds = sorted({loc for (loc,) in con.execute(
            "SELECT artifact_location FROM experiments WHERE artifact_location LIKE "
            "'file://%/mlartifacts'") if loc != new})
        if not olds:
            return []
        cols = {t: {r[1] for r in con.execute(f"PRAGMA table_info({t})")}
                for t in ("runs", "logged_models")}
        with con:
            for old in olds:
                con.execute("UPDATE experiments SET artifact_location = ? WHERE "
                            "artifact_location = ?", (new, old))
                for table, col in (("runs", "artifact_uri"),
                                   ("logged_models", "artifact_location")):
                    if col in cols[table]:
                        con.execute(f"UPDATE {table} SET {col} = ? || substr({col}, ?) WHERE "
                                    f"substr({col}, 1, ?) = ?",
                                    (new, len(old) + 1, len(old) + 1, old + "/"))
        with contextlib.suppress(ImportError, AttributeError):  # MLflow's per-run-id cache of
            from mlflow.tracking._tracking_service import utils  # artifact repos: now stale

            utils._artifact_repos_cache.clear()
        return olds
    finally:
        con.close()


_LOCKED = ("database is locked", "database table is locked", "SQLITE_BUSY")


def is_locked_error(e: BaseException) -> bool:
    """sqlite's "database is locked": another process holds the write lock; safe to retry (the
    failed statement's transaction was rolled back)."""
    return any(m in str(e) for m in _LOCKED)


class RetryingClient:
    """An ``MlflowClient`` whose calls retry with backoff while sqlite reports the database
    locked (several ``repro run`` / ``repro sweep`` processes writing to one ``mlflow.db``)."""

    def __init__(self, inner):
        self._inner = inner

    def __getattr__(self, name):
        attr = getattr(self._inner, name)
        if not callable(attr):
            return attr
        from repro.tracking.locks import retry

        @functools.wraps(attr)
        def call(*args, **kwargs):
            return retry(lambda: attr(*args, **kwargs), is_transient=is_locked_error)

        return call


def _probe_http(uri: str, timeout: float = 5.0) -> None:
    """Fail in seconds, not after MLflow's minutes of HTTP retries, when nothing listens."""
    from repro.net import unreachable

    why = unreachable(uri, timeout)
    if why:
        raise TrackingError(f"tracking URI {uri!r} is unreachable (nothing answers on {why}); "
                            "start the server or pass --tracking-uri / MLFLOW_TRACKING_URI")


def _open_client(uri: str):
    import logging

    from mlflow.tracking import MlflowClient

    # "Creating initial MLflow database tables..." and alembic's migration chatter on first use
    for name in ("mlflow.store.db.utils", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)

    c = RetryingClient(MlflowClient(tracking_uri=uri))
    c.search_experiments(max_results=1)  # creates / migrates a sqlite store on first use
    return c


@functools.lru_cache(maxsize=8)
def client(uri: str):
    import mlflow

    mlflow.set_tracking_uri(uri)
    try:
        if uri.startswith("sqlite:///"):
            # concurrent first use of a fresh sqlite file races in MLflow's schema migration
            from repro.procs import file_lock

            db = Path(uri[len("sqlite:///"):].split("?", 1)[0])
            with file_lock(db.parent / f".{db.name}.init.lock"):
                c = _open_client(uri)
                own = _own_store_db(uri)
                moved = relocate_artifacts(own) if own is not None else []
            for old in moved:
                import sys

                print(f"[repro] this store was copied or moved from {old[len('file://'):]}: "
                      f"its artifact locations now point at {artifact_root()[len('file://'):]}",
                      file=sys.stderr, flush=True)
        else:
            if uri.startswith(("http://", "https://")):
                _probe_http(uri)
            c = _open_client(uri)
    except TrackingError:
        client.cache_clear()
        raise
    except Exception as e:  # noqa: BLE001 - any failure here means the store is unusable
        client.cache_clear()
        msg = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
        if uri.startswith("sqlite:"):  # a local file: never "unreachable", never "a server"
            raise TrackingError(_sqlite_failure(uri, msg)) from None
        raise TrackingError(f"tracking URI {uri!r} is unreachable ({msg}); start the server or "
                            "pass --tracking-uri / MLFLOW_TRACKING_URI") from None
    return c


CORRUPT_SQLITE = ("file is not a database", "malformed", "corrupt", "no such table",
            "file is encrypted")


def _sqlite_failure(uri: str, msg: str) -> str:
    """What an unusable sqlite store is, and the fix (corrupt vs. otherwise unopenable)."""
    db = uri.split(":///", 1)[-1].split("?", 1)[0]
    if any(m in msg for m in CORRUPT_SQLITE):
        return (f"tracking store {db} is corrupt or not an MLflow database ({msg}); move it "
                f"aside (mv {db} {db}.corrupt) to start an empty store, or restore it from a "
                "backup")
    return (f"tracking store {db} cannot be opened ({msg}); check the file (permissions, a "
            "database of a newer MLflow) or pass --tracking-uri / MLFLOW_TRACKING_URI")


def experiment_tags(description: str | None = None) -> dict[str, str]:
    """What every repro experiment carries in MLflow: the experiment kind that opens the UI in
    its model-training view (runs table, charts; not the GenAI "Evaluations" view MLflow 3
    shows an untagged experiment in) and, when given, the description the UI shows above the
    runs table (markdown)."""
    tags = {T_EXPERIMENT_KIND: EXPERIMENT_KIND_TRAINING}
    if description:
        tags[T_NOTE] = description[:TAG_MAX]
    return tags


def ensure_experiment(uri: str, name: str, description: str | None = None) -> str:
    """The MLflow experiment ``name`` (created if missing) with ``experiment_tags`` set; an
    existing experiment is updated where its tags differ (older stores, a changed claim)."""
    c = client(uri)
    want = experiment_tags(description)
    exp = c.get_experiment_by_name(name)
    if exp is None:
        try:
            loc = artifact_root() if uri.startswith("sqlite:") or uri.startswith("file:") else None
            return c.create_experiment(name, artifact_location=loc, tags=want)
        except Exception:  # noqa: BLE001 - created concurrently by another process
            exp = c.get_experiment_by_name(name)
            if exp is None:
                raise
    for k, v in want.items():
        if exp.tags.get(k) != v:
            c.set_experiment_tag(exp.experiment_id, k, v)
    return exp.experiment_id


def save_columns_view(c, experiment_id: str, key: str, tag_columns: list[str]) -> None:
    """Save a runs-table view of the experiment under ``key`` whose columns are the tags
    ``tag_columns`` (the UI opens it from ``.../runs?viewStateShareKey=KEY``). The state is the
    UI's own (MLflow 3.x): its defaults, with these columns selected."""
    import json

    state = {"searchFilter": "", "orderByKey": "attributes.start_time", "orderByAsc": False,
             "startTime": "ALL", "lifecycleFilter": "Active", "datasetsFilter": [],
             "modelVersionFilter": "All Runs",
             "selectedColumns": [f"tags.`{t}`" for t in tag_columns], "columnOrder": [],
             "columnWidths": {}, "runsExpanded": {}, "runsPinned": [], "runsHidden": [],
             "runsVisibilityMap": {}, "runsHiddenMode": "FIRST_10_RUNS", "viewMaximized": False,
             "runListHidden": False, "isAccordionReordered": False,
             "useGroupedValuesInCharts": True, "hideEmptyCharts": True, "groupBy": None,
             "groupsExpanded": {}, "autoRefreshEnabled": True,
             "globalLineChartConfig": {"xAxisKey": "step", "lineSmoothness": 0,
                                       "selectedXAxisMetricKey": ""}}
    c.set_experiment_tag(experiment_id, T_SHARED_VIEW + key, json.dumps(state))


def search_runs(uri: str, experiment: str | None, filter_string: str = "", statuses=None):
    """Runs of one MLflow experiment (or of all of them when ``experiment`` is None)."""
    c = client(uri)
    if experiment is None:
        ids = [e.experiment_id for e in c.search_experiments()]
    else:
        exp = c.get_experiment_by_name(experiment)
        if exp is None:
            return []
        ids = [exp.experiment_id]
    if not ids:
        return []
    runs = []
    token = None
    while True:
        page = c.search_runs(ids, filter_string=filter_string, max_results=1000,
                             page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            break
    if statuses:
        runs = [r for r in runs if r.info.status in statuses]
    return runs


def finished_train_runs(uri: str, scale: str) -> set[tuple[str, str, int]]:
    """(experiment, arm, seed) of every FINISHED training run at ``scale``, by tags only. Used
    to refuse an incomplete grid fast (``check.refuse_incomplete_fast``): on a sqlite store it
    reads the database directly (no MLflow import, well under a second); elsewhere it asks the
    store."""
    if uri.startswith("sqlite:///"):
        import sqlite3

        db = Path(uri[len("sqlite:///"):])
        if not db.exists():
            return set()
        try:
            con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
            try:
                rows = con.execute(
                    "SELECT e.name, t.run_uuid, t.key, t.value FROM tags t "
                    "JOIN runs r ON r.run_uuid = t.run_uuid "
                    "JOIN experiments e ON e.experiment_id = r.experiment_id "
                    "WHERE r.status = 'FINISHED' AND r.lifecycle_stage = 'active' "
                    "AND t.key IN (?, ?, ?, ?)",
                    (T_ARM, T_SEED, T_SCALE, T_KIND)).fetchall()
            finally:
                con.close()
        except sqlite3.Error:  # an older or foreign schema: ask MLflow instead
            rows = None
        if rows is not None:
            tags: dict[str, dict[str, str]] = {}
            for name, run, k, v in rows:
                tags.setdefault(run, {"": name})[k] = v
            return {(t[""], t[T_ARM], int(t[T_SEED])) for t in tags.values()
                    if t.get(T_SCALE) == scale and t.get(T_KIND, ROLE_TRAIN) == ROLE_TRAIN
                    and T_ARM in t and str(t.get(T_SEED, "")).isdigit()}
    c = client(uri)
    names = {e.experiment_id: e.name for e in c.search_experiments()}
    runs = search_runs(uri, None, f"tags.`{T_SCALE}` = '{scale}'", statuses=("FINISHED",))
    return {(names.get(r.info.experiment_id, ""), r.data.tags[T_ARM], int(r.data.tags[T_SEED]))
            for r in runs if r.data.tags.get(T_KIND, ROLE_TRAIN) == ROLE_TRAIN
            and T_ARM in r.data.tags and str(r.data.tags.get(T_SEED, "")).isdigit()}


def finished_arm_seeds(uri: str, experiment: str, scale: str) -> set[tuple[str, int]]:
    """The (arm, seed) pairs with a FINISHED training run in ``experiment``'s own MLflow
    experiment at ``scale`` (by tags; runs shared from another experiment are not counted)."""
    return {(a, s) for e, a, s in finished_train_runs(uri, scale) if e == experiment}


def find_finished(uri: str, experiment: str | None, run_key: str):
    """A FINISHED training run with this run key, in ``experiment`` or (None) in any experiment:
    a run key fixes config, data and seed, so one run serves every experiment that needs it."""
    runs = search_runs(uri, experiment,
                       f"tags.`{T_KEY}` = '{run_key}' and tags.`{T_KIND}` = '{ROLE_TRAIN}'",
                       statuses=("FINISHED",))
    # the newest wins: `repro run --force` retrains a run key and supersedes the older run
    return max(runs, key=lambda r: r.info.start_time or 0) if runs else None


def find_resumable(uri: str, run_key: str):
    """The latest unfinished training run with this run key that no live process owns: FAILED,
    KILLED, or RUNNING with a dead pid on this host. Call with the run key's lock held."""
    runs = search_runs(uri, None,
                       f"tags.`{T_KEY}` = '{run_key}' and tags.`{T_KIND}` = '{ROLE_TRAIN}'",
                       statuses=("RUNNING", "FAILED", "KILLED"))
    runs = [r for r in runs if r.info.status != "RUNNING" or is_stale(r)]
    return max(runs, key=lambda r: r.info.start_time or 0) if runs else None


def is_stale(run) -> bool:
    """A RUNNING run whose process (tags repro.pid + repro.host) is gone. Runs of other hosts or
    without a pid tag are never judged stale (we cannot see their processes)."""
    import socket

    from repro.procs import pid_alive

    if run.info.status != "RUNNING":
        return False
    host, pid = run.data.tags.get(T_HOST), run.data.tags.get(T_PID)
    if host != socket.gethostname() or not (pid or "").isdigit() or int(pid) == os.getpid():
        return False
    # the owner's process must have started before it took the run: a later process with the
    # same pid is a reused pid. A resumed run's owner took it at T_PID_SINCE, long after the
    # run's own start time (comparing with that marked live resumed runs dead)
    since = run.data.tags.get(T_PID_SINCE)
    try:
        started = float(since) if since else (run.info.start_time or 0) / 1000 or None
    except ValueError:
        started = (run.info.start_time or 0) / 1000 or None
    return not pid_alive(int(pid), started_before=started)


def mark_stale(uri: str, experiment: str | None = None, status: str = "FAILED",
               dry_run: bool = False, filter_string: str = "", reason=None,
               tags: dict | None = None) -> list:
    """Mark RUNNING runs whose process died (see ``is_stale``; a live process's run is never
    touched) as ``status`` with a ``repro.failure_reason``; returns those runs.
    ``experiment=None``: every experiment; ``filter_string`` narrows the search (MLflow syntax);
    ``reason(run) -> str`` replaces the default reason; ``tags`` are set on each marked run."""
    stale = [r for r in search_runs(uri, experiment, filter_string, statuses=("RUNNING",))
             if is_stale(r)]
    if not dry_run:
        c = client(uri)
        for r in stale:
            why = reason(r) if reason is not None else (
                f"process {r.data.tags.get(T_PID)} on {r.data.tags.get(T_HOST)} died while "
                "the run was RUNNING")
            c.set_tag(r.info.run_id, T_FAIL, why[:400])
            for k, v in (tags or {}).items():
                c.set_tag(r.info.run_id, k, v)
            c.set_terminated(r.info.run_id, status)
    return stale


def metric_history(uri: str, run_id: str, key: str) -> list[tuple[int, float]]:
    hist = client(uri).get_metric_history(run_id, key)
    by_step: dict[int, float] = {}
    for m in sorted(hist, key=lambda m: (m.step, m.timestamp)):
        by_step[m.step] = m.value  # last write per step wins
    return sorted(by_step.items())


@functools.lru_cache(maxsize=1)
def git_sha() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], capture_output=True,
                             text=True, timeout=5, cwd=Path(__file__).resolve().parents[2])
        sha = out.stdout.strip()
        if not sha:
            return "unknown"
        # "-dirty" means changed code: results/ (rewritten by `repro check` itself) is ignored
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--",
                                ".", ":(exclude)results"],
                               capture_output=True, text=True, timeout=5,
                               cwd=Path(__file__).resolve().parents[2]).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
