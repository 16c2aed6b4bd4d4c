"""Per-step training metrics of a run: ``steps.jsonl`` in its run directory, and TensorBoard when asked.

``StepLog`` writes them; the format is in its docstring. ``LOGGERS`` are the values of ``--logger``;
``LOG_EVERY`` is the default number of optimizer steps between two lines.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from bench.atomic import atomic_write
from bench.errors import UserError
from bench.run.checkpoints import writing
from bench.run.layout import STEPS_FILE, TENSORBOARD_DIR

LOGGERS = ("none", "tensorboard")
LOG_EVERY = 50  # default: steps between two lines of steps.jsonl


def summary_writer_class():
    """``torch.utils.tensorboard.SummaryWriter``, or a UserError when the tensorboard package is missing."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise UserError("--logger tensorboard needs the tensorboard package: pip install tensorboard") from None
    return SummaryWriter


def finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


class StepLog:
    """Per-step training metrics of one run, in ``<run dir>/steps.jsonl`` and optionally TensorBoard.

    One JSON object per line, every ``every`` optimizer steps and at the last step of each epoch:
    ``{"step": optimizer steps done, "epoch": 1-based epoch, "loss": mean training loss over the steps since
    the previous line, "lr": the lr this step used, "method_params": the method's scheduled parameters this
    step used}`` (a non-finite loss is ``null``). The losses are summed on the device; the one host sync is
    the ``.item()`` of a line, and lines are appended as they come. With ``defer=True`` (the CUDA loop) a
    line's mean loss stays a device tensor and its lines wait for ``flush()`` at the epoch's end: no host
    sync inside an epoch, and the same file. A fresh run (``resume_step`` None)
    empties the file and the TensorBoard folder; a resumed one drops the lines past ``resume_step`` (the
    steps its checkpoint holds; the later ones are trained again) and a partial last line, then appends.
    TensorBoard (``tensorboard=True``: ``<run dir>/tensorboard/``) gets the same scalars (``train/loss``,
    ``train/lr``, ``method/<param>``) and, at each epoch's last step, the test accuracies, the epoch's
    training loss and accuracy and the flip ratio; on resume it purges the events past ``resume_step``.
    """

    def __init__(self, run_dir: Path, every: int, device: torch.device, *, resume_step: int | None,
                 tensorboard: bool = False, defer: bool = False):
        self.path = Path(run_dir) / STEPS_FILE
        self.defer = defer
        self.pending: list[tuple] = []  # deferred lines: (step, epoch, loss sum tensor, count, lr, params)
        self.every = every
        self.window = torch.zeros((), device=device)
        self.count = 0
        with writing(self.path):
            if resume_step is None:
                atomic_write(self.path, lambda fh: None)
            elif self.path.is_file():
                self._truncate(resume_step)
        self.tb = None
        if tensorboard:
            tb_dir = Path(run_dir) / TENSORBOARD_DIR
            if resume_step is None and tb_dir.is_dir():
                import shutil

                shutil.rmtree(tb_dir)
            writer = summary_writer_class()
            self.tb = writer(str(tb_dir), purge_step=None if resume_step is None else resume_step + 1)

    def _truncate(self, resume_step: int) -> None:
        keep, dropped = [], False
        for line in self.path.read_text(encoding="utf-8").splitlines(keepends=True):
            try:
                entry = json.loads(line) if line.endswith("\n") else None
            except ValueError:
                entry = None
            if isinstance(entry, dict) and isinstance(entry.get("step"), int) and entry["step"] <= resume_step:
                keep.append(line)
            else:
                dropped = True
        if dropped:
            text = "".join(keep).encode("utf-8")
            atomic_write(self.path, lambda fh: fh.write(text))

    def due(self, step: int, last: bool) -> bool:
        """Whether optimizer step ``step`` (1-based) gets a line (``last``: the epoch's last step)."""
        return last or step % self.every == 0

    def step(self, step: int, epoch: int, loss: torch.Tensor, lr: float, params: dict | None) -> None:
        """Add the loss of optimizer step ``step`` (1-based); when the step is ``due``, ``params`` holds the
        scheduled parameters the step used, and the line is written."""
        self.window += loss.detach()
        self.count += 1
        if params is None:
            return
        if self.defer:
            self.pending.append((step, epoch, self.window.clone(), self.count, lr, params))
            self.window.zero_()
            self.count = 0
            return
        mean = finite_or_none(self.window.item() / self.count)
        self.window.zero_()
        self.count = 0
        self._write(step, epoch, mean, lr, params)

    def flush(self, bad_step: int | None = None) -> None:
        """Write the deferred lines (``defer=True``); ``bad_step``: the 0-based step whose loss was not
        finite, so only the lines of the steps before it are written (what the per-step check writes)."""
        pending, self.pending = self.pending, []
        if bad_step is not None:
            pending = [p for p in pending if p[0] <= bad_step]
            self.window.zero_()
            self.count = 0
        if not pending:
            return
        sums = torch.stack([p[2] for p in pending]).tolist()  # one host sync for the epoch's lines
        for (step, epoch, _, count, lr, params), total in zip(pending, sums):
            self._write(step, epoch, finite_or_none(total / count), lr, params)

    def _write(self, step: int, epoch: int, mean: float | None, lr: float, params: dict) -> None:
        entry = {"step": step, "epoch": epoch, "loss": mean, "lr": lr, "method_params": params}
        line = json.dumps(entry, allow_nan=False) + "\n"
        with writing(self.path), open(self.path, "a", encoding="utf-8") as fh:
            fh.write(line)
        if self.tb is not None:
            if mean is not None:
                self.tb.add_scalar("train/loss", mean, step)
            self.tb.add_scalar("train/lr", lr, step)
            for name, value in params.items():
                self.tb.add_scalar(f"method/{name}", value, step)

    def epoch(self, step: int, metrics: dict) -> None:
        """TensorBoard only: an epoch's metrics (a history entry's dict) at its last step; flushed."""
        if self.tb is None:
            return
        for tag, key in (("test/acc", "test_acc"), ("test/acc_forward", "test_acc_forward"),
                         ("train/epoch_loss", "train_loss"), ("train/acc", "train_acc"),
                         ("train/flip_ratio", "flip_ratio")):
            value = metrics.get(key)
            if isinstance(value, (int, float)) and math.isfinite(value):
                self.tb.add_scalar(tag, value, step)
        self.tb.flush()

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
            self.tb = None


def scheduled_params(method) -> dict:
    """The method's scheduled parameters (``schedules``) and their current values."""
    values = method.params()
    return {name: float(values[name]) for name in type(method).schedules if name in values}
