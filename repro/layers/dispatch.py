"""Token dispatch for routed experts: group (token, expert, gate) assignments by expert, run each
group through its expert, and scatter the gate-weighted outputs back to their tokens.

Dimension legend: N tokens in the call, D model width, E experts, F expert hidden width, A routed
assignments (token, expert pairs that survived capacity), C slots per expert.

One call computes the routed term of the MoE block ([P-DSM] Eq. 9),

    y_t = sum_{(t, e, g) in routing} g * W_down[e] (act(x_t W_gate[e]) * (x_t W_up[e])),

for stacked expert weights ``W_gate, W_up: [E, D, F]``, ``W_down: [E, F, D]`` and an activation
``act`` (SiLU for SwiGLU experts; MoNE passes SiLU followed by its neuron top-k). Backends only
apply ``act`` to gate pre-activations and never look inside it. ``act`` receives expert-major rows
``[R, F]`` or slots ``[E, C, F]``: each expert's rows contiguous, in the order of
``sort_assignments`` (and in slot layouts the real rows first in each expert's C slots).

Backends (plain functions ``backend(xf, s, w, act) -> y [N, D]``, identical outputs and gradients
up to float rounding; tests):

* ``loop``: gather the sorted rows ``[A, D]`` and run one GEMM per non-empty expert and projection
  (sort-and-group, never a mask over the whole batch per expert);
* ``grouped_mm``: the same rows, one ``torch._grouped_mm`` per projection (op count fixed in E,
  references.md §Perf); needs 16-byte-aligned rows and CPU or CUDA SM90+;
* ``bmm``: slots ``[E, C, D]`` gathered straight from the tokens (C = the largest group) and three
  ``torch.bmm``, with the permute fused into the slot layout; when every expert holds exactly C
  rows (Expert Choice) the sorted rows are the slots and nothing is padded.

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
from typing import NamedTuple

import torch

from repro.layers.moe_config import BACKENDS  # noqa: F401  (the config values; re-export)

Act = Callable[[torch.Tensor], torch.Tensor]

PROBE_ENV = "REPRO_DISPATCH_PROBE"  # "1": auto measures (opt-in); unset / "0": the static rule
CACHE_ENV = "REPRO_DISPATCH_CACHE"  # "0": auto keeps its decisions in the process only
# static rule: without grouped_mm, bmm while E * (largest group) <= BMM_MAX_PAD * routed rows
BMM_MAX_PAD = 3.0

class ExpertWeights(NamedTuple):
    gate: torch.Tensor  # [E, D, F]
    up: torch.Tensor  # [E, D, F]
    down: torch.Tensor  # [E, F, D]


@dataclass(frozen=True)
class Assignments:
    """Routed (token, gate) pairs grouped by expert: expert 0's rows first, then expert 1's, ..."""

    token: torch.Tensor  # [A] token index of each assignment
    weight: torch.Tensor  # [A] its gate value g
    counts: torch.Tensor  # [E] assignments per expert
    full: bool  # expert-major with exactly ``capacity`` rows per expert (Expert Choice)
    capacity: int | None  # the router's capacity C, None when it has none


def sort_assignments(token: torch.Tensor, expert: torch.Tensor, weight: torch.Tensor,
                     n_experts: int, capacity: int | None = None,
                     expert_major: bool = False) -> Assignments:
    """Group assignments token, expert, weight [A] by expert (stable, so each expert keeps its
    tokens in routing order). ``expert_major`` with exactly ``capacity`` per expert (Expert
    Choice) is already grouped: the sort is skipped."""
    E = n_experts
    if expert_major and capacity is not None and expert.numel() == E * capacity:
        counts = torch.full((E,), capacity, dtype=torch.long, device=token.device)  # [E]
        return Assignments(token, weight, counts, True, capacity)
    order = torch.argsort(expert, stable=True)  # [A]
    return Assignments(token[order], weight[order], torch.bincount(expert, minlength=E), False,
                       capacity)


def permute(xf: torch.Tensor, s: Assignments) -> torch.Tensor:
    """Token rows in expert order: xf [N, D] -> [A, D]."""
    return xf.index_select(0, s.token)


def unpermute(xf: torch.Tensor, s: Assignments, out: torch.Tensor) -> torch.Tensor:
    """Gate-weighted scatter-add of expert outputs out [A, D] back to their tokens -> y [N, D].

    Dropped / unrouted tokens get 0 (the residual carries them). Under autocast the experts
    return bf16/fp16 while xf (the residual stream) stays fp32: accumulate in xf's dtype."""
    out = out * s.weight.to(out.dtype)[:, None]  # [A, D]
    return torch.zeros_like(xf).index_add_(0, s.token, out.to(xf.dtype))  # [N, D]


def slot_index(counts: torch.Tensor, C: int) -> torch.Tensor:
    """Slot of each expert-sorted row in a flattened [E, C] layout: e * C + position in group.

    counts [E] -> slot [A] (A = counts.sum(), every count <= C).
    """
    E = counts.numel()
    e_of_row = torch.repeat_interleave(torch.arange(E, device=counts.device), counts)  # [A]
    starts = counts.cumsum(0) - counts  # [E]
    A = e_of_row.numel()
    return torch.arange(A, device=counts.device) - starts[e_of_row] + e_of_row * C  # [A]


def grouped_mm_ok(x: torch.Tensor, *dims: int) -> bool:
    """torch._grouped_mm needs every row stride to be a multiple of 16 bytes: all of D and F
    must be multiples of 16 / element size (4 in fp32, 8 in bf16)."""
    align = 16 // x.element_size()
    if any(d % align for d in (x.shape[-1], *dims)):
        return False
    return hasattr(torch, "_grouped_mm") and x.dtype in (torch.float32, torch.bfloat16) and (
        x.device.type == "cpu" or (x.device.type == "cuda"
                                   and torch.cuda.get_device_capability(x.device)[0] >= 9))


def grouped_matmul(x: torch.Tensor, w: torch.Tensor, counts: torch.Tensor,
                   offs: torch.Tensor | None, backend: str) -> torch.Tensor:
    """Row group g of x [A, Din] times w[g] [Din, Dout] -> [A, Dout]; groups given by counts [E].
    ``offs`` [E] int32 cumulative counts (``grouped_mm`` only)."""
    if backend == "grouped_mm":
        return torch._grouped_mm(x, w.to(x.dtype), offs=offs)
    # loop: contiguous slices, one GEMM per non-empty expert
    sizes = counts.tolist()
    outs = [x_g @ w[g].to(x.dtype) for g, x_g in enumerate(torch.split(x, sizes)) if sizes[g] > 0]
    if not outs:
        return x.new_zeros(0, w.shape[-1])
    return torch.cat(outs, dim=0)


# ------------------------------------------------------------------------------------ backends
def _rows(xf: torch.Tensor, s: Assignments, w: ExpertWeights, act: Act,
          backend: str) -> torch.Tensor:
    """Sorted rows through their experts with ``grouped_matmul``: xf [N, D] -> y [N, D]."""
    x = permute(xf, s)  # [A, D]
    offs = s.counts.cumsum(0).to(torch.int32) if backend == "grouped_mm" else None  # [E]
    a = act(grouped_matmul(x, w.gate, s.counts, offs, backend))  # [A, F]
    u = grouped_matmul(x, w.up, s.counts, offs, backend)  # [A, F]
    return unpermute(xf, s, grouped_matmul(a * u, w.down, s.counts, offs, backend))  # [N, D]


def loop(xf: torch.Tensor, s: Assignments, w: ExpertWeights, act: Act) -> torch.Tensor:
    return _rows(xf, s, w, act, "loop")


def grouped_mm(xf: torch.Tensor, s: Assignments, w: ExpertWeights, act: Act) -> torch.Tensor:
    return _rows(xf, s, w, act, "grouped_mm")


def bmm(xf: torch.Tensor, s: Assignments, w: ExpertWeights, act: Act) -> torch.Tensor:
    """Slots with the permute fused in: one gather straight from the tokens into [E, C, D] slots
    (C = the largest group) and one weighted scatter-add straight out of them, with no [A, D]
    intermediate, no zero-padded copy and no un-pad gather. Padding slots point at token 0 with
    gate weight 0: rows of a slot are independent, so their outputs are multiplied by 0 and their
    gradients are exactly 0, and results equal the other backends. xf [N, D] -> y [N, D].
    """
    E, D = w.gate.shape[0], xf.shape[1]
    A = s.token.numel()
    if s.full:
        C = A // E
        tok_slot, w_slot = s.token, s.weight  # [E*C]
    else:
        C = max(int(s.counts.max()) if A else 0, 1)
        slot = slot_index(s.counts, C)  # [A] position of each sorted row in [E*C]
        tok_slot = s.token.new_zeros(E * C).index_copy_(0, slot, s.token)  # [E*C]
        w_slot = s.weight.new_zeros(E * C).index_copy(0, slot, s.weight)  # [E*C], 0 on pads
    xp = xf.index_select(0, tok_slot).view(E, C, D)  # [E, C, D]
    dt = xp.dtype
    a = act(torch.bmm(xp, w.gate.to(dt)))  # [E, C, F]
    u = torch.bmm(xp, w.up.to(dt))  # [E, C, F]
    out = torch.bmm(a * u, w.down.to(dt)).view(E * C, D)  # [E*C, D]
    out = out * w_slot.to(out.dtype)[:, None]  # gate-weighted, pads -> 0
    return torch.zeros_like(xf).index_add_(0, tok_slot, out.to(xf.dtype))  # [N, D]


RUN: dict[str, Callable[..., torch.Tensor]] = {"loop": loop, "grouped_mm": grouped_mm, "bmm": bmm}


# ------------------------------------------------------------------------------- backend policy
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
    """The backend a call runs: the configured one, the static rule, or what ``auto`` measured."""
    if backend == "auto":
        return (policy or POLICY).choose(xf, s, w, act)
    if backend == "static":
        return static_backend(xf, s, w.gate.shape[-1])
    return backend


def dispatch(xf: torch.Tensor, s: Assignments, w: ExpertWeights, act: Act,
             backend: str = "auto") -> torch.Tensor:
    """The routed term for sorted assignments ``s``: xf [N, D] -> y [N, D]. The backend is
    chosen (auto may probe) before the real call runs."""
    return RUN[choose_backend(backend, xf, s, w, act)](xf, s, w, act)
