"""``Method``: one binarization method of the PC++ framework, declared in one screen.

Lu, Yu, Li & Partovi Nia, "Understanding Neural Network Binarization with Forward and Backward Proximal
Quantizers", NeurIPS 2023. A method is a forward quantizer F and a backward quantizer B: the network computes
with θ = α·F(w/α) and backprop multiplies the gradient reaching θ by B'(w/α) before it reaches the latent
full-precision weight w (α = ``channel_scale(w, scale)``, detached; α = 1 for ``scale = "none"``). Its
parameters follow a schedule over training progress t ∈ [0, 1] (``methods.schedule``) within declared bounds
(``methods.bounds``); optional step hooks act on the latents in place around the optimizer step. The deployed
tensor is α·sign(w) (``export``), or the bits and α of ``export_parts`` (``methods.deploy``).

``AUTHOR_SURFACE`` lists everything a method author may set or override, and nothing else is read from a
subclass. Data: ``schedules`` (name -> (start, end)), ``constants`` (name -> value), ``bounds``
(name -> ``Bound``), ``default_scale``, ``activation`` (an activation quantizer's key, W1A1), ``traits``
(the capabilities, ``Traits``), ``formulas`` (F, B', hooks as text for ``bench methods``) and ``style``
(an optional suggestion of label, colour, marker and parameter symbols for tables and figures; the report's
own table wins). Code: ``F`` and ``dB`` (B') on x = w/α, reading scheduled parameters from ``self.tensors``
(0-d tensors: a new μ is a new value, not a recompile under ``torch.compile``); optionally their fused or
batched forms ``grad_dB`` (grad·B'(x)), ``F_all``/``grad_dB_all`` (lists of tensors, the same bits); the step
hooks ``before_step_all``/``after_step_all`` (``traits.hooks``); per-layer learnable tensors
``weight_parameters``/``quantize``/``export_parts`` (``traits.learned``); ``set_progress`` (a schedule beyond the
declared shapes, ``methods.schedule``) and ``validate`` (a check beyond ``bounds``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from .autograd import channel_scale, eager_alpha, scaled_quantize, straight_through
from .bounds import Bound
from .deploy import signed
from .errors import MethodError
from .functional import sign
from .registry import METHODS, get_activation_class
from .schedule import Parameters

AUTHOR_SURFACE = (
    # data
    "schedules", "constants", "bounds", "default_scale", "activation", "traits", "formulas", "style",
    # the quantizer pair, and its fused (grad·B') and batched (list) forms
    "F", "dB", "grad_dB", "F_all", "grad_dB_all",
    # capabilities, each used only where ``traits`` says so
    "before_step_all", "after_step_all", "weight_parameters", "quantize", "export_parts",
    "set_progress", "validate",
)
HOOKS = ("none", "eager", "traced")


@dataclass(frozen=True)
class Traits:
    """What a method can do, declared (never inferred from which methods a class overrides).

    ``elementwise``: F and B' act elementwise on x = w/α and the layer's weight is θ = α·F(w/α): the fused and
    batched paths may evaluate every layer in one flat tensor (``methods.fuse``). True by default, so a plugin
    is fused without asking; a method with its own ``quantize`` declares ``elementwise=False``.
    ``identity_backward``: B' ≡ 1 (the backward saves nothing). ``identity_forward``: θ = w itself (rPC, PQ:
    F(x) = x at α = 1; nothing to quantize). ``forward_is_export``: α·F(w/α) is exactly ``export(w)`` (F = sign;
    the F(w) model is not evaluated apart from the deployed one). ``binarizes``: False for the full-precision
    baseline. ``hooks``: "none"; "eager" (the step hooks read float parameters and a float lr: the captured
    step runs them eagerly); "traced" (they also take a 0-d tensor lr and then read ``self.tensors`` only, so
    ``torch.compile`` traces them). ``learned``: per-layer learnable tensors (``weight_parameters``).
    ``custom_export``: the deployed weight is not α·sign(w) (``export_parts`` says how; the packer checks it).
    ``traced_schedule``: ``set_progress`` is the declared schedule (linear, geometric, exponential) or has its
    tensor form in what F/B' read (FDA's λ(t) from ``tensors.progress``); False: a plugin's own
    ``set_progress``, which the captured step then moves eagerly.
    """

    elementwise: bool = True
    identity_backward: bool = False
    identity_forward: bool = False
    forward_is_export: bool = False
    binarizes: bool = True
    hooks: str = "none"
    learned: bool = False
    custom_export: bool = False
    traced_schedule: bool = True

    def __post_init__(self):
        if self.hooks not in HOOKS:
            raise MethodError(f"Traits(hooks={self.hooks!r}) must be one of {', '.join(HOOKS)}")


# class attributes of the former interface: a class that sets one is told what replaces it
RETIRED = {
    **{flag: "traits = Traits(...)" for flag in ("identity_backward", "forward_is_export", "elementwise",
                                                  "binarizes", "tensor_hooks")},
    **{name: "formulas = (F, B', hooks)" for name in ("forward_formula", "backward_formula", "hooks_formula")},
    **{name: "style = {...} (label, color, marker, symbols)" for name in ("label", "color", "marker", "symbols")},
    "before_step": "before_step_all(ws, lr)", "after_step": "after_step_all(ws, lr)",
    "export_learned": "export_parts(w, **learned)",
}


class Method(Parameters):
    """Base class of every binarization method (register subclasses with ``@methods.register_method``); see
    the module docstring and ``AUTHOR_SURFACE``."""

    name: ClassVar[str] = ""  # the registry key, set by ``register_method``
    schedules: ClassVar[dict[str, tuple[float, float]]] = {}  # name -> (start, end), ``methods.schedule``
    constants: ClassVar[dict[str, float | str]] = {}
    bounds: ClassVar[dict[str, Bound]] = {}  # merged along the class hierarchy, on top of scale and schedule
    default_scale: ClassVar[str] = "none"  # the unit F acts in unless a run sets ``scale``: "none" = the raw latent
    # an activation quantizer (key of ``methods.activations``) on the inputs of the binarized layers, or None:
    # a weight-only method (its config has no ``act_*`` key, so run ids never change)
    activation: ClassVar[str | None] = None
    traits: ClassVar[Traits] = Traits()
    formulas: ClassVar[tuple[str, str, str]] = ("F(x)", "B'(x)", "—")
    style: ClassVar[dict | None] = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        for key, replacement in RETIRED.items():
            if key in cls.__dict__:
                raise MethodError(f"{cls.__qualname__} sets {key!r}: methods.Method declares {replacement} instead")
        if "export" in cls.__dict__:
            raise MethodError(f"{cls.__qualname__} overrides export: the deployed weight is α·(2·bits − 1), so give "
                              "export_parts(w) -> (bits, α) and declare methods.Traits(custom_export=True)")
        if "quantize" in cls.__dict__ and cls.traits.elementwise:
            raise MethodError(f"{cls.__qualname__} has its own quantize: declare traits = "
                              "methods.Traits(elementwise=False, ...) so that it is not fused as θ = α·F(w/α)")

    def __init__(self, **overrides):
        act_overrides = {}
        if self.activation is not None:  # act_<name>: a parameter of the activation quantizer
            act_keys = {f"act_{k}" for k in self.activation_class().valid_parameters() if k not in ("scale",)}
            act_overrides = {k[4:]: overrides.pop(k) for k in list(overrides) if k in act_keys}
        traits = self.traits
        self.identity_backward, self.forward_is_export = traits.identity_backward, traits.forward_is_export
        self.binarizes, self.elementwise = traits.binarizes, traits.elementwise
        self.act = None
        self.init_parameters(overrides, self.valid_parameters())
        if self.activation is not None:
            try:
                self.act = self.activation_class()(**act_overrides)
            except MethodError as exc:
                raise MethodError(f"method {self.name!r}: activation quantizer {self.activation!r}: {exc}") from None
        self.validate()
        self.set_progress(0.0)

    @classmethod
    def activation_class(cls):
        """The class of the activation quantizer (None for a weight-only method)."""
        return None if cls.activation is None else get_activation_class(cls.activation)

    @classmethod
    def valid_parameters(cls) -> list[str]:
        """The declared parameters (``Parameters.declared_parameters``) and the activation quantizer's as act_*."""
        names = cls.declared_parameters()
        act = cls.activation_class()
        if act is not None:
            names += [f"act_{k}" for k in act.valid_parameters() if k != "scale"]
        return sorted(names)

    def validate(self) -> None:
        """Check parameter values after construction (beyond ``bounds``); raise ``MethodError`` (no-op by default)."""

    # -- the quantizer pair ---------------------------------------------------------------------------
    def F(self, x: Tensor) -> Tensor:  # noqa: N802 - the paper's name
        """Forward quantizer on the normalised weight x = w/α."""
        raise NotImplementedError

    def dB(self, x: Tensor) -> Tensor:  # noqa: N802
        """Derivative of the backward quantizer, B'(x); the default is the straight-through 1."""
        return torch.ones_like(x)

    def grad_dB(self, grad: Tensor, x: Tensor) -> Tensor:  # noqa: N802
        """grad · B'(x): what the backward passes on (default ``grad * self.dB(x)``); a fused form of the same
        product must equal it up to float rounding."""
        return grad * self.dB(x)

    def F_all(self, xs: list[Tensor]) -> list[Tensor]:  # noqa: N802
        """F of every tensor of ``xs`` (the batched path, ``methods.batched``): per tensor by default; a method
        may give multi-tensor ``torch._foreach_*`` ops with the same bits."""
        return [self.F(x) for x in xs]

    def grad_dB_all(self, grads: list[Tensor], xs: list[Tensor]) -> list[Tensor]:  # noqa: N802
        """grad·B'(x) for every pair (the batched path's backward): per pair by default (see ``F_all``)."""
        return [self.grad_dB(g, x) for g, x in zip(grads, xs)]

    def alpha(self, w: Tensor) -> Tensor | float:
        """α = ``channel_scale(w, scale)``."""
        return channel_scale(w, self.scale)

    def quantize(self, w: Tensor, **learned: Tensor) -> Tensor:
        """θ = α·F(w/α), differentiable with gradient grad_θ · B'(w/α) (``learned``: the layer's learnable
        tensors, ``traits.learned``). Eagerly through the autograd.Function (B' only in the backward, nothing
        saved when B' ≡ 1); under ``torch.compile`` through ``straight_through``, which dynamo traces; both
        give the same bits. θ = w itself for ``traits.identity_forward`` and a method that binarizes nothing."""
        if self.traits.identity_forward or not self.binarizes:
            return w
        if torch.compiler.is_compiling():
            return straight_through(w, self)
        return scaled_quantize(w, eager_alpha(w, self), self)

    def weight_parameters(self, w: Tensor) -> dict[str, Tensor]:
        """Initial values of the learnable tensors this method owns on each binarized layer (``traits.learned``:
        XNOR-Net++'s Γ, ReCU's a); ``binarize`` registers them as ``nn.Parameter``s of the layer's
        parametrization (``<layer>.parametrizations.weight.0.<name>``) and passes them to ``quantize`` and
        ``export_parts``. None by default."""
        return {}

    def forward(self, w: Tensor) -> Tensor:
        """The training weight of a layer without learnable tensors: ``quantize(w)``."""
        return self.quantize(w)

    def backward_factor(self, w: Tensor) -> Tensor:
        """B'(w/α), the factor the gradient reaching F(w) is multiplied by."""
        with torch.no_grad():
            return self.dB(w / self.alpha(w))

    # -- deployment (methods.deploy) ------------------------------------------------------------------
    def export_parts(self, w: Tensor, **learned: Tensor) -> tuple[Tensor, Tensor | float]:
        """(bits, α) of the deployed weight α·(2·bits − 1): (w ≥ 0, α) by default (α·sign(w), sign(0) = +1)."""
        return w >= 0, self.alpha(w)

    def export(self, w: Tensor) -> Tensor:
        """The deployed tensor of a layer without learnable tensors: α·sign(w), exactly two values ±α per output
        channel; w itself for a method that binarizes nothing; α·(2·bits − 1) of ``export_parts`` for
        ``traits.custom_export`` (a layer with learnable tensors: ``methods.deploy.deployed_weight``)."""
        with torch.no_grad():
            if not self.binarizes:
                return w.detach().clone()
            if self.traits.custom_export:
                return signed(*self.export_parts(w), w.dtype)
            return self.alpha(w) * sign(w)

    # -- the optimizer step ---------------------------------------------------------------------------
    def before_step_all(self, ws: list[Tensor], lr: float | Tensor) -> None:
        """In-place hook on every latent of one optimizer group before ``optimizer.step()`` (``traits.hooks``);
        ``lr`` is that group's learning rate at this step, so a proximal step can be scaled by it: a float in
        the eager step, a 0-d tensor in the captured one (``hooks = "traced"``: then read the schedule from
        ``self.tensors`` only, no Python branch on a float of it). No-op by default."""

    def after_step_all(self, ws: list[Tensor], lr: float | Tensor) -> None:
        """In-place hook on every latent after ``optimizer.step()`` (see ``before_step_all``; no-op by default)."""

    def clip_all(self, ws: list[Tensor]) -> None:
        """w ← clamp(w, −c, c) on every latent after the step and its hooks, c = the ``clip`` parameter of the
        methods that declare one (BinaryConnect, BNN, larq and ProxQuant keep their latents in [−1, 1]);
        c = 0: off. Two multi-tensor ops (clamp's bits)."""
        limit = getattr(self, "clip", 0.0)
        if limit:
            torch._foreach_clamp_min_(ws, -limit)
            torch._foreach_clamp_max_(ws, limit)

    @property
    def uses_lr(self) -> bool:
        """Does a step hook of this method need the learning rate (``traits.hooks``)?"""
        return self.traits.hooks != "none"

    @property
    def tensor_hooks(self) -> bool:
        return self.traits.hooks == "traced"

    @property
    def hooks_traceable(self) -> bool:
        """Can the captured step trace the hooks (no hook, or ``hooks = "traced"``)? Otherwise it runs them
        eagerly around its compiled ``optimizer.step()`` with the lr as a host float."""
        return self.traits.hooks != "eager"

    @property
    def has_hooks(self) -> bool:
        """Does the optimizer step need this method (a hook, or latent clipping)?"""
        return self.uses_lr or bool(getattr(self, "clip", 0.0))

    @property
    def schedule_traceable(self) -> bool:
        """Is ``set_progress_tensors`` the tensor form of this method's schedule (and its activation
        quantizer's)? ``traits.traced_schedule``."""
        return self.traits.traced_schedule and (self.act is None or self.act.schedule_traceable)

    @property
    def fusable(self) -> bool:
        """Can ``methods.fuse`` quantize every layer of this method in one flat tensor? When ``traits`` says F
        and B' are elementwise, θ = α·F(w/α) (not θ = w) and no per-layer learnable tensor."""
        traits = self.traits
        return traits.elementwise and self.binarizes and not traits.identity_forward and not traits.learned


METHODS.holds(Method, "methods.Method")  # what register_method accepts
