"""One training run: model × method × dataset, with checkpoints, resume and a run record.

Per step: forward with θ = α·F(w/α), backward with B', then ``methods.optimizer_step`` (hooks around
``optimizer.step()`` and ``set_progress((step+1)/total_steps)``), then the per-step lr scheduler; every
``log_every`` steps and at each epoch's end, a line of ``<workdir>/runs/<run_id>/steps.jsonl``
(``StepLog``; TensorBoard too with ``logger = "tensorboard"``). Per epoch: evaluation of the deployed model
(α·sign(w)) and of the F(w) model, the flip ratio of the deployed signs, and an atomic checkpoint. A run
restarted after a kill resumes from its last checkpoint and ends bit-identical to an uninterrupted run on
the same device: the data order and augmentation of each epoch are functions of (seed, epoch), and the RNG
states are checkpointed.

The record's ``wall_seconds`` is the run's time summed over its processes: each checkpoint stores the time
spent so far (earlier processes up to their last checkpoint, plus this one), and the process that finishes
adds its own. A checkpoint that is already finished only has its record rewritten. A checkpoint that cannot
be read, lacks a key or does not fit the run is a ``UserError`` naming the file and ``--fresh``; a failed
write (a full disk) is a ``UserError`` naming the file, and the files written before it stay whole (every
write is atomic).
"""

from __future__ import annotations

import contextlib
import json
import math
import resource
import sys
import time
from pathlib import Path

import torch
from torch import nn

import methods
import models

from bench.run import config as configs
from bench import data
from bench.run import records
from bench.atomic import atomic_write
from bench.errors import UserError
from bench.run.records import check_name


def build_model(cfg: dict, info=None, *, load_init: bool = True, workdir: str | Path = "work") -> nn.Module:
    """Create the model for ``cfg``, load its fine-tune init when asked, and binarize it."""
    info = info or data.dataset_info(cfg["dataset"], cfg["data_options"])
    pretrained = cfg["init"] == "timm"
    try:
        model = models.create_model(
            cfg["model"], num_classes=info.num_classes, in_chans=info.in_chans, img_size=info.img_size,
            pretrained=pretrained and load_init, **cfg["model_kwargs"],
        )
    except (TypeError, ValueError, RuntimeError) as exc:
        if not cfg["model_kwargs"] or isinstance(exc, models.ModelError):
            raise
        # the builder refused a value of model_kwargs (a string where a width belongs, ...)
        raise UserError(f"model {cfg['model']!r} cannot be built with model_kwargs {cfg['model_kwargs']} "
                        f"({type(exc).__name__}: {_one_line(exc)})") from None
    if load_init and cfg["mode"] == "finetune" and not pretrained:
        state = load_init_state(cfg["init"], workdir)
        models.load_state_dict_resampled(model, state)
    methods.binarize(model, methods.create_method(cfg["method"], **cfg["method_params"]), policy=cfg["policy"])
    return model


def checkpoint_path(workdir: str | Path, run_id: str) -> Path:
    return Path(workdir) / "runs" / run_id / "checkpoint.pt"


# What a run checkpoint holds (``wall_seconds`` is optional: checkpoints written before it existed lack it).
CHECKPOINT_KEYS = ("config", "model", "optimizer", "scheduler", "rng_torch", "history", "epoch", "status",
                   "prev_signs")
FRESH_HINT = "delete it or run with --fresh"


def _one_line(exc: BaseException, limit: int = 300) -> str:
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
        raise bad_checkpoint(path, _one_line(exc, 160), hint) from None
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
        raise UserError(f"cannot write {path}: {exc.strerror or _one_line(exc)}") from None


def load_init_state(init: str, workdir: str | Path) -> dict:
    """The full-precision weights a fine-tune starts from: 'run:<id>' (a finished run) or a file."""
    if init.startswith("run:"):
        path = checkpoint_path(workdir, init[4:])
    else:
        path = Path(init)
    if not path.is_file():
        raise UserError(f"fine-tune checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is a user error here
        raise UserError(f"cannot read checkpoint {path}: {_one_line(exc)}") from None
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        if state.get("status", "done") != "done" or state.get("epoch") != state.get("config", {}).get("epochs"):
            raise UserError(f"fine-tune parent {path} has not finished (epoch {state.get('epoch')})")
        state = state["model"]
    return _strip_parametrizations(state)


def _strip_parametrizations(state: dict) -> dict:
    """Map 'layer.parametrizations.weight.original' keys back to 'layer.weight' (a binarized parent)."""
    return {k.replace(".parametrizations.weight.original", ".weight"): v for k, v in state.items()}


def load_run_model(source: str, workdir: str | Path = "work") -> tuple[nn.Module, dict]:
    """A run id (looked up in the work directory) or a checkpoint path -> (trained binarized model, config)."""
    path = Path(source) if Path(source).is_file() else checkpoint_path(workdir, source)
    if not path.is_file():
        raise UserError(f"no checkpoint for {source!r} (looked for {path})")
    state = read_checkpoint(path, keys=("config", "model"), hint=None)
    try:
        cfg = configs.resolve(state["config"], "its config")
    except UserError as exc:
        raise bad_checkpoint(path, str(exc), hint=None) from None
    model = build_model(cfg, load_init=False)
    load_model_state(model, state["model"], path, cfg["model"])
    return model.eval(), cfg


def load_model_state(model: nn.Module, state: dict, path: Path, name: str) -> None:
    """``model.load_state_dict(state)``; a checkpoint that no longer fits the model's code is a UserError."""
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        if "Error(s) in loading state_dict" not in str(exc):
            raise
        raise UserError(f"checkpoint {path} does not fit model {name!r} as defined now (changed since the "
                        f"checkpoint was written?): delete it or run with --fresh") from None


def make_optimizer(cfg: dict, model: nn.Module) -> torch.optim.Optimizer:
    """The optimizer with two parameter groups: the binarized latents, with weight decay
    ``latent_weight_decay`` (0 by default: decay pulls latents towards 0, against a prox towards ±1), and
    every other trainable parameter, with ``weight_decay``."""
    latent_ids = {id(w) for w in methods.latent_weights(model)}
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if id(p) in latent_ids], "weight_decay": cfg["latent_weight_decay"]},
              {"params": [p for p in params if id(p) not in latent_ids], "weight_decay": cfg["weight_decay"]}]
    groups = [g for g in groups if g["params"]]
    if cfg["optimizer"] == "sgd":
        return torch.optim.SGD(groups, lr=cfg["lr"], momentum=cfg["momentum"])
    if cfg["optimizer"] == "adam":
        return torch.optim.Adam(groups, lr=cfg["lr"])
    return torch.optim.AdamW(groups, lr=cfg["lr"])


def lr_factor(cfg: dict, step: int, total: int, steps_per_epoch: int) -> float:
    """Multiplier of the peak lr at ``step``: linear warm-up, then cosine to 0, step (×0.1) or constant."""
    warmup = int(cfg["warmup_epochs"] * steps_per_epoch)
    if step < warmup:
        return (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    if cfg["lr_schedule"] == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * t))
    if cfg["lr_schedule"] == "step":
        return 0.1 ** sum(t >= m for m in cfg["step_milestones"])
    return 1.0


def evaluate(model: nn.Module, loader, device: torch.device) -> float:
    """Top-1 accuracy in percent."""
    model.eval()
    correct = total = 0
    with torch.no_grad(), _autocast(device):
        for x, y in loader:
            correct += (model(x).argmax(1) == y).sum().item()
            total += y.numel()
    return 100.0 * correct / max(1, total)


def _autocast(device: torch.device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


def deployed_signs(model: nn.Module) -> list[torch.Tensor]:
    return [(w.detach() >= 0).cpu() for w in methods.latent_weights(model)]


def flip_ratio(before: list[torch.Tensor], after: list[torch.Tensor]) -> float | None:
    """Fraction of deployed binary weights whose sign changed (None when nothing is binarized)."""
    total = sum(t.numel() for t in after)
    if not before or total == 0:
        return None
    return sum((a != b).sum().item() for a, b in zip(before, after)) / total


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class _KeepWriteError:
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


def _atomic_torch_save(obj, path: Path) -> None:
    def save(fh):
        sink = _KeepWriteError(fh)
        try:
            torch.save(obj, sink)
        except RuntimeError:
            if sink.error is not None:
                raise sink.error from None
            raise

    with writing(path):
        atomic_write(path, save)


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


class _Progress:
    """A tqdm bar on a terminal; plain lines in logs."""

    def __init__(self, total: int, desc: str):
        self.bar = None
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True)

    def update(self, loss: float) -> None:
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{loss:.3f}", refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


PROGRESS_FILE = "progress.json"  # epochs done, in the run directory beside the checkpoint
STEPS_FILE = "steps.jsonl"  # per-step metrics, in the run directory beside the checkpoint
TENSORBOARD_DIR = "tensorboard"  # TensorBoard event files (``--logger tensorboard``), in the run directory
LOGGERS = ("none", "tensorboard")
LOG_EVERY = 50  # default: steps between two lines of steps.jsonl


def _summary_writer_class():
    """``torch.utils.tensorboard.SummaryWriter``, or a UserError when the tensorboard package is missing."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise UserError("--logger tensorboard needs the tensorboard package: pip install tensorboard") from None
    return SummaryWriter


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


class StepLog:
    """Per-step training metrics of one run, in ``<run dir>/steps.jsonl`` and optionally TensorBoard.

    One JSON object per line, every ``every`` optimizer steps and at the last step of each epoch:
    ``{"step": optimizer steps done, "epoch": 1-based epoch, "loss": mean training loss over the steps since
    the previous line, "lr": the lr this step used, "method_params": the method's scheduled parameters this
    step used}`` (a non-finite loss is ``null``). The losses are summed on the device; the one host sync is
    the ``.item()`` of a line, and lines are appended as they come. A fresh run (``resume_step`` None)
    empties the file and the TensorBoard folder; a resumed one drops the lines past ``resume_step`` (the
    steps its checkpoint holds; the later ones are trained again) and a partial last line, then appends.
    TensorBoard (``tensorboard=True``: ``<run dir>/tensorboard/``) gets the same scalars (``train/loss``,
    ``train/lr``, ``method/<param>``) and, at each epoch's last step, the test accuracies, the epoch's
    training loss and accuracy and the flip ratio; on resume it purges the events past ``resume_step``.
    """

    def __init__(self, run_dir: Path, every: int, device: torch.device, *, resume_step: int | None,
                 tensorboard: bool = False):
        self.path = Path(run_dir) / STEPS_FILE
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
            writer = _summary_writer_class()
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
        mean = _finite_or_none(self.window.item() / self.count)
        self.window.zero_()
        self.count = 0
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
        """TensorBoard only: an epoch's metrics (``_epoch_metrics``) at its last step; flushed."""
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


def _scheduled_params(method) -> dict:
    """The method's scheduled parameters (``schedules``) and their current values."""
    values = method.params()
    return {name: float(values[name]) for name in type(method).schedules if name in values}


def execute(
    cfg: dict,
    *,
    grid: str = "adhoc",
    workdir: str | Path = "work",
    results: str | Path | None = None,
    device: str = "cpu",
    data_root: str | None = None,
    fresh: bool = False,
    log=print,
    logger: str = "none",
    log_every: int = LOG_EVERY,
) -> dict:
    """Train and evaluate one resolved config; resume from its checkpoint; write and return its record.

    The record goes to ``<results>/runs/<grid>/<run_id>.json``; ``results`` None: ``<workdir>/results``.
    Per-step metrics go to ``<workdir>/runs/<run_id>/steps.jsonl`` every ``log_every`` steps (``StepLog``),
    and with ``logger = "tensorboard"`` to TensorBoard as well (a UserError before anything is written
    when the tensorboard package is missing). Neither is part of the config: the run id does not change.
    """
    rid = configs.run_id(cfg)
    dev = check_device(device)
    if results is None:
        results = Path(workdir) / "results"
    if logger not in LOGGERS:
        raise UserError(f"unknown logger {logger!r} (valid: {', '.join(LOGGERS)})")
    if logger == "tensorboard":
        _summary_writer_class()
    if isinstance(log_every, bool) or not isinstance(log_every, int) or log_every < 1:
        raise UserError(f"--log-every must be a positive integer, got {log_every!r}")
    started = time.time()
    ckpt_path = checkpoint_path(workdir, rid)
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
    model = build_model(cfg, info, workdir=workdir).to(dev)
    if dev.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    method = methods.get_method(model)
    optimizer = make_optimizer(cfg, model)
    steps_per_epoch = len(train_loader)
    total_steps = cfg["epochs"] * steps_per_epoch
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(cfg, step, total_steps, steps_per_epoch)
    )
    criterion = nn.CrossEntropyLoss(label_smoothing=cfg["label_smoothing"])

    history: list[dict] = []
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
        history, start_epoch, status, earlier_seconds = _restore(
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
            history.append(_epoch_metrics(0, model, test_loader, dev, None, None, None, optimizer))
            log(f"[{rid}] initial: deployed acc {history[-1]['test_acc']:.2f}%")

    steps = None  # per-step metrics; a finished run keeps its file as it is
    if not finished:
        steps = StepLog(ckpt_path.parent, log_every, dev, tensorboard=logger == "tensorboard",
                        resume_step=start_epoch * steps_per_epoch if resumed else None)
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
        bar = _Progress(steps_per_epoch, f"{cfg['method']} epoch {epoch + 1}/{cfg['epochs']}")
        for i, (x, y) in enumerate(train_loader):
            if dev.type == "cuda":
                x = x.contiguous(memory_format=torch.channels_last)
            with _autocast(dev):
                out = model(x)
                loss = criterion(out.float(), y)
            if not torch.isfinite(loss):
                status = "diverged"
                log(f"[{rid}] diverged: loss {loss.item()} at epoch {epoch + 1}, step {i + 1}")
                break
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            step = epoch * steps_per_epoch + i
            lr = optimizer.param_groups[0]["lr"]  # the lr of this step (the scheduler moves it after the step)
            lr_sum += lr
            # the parameters this step uses (optimizer_step moves them to the next step's progress)
            params = _scheduled_params(method) if steps.due(step + 1, i + 1 == steps_per_epoch) else None
            methods.optimizer_step(model, optimizer, progress=(step + 1) / total_steps)
            scheduler.step()
            steps.step(step + 1, epoch + 1, loss, lr, params)
            loss_sum += loss.detach() * y.numel()
            correct += (out.detach().argmax(1) == y).sum()
            seen += y.numel()
            if bar.bar is not None:
                bar.update(loss.item())
        bar.close()
        if status != "running":
            break
        signs = deployed_signs(model)
        train = (loss_sum.item() / max(1, seen), 100.0 * correct.item() / max(1, seen))
        metrics = _epoch_metrics(epoch + 1, model, test_loader, dev, train, prev_signs, signs, optimizer)
        metrics["seconds"] = round(time.time() - t0, 3)
        history.append(metrics)
        prev_signs = signs
        if epoch + 1 == cfg["epochs"]:
            status = "done"
        steps.epoch((epoch + 1) * steps_per_epoch, metrics)
        log(_format_epoch(rid, cfg, metrics, lr_sum / steps_per_epoch))
        _atomic_torch_save(
            {"version": 1, "config": cfg, "run_id": rid, "epoch": epoch + 1, "status": status if status == "done" else "running",
             "model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
             "rng_torch": torch.get_rng_state(), "history": history, "prev_signs": prev_signs,
             "wall_seconds": earlier_seconds + time.time() - started},
            ckpt_path,
        )
        progress = ckpt_path.with_name(PROGRESS_FILE)
        with writing(progress):
            records.write_json_atomic({"epoch": epoch + 1, "epochs": cfg["epochs"]}, progress)

    if steps is not None:
        steps.close()
    if status == "running":  # nothing left to train (resumed a finished checkpoint)
        status = "done"
    record = records.make_record(
        rid, grid, cfg, status=status, history=history, final=_final_metrics(model, history, info, dev, cfg, train_loader, test_loader),
        device=_device_name(dev), wall_seconds=earlier_seconds + (0.0 if finished else time.time() - started),
    )
    with writing(records.record_path(results, grid, rid)):
        records.write_record(record, results)
    return record


def _restore(state: dict, path: Path, cfg: dict, model, optimizer, scheduler,
             signs: list[torch.Tensor]) -> tuple[list, int, str, float]:
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
        load_model_state(model, state["model"], path, cfg["model"])  # its own UserError when the shapes differ
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng_torch"])
        saved = state["prev_signs"]
        if not isinstance(saved, list) or [getattr(s, "shape", None) for s in saved] != [s.shape for s in signs]:
            raise ValueError("prev_signs do not match the binarized layers")
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError, IndexError) as exc:
        raise bad_checkpoint(path, f"{type(exc).__name__}: {_one_line(exc, 160)}") from None
    return history, epoch, status, float(seconds)


def _epoch_metrics(epoch, model, test_loader, dev, train, before, after, optimizer) -> dict:
    """Test accuracy of the deployed and F(w) models, lr, method parameters, flip ratio."""
    method = methods.get_method(model)
    with methods.deployed(model):
        acc = evaluate(model, test_loader, dev)
    separate = method.binarizes and not method.forward_is_export  # else the F(w) model is the deployed one
    acc_forward = evaluate(model, test_loader, dev) if separate else acc
    params = {k: v for k, v in method.params().items() if isinstance(v, float) and k != "progress"}
    return {
        "epoch": epoch,
        "train_loss": None if train is None else round(train[0], 6),
        "train_acc": None if train is None else round(train[1], 4),
        "test_acc": round(acc, 4),
        "test_acc_forward": round(acc_forward, 4),
        "lr": optimizer.param_groups[0]["lr"],
        "method_params": params,
        "flip_ratio": None if before is None else flip_ratio(before, after),
        "seconds": 0.0,
    }


def reestimated_accuracy(model: nn.Module, train_loader, test_loader, dev: torch.device, batches: int,
                         epoch: int) -> float | None:
    """Top-1 of the deployed model after re-estimating every BatchNorm's running statistics with the
    deployed weights: the statistics are reset and averaged (cumulative, momentum None) over ``batches``
    training batches of epoch index ``epoch`` (a deterministic order), in train mode for the norms only and
    without gradients. The model's own statistics are restored afterwards. None without BatchNorm layers."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms or batches <= 0:
        return None
    saved = [({k: v.clone() for k, v in bn.state_dict().items()}, bn.momentum) for bn in norms]
    try:
        with methods.deployed(model):
            model.eval()
            for bn in norms:
                bn.reset_running_stats()
                bn.momentum = None
                bn.train()
            train_loader.set_epoch(epoch)
            with torch.no_grad(), _autocast(dev):
                for i, (x, _) in enumerate(train_loader):
                    if i == batches:
                        break
                    model(x.contiguous(memory_format=torch.channels_last) if dev.type == "cuda" else x)
            return round(evaluate(model, test_loader, dev), 4)
    finally:
        for bn, (state, momentum) in zip(norms, saved):
            bn.load_state_dict(state)
            bn.momentum = momentum


def _final_metrics(model: nn.Module, history: list[dict], info, dev: torch.device, cfg: dict, train_loader,
                   test_loader) -> dict:
    from bench.run import flops
    from bench.run import export as packing

    cpu_model = model
    sizes = packing.measure(cpu_model)
    ops = flops.count_ops(cpu_model, (1, info.in_chans, info.img_size, info.img_size))
    last = history[-1] if history else {}
    return {
        "acc": last.get("test_acc"),
        "acc_forward": last.get("test_acc_forward"),
        **({"acc_bn": reestimated_accuracy(model, train_loader, test_loader, dev, cfg["bn_reestimate"],
                                           cfg["epochs"])}
           if cfg["bn_reestimate"] and methods.get_method(model).binarizes else {}),
        "train_loss": last.get("train_loss"),
        **sizes,
        "flops": ops["flops"],
        "bops": ops["bops"],
        **({"bops_w1a1": ops["bops_w1a1"], "flops_w1a1": ops["flops_w1a1"], "ops": ops["ops"]}
           if "ops" in ops else {}),  # W1A1 models only: weight-only records keep their keys
        "peak_memory_mb": round(peak_memory_mb(dev), 1),
        "epochs_done": max((h["epoch"] for h in history), default=0),
    }


def _device_name(dev: torch.device) -> str:
    if dev.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(dev)})"
    return f"cpu ({torch.get_num_threads()} threads)"


def _format_epoch(rid: str, cfg: dict, m: dict, mean_lr: float) -> str:
    """The log line of an epoch; ``mean_lr``: the mean over the epoch's steps of the lr each step used."""
    flips = "" if m["flip_ratio"] is None else f" flips {m['flip_ratio']:.4f}"
    return (f"[{rid}] {cfg['model']}/{cfg['method']} epoch {m['epoch']}/{cfg['epochs']}: loss {m['train_loss']:.4f} "
            f"train {m['train_acc']:.2f}% test {m['test_acc']:.2f}% (F(w) {m['test_acc_forward']:.2f}%)"
            f"{flips} mean lr {mean_lr:.2e} {m['seconds']:.1f}s")


def config_from_args(args) -> dict:
    """The raw config of ``python -m bench run``: --config file, then flags, then --set/--param."""
    raw: dict = {}
    if args.config:
        raw.update(configs.load_toml(args.config))
    for key in ("model", "method", "dataset", "loader", "mode", "init", "optimizer", "lr_schedule", "policy",
                "epochs", "batch_size", "seed", "subset", "test_subset", "lr", "weight_decay", "momentum",
                "warmup_epochs"):
        value = getattr(args, key, None)
        if value is not None:
            raw[key] = value
    for item in args.set:
        key, value = configs.parse_assignment(item, "--set")
        raw[key] = value
    params = raw.get("method_params", {})
    if not isinstance(params, dict):
        raise UserError(f"run: method_params must be a table, got {configs.show(params)}")
    params = dict(params)
    for item in args.param:
        key, value = configs.parse_assignment(item, "--param")
        params[key] = value
    if params:
        raw["method_params"] = params
    return raw


def record_location(args) -> tuple[str, Path]:
    """(grid, results folder) of ``python -m bench run``: without ``--grid``, an ad-hoc run whose record goes
    under the work directory (``<workdir>/results/runs/adhoc/``), out of the git-tracked ``results/``; with
    ``--grid G``, ``results/runs/G/``. An explicit ``--results`` wins in both cases."""
    grid = args.grid if args.grid is not None else "adhoc"
    if args.results is not None:
        return grid, Path(args.results)
    return grid, (Path("results") if args.grid is not None else Path(args.workdir) / "results")


def cli_run(args) -> int:
    grid, results = record_location(args)
    check_name(grid, "run --grid")
    if args.log_every < 1:
        raise UserError(f"--log-every must be a positive integer, got {args.log_every}")
    cfg = configs.resolve(config_from_args(args), "run")
    record = execute(cfg, grid=grid, workdir=args.workdir, results=results, device=args.device or "cpu",
                     data_root=args.data_root, fresh=args.fresh, logger=args.logger, log_every=args.log_every)
    final = record["final"]
    print(f"{record['run_id']} {record['status']}: deployed acc {final['acc']}%  F(w) acc {final['acc_forward']}%  "
          f"compression {final['compression']:.1f}x  -> {records.record_path(results, grid, record['run_id'])}")
    return 0 if record["status"] == "done" else 1
