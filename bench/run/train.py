"""One training run: model × method × dataset, with checkpoints, resume and a run record.

Per step: forward with θ = α·F(w/α), backward with B', then ``methods.optimizer_step`` (hooks around
``optimizer.step()`` and ``set_progress((step+1)/total_steps)``), then the per-step lr scheduler; every
``log_every`` steps and at each epoch's end, a line of ``<workdir>/runs/<run_id>/steps.jsonl``
(``StepLog``; TensorBoard too with ``logger = "tensorboard"``). Per epoch: evaluation of the deployed model
(α·sign(w)) and of the F(w) model, the flip ratio of the deployed signs, and an atomic checkpoint. A run
restarted after a kill resumes from its last checkpoint and ends bit-identical to an uninterrupted run on
the same device: the data order and augmentation of each epoch are functions of (seed, epoch), and the RNG
states are checkpointed. The step itself is ``bench.run.step.TrainStep``: eager, or captured with
``torch.compile`` (CUDA graphs on CUDA) when the config says ``capture = "compile"``.

Divergence: on CPU the loss is checked after every forward, and the first non-finite one ends the run as
``diverged`` before its step is taken. On CUDA nothing inside an epoch synchronises with the host: a
non-finite loss sets a flag on the device (with the step and loss where it first happened), the training
loss and accuracy are summed there, and the step log keeps its lines as device tensors; all of it is read
once, at the epoch's end. So on CUDA divergence is detected at the end of the epoch in which it happened:
the run stops there and is recorded ``diverged`` with the same fields as on CPU (the history up to the
last good epoch; the step log has no line past the step before the first non-finite loss), the diverged
epoch is neither added to the history nor checkpointed, but the steps after the non-finite loss were
taken, so the final metrics are those of the model at the epoch's end (on CPU: before the diverging
step).

The record's ``wall_seconds`` is the run's time summed over its processes: each checkpoint stores the time
spent so far (earlier processes up to their last checkpoint, plus this one), and the process that finishes
adds its own. A checkpoint that is already finished only has its record rewritten. A checkpoint that cannot
be read, lacks a key or does not fit the run is a ``UserError`` naming the file and ``--fresh``; a failed
write (a full disk) is a ``UserError`` naming the file, and the files written before it stay whole (every
write is atomic).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch
from torch import nn

import methods

from bench import data
from bench.errors import UserError
from bench.run import config as configs
from bench.run import layout, robustness
from bench.run.checkpoints import read_checkpoint, restore, save_checkpoint, writing
from bench.run.jsonfile import write_json_atomic
from bench.run.metrics import deployed_signs, device_name, epoch_metrics, final_metrics
from bench.run.model import build_model
from bench.run.optim import lr_factor, make_optimizer
from bench.run.records import ABSENT, EpochMetrics, make_record, write_record
from bench.run.step import TrainStep, tensor_lr
from bench.run.steplog import LOG_EVERY, LOGGERS, StepLog, scheduled_params, summary_writer_class


def check_device(device: str) -> torch.device:
    """``torch.device(device)`` for 'cpu', 'cuda' or 'cuda:<index>' that exists here, else a UserError."""
    valid = "valid: cpu, cuda, cuda:<index>"
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise UserError(f"unknown device {device!r} ({valid})") from None
    if dev.type not in ("cpu", "cuda"):
        raise UserError(f"device {device!r} is not supported ({valid})")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"device {device!r} asked for but no CUDA device is available")
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise UserError(f"device {device!r} asked for but this machine has {count} CUDA device(s) "
                            f"(cuda:0 to cuda:{count - 1})")
    return dev


class Progress:
    """A tqdm bar on a terminal; plain lines in logs."""

    def __init__(self, total: int, desc: str):
        self.bar = None
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True)

    def update(self, loss: float | None) -> None:
        """One step; ``loss`` None: not shown (read back from the device only at the epoch's end)."""
        if self.bar is not None:
            self.bar.update(1)
            if loss is not None:
                self.bar.set_postfix(loss=f"{loss:.3f}", refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def execute(
    cfg: dict,
    *,
    method: methods.Method | None = None,
    grid: str = "adhoc",
    workdir: str | Path = "work",
    results: str | Path | None = None,
    device: str = "cpu",
    data_root: str | None = None,
    fresh: bool = False,
    log=print,
    logger: str = "none",
    log_every: int = LOG_EVERY,
    defer_checks: bool | None = None,
    compile_backend: str | None = None,
) -> dict:
    """Train and evaluate one resolved config; resume from its checkpoint; write and return its record.

    The record goes to ``<results>/runs/<grid>/<run_id>.json``; ``results`` None: ``<workdir>/results``.
    Per-step metrics go to ``<workdir>/runs/<run_id>/steps.jsonl`` every ``log_every`` steps (``StepLog``),
    and with ``logger = "tensorboard"`` to TensorBoard as well (a UserError before anything is written
    when the tensorboard package is missing). Neither is part of the config: the run id does not change.
    ``defer_checks``: read the divergence flag, the epoch's loss and the step log back at the epoch's end
    only (None: on CUDA; True on CPU runs that path for tests). ``compile_backend``: the ``torch.compile``
    backend of ``capture = "compile"`` (None: inductor; tests use "aot_eager"). ``method``: the one
    ``bench.run.config.resolve_run`` built with ``cfg`` (None: built from ``cfg`` with the model).
    """
    rid = configs.run_id(cfg)
    dev = check_device(device)
    if results is None:
        results = Path(workdir) / "results"
    if logger not in LOGGERS:
        raise UserError(f"unknown logger {logger!r} (valid: {', '.join(LOGGERS)})")
    if logger == "tensorboard":
        summary_writer_class()
    if isinstance(log_every, bool) or not isinstance(log_every, int) or log_every < 1:
        raise UserError(f"--log-every must be a positive integer, got {log_every!r}")
    started = time.time()
    ckpt_path = layout.checkpoint_path(workdir, rid)
    with writing(ckpt_path.parent):  # an unwritable work directory fails now, not after the first epoch
        ckpt_path.parent.mkdir(parents=True, exist_ok=True)
    info = data.dataset_info(cfg["dataset"], cfg["data_options"])
    loader_args = dict(loader=cfg["loader"], device=device, seed=cfg["seed"], data_root=data_root,
                       options=cfg["data_options"])
    train_loader = data.build_loader(cfg["dataset"], "train", batch_size=cfg["batch_size"], train=True,
                                     subset=cfg["subset"], augment=cfg["augment"], **loader_args)
    test_loader = data.build_loader(cfg["dataset"], "test", batch_size=max(cfg["batch_size"], 256), train=False,
                                    subset=cfg["test_subset"], **loader_args)
    for key, loader, split in (("subset", train_loader, "training"), ("test_subset", test_loader, "test")):
        if cfg[key] is not None and loader.num_samples < cfg[key]:  # fewer files here than the registry says
            raise UserError(f"{key} {cfg[key]} exceeds the {loader.num_samples} {split} samples of dataset "
                            f"{cfg['dataset']!r}")
    if len(train_loader) == 0:
        raise UserError(f"batch_size {cfg['batch_size']} exceeds the {train_loader.num_samples} training samples")

    torch.manual_seed(cfg["seed"])
    model = build_model(cfg, info, method=method, workdir=workdir).to(dev)
    if dev.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    method = methods.get_method(model)
    optimizer = make_optimizer(cfg, model)
    if cfg["capture"] != "none":
        tensor_lr(optimizer, dev)
    steps_per_epoch = len(train_loader)
    total_steps = cfg["epochs"] * steps_per_epoch
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(cfg, step, total_steps, steps_per_epoch)
    )
    criterion = nn.CrossEntropyLoss(label_smoothing=cfg["label_smoothing"])
    train_step = TrainStep(model, optimizer, scheduler, criterion, dev, cfg["capture"], compile_backend, log=log)
    defer = dev.type == "cuda" if defer_checks is None else bool(defer_checks)

    history: list[EpochMetrics] = []
    start_epoch = 0
    status = "running"
    earlier_seconds = 0.0  # time of earlier processes of this run, up to their last checkpoint
    finished = False
    prev_signs = deployed_signs(model)
    resumed = ckpt_path.is_file() and not fresh
    if resumed:
        state = read_checkpoint(ckpt_path, map_location=dev)
        if configs.run_id(state["config"]) != rid:  # the run id's hash rule (LATER_KEYS) decides
            raise UserError(f"checkpoint {ckpt_path} belongs to another config; use --fresh to start over")
        history, start_epoch, status, earlier_seconds = restore(
            state, ckpt_path, cfg, model, optimizer, scheduler, prev_signs)
        prev_signs = [s.cpu() for s in state["prev_signs"]]
        method.set_progress(min(1.0, start_epoch * steps_per_epoch / total_steps))
        finished = status != "running" or start_epoch == cfg["epochs"]
        if finished:
            log(f"[{rid}] already finished ({start_epoch}/{cfg['epochs']} epochs); rewriting its record")
        else:
            log(f"[{rid}] resuming at epoch {start_epoch + 1}/{cfg['epochs']} from {ckpt_path}")
    else:
        method.set_progress(0.0)
        if cfg["mode"] == "finetune":
            history.append(epoch_metrics(0, model, test_loader, dev, None, None, None, optimizer))
            log(f"[{rid}] initial: deployed acc {history[-1].test_acc:.2f}%")

    steps = None  # per-step metrics; a finished run keeps its file as it is
    if not finished:
        steps = StepLog(ckpt_path.parent, log_every, dev, tensorboard=logger == "tensorboard",
                        resume_step=start_epoch * steps_per_epoch if resumed else None, defer=defer)
    for epoch in range(start_epoch, cfg["epochs"]):
        if status != "running":
            break
        t0 = time.time()
        train_loader.set_epoch(epoch)
        model.train()
        loss_sum = torch.zeros((), device=dev)
        correct = torch.zeros((), device=dev, dtype=torch.long)
        seen = 0
        lr_sum = 0.0  # the lr of each step of this epoch, for the epoch's mean lr
        first_bad = torch.full((), -1, device=dev, dtype=torch.long)  # deferred: first step with a bad loss
        bad_loss = torch.zeros((), device=dev)
        bar = Progress(steps_per_epoch, f"{cfg['method']} epoch {epoch + 1}/{cfg['epochs']}")
        for i, (x, y) in enumerate(train_loader):
            if dev.type == "cuda":
                x = x.contiguous(memory_format=torch.channels_last)
            step = epoch * steps_per_epoch + i
            out, loss = train_step.forward(x, y)
            if defer:  # no host sync: remember the first non-finite loss on the device
                new_bad = (first_bad < 0) & ~torch.isfinite(loss.detach())
                first_bad = torch.where(new_bad, step, first_bad)
                bad_loss = torch.where(new_bad, loss.detach(), bad_loss)
            elif not torch.isfinite(loss):
                status = "diverged"
                log(f"[{rid}] diverged: loss {loss.item()} at epoch {epoch + 1}, step {i + 1}")
                break
            lr = train_step.host_lrs()[0]  # the lr of this step (the scheduler moves it after the step)
            lr_sum += lr
            # the parameters this step uses (optimizer_step moves them to the next step's progress)
            params = scheduled_params(method) if steps.due(step + 1, i + 1 == steps_per_epoch) else None
            train_step.update(loss, (step + 1) / total_steps)
            steps.step(step + 1, epoch + 1, loss, lr, params)
            loss_sum += loss.detach() * y.numel()
            correct += (out.detach().argmax(1) == y).sum()
            seen += y.numel()
            if bar.bar is not None:
                bar.update(None if defer else loss.item())
        bar.close()
        if defer:
            bad_step = int(first_bad.item())  # the epoch's one read-back of the divergence check
            steps.flush(None if bad_step < 0 else bad_step)
            if bad_step >= 0:
                status = "diverged"
                log(f"[{rid}] diverged: loss {bad_loss.item()} at epoch {epoch + 1}, "
                    f"step {bad_step - epoch * steps_per_epoch + 1} (detected at the epoch's end)")
        if status != "running":
            break
        signs = deployed_signs(model)
        train = (loss_sum.item() / max(1, seen), 100.0 * correct.item() / max(1, seen))
        metrics = epoch_metrics(epoch + 1, model, test_loader, dev, train, prev_signs, signs, optimizer)
        metrics.seconds = round(time.time() - t0, 3)
        history.append(metrics)
        prev_signs = signs
        if epoch + 1 == cfg["epochs"]:
            status = "done"
        steps.epoch((epoch + 1) * steps_per_epoch, metrics.to_dict())
        log(_format_epoch(rid, cfg, metrics, lr_sum / steps_per_epoch))
        save_checkpoint(ckpt_path, cfg=cfg, run_id=rid, epoch=epoch + 1, status="done" if status == "done" else "running",
                        model=model, optimizer=optimizer, scheduler=scheduler, history=history, prev_signs=prev_signs,
                        wall_seconds=earlier_seconds + time.time() - started)
        progress = layout.progress_path(workdir, rid)
        with writing(progress):
            write_json_atomic({"epoch": epoch + 1, "epochs": cfg["epochs"]}, progress)

    if steps is not None:
        steps.close()
    if status == "running":  # nothing left to train (resumed a finished checkpoint)
        status = "done"
    final = final_metrics(model, history, info, dev, cfg, train_loader, test_loader)
    if status == "done":  # the robustness track (bench.run.robustness): corrupted copies of the test split
        t0 = time.time()
        for key, value in robustness.evaluate(model, cfg, test_loader.dataset, dev, data_root).items():
            setattr(final, key, value)
        if final.acc_corrupt is not ABSENT:
            log(f"[{rid}] corrupted test sets: deployed {final.acc_corrupt:.2f}% "
                f"(F(w) {final.acc_corrupt_forward:.2f}%) {time.time() - t0:.1f}s")
    record = make_record(rid, grid, cfg, status=status, history=history, final=final, device=device_name(dev),
                         wall_seconds=earlier_seconds + (0.0 if finished else time.time() - started))
    if train_step.fallbacks:  # capture = "compile" where a part could not be captured (TrainStep._guarded)
        record.extra["capture_fallback"] = dict(train_step.fallbacks)
    with writing(layout.record_path(results, grid, rid)):
        write_record(record, results)
    return record.to_dict()


def _format_epoch(rid: str, cfg: dict, m: EpochMetrics, mean_lr: float) -> str:
    """The log line of an epoch; ``mean_lr``: the mean over the epoch's steps of the lr each step used."""
    flips = "" if m.flip_ratio is None else f" flips {m.flip_ratio:.4f}"
    return (f"[{rid}] {cfg['model']}/{cfg['method']} epoch {m.epoch}/{cfg['epochs']}: loss {m.train_loss:.4f} "
            f"train {m.train_acc:.2f}% test {m.test_acc:.2f}% (F(w) {m.test_acc_forward:.2f}%)"
            f"{flips} mean lr {mean_lr:.2e} {m.seconds:.1f}s")
