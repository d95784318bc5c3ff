"""``repro.procs``: liveness of a pid (dead, zombie, reused) and the inter-process file lock,
with real processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from repro.procs import file_lock, pid_alive, process_start_time


def test_this_process_is_alive_and_started_in_the_past():
    assert pid_alive(os.getpid())
    t = process_start_time(os.getpid())
    assert t is not None and t <= time.time() + 1
    assert not pid_alive(0) and not pid_alive(-1)


def test_an_exited_process_is_dead_and_a_zombie_too():
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    end = time.monotonic() + 20
    while pid_alive(p.pid) and time.monotonic() < end:  # exited, not reaped yet: a zombie
        time.sleep(0.05)
    assert not pid_alive(p.pid)
    p.wait()
    assert not pid_alive(p.pid)


def test_a_pid_that_started_after_the_owner_took_it_is_a_reused_pid():
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        started = process_start_time(p.pid)
        assert started is not None
        assert pid_alive(p.pid, started_before=started + 1)
        # an owner that took the run an hour before this process existed: not the same process
        assert not pid_alive(p.pid, started_before=started - 3600)
    finally:
        p.kill()
        p.wait()


# this checkout's ``repro`` in the children, whatever their working directory
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [
    str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH")]))}

WAITER = """
import sys
from repro.procs import file_lock
with file_lock(sys.argv[1], on_wait=lambda holder: print("held by", holder, flush=True)):
    print("acquired", flush=True)
"""


def test_file_lock_makes_a_second_process_wait_and_names_the_holder(tmp_path):
    path = tmp_path / "x.lock"
    with file_lock(path):
        p = subprocess.Popen([sys.executable, "-c", WAITER, str(path)], stdout=subprocess.PIPE,
                             text=True, env=ENV)
        try:
            first = p.stdout.readline().strip()
            assert first.startswith(f"held by pid {os.getpid()} on ")
            time.sleep(0.3)
            assert p.poll() is None  # still waiting while we hold the lock
        except BaseException:
            p.kill()
            raise
    assert p.stdout.readline().strip() == "acquired"
    assert p.wait(timeout=20) == 0


def test_a_lock_is_released_when_its_holder_is_killed(tmp_path):
    path = tmp_path / "y.lock"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom repro.procs import file_lock\n"
         "with file_lock(sys.argv[1]):\n    print('in', flush=True); time.sleep(60)",
         str(path)], stdout=subprocess.PIPE, text=True, env=ENV)
    try:
        assert holder.stdout.readline().strip() == "in"
        holder.kill()
        holder.wait()
        t0 = time.monotonic()
        with file_lock(path):  # the kernel dropped the dead holder's flock
            assert time.monotonic() - t0 < 5
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
