"""An MLflow run's lifecycle as one context manager: create (or reopen), then a final status.

    with tracked_run(client, exp_id, tags=..., run_name=...) as run:
        ...  # log params, metrics, artifacts through run.client / run.run_id
    # FINISHED on a clean exit; on an exception the run is marked and the exception goes on:
    #   an interruption (Ctrl-C, SIGTERM, a class in ``interrupts``) -> KILLED
    #   anything else (a diverged loss, a crash)                      -> FAILED
    # each with a one-line ``repro.failure_reason`` tag; ``run.end_as(status, reason)`` ends a
    # clean exit otherwise (a sweep stopped by its time limit with trials left: KILLED)

Reopening (``resume=`` an interrupted run) keeps its run id: this process takes ownership (pid,
host, since) *before* the run shows RUNNING again, so that a concurrent stale check never sees
RUNNING next to the dead previous owner's pid, and the previous failure reason is dropped.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from repro.tracking import store as ts

INTERRUPTED = ("interrupted ({name}); rerun the same command to resume from the last "
               "checkpoint")


def owner_tags() -> dict[str, str]:
    """The tags that say which live process owns a RUNNING run (see ``store.mark_stale``)."""
    return {ts.T_PID: str(os.getpid()), ts.T_HOST: socket.gethostname(),
            ts.T_PID_SINCE: f"{time.time():.3f}"}


@dataclass
class TrackedRun:
    client: object
    run_id: str
    resumed: bool  # an interrupted run reopened, not a fresh one
    outcome: tuple[str, str] | None = None  # (status, reason) for a clean exit (``end_as``)

    def end_as(self, status: str, reason: str) -> None:
        """End the block, when it exits cleanly, as ``status`` with a one-line reason instead of
        FINISHED (e.g. KILLED: a sweep stopped by its time limit with trials left to run)."""
        self.outcome = (status, reason)

    def log_params(self, params: dict) -> None:
        """Params as strings cut to MLflow's 500 characters, in one batch."""
        from mlflow.entities import Param

        self.client.log_batch(self.run_id, params=[Param(k, str(v)[:500])
                                                   for k, v in params.items()])

    def log_json(self, name: str, payload) -> None:
        """``payload`` as the JSON artifact ``name``."""
        with tempfile.TemporaryDirectory() as td:
            p = Path(td) / name
            p.write_text(json.dumps(payload, indent=2))
            self.client.log_artifact(self.run_id, str(p))


def _reopen(client, previous) -> str:
    run_id = previous.info.run_id
    n = int(previous.data.tags.get(ts.T_RESUMES, "0")) + 1
    for k, v in {**owner_tags(), ts.T_GIT: ts.git_sha(), ts.T_RESUMES: str(n)}.items():
        client.set_tag(run_id, k, v)
    client.update_run(run_id, status="RUNNING")
    if ts.T_FAIL in previous.data.tags:
        client.delete_tag(run_id, ts.T_FAIL)
    return run_id


def failure_reason(e: BaseException) -> str:
    """``Type: first line of the message`` (one line, at most ~400 characters)."""
    msg = (str(e).strip().splitlines() or [""])[0]
    return f"{type(e).__name__}: {msg[:400]}"


@contextlib.contextmanager
def tracked_run(client, exp_id: str | None = None, *, tags: dict | None = None,
                run_name: str | None = None, resume=None, interrupts: tuple = ()):
    """Create a run in ``exp_id`` (or reopen ``resume``, a run entity) and yield a TrackedRun;
    set FINISHED, KILLED or FAILED when the block ends (see the module doc). ``interrupts``:
    exception classes that mean a requested stop (their message is the failure reason)."""
    if resume is not None:
        run = TrackedRun(client, _reopen(client, resume), resumed=True)
    else:
        run = TrackedRun(client, client.create_run(exp_id, tags=tags or {},
                                                   run_name=run_name).info.run_id, resumed=False)
    try:
        yield run
    except interrupts as e:
        client.set_tag(run.run_id, ts.T_FAIL, str(e)[:400])
        client.set_terminated(run.run_id, "KILLED")
        raise
    except (KeyboardInterrupt, SystemExit) as e:
        client.set_tag(run.run_id, ts.T_FAIL, INTERRUPTED.format(name=type(e).__name__))
        client.set_terminated(run.run_id, "KILLED")
        raise
    except BaseException as e:
        client.set_tag(run.run_id, ts.T_FAIL, failure_reason(e))
        client.set_terminated(run.run_id, "FAILED")
        raise
    if run.outcome is not None:
        status, reason = run.outcome
        client.set_tag(run.run_id, ts.T_FAIL, reason[:400])
        client.set_terminated(run.run_id, status)
    else:
        client.set_terminated(run.run_id, "FINISHED")
