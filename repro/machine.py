"""The CPU a process runs on, named the way ``lscpu`` names it ("AMD EPYC", "Intel(R) Xeon(R)
Processor"): one home for the label that speed figures and run tags carry.

Why the model and not just the architecture: two x86_64 boxes differ in training speed by
1.2-1.5x (AMX on the Xeon) and, for routed models, in results: the same (config, seed) trained on
an AMD EPYC and on a Xeon gives bit-identical dense losses but MoE / Switch losses up to ~0.03
nats apart, since a last-bit difference in a router logit can flip a top-k choice
(results/cpu-rerun.md). A claims.md must say which machine its runs came from. Stdlib only.
"""

from __future__ import annotations

import functools
import platform
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")


@functools.cache  # the CPU does not change under a running process
def cpu_model(cpuinfo: Path = CPUINFO) -> str:
    """The first ``model name`` of ``cpuinfo`` (Linux); else ``platform.processor()``, else the
    architecture ("x86_64", "arm64")."""
    try:
        with open(cpuinfo) as f:
            for line in f:
                if line.startswith("model name") and ":" in line:
                    name = line.split(":", 1)[1].strip()
                    if name:
                        return name
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run_machine(threads: int) -> dict[str, str]:
    """What a trained run records about its machine (the verdict's machine factor): CPU model,
    the ISA level torch's CPU kernels dispatch to (``torch.backends.cpu.get_cpu_capability()``,
    which ``ATEN_CPU_CAPABILITY`` can pin), torch version and intra-op threads."""
    import torch

    return {"cpu_model": cpu_model(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "torch": torch.__version__, "threads": str(threads)}


def cpu_label(threads: int, cpuinfo: Path = CPUINFO) -> str:
    """``"cpu (<model>, <arch>, <n> threads)"``, e.g. ``cpu (AMD EPYC, x86_64, 1 threads)``; the
    model is left out where it only repeats the architecture (no /proc/cpuinfo)."""
    model, arch = cpu_model(cpuinfo), platform.machine()
    parts = [model, arch] if model and model != arch else [arch]
    return f"cpu ({', '.join(parts)}, {threads} threads)"
