"""The small base of an activation quantizer, and the module that applies one to a layer's input (W1A1).

larq's split of a binarized layer into a ``kernel_quantizer`` and an ``input_quantizer`` is the model (BiBench,
ICML 2023): a weight method (``methods.Method``) quantizes the kernel, and a method that binarizes activations
as well names an activation quantizer in its ``activation`` attribute. An activation quantizer is an (F, B')
pair on the raw input x of a binarized layer (α = 1): the network computes with F(x) and backprop multiplies
the gradient by B'(x) (Lu et al., NeurIPS 2023, applied to activations). It declares its parameters as a
method does (``schedules``, ``constants``, ``bounds``: ``methods.schedule.Parameters``), and may own per-layer
learnable tensors (ReActNet's threshold β): ``layer_parameters(layer)`` gives their initial values, which
``InputQuantizer`` (attached as ``<layer>.input_quantizer``) holds as ``nn.Parameter``s, so they are in
``state_dict()``, checkpoints, the optimizer and the packed export. ``deploy(x, **learned)`` is the deployed
form (no gradient).
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from .autograd import quantize_eagerly
from .registry import ACTIVATIONS
from .schedule import Parameters

class ActivationQuantizer(Parameters):
    """F and B' on the raw input x of a binarized layer (α = 1); register with ``@register_activation(name)``.

    Writes ``F`` and ``dB`` (or the fused ``grad_dB``), declares ``schedules``/``constants``/``bounds`` and
    ``formulas``; ``levels`` is the value of a binary input ("sign": ±1, an XNOR-popcount MAC; "unipolar":
    {0, 1}, an AND-popcount MAC); ``scales_output`` says that ``output`` multiplies the layer's output
    (XNOR-Net++'s h ⊗ w); ``identity_backward``: B' ≡ 1; ``traced_schedule``: False for a schedule beyond the
    declared shapes (``methods.schedule``), which the captured step then moves eagerly."""

    default_scale: ClassVar[str] = "none"
    formulas: ClassVar[tuple[str, str, str]] = ("F(x)", "B'(x)", "—")
    levels: ClassVar[str] = "sign"
    scales_output: ClassVar[bool] = False
    identity_backward: ClassVar[bool] = False
    traced_schedule: ClassVar[bool] = True

    def __init__(self, **overrides):
        self.act = None
        self.init_parameters(overrides, self.valid_parameters())
        self.set_progress(0.0)

    @property
    def schedule_traceable(self) -> bool:
        return self.traced_schedule

    def F(self, x: Tensor) -> Tensor:  # noqa: N802 - the paper's name
        """The forward quantizer on the input."""
        raise NotImplementedError

    def dB(self, x: Tensor) -> Tensor:  # noqa: N802
        """B'(x), the backward factor (default: the straight-through 1)."""
        return torch.ones_like(x)

    def grad_dB(self, grad: Tensor, x: Tensor) -> Tensor:  # noqa: N802
        """grad · B'(x), possibly fused (equal up to float rounding)."""
        return grad * self.dB(x)

    def backward_factor(self, x: Tensor) -> Tensor:
        """B'(x) without a graph (α = 1)."""
        with torch.no_grad():
            return self.dB(x)

    def layer_parameters(self, layer: nn.Module) -> dict[str, Tensor]:
        """Initial values of the learnable tensors this quantizer owns on ``layer`` (none by default)."""
        return {}

    def apply(self, x: Tensor, training: bool = True, **learned: Tensor) -> Tensor:
        """F(x) in the forward, grad·B'(x) in the backward (the training forward and the F(w) model)."""
        return quantize_eagerly(x, self)

    def deploy(self, x: Tensor, **learned: Tensor) -> Tensor:
        """The deployed input: F(x) without a graph."""
        with torch.no_grad():
            return self.F(x)

    def output(self, y: Tensor, **learned: Tensor) -> Tensor:
        """The layer's output as the method's layer computes it (``scales_output``; default: y itself)."""
        return y



class InputQuantizer(nn.Module):
    """Attached to a binarized layer as ``<layer>.input_quantizer``; a forward pre-hook on the layer replaces
    its input by ``quantizer.apply(x)`` (training forward and F(w) model) or ``quantizer.deploy(x)``
    (``deployed = True``). Owns the quantizer's learnable per-layer tensors as ``nn.Parameter``s."""

    def __init__(self, quantizer: ActivationQuantizer, layer: nn.Module):
        super().__init__()
        self.quantizer = quantizer
        self.deployed = False
        self.schedule = quantizer.tensors  # its schedule tensors (non-persistent): follow model.to(device)
        self._names = []
        for name, value in quantizer.layer_parameters(layer).items():
            self.register_parameter(name, nn.Parameter(value.to(layer.weight.device, torch.float32)))
            self._names.append(name)

    def learned(self) -> dict[str, Tensor]:
        return {name: getattr(self, name) for name in self._names}

    def forward(self, x: Tensor) -> Tensor:
        if self.deployed:
            return self.quantizer.deploy(x, **self.learned())
        return self.quantizer.apply(x, training=self.training, **self.learned())

    def extra_repr(self) -> str:
        return f"{self.quantizer.name}, deployed={self.deployed}"


    def scale_output(self, y: Tensor) -> Tensor:
        """The quantizer's factor on the layer's output (XNOR-Net++'s h ⊗ w), training and deployed alike."""
        return self.quantizer.output(y, **self.learned())


def _pre_hook(layer: nn.Module, args):
    return (layer.input_quantizer(args[0]), *args[1:])


def _output_hook(layer: nn.Module, args, output):
    return layer.input_quantizer.scale_output(output)


def attach_input_quantizer(layer: nn.Module, quantizer: ActivationQuantizer) -> InputQuantizer:
    """Add ``layer.input_quantizer`` and the forward pre-hook that applies it."""
    module = InputQuantizer(quantizer, layer)
    layer.add_module("input_quantizer", module)
    layer._proxbench_input_hook = layer.register_forward_pre_hook(_pre_hook)
    if quantizer.scales_output:
        layer._proxbench_output_hook = layer.register_forward_hook(_output_hook)
    return module


ACTIVATIONS.holds(ActivationQuantizer, "methods.ActivationQuantizer")  # what register_activation accepts
