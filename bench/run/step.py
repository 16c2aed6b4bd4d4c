"""One training step of a run, eager or captured: the config key ``capture`` (``CAPTURES``).

A step is: forward with θ = α·F(w/α) and the loss (bf16 autocast on CUDA), ``zero_grad``, backward, the
method's ``before_step`` hooks, ``optimizer.step()``, the ``after_step`` hooks and latent clipping, the
schedule update (``set_progress``) and the per-step lr scheduler. ``TrainStep.forward`` does the first part
and ``TrainStep.update`` the rest, so a caller can look at the loss in between.

``capture = "none"``: every op eagerly, exactly the loop's historical code (float lr).

``capture = "compile"``: the forward and the loss run through one ``torch.compile``d function (its backward
is the compiled backward graph AOTAutograd derives from it) and ``optimizer.step()`` through another; on
CUDA both with ``mode="reduce-overhead"``, i.e. replayed as CUDA graphs, on CPU with the default mode. The
binarized layers trace without a graph break and a moving μ/ρ is an in-place write to the method's 0-d
tensors (``methods.base.ScheduleTensors``), so the graphs are compiled once. The lr changes every step, so
it lives in a 0-d tensor per optimizer group (on the model's device; Adam/AdamW with ``capturable=True`` on
CUDA): the LambdaLR scheduler writes it in place with ``fill_`` of a host float (its base lr is kept a
Python float, ``initial_lr``), which neither synchronises nor recompiles. The method hooks (rPC's and PQ's
proximal steps, latent clipping) and ``set_progress`` run eagerly between the graphs: they read the
schedule's Python floats, so compiling them would recompile every step. They receive the lr as the host
float the scheduler computed (``host_lrs``), the value the eager path gives them, so they launch kernels
without a host synchronisation. SGD's first step creates its momentum buffers, so its step graph is
compiled a second time at step 2 and never after.
"""

from __future__ import annotations

import torch
from torch import nn

import methods

from bench.run.metrics import autocast

CAPTURES = ("none", "compile")


def tensor_lr(optimizer: torch.optim.Optimizer, device: torch.device) -> None:
    """Move every group's lr into a 0-d float32 tensor on ``device`` (written in place by the scheduler),
    keep ``initial_lr`` a Python float (the scheduler's base lr, so it never reads the tensor back), and set
    ``capturable`` where the optimizer has it and ``device`` is CUDA. Call before building the scheduler."""
    for group in optimizer.param_groups:
        base = float(group["lr"])
        group.setdefault("initial_lr", base)
        group["lr"] = torch.tensor(base, dtype=torch.float32, device=device)
        if "capturable" in group and device.type == "cuda":
            group["capturable"] = True
        if "foreach" in group and device.type != "cuda":
            group["foreach"] = False  # a tensor lr needs capturable=True with foreach; CPU has no capturable


class _HostLrOptimizer:
    """What ``methods.optimizer_step`` needs of an optimizer: its groups with the lr as a host float, and a
    ``step()`` that runs the compiled step of the real optimizer."""

    def __init__(self, optimizer: torch.optim.Optimizer, step):
        self.optimizer = optimizer
        self.step = step
        self.param_groups: list[dict] = []

    def set_lrs(self, lrs: list[float]) -> None:
        self.param_groups = [{"params": g["params"], "lr": lr} for g, lr in zip(self.optimizer.param_groups, lrs)]


class TrainStep:
    """The training step of one run (see the module docstring); ``capture`` is one of ``CAPTURES``.

    ``backend``: the ``torch.compile`` backend (None: inductor; tests use "aot_eager"). ``host_lrs()`` is the
    lr of each group that the next step uses, as Python floats, never read back from the device.
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler, criterion: nn.Module,
                 device: torch.device, capture: str = "none", backend: str | None = None):
        if capture not in CAPTURES:
            raise ValueError(f"capture must be one of {', '.join(CAPTURES)}, got {capture!r}")
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler
        self.criterion, self.device, self.capture = criterion, device, capture
        self._forward = self._eager_forward
        self._host = None
        if capture == "compile":
            options = {"backend": backend} if backend is not None else {}
            if device.type == "cuda" and backend is None:
                options["mode"] = "reduce-overhead"
            self._forward = torch.compile(self._eager_forward, **options)
            self._host = _HostLrOptimizer(optimizer, torch.compile(self._optimizer_step, **options))

    def _eager_forward(self, x: torch.Tensor, y: torch.Tensor):
        with autocast(self.device):
            out = self.model(x)
            loss = self.criterion(out.float(), y)
        return out, loss

    def _optimizer_step(self) -> None:
        self.optimizer.step()

    def host_lrs(self) -> list[float]:
        """The lr of each optimizer group for the coming step (what LambdaLR wrote), as host floats."""
        if self._host is None:
            return [float(g["lr"]) for g in self.optimizer.param_groups]
        sched = self.scheduler
        return [base * fn(sched.last_epoch) for base, fn in zip(sched.base_lrs, sched.lr_lambdas)]

    def forward(self, x: torch.Tensor, y: torch.Tensor):
        """(logits, loss) of a batch, with the graph for the backward."""
        if self.device.type == "cuda" and self._host is not None:
            torch.compiler.cudagraph_mark_step_begin()  # the previous step's outputs are no longer read
        return self._forward(x, y)

    def update(self, loss: torch.Tensor, progress: float) -> None:
        """Backward of ``loss``, the hooked optimizer step, ``set_progress(progress)``, the scheduler step."""
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self._host is None:
            methods.optimizer_step(self.model, self.optimizer, progress=progress)
        else:
            self._host.set_lrs(self.host_lrs())
            methods.optimizer_step(self.model, self._host, progress=progress)
        self.scheduler.step()

    def __call__(self, x: torch.Tensor, y: torch.Tensor, progress: float):
        """One whole step: (detached logits, detached loss)."""
        out, loss = self.forward(x, y)
        self.update(loss, progress)
        return out.detach(), loss.detach()
