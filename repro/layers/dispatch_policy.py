"""Which dispatch backend a routed call runs (the policy; the backends themselves, the mechanism,
are ``repro.layers.dispatch``).

Backend policy (``MoEConfig.backend``): a named backend always runs; ``static`` and ``auto`` (the
default) run the rule below, derived from measurement; with ``REPRO_DISPATCH_PROBE=1`` ``auto``
measures each shape instead (opt-in, see "Why the probe is opt-in").

* **Static rule**: expert-major full slots (Expert Choice) -> ``grouped_mm`` on a 1-thread CPU,
  else ``bmm`` (a free view of the sorted rows); token-choice routers -> ``grouped_mm`` where it
  runs; else ``bmm`` while E * (largest group) <= ``BMM_MAX_PAD`` x routed rows; else ``loop``.
  Measured (CPU fp32, D=256, 8192 tokens, activated hidden 2048, fwd+bwd, ratio to the fair
  dense reference): results/bench/cpu-1thread (quiet machine): ``grouped_mm`` beat ``bmm`` in all
  12 token-choice and 3 EC shapes at E8 / E16 / E64 (top-k E64 k8 1.50 vs 1.84, EC E64 1.42 vs
  1.50); results/bench/fair-dense (2 threads, loaded): ``bmm`` won for EC (E8 / E64 1.07 / 1.26
  vs 1.14 / 1.37) and was within 4% for the token-choice routers where it won.
* **What the probe measures** (``REPRO_DISPATCH_PROBE=1``). On the first call of a shape, each
  eligible backend (``grouped_mm`` where it runs; ``bmm`` unless its padding exceeds
  ``BMM_MAX_PAD``; ``loop``) runs ``warmup`` + ``reps`` (1 + 3) times on that call's own input,
  routing and weights, forward + backward when autograd is on (forward only under ``no_grad`` /
  inference mode), in rotating order; the lowest median wall time wins. It runs on detached
  copies with a dense incoming gradient and draws no random numbers, so the real step's graph,
  gradients and RNG stream are untouched, and it is skipped while ``torch.compile`` traces (the
  rule answers, uncached). Numerics do not depend on the choice beyond float rounding: every
  backend gives the same outputs and gradients (tests).
* **Cache key** (``probe_key``): device, compute dtype (autocast's when on), E, D, F, routed rows
  rounded up to a power of two, layout (expert-major full slots / capacity / routed) with the
  ``bmm`` padding rounded up to a power of two, intra-op threads, fwd or fwd+bwd, activation
  name. Decisions live in ``POLICY`` for the process and in
  ``runs/cache/dispatch/auto-torch<version>-<cpu model>.json``: the first process on a machine
  to meet a shape measures it (under a file lock, so concurrent ``--jobs`` processes wait and
  reuse its answer) and every later process, a resumed run included, takes the stored answer, so
  one run stays on one backend across kill/resume. Delete the file to re-measure;
  ``REPRO_DISPATCH_CACHE=0`` keeps decisions in the process only. A malformed file is ignored.
* **Why the probe is opt-in.** In results/bench/cpu-1thread the probe (1 + 3 calls per backend,
  on the first call of each shape) picked ``bmm`` in 4 of 12 token-choice shapes where the timed
  rounds that followed found ``grouped_mm`` faster by 3-23% (top-k E64: probe 1600 vs 1699 ms
  for bmm vs grouped_mm, then 1.84 vs 1.50 in the timed rounds): a first-call measurement of a
  few repetitions does not predict steady-state speed well enough yet, and the rule was right in
  every token-choice shape there.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from repro.layers.dispatch import RUN, Act, Assignments, ExpertWeights, grouped_mm_ok

PROBE_ENV = "REPRO_DISPATCH_PROBE"  # "1": auto measures (opt-in); unset / "0": the static rule
CACHE_ENV = "REPRO_DISPATCH_CACHE"  # "0": auto keeps its decisions in the process only
# static rule: without grouped_mm, bmm while E * (largest group) <= BMM_MAX_PAD * routed rows
BMM_MAX_PAD = 3.0


def static_backend(xf: torch.Tensor, s: Assignments, d_expert: int) -> str:
    """``auto`` without measurement, the rule the probe falls back to (module docstring):
    expert-major full slots (Expert Choice) -> ``bmm`` (a free view); else ``grouped_mm`` where
    this torch build runs it for the device, dtype and widths; else ``bmm`` while the padding to
    the largest group costs at most ``BMM_MAX_PAD`` x the routed rows, else ``loop``."""
    if s.full:  # Expert Choice: its sorted rows already are the [E, C, D] slots
        # results/bench/cpu-1thread (quiet, D=256, 8192 tokens, fwd+bwd): at one CPU thread
        # grouped_mm beat bmm for EC at E8 / E64 (1.085 / 1.424 vs 1.131 / 1.503); at two
        # threads bmm won (results/bench/fair-dense: 1.07 / 1.26 vs 1.14 / 1.37)
        one_thread = xf.device.type == "cpu" and torch.get_num_threads() == 1
        return "grouped_mm" if one_thread and grouped_mm_ok(xf, d_expert) else "bmm"
    if grouped_mm_ok(xf, d_expert):
        return "grouped_mm"
    return "bmm" if padding(s) <= BMM_MAX_PAD else "loop"


def padding(s: Assignments) -> float:
    """Slots over routed rows in the ``bmm`` layout: E * (largest group) / A (1.0 = no padding)."""
    A, E = s.token.numel(), s.counts.numel()
    return E * max(int(s.counts.max()) if A else 0, 1) / max(A, 1)


def eligible(xf: torch.Tensor, s: Assignments, d_expert: int) -> list[str]:
    """The backends worth timing for this call: ``grouped_mm`` where it runs (aligned rows,
    CPU or SM90+), ``bmm`` unless its padding exceeds ``BMM_MAX_PAD`` (then it multiplies the
    expert FLOPs and memory by more than that and cannot win), and ``loop``."""
    names = ["grouped_mm"] if grouped_mm_ok(xf, d_expert) else []
    if s.full or padding(s) <= BMM_MAX_PAD:
        names.append("bmm")
    return names + ["loop"]


def probe_key(xf: torch.Tensor, s: Assignments, w: ExpertWeights, act: Act) -> tuple:
    """What the measured choice depends on: device, compute dtype (autocast's when on), E, D, F,
    the routed rows rounded up to a power of two, the layout (expert-major full slots, capacity,
    or plain routed rows) with its bmm padding rounded up to a power of two, intra-op threads,
    forward-only or forward + backward, and the activation's name."""
    E, D, Fh = w.gate.shape
    dev = xf.device.type
    dtype = torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else xf.dtype
    A = s.token.numel()
    layout = "slots" if s.full else ("capacity" if s.capacity is not None else "routed")
    pad = 0 if s.full else math.ceil(math.log2(max(padding(s), 1.0)) - 1e-9)
    mode = "fwd+bwd" if torch.is_grad_enabled() else "fwd"
    return (str(xf.device), str(dtype).removeprefix("torch."), E, D, Fh,
            1 << max(A - 1, 0).bit_length(), layout, f"pad<=2^{pad}", torch.get_num_threads(),
            mode, getattr(act, "__name__", type(act).__name__))


Timer = Callable[[str, Callable[[], None]], float]


def wall_timer(name: str, fn: Callable[[], None]) -> float:
    """Seconds one call of ``fn`` takes (``fn`` synchronises the device itself)."""
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


@dataclass
class Decision:
    backend: str
    source: str  # "probe", "disk" or "static"
    ms: dict[str, float]  # median milliseconds per backend the probe timed (empty otherwise)


class AutoPolicy:
    """``auto``: time each eligible backend on the call's own shape once, keep the fastest.

    ``timer`` (tests inject a fake) times one call; ``probe`` / ``disk`` override the
    ``REPRO_DISPATCH_PROBE`` / ``REPRO_DISPATCH_CACHE`` environment variables."""

    def __init__(self, timer: Timer = wall_timer, reps: int = 3, warmup: int = 1,
                 probe: bool | None = None, disk: bool | None = None):
        self.timer, self.reps, self.warmup = timer, reps, warmup
        self._probe, self._disk = probe, disk
        self.decisions: dict[tuple, Decision] = {}

    @property
    def probing(self) -> bool:
        return self._probe if self._probe is not None else os.environ.get(PROBE_ENV, "0") == "1"

    @property
    def on_disk(self) -> bool:
        return self._disk if self._disk is not None else os.environ.get(CACHE_ENV, "1") != "0"

    def choose(self, xf: torch.Tensor, s: Assignments, w: ExpertWeights, act: Act) -> str:
        return self.decide(xf, s, w, act).backend

    def decide(self, xf: torch.Tensor, s: Assignments, w: ExpertWeights, act: Act) -> Decision:
        """The cached decision for this call's shape; the first call of a shape measures."""
        d_expert = w.gate.shape[-1]
        if not self.probing:
            return Decision(static_backend(xf, s, d_expert), "static", {})
        key = probe_key(xf, s, w, act)
        hit = self.decisions.get(key)
        if hit is not None:
            return hit
        names = eligible(xf, s, d_expert)
        if len(names) == 1 or torch.compiler.is_compiling():  # never time inside a trace
            return Decision(static_backend(xf, s, d_expert), "static", {})
        with _disk_lock() if self.on_disk else contextlib.nullcontext():
            stored = _disk_load(key) if self.on_disk else None
            if stored in names:
                hit = Decision(stored, "disk", {})
            else:
                ms = self.measure(xf, s, w, act, names)
                if not ms:  # nothing ran: the rule, uncached
                    return Decision(static_backend(xf, s, d_expert), "static", {})
                hit = Decision(min(ms, key=ms.get), "probe", ms)
                if self.on_disk:
                    _disk_store(key, hit.backend)
        self.decisions[key] = hit
        return hit

    def measure(self, xf: torch.Tensor, s: Assignments, w: ExpertWeights, act: Act,
                names: list[str]) -> dict[str, float]:
        """Median ms per backend over ``reps`` interleaved rounds after ``warmup`` calls each,
        forward + backward when autograd is on (forward only otherwise). Runs on detached copies
        of the input, gates and weights, so the real step's graph and gradients are untouched;
        backends that fail on this shape are left out."""
        grad = torch.is_grad_enabled()
        sync = torch.cuda.synchronize if xf.device.type == "cuda" else (lambda: None)

        def step(name: str) -> None:
            with torch.enable_grad() if grad else torch.no_grad():
                x = xf.detach().requires_grad_(grad)  # [N, D]
                ws = ExpertWeights(*(t.detach().requires_grad_(grad) for t in w))
                sd = replace(s, weight=s.weight.detach().requires_grad_(grad))
                y = RUN[name](x, sd, ws, act)  # [N, D]
                if grad:
                    y.backward(y.detach())  # a dense incoming gradient, no RNG drawn
            sync()

        ok = []
        for name in names:
            try:
                for _ in range(self.warmup):
                    step(name)
                ok.append(name)
            except (RuntimeError, NotImplementedError):
                continue
        times: dict[str, list[float]] = {n: [] for n in ok}
        for r in range(self.reps):
            k = r % max(len(ok), 1)  # rotate the order so no backend always runs first
            for name in ok[k:] + ok[:k]:
                times[name].append(self.timer(name, lambda n=name: step(n)))
        return {n: 1e3 * statistics.median(t) for n, t in times.items() if t}


POLICY = AutoPolicy()  # the process's auto decisions (in-process cache)


def _disk_path() -> Path:
    """runs/cache/dispatch/auto-torch<version>-<cpu model>.json (``repro.paths.cache_dir``)."""
    from repro.machine import cpu_model  # stdlib-only modules
    from repro.paths import cache_dir

    cpu = re.sub(r"[^A-Za-z0-9]+", "-", cpu_model()).strip("-")[:60] or "cpu"
    return cache_dir("dispatch") / f"auto-torch{torch.__version__.split('+')[0]}-{cpu}.json"


@contextlib.contextmanager
def _disk_lock():
    """An exclusive flock beside the cache file: one process measures a shape, the others wait
    and read its answer. Where no lock can be taken (a read-only store) it runs unlocked."""
    from repro.procs import file_lock

    try:
        lock = file_lock(_disk_path().with_suffix(".lock"))
        lock.__enter__()
    except OSError:
        lock = None
    try:
        yield
    finally:
        if lock is not None:
            lock.__exit__(None, None, None)


def _disk_read() -> dict[str, str]:
    """The stored decisions; an unreadable or malformed file counts as empty."""
    from repro.paths import read_owned_bytes

    try:
        data = json.loads(read_owned_bytes(_disk_path()))  # never via a link / FIFO
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: v for k, v in data.items() if isinstance(k, str) and v in RUN}


def _disk_load(key: tuple) -> str | None:
    return _disk_read().get(repr(key))


def _disk_store(key: tuple, backend: str) -> None:
    from repro.paths import atomic_write_text

    data = _disk_read()
    data[repr(key)] = backend
    try:
        atomic_write_text(_disk_path(), json.dumps(data, indent=1, sort_keys=True))
    except OSError:  # a read-only store: keep the in-process decision only
        pass


def choose_backend(backend: str, xf: torch.Tensor, s: Assignments, w: ExpertWeights,
                   act: Act, policy: AutoPolicy | None = None) -> str:
    """The backend a call runs: the configured one, the static rule, or what ``auto`` measured.
    An activation that owns the expert FFN (MoNE's gather form) needs rows: ``bmm`` -> ``loop``."""
    if backend == "auto":
        name = (policy or POLICY).choose(xf, s, w, act)
    elif backend == "static":
        name = static_backend(xf, s, w.gate.shape[-1])
    else:
        name = backend
    return "loop" if name == "bmm" and hasattr(act, "expert_ffn") else name
