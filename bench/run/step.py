"""One training step of a run, eager or captured: the config key ``capture`` (``CAPTURES``).

A step is: forward with θ = α·F(w/α) and the loss (bf16 autocast on CUDA), ``zero_grad``, backward, the
method's ``before_step`` hooks, ``optimizer.step()``, the ``after_step`` hooks and latent clipping, the
schedule update (``set_progress``) and the per-step lr scheduler. ``TrainStep.forward`` does the first part
and ``TrainStep.update`` the rest, so a caller can look at the loss in between.

``capture = "none"``: every op eagerly, exactly the loop's historical code (float lr).

``capture = "compile"``: a step is two ``torch.compile``d graphs, on CUDA both with
``mode="reduce-overhead"`` (replayed as CUDA graphs), on CPU with the default mode. (1) The forward and the
loss (its backward is the compiled backward graph AOTAutograd derives from it). (2) The update: the
``before_step`` hooks, ``optimizer.step()``, the ``after_step`` hooks, latent clipping and the schedule update,
all of ``methods.optimizer_step`` in its tensor form. The binarized layers trace without a graph break and
read μ/ρ from the method's 0-d tensors (``methods.schedule.ScheduleTensors``); the update graph writes those in
place from a 0-d progress tensor (``Method.set_progress_tensors``: start + (end − start)·t or
start·(end/start)^t), so the graphs are compiled once. The lr changes every step, so it lives in a 0-d
tensor per optimizer group (on the model's device; Adam/AdamW with ``capturable=True`` on CUDA), which the
hooks read too (rPC/PQ's proximal strength η·ρ with ρ the tensor; PQ's freeze a ``torch.where`` on the
progress tensor). Eager between the graphs are only two host-to-device writes without a synchronisation:
the progress of the next step (``fill_`` of the host float into the tensor the update graph reads) and the
LambdaLR scheduler's ``fill_`` of each group's lr (its base lr is kept a Python float, ``initial_lr``). The
method's Python floats (records, step log, ``params()``) follow from the host progress
(``Method.set_progress_floats``), never read back from the device. A method whose hooks take no tensor lr
(``Method.hooks_traceable`` false: a plugin with ``Traits(hooks="eager")``) or whose schedule has no tensor form
(``Method.schedule_traceable`` false: a plugin's own ``set_progress``) keeps the former split: its hooks and
``set_progress`` run eagerly around a compiled ``optimizer.step()``, with the lr as the host float the
scheduler computed (``host_lrs``); there SGD's first step creates its momentum buffers, so its step graph
is compiled a second time at step 2 and never after. In the one-graph update the first update runs the
same function eagerly instead: it creates the optimizer's state (SGD's momentum buffers, Adam's moments;
tracing SGD's creation of its buffers fails in dynamo), and the update graph is compiled once, at step 2.

The forward and the update graph compile with ``fullgraph=True``: a graph break is an error at the first
trace (before anything ran), and that part then runs eagerly for the rest of the run, with one log line and
``TrainStep.fallbacks`` (the run record's ``capture_fallback``), never as a broken graph that is slower than
eager. The built-in methods' hooks are multi-tensor in-place arithmetic on the latents (no
``Parameter.copy_``, which dynamo cannot trace on torch 2.11), so none of them falls back.
"""

from __future__ import annotations

import inspect

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


class _GraphOptimizer:
    """The optimizer as the update graph sees it: the same groups (the lr tensors), and ``step()`` the class's
    step function itself, without its wrappers, each of which would break the graph: LambdaLR's (in a file
    dynamo skips; its only work, marking that the optimizer stepped, ``TrainStep.update`` does eagerly),
    the profiler's and step-hook wrapper (no step hooks are registered) and ``_use_grad_for_differentiable``
    (it breaks the graph around the step so that AOTAutograd sees a no-grad graph: ``TrainStep.update``
    calls the whole update graph under ``torch.no_grad()`` instead)."""

    def __init__(self, optimizer: torch.optim.Optimizer):
        self.optimizer = optimizer
        self.param_groups = optimizer.param_groups
        self.raw_step = inspect.unwrap(type(optimizer).step)

    def step(self) -> None:
        self.raw_step(self.optimizer)


class TrainStep:
    """The training step of one run (see the module docstring); ``capture`` is one of ``CAPTURES``.

    ``backend``: the ``torch.compile`` backend (None: inductor; tests use "aot_eager"). ``host_lrs()`` is the
    lr of each group that the next step uses, as Python floats, never read back from the device.
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler, criterion: nn.Module,
                 device: torch.device, capture: str = "none", backend: str | None = None, log=print):
        if capture not in CAPTURES:
            raise ValueError(f"capture must be one of {', '.join(CAPTURES)}, got {capture!r}")
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler
        self.criterion, self.device, self.capture = criterion, device, capture
        self._forward = self._eager_forward
        self._host = None  # the split capture: hooks eager around a compiled optimizer.step()
        self._update = None  # the whole-update capture: one compiled graph (see the module docstring)
        self._updates = 0
        self.log = log
        self.fallbacks: dict[str, str] = {}  # part -> why it runs eagerly (a graph break under fullgraph)
        if capture == "compile":
            options = {"backend": backend} if backend is not None else {}
            if device.type == "cuda" and backend is None:
                options["mode"] = "reduce-overhead"
            self._forward = torch.compile(self._eager_forward, fullgraph=True, **options)
            method = methods.get_method(model)
            self.method = method
            if method is None or (method.hooks_traceable and method.schedule_traceable):
                like = method.tensors.progress if method is not None else torch.zeros((), dtype=torch.float64)
                self.progress = torch.zeros_like(like, device=device)  # the next step's progress, for the graph
                if device.type == "cuda":  # written in place by the graph: a fixed address for CUDA graphs
                    owners = [] if method is None else [method] if method.act is None else [method, method.act]
                    for t in [self.progress, *(b for m in owners for b in m.tensors.buffers())]:
                        torch._dynamo.mark_static_address(t)
                self._graph_optimizer = _GraphOptimizer(optimizer)
                self._update = torch.compile(self._captured_update, fullgraph=True, **options)
            else:
                self._host = _HostLrOptimizer(optimizer, torch.compile(self._optimizer_step, **options))

    def _guarded(self, part: str, compiled, eager, *args):
        """``compiled(*args)`` (``fullgraph=True``: a graph break is an error at its first trace, before
        anything ran), or ``eager(*args)`` from then on where it cannot be traced in one graph: one log line,
        and ``fallbacks`` (the run record's ``capture_fallback``) says which part and why; never a silently
        broken graph that runs slower than eager."""
        if part in self.fallbacks:
            return eager(*args)
        try:
            return compiled(*args)
        except torch._dynamo.exc.Unsupported as exc:
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            self.fallbacks[part] = reason
            name = getattr(methods.get_method(self.model), "name", "fp")
            self.log(f"capture: the {part} of {name} runs eagerly (graph break: {reason})")
            return eager(*args)

    def _eager_forward(self, x: torch.Tensor, y: torch.Tensor):
        with autocast(self.device):
            out = self.model(x)
            loss = self.criterion(out.float(), y)
        return out, loss

    def _optimizer_step(self) -> None:
        self.optimizer.step()

    def _captured_update(self) -> None:
        methods.optimizer_step(self.model, self._graph_optimizer, progress=self.progress)

    def host_lrs(self) -> list[float]:
        """The lr of each optimizer group for the coming step (what LambdaLR wrote), as host floats."""
        if self._host is None and self._update is None:
            return [float(g["lr"]) for g in self.optimizer.param_groups]
        sched = self.scheduler
        return [base * fn(sched.last_epoch) for base, fn in zip(sched.base_lrs, sched.lr_lambdas)]

    def forward(self, x: torch.Tensor, y: torch.Tensor):
        """(logits, loss) of a batch, with the graph for the backward."""
        if self.device.type == "cuda" and self.capture != "none":
            torch.compiler.cudagraph_mark_step_begin()  # the previous step's outputs are no longer read
        if self.capture == "none":
            return self._eager_forward(x, y)
        return self._guarded("forward", self._forward, self._eager_forward, x, y)

    def update(self, loss: torch.Tensor, progress: float) -> None:
        """Backward of ``loss``, the hooked optimizer step, ``set_progress(progress)``, the scheduler step."""
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self._update is not None:
            self.progress.fill_(progress)  # a host float into the device tensor: no synchronisation
            self.optimizer._opt_called = True  # what LambdaLR's step wrapper would record
            with torch.no_grad():
                if self._updates:
                    self._guarded("update", self._update, self._captured_update)
                else:  # the first: eagerly
                    self._captured_update()
            self._updates += 1
            if self.method is not None:
                self.method.set_progress_floats(progress)
        elif self._host is None:
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
