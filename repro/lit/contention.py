"""What else used the machine while a run trained, so a contended run is visible next to its
throughput: the 1-minute load average and the other repro processes that train or benchmark
(``repro run`` / ``sweep`` / ``bench`` children and ``python -m repro.bench.*``), sampled every
few steps by ``repro.lit.callbacks.Throughput``. Linux ``/proc``; elsewhere the peers are unknown
(empty) and only the load average is sampled. Stdlib only.
"""

from __future__ import annotations

import os
from pathlib import Path

PROC = Path("/proc")
_VERBS = ("run", "sweep", "bench")


def _argv(pid_dir: Path) -> list[str]:
    try:
        raw = (pid_dir / "cmdline").read_bytes()
    except OSError:
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def peer_label(argv: list[str]) -> str | None:
    """"run moe-vs-dense --arm dense --seeds 0" for a repro process that trains or benchmarks,
    else None. A ``--jobs N`` (N > 1) parent only waits for its children: not a peer."""
    joined = " ".join(argv)
    if "repro.bench." in joined:  # python -m repro.bench.lm_throughput ...
        mod = next(a for a in argv if a.startswith("repro.bench."))
        return "bench " + mod.removeprefix("repro.bench.")
    if "repro" not in joined:
        return None
    verb = next((i for i, a in enumerate(argv) if a in _VERBS), None)
    if verb is None or not any(("repro" in a) for a in argv[:verb]):
        return None
    rest = argv[verb:]
    if "--jobs" in rest:
        i = rest.index("--jobs")
        if i + 1 < len(rest) and rest[i + 1].isdigit() and int(rest[i + 1]) > 1:
            return None
    keep, skip = [rest[0]], False
    for i, a in enumerate(rest[1:], 1):
        if skip:
            skip = False
            continue
        if a in ("--arm", "--seeds", "--scale"):
            keep.extend(rest[i:i + 2])
            skip = True
        elif not a.startswith("-") and len(keep) == 1:
            keep.append(a)  # the experiment name
    return " ".join(keep)


def training_peers(proc: Path = PROC, me: int | None = None) -> dict[int, str]:
    """pid -> label of the other repro training / benchmark processes now alive (not ``me`` and
    not its ancestors)."""
    me = os.getpid() if me is None else me
    skip = {me, *_ancestors(proc, me)}
    out: dict[int, str] = {}
    try:
        entries = list(proc.iterdir())
    except OSError:
        return out
    for d in entries:
        if not d.name.isdigit() or int(d.name) in skip:
            continue
        label = peer_label(_argv(d))
        if label is not None:
            out[int(d.name)] = label
    return out


def _ancestors(proc: Path, pid: int) -> list[int]:
    out = []
    for _ in range(64):
        try:
            stat = (proc / str(pid) / "stat").read_text()
        except OSError:
            break
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid <= 1:
            break
        out.append(ppid)
        pid = ppid
    return out


class ContentionSampler:
    """Accumulates load-average and peer samples; ``summary()`` gives what a run logs."""

    def __init__(self, proc: Path = PROC):
        self.proc = proc
        self.loads: list[float] = []
        self.peers_max = 0
        self.labels: set[str] = set()

    def sample(self) -> None:
        try:
            self.loads.append(os.getloadavg()[0])
        except OSError:
            pass
        peers = training_peers(self.proc)
        self.peers_max = max(self.peers_max, len(peers))
        self.labels.update(peers.values())

    def summary(self) -> dict:
        loads = self.loads or [float("nan")]
        return {"load_mean": sum(loads) / len(loads), "load_max": max(loads),
                "peers_max": self.peers_max, "peers": sorted(self.labels)}

    def state_dict(self) -> dict:
        return {"loads": list(self.loads), "peers_max": self.peers_max,
                "labels": sorted(self.labels)}

    def load_state_dict(self, state: dict) -> None:
        self.loads = [float(x) for x in state.get("loads", [])]
        self.peers_max = int(state.get("peers_max", 0))
        self.labels = set(state.get("labels", []))
