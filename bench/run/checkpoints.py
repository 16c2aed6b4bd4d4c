"""Run checkpoints: what one holds, reading it back with clear errors, and writing it atomically.

A checkpoint (``layout.checkpoint_path``) is a ``torch.save`` of a dict, loaded with ``weights_only=True``:
``version`` (1), ``config`` (the resolved config), ``run_id``, ``epoch`` (epochs done), ``status``
("running" or "done"), ``model``, ``optimizer`` and ``scheduler`` (state dicts), ``rng_torch`` (the CPU RNG
state), ``history`` (the record's history entries, as dicts), ``prev_signs`` (the deployed signs after the
last epoch, for the next flip ratio) and ``wall_seconds`` (the run's time so far over its processes;
optional: checkpoints written before it existed lack it). A checkpoint that cannot be read, lacks a key or
does not fit the run is a ``UserError`` naming the file and ``--fresh``; a failed write (a full disk) is a
``UserError`` naming the file, and the file written before stays whole.
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path

import torch
from torch import nn

from bench.atomic import atomic_write
from bench.errors import UserError
from bench.run.records import EpochMetrics, RecordError

VERSION = 1
CHECKPOINT_KEYS = ("config", "model", "optimizer", "scheduler", "rng_torch", "history", "epoch", "status",
                   "prev_signs")
FRESH_HINT = "delete it or run with --fresh"


def one_line(exc: BaseException, limit: int = 300) -> str:
    """An exception's message on one line, at most ``limit`` characters (its type when it has none)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


def bad_checkpoint(path: Path, why: str, hint: str | None = FRESH_HINT) -> UserError:
    return UserError(f"checkpoint {path} is unreadable or incomplete ({why})" + (f": {hint}" if hint else ""))


def read_checkpoint(path: Path, keys=CHECKPOINT_KEYS, map_location="cpu", hint: str | None = FRESH_HINT) -> dict:
    """``torch.load`` a run checkpoint; a file that does not load or lacks one of ``keys`` is a UserError
    naming the file (and ``hint``, by default: delete it or run with --fresh)."""
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a truncated zip, a foreign pickle, an I/O error: all unreadable
        raise bad_checkpoint(path, one_line(exc, 160), hint) from None
    if not isinstance(state, dict):
        raise bad_checkpoint(path, f"a {type(state).__name__}, not a checkpoint", hint)
    missing = [k for k in keys if k not in state]
    if missing:
        raise bad_checkpoint(path, f"missing {', '.join(missing)}", hint)
    if "config" in keys and not isinstance(state["config"], dict):
        raise bad_checkpoint(path, "its config is not a table", hint)
    return state


@contextlib.contextmanager
def writing(path: Path):
    """Turn an OSError (a full disk, a read-only folder) while writing ``path`` into one line naming it."""
    try:
        yield
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror or one_line(exc)}") from None


class KeepWriteError:
    """A file wrapper for ``torch.save``, which turns a failed ``write`` (ENOSPC) into a RuntimeError that no
    longer says why: the wrapper keeps the OSError so that it can be raised instead."""

    def __init__(self, fh):
        self.fh, self.error = fh, None

    def write(self, b):
        try:
            return self.fh.write(b)
        except OSError as exc:
            self.error = exc
            raise

    def flush(self):
        return self.fh.flush()


def atomic_torch_save(obj, path: Path) -> None:
    """``torch.save(obj)`` to ``path`` atomically; a failed write is ``writing``'s UserError."""
    def save(fh):
        sink = KeepWriteError(fh)
        try:
            torch.save(obj, sink)
        except RuntimeError:
            if sink.error is not None:
                raise sink.error from None
            raise

    with writing(path):
        atomic_write(path, save)


def save_checkpoint(path: Path, *, cfg: dict, run_id: str, epoch: int, status: str, model: nn.Module, optimizer,
                    scheduler, history: list[EpochMetrics], prev_signs: list[torch.Tensor],
                    wall_seconds: float) -> None:
    """Write the training state after epoch ``epoch`` (``status`` "running" or "done")."""
    atomic_torch_save(
        {"version": VERSION, "config": cfg, "run_id": run_id, "epoch": epoch, "status": status,
         "model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
         "rng_torch": torch.get_rng_state(), "history": [h.to_dict() for h in history], "prev_signs": prev_signs,
         "wall_seconds": wall_seconds},
        path,
    )


def load_model_state(model: nn.Module, state: dict, path: Path, name: str) -> None:
    """``model.load_state_dict(state)``; a checkpoint that no longer fits the model's code is a UserError."""
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        if "Error(s) in loading state_dict" not in str(exc):
            raise
        raise UserError(f"checkpoint {path} does not fit model {name!r} as defined now (changed since the "
                        f"checkpoint was written?): delete it or run with --fresh") from None


def restore(state: dict, path: Path, cfg: dict, model, optimizer, scheduler,
            signs: list[torch.Tensor]) -> tuple[list[EpochMetrics], int, str, float]:
    """Load a checkpoint's training state into the run: (history, epoch, status, wall seconds so far).

    A value of the wrong shape (a damaged or hand-edited file) is ``bad_checkpoint``; a model that no longer
    fits its weights is ``load_model_state``'s error. ``signs``: the model's deployed signs, for their shapes."""
    epoch, status, history = state["epoch"], state["status"], state["history"]
    seconds = state.get("wall_seconds", 0.0)
    if isinstance(epoch, bool) or not isinstance(epoch, int) or not 0 <= epoch <= cfg["epochs"]:
        raise bad_checkpoint(path, f"epoch {epoch!r} of {cfg['epochs']}")
    if status not in ("running", "done") or not isinstance(history, list):
        raise bad_checkpoint(path, f"status {status!r}, history of type {type(history).__name__}")
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not math.isfinite(seconds) or seconds < 0:
        raise bad_checkpoint(path, f"wall_seconds {seconds!r}")
    if not isinstance(state["model"], dict):
        raise bad_checkpoint(path, "its model is not a state dict")
    try:
        history = [EpochMetrics.from_dict(h, f"history[{i}]") for i, h in enumerate(history)]
    except RecordError as exc:
        raise bad_checkpoint(path, str(exc)) from None
    try:
        load_model_state(model, state["model"], path, cfg["model"])  # its own UserError when the shapes differ
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng_torch"])
        saved = state["prev_signs"]
        if not isinstance(saved, list) or [getattr(s, "shape", None) for s in saved] != [s.shape for s in signs]:
            raise ValueError("prev_signs do not match the binarized layers")
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError, IndexError) as exc:
        raise bad_checkpoint(path, f"{type(exc).__name__}: {one_line(exc, 160)}") from None
    return history, epoch, status, float(seconds)
