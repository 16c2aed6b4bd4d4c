"""aten ops one eager training step dispatches: issue 23's budget (every weight method ≤ 100 over fp on
ResNet-20), shown by ``perf step`` ("aten ops over fp") and asserted by ``tests/test_perf_gpu.py``.

Each aten op reaching the dispatcher is counted once (views included) by a ``TorchDispatchMode`` around one
eager ``TrainStep`` (forward, backward, optimizer step, schedule update): on a GPU each is about one kernel
launch, which is what an eager step of a small network pays for there, whatever the arithmetic.
"""

from __future__ import annotations

import collections

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

import methods
import models

BUDGET = 100  # issue 23: aten ops a weight method's eager step may add to fp's


class OpCounter(TorchDispatchMode):
    """Counts every aten op dispatched inside the ``with`` block, by name (``ops``)."""

    def __init__(self):
        super().__init__()
        self.ops = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops[str(func)] += 1
        return func(*args, **(kwargs or {}))


def eager_step_ops(key: str, model: str = "resnet20", batch: int = 2, fused: bool = False,
                   in_chans: int = 3, img_size: int = 32) -> int:
    """aten ops the third eager ``TrainStep`` of ``model`` binarized by method ``key`` dispatches (SGD with
    momentum, batch ``batch``; the first two steps warm up lazily built state)."""
    from bench.run.step import TrainStep

    torch.manual_seed(0)
    net = models.create_model(model, num_classes=10, in_chans=in_chans, img_size=img_size)
    net = methods.binarize(net, key, fused=fused)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    step = TrainStep(net, opt, sched, nn.CrossEntropyLoss(), torch.device("cpu"))
    x, y = torch.randn(batch, in_chans, img_size, img_size), torch.randint(0, 10, (batch,))
    step(x, y, 0.1)
    step(x, y, 0.2)
    with OpCounter() as count:
        step(x, y, 0.3)
    return sum(count.ops.values())
