"""Checkpoints, resume and clean stops for training runs.

* ``SafeCheckpointIO``: Lightning's checkpoint I/O, written atomically (temp file, fsync, rename)
  and read back with ``torch.load(weights_only=True)`` only. Lightning's own resume would unpickle
  arbitrary objects; ours loads tensors and plain containers (the checkpoint holds nothing else:
  hyper-parameters are a plain dict, the LR lambda is not serialized, RNG states are tensors and
  lists). A file that does not load that way is reported as corrupt, never executed.
* ``ResumeState``: what Lightning's checkpoint lacks for a bit-exact resume: the global torch /
  numpy / python RNG states (routing noise draws from the global torch RNG) and the system's
  token counter.
* ``GracefulStop``: SIGINT / SIGTERM / SIGHUP set a flag; at the end of the current optimizer
  step the callback writes ``last.ckpt``, and it raises ``RunInterrupted`` before the next step
  (after that step's metrics are logged). A second SIGINT stops at once.
* ``FaultInjection``: test-only hook (env ``REPRO_FAULT``): ``kill@N`` sends SIGKILL to the own
  process after step N, ``term@N`` / ``int@N`` / ``hup@N`` send SIGTERM / SIGINT / SIGHUP,
  ``nan@N`` fills the first parameter with NaN before step N (the system then fails on the
  non-finite loss).
"""

from __future__ import annotations

import io
import os
import random
import signal
import threading
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from repro.errors import UserError
from repro.paths import NotOwnedError, atomic_write_bytes, describe_kind, read_owned_bytes


class CheckpointError(UserError, ValueError):
    """A checkpoint cannot be used (unreadable, truncated, not ours). One line, with the fix."""


RUN_KEY_FIELD = "repro_run_key"  # the run key a checkpoint belongs to (``ResumeState`` writes it)


def load_checkpoint_file(path: str | Path, fix: str = "", run_key: str | None = None) -> dict:
    """``torch.load(path, weights_only=True)`` with a one-line ``CheckpointError`` on failure.
    ``run_key``: the checkpoint must have been written by that run (a checkpoint of another run
    or model, copied or left in this run's folder, is refused, never resumed)."""
    path = Path(path)
    fix = fix or f"delete {path} to restart the run from step 0 (or pass --force)"
    try:
        blob = read_owned_bytes(path)  # a link, FIFO or device there: refused, never read
    except NotOwnedError:
        what = describe_kind(path, os.lstat(path))
        raise CheckpointError(f"checkpoint {path} is unreadable: it is {what}, not a file repro "
                              f"wrote (never read through a link, a FIFO or a device); {fix}"
                              ) from None
    except OSError as e:
        raise CheckpointError(f"checkpoint {path} is unreadable ({e.strerror or e}); "
                              f"{fix}") from None
    try:
        ckpt = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - pickle/zip/format errors all mean "corrupt"
        msg = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
        raise CheckpointError(f"checkpoint {path} is corrupt or not a weights-only checkpoint "
                              f"({msg}); {fix}") from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "global_step" not in ckpt:
        raise CheckpointError(f"checkpoint {path} is not a training checkpoint (no state_dict/"
                              f"global_step); {fix}")
    if run_key is not None and ckpt.get(RUN_KEY_FIELD) != run_key:
        owner = ckpt.get(RUN_KEY_FIELD)
        whose = f"run key {owner}" if isinstance(owner, str) else "no run key (another tool " \
            "or an older repro)"
        raise CheckpointError(f"checkpoint {path} belongs to {whose}, not to this run "
                              f"({run_key}): it is another run's or model's; {fix}")
    return ckpt


class SafeCheckpointIO(TorchCheckpointIO):
    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        buf = io.BytesIO()
        torch.save(checkpoint, buf)
        # temp file, fsync, rename: a resume after a crash sees the old file or the new one
        atomic_write_bytes(Path(path), buf.getvalue(), durable=True)

    def load_checkpoint(self, path, map_location=None, weights_only=None):
        return load_checkpoint_file(path)


class ResumeState(L.Callback):
    """Saves / restores the global RNG states and the system's token counter with the
    checkpoint. Lightning calls ``load_state_dict`` when restoring callbacks, before the first
    resumed step, so the resumed run draws the same routing noise as an uninterrupted one."""

    def __init__(self, run_key: str | None = None):
        self.module = None
        self.run_key = run_key

    def setup(self, trainer, pl_module, stage):
        self.module = pl_module

    def on_save_checkpoint(self, trainer, pl_module, checkpoint) -> None:
        if self.run_key is not None:  # ties the checkpoint to its run (checked on resume)
            checkpoint[RUN_KEY_FIELD] = self.run_key

    def state_dict(self) -> dict:
        np_state = np.random.get_state()
        return {"torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
                "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)),
                          int(np_state[2]), int(np_state[3]), float(np_state[4])],
                "python": _py_state_to_plain(random.getstate()),
                "tokens_seen": int(getattr(self.module, "tokens_seen", 0))}

    def load_state_dict(self, state: dict) -> None:
        torch.set_rng_state(state["torch"])
        if state.get("cuda") and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])
        name, keys, pos, has_gauss, gauss = state["numpy"]
        np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
        random.setstate(_py_state_from_plain(state["python"]))
        if self.module is not None:
            self.module.tokens_seen = int(state.get("tokens_seen", 0))


def _py_state_to_plain(st) -> list:
    version, internal, gauss = st
    return [version, list(internal), gauss]


def _py_state_from_plain(st) -> tuple:
    version, internal, gauss = st
    return (version, tuple(internal), gauss)


class RunInterrupted(Exception):
    """Training stopped on SIGINT/SIGTERM/SIGHUP after writing a checkpoint (``GracefulStop``)."""

    def __init__(self, signum: int, step: int, checkpoint: Path | None):
        self.signum, self.step, self.checkpoint = signum, step, checkpoint
        name = signal.Signals(signum).name
        where = f"checkpoint {checkpoint} written" if checkpoint else "no checkpoint written"
        super().__init__(f"interrupted by {name} at step {step}; {where}; rerun the same "
                         "command to resume")


class GracefulStop(L.Callback):
    """Turns SIGINT/SIGTERM into a clean stop at the next step boundary (see module doc).

    Use as a context manager around ``fit`` to install the handlers (main thread only)."""

    # SIGHUP: the terminal closed (ssh dropped): a stop like SIGTERM, not a kill that leaves
    # the run RUNNING without a checkpoint. Under ``nohup`` (SIGHUP ignored) it stays ignored.
    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self, last_path: Path | None):
        self.last_path = last_path
        self.signum: int | None = None
        self.saved_step: int | None = None
        self._old: dict = {}

    def _handler(self, signum, frame):
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # second Ctrl-C: stop now
        self.signum = signum

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for s in self.SIGNALS:
                if s == signal.SIGHUP and signal.getsignal(s) == signal.SIG_IGN:
                    continue  # nohup: the user asked to outlive the terminal
                self._old[s] = signal.signal(s, self._handler)
        return self

    def __exit__(self, *exc):
        for s, h in self._old.items():
            signal.signal(s, h)
        self._old = {}

    def check(self, step: int) -> None:
        """Outside ``fit`` (before training starts): stop if a signal arrived."""
        if self.signum is not None:
            raise RunInterrupted(self.signum, step, None)

    def on_train_start(self, trainer, pl_module):
        # Lightning composes its own SIGTERM handler (it raises SystemExit at the next batch, or
        # in the middle of validation) with ours; one process: keep only ours, so every stop
        # goes through a checkpoint. Lightning restores the handlers after fit.
        if self._old and trainer.world_size == 1:
            signal.signal(signal.SIGTERM, self._handler)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        # checkpoint here (the point Lightning's mid-epoch restore expects), but stop only at
        # the next batch start: this step's metrics, validation and LR step happen first
        if self.signum is not None and self.saved_step is None:
            if self.last_path is not None:
                trainer.save_checkpoint(self.last_path)
            self.saved_step = trainer.global_step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self.signum is not None and self.saved_step is not None:
            raise RunInterrupted(self.signum, self.saved_step,
                                 self.last_path if self.last_path is not None else None)


class FaultInjection(L.Callback):
    """Test hook driven by ``REPRO_FAULT`` (see module doc); inert when unset."""

    def __init__(self, spec: str | None = None):
        spec = spec if spec is not None else os.environ.get("REPRO_FAULT", "")
        self.fault, _, at = spec.partition("@")
        self.at = int(at) if at.isdigit() else -1

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self.fault == "nan" and trainer.global_step == self.at:
            with torch.no_grad():
                list(pl_module.parameters())[-1].fill_(float("nan"))  # output side

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step != self.at:
            return
        sig = {"kill": signal.SIGKILL, "term": signal.SIGTERM, "int": signal.SIGINT,
               "hup": signal.SIGHUP}.get(self.fault)
        if sig is not None:
            os.kill(os.getpid(), sig)
