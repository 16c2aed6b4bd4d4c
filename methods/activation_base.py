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

import fnmatch

from .autograd import quantize_eagerly
from .errors import MethodError, close_match_hint
from .schedule import Parameters

# name -> activation quantizer class (``methods.register_activation`` fills it)
ACTIVATIONS: dict[str, type] = {}


def list_activations(pattern: str = "*") -> list[str]:
    """Sorted keys of the registered activation quantizers matching an fnmatch pattern."""
    return sorted(k for k in ACTIVATIONS if fnmatch.fnmatchcase(k, pattern))


def get_activation_class(name: str):
    """The activation quantizer registered as ``name``; else a ``MethodError`` with a close-match hint."""
    try:
        return ACTIVATIONS[name]
    except KeyError:
        valid = sorted(ACTIVATIONS)
        raise MethodError(f"unknown activation quantizer {name!r}{close_match_hint(name, valid)} "
                          f"(valid: {', '.join(valid)})") from None


class ActivationQuantizer(Parameters):
    """F and B' on the raw input x of a binarized layer (α = 1); register with ``@register_activation(name)``.

    Writes ``F`` and ``dB`` (or the fused ``grad_dB``), declares ``schedules``/``constants``/``bounds`` and
    ``formulas``; ``levels`` is the value of a binary input ("sign": ±1, an XNOR-popcount MAC; "unipolar":
    {0, 1}, an AND-popcount MAC); ``scales_output`` says that ``output`` multiplies the layer's output
    (XNOR-Net++'s h ⊗ w); ``identity_backward``: B' ≡ 1; ``traced_schedule``: False for a schedule that is not
    linear or geometric (FDA's ⌊n⌋ and λ), which the captured step then moves eagerly."""

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
