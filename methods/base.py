"""The quantizer interface of the PC++ framework and the method registry.

A binarization method is a forward quantizer F and a backward quantizer B (Lu et al., NeurIPS 2023):
the network computes with θ = α·F(w/α) and backprop multiplies the gradient reaching θ by B'(w/α) before
it reaches the latent full-precision weight w. Optional hooks act on the latent in place around the
optimizer step, and the method's parameters (μ, ρ, ...) follow a schedule over training progress
t = step / total_steps ∈ [0, 1]. The deployed tensor is ``export(w) = α·sign(w)``.

A subclass sets ``schedules`` (scheduled parameters: name -> (start, end)), ``constants`` (fixed
parameters: name -> value), and implements ``F(x)`` and ``dB(x)`` on the normalised weight x = w/α. The
scheduled values are available as attributes (``self.mu``, a Python float) at the current progress, and as
0-d tensors (``self.tensors.mu``, also ``self.tensors.progress``) that ``set_progress`` updates in place:
F and dB read the tensors, so that ``torch.compile`` traces a binarized layer into the model's graph and a
new μ/ρ is a new value of the same input, not a recompile (``ScheduleTensors``, ``straight_through``). The
floats serve everything else (configs, records, ``params()``, the step hooks, ``repr``); assigning a
scheduled attribute (``self.tau = ...`` in a subclass's ``set_progress``) writes its tensor too.

Parameter values are checked when a method is created (``create_method``, hence every run config): a
scheduled parameter and a numeric constant must be a finite real number (not a string, not a boolean), a
string constant a string; ``bounds`` (name -> ``Bound``, merged along the class hierarchy) declares each
parameter's range or choices, e.g. ``bounds = {"mu": positive()}`` (μ > 0, both ends of its schedule) or
``Bound(choices=("linear", "clamp"))``. ``scale`` and ``schedule`` are declared on ``Method`` itself, so a
plugin gets them and the type checks for free. A value outside its bound is a ``MethodError`` naming the
parameter and the bound.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from bench.registry import close_match_hint

from .errors import MethodError  # noqa: F401 - defined there, re-exported here
from .functional import sign
from .registry import (  # noqa: F401 - the registries, re-exported here for the modules of methods
    ACTIVATIONS, METHODS, compose, create_method, get_activation_class, get_method_class, list_activations,
    list_methods, load_plugins, register_activation, register_method)

SCALES = ("channel", "tensor", "none")
SCHEDULE_SHAPES = ("linear", "geometric")


@dataclass(frozen=True)
class Bound:
    """The allowed values of one method parameter: a numeric range (``low``/``high``, each inclusive unless
    ``*_inclusive=False``; None = unbounded) or, for string parameters, ``choices``."""

    low: float | None = None
    high: float | None = None
    low_inclusive: bool = True
    high_inclusive: bool = True
    choices: tuple[str, ...] | None = None

    def contains(self, value) -> bool:
        if self.choices is not None:
            return value in self.choices
        if self.low is not None and (value < self.low or (value == self.low and not self.low_inclusive)):
            return False
        if self.high is not None and (value > self.high or (value == self.high and not self.high_inclusive)):
            return False
        return True

    def describe(self) -> str:
        """'> 0', '≥ 0', 'in [0, 1)', 'one of a, b', ..."""
        if self.choices is not None:
            return f"one of {', '.join(self.choices)}"
        if self.low is not None and self.high is not None:
            return (f"in {'[' if self.low_inclusive else '('}{self.low:g}, {self.high:g}"
                    f"{']' if self.high_inclusive else ')'}")
        if self.low is not None:
            return f"{'≥' if self.low_inclusive else '>'} {self.low:g}"
        if self.high is not None:
            return f"{'≤' if self.high_inclusive else '<'} {self.high:g}"
        return "any finite number"


def positive() -> Bound:
    """x > 0."""
    return Bound(low=0.0, low_inclusive=False)


def non_negative() -> Bound:
    """x ≥ 0."""
    return Bound(low=0.0)


def one_of(*choices: str) -> Bound:
    return Bound(choices=tuple(choices))


def show_value(value) -> str:
    """A parameter value as the user wrote it (TOML spelling for booleans)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


def channel_scale(w: Tensor, scale: str) -> Tensor | float:
    """α: the detached mean of |w| per output channel (dim 0), per tensor, or 1 (``scale="none"``)."""
    if scale == "none":
        return 1.0
    with torch.no_grad():  # Σ|w| as abs().sum(): the same sum, several times faster than an ord-1 vector_norm on CPU
        if scale == "tensor" or w.dim() < 2:
            alpha = w.abs().sum().div_(w.numel())
        else:
            alpha = w.abs().sum(dim=tuple(range(1, w.dim())), keepdim=True).div_(w.numel() // w.shape[0])
        return alpha.clamp_min_(1e-12)


class _ForwardBackwardQuantizer(torch.autograd.Function):
    """θ = α·F(w/α) in the forward; grad_w = grad_θ · B'(w/α) in the backward (α given, detached).

    The eager path of ``Method.forward`` and of ``quantize_eagerly`` (α = ``channel_scale(w)``), and of the fused
    path (``methods.fused``: α spread over the flat tensor of every layer). It saves only x = w/α, and nothing
    at all when B' ≡ 1. ``alpha`` None means α = 1 (``scale = "none"``, every activation quantizer): the
    forward is F(w) itself, without a multiplication by 1. The backward is ``method.grad_dB(grad, x)``
    (grad · B'(x), which a method may fuse). Under ``torch.compile`` ``Method.forward`` goes through
    ``straight_through`` instead, which dynamo traces (it cannot trace this Function's backward, which reads
    the method's μ/ρ from ``ctx``).
    """

    @staticmethod
    def forward(ctx, w: Tensor, alpha: Tensor | None, method: "Method") -> Tensor:
        ctx.method = method
        if alpha is None:
            x = w
            out = method.F(w)
            if out is w:  # an identity F: the Function's output must be a tensor of its own
                out = w.clone()
        else:
            x = w / alpha
            out = alpha * method.F(x)
        if not method.identity_backward:
            ctx.save_for_backward(x)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):
        if ctx.method.identity_backward:
            return grad, None, None
        (x,) = ctx.saved_tensors
        return ctx.method.grad_dB(grad, x), None, None


def scaled_quantize(w: Tensor, alpha: Tensor | None, method: "Method") -> Tensor:
    """θ = α·F(w/α) with gradient grad·B'(w/α) for a given detached α (None: α = 1), eagerly, through the
    autograd.Function above."""
    return _ForwardBackwardQuantizer.apply(w, alpha, method)


def _eager_alpha(w: Tensor, method: "Method") -> Tensor | None:
    """α for the Function: ``channel_scale`` of the latent, None for ``scale = "none"``."""
    return None if method.scale == "none" else channel_scale(w.detach(), method.scale)


@torch.compiler.disable
def quantize_eagerly(w: Tensor, method: "Method") -> Tensor:
    """θ = α·F(w/α) with gradient grad·B'(w/α) through the autograd.Function above, always eagerly (a graph
    break under ``torch.compile``): the activation quantizers (``methods.activations``) still read their
    parameters as Python floats. ``Method.forward`` is the same map without the graph break."""
    return scaled_quantize(w, _eager_alpha(w, method), method)


def straight_through(w: Tensor, method: "Method") -> Tensor:
    """θ = α·F(w/α) in the forward, grad_w = grad_θ · B'(w/α) in the backward (α detached), with plain ops.

    The value q = α·F(w/α) and the factor d = B'(w/α) are computed on ``w.detach()`` (no graph), and
    θ = q + (w − w.detach())·d: w − w.detach() is exactly 0 for finite w, so θ is q bit for bit (up to the
    sign of a zero), and its gradient with respect to w is grad_θ·d, the product the Function computes. When
    B' ≡ 1 (``identity_backward``) θ = q + (w − w.detach()) and grad_w is grad_θ itself. No autograd.Function
    and no Python float of the schedule: ``torch.compile`` traces it into the model's graph (forward and
    backward), and a change of μ/ρ (an in-place write to ``method.tensors``) neither breaks it nor recompiles.
    Without grad (evaluation) B' is not computed at all.
    """
    wd = w.detach()
    alpha = channel_scale(wd, method.scale)
    x = wd / alpha if method.scale != "none" else wd
    q = alpha * method.F(x)
    if not (w.requires_grad and torch.is_grad_enabled()):
        return q
    if method.identity_backward:
        return q + (w - wd)
    return q + (w - wd) * method.dB(x)


class ScheduleTensors(torch.nn.Module):
    """The live values of a method's scheduled parameters (and ``progress``) as 0-d float64 buffers.

    ``Method.set_progress`` writes them in place (``fill_``), so a compiled graph that reads them sees the new
    value without a guard failing or a recompile. float64, so that the arithmetic on them (1 + ρ, 2·μ) is the
    Python float arithmetic of the scalar they replace and F/B' stay bit for bit what they were. ``binarize``
    registers this module (one per method) under every binarized layer's parametrization, so ``model.to(device)``
    carries it to the model's device; its dtype stays float64 whatever ``model.to(dtype)`` asks (float32 on
    MPS, which has no float64). The buffers are not persistent: no ``state_dict`` entry.
    """

    def __init__(self, names):
        super().__init__()
        for name in names:
            self.register_buffer(name, torch.zeros((), dtype=torch.float64), persistent=False)

    def _apply(self, fn, recurse=True):
        super()._apply(fn, recurse)
        for name, buf in self._buffers.items():
            dtype = torch.float32 if buf.device.type == "mps" else torch.float64
            if buf is not None and buf.dtype != dtype:
                self._buffers[name] = buf.to(dtype)
        return self


class Method:
    """Base class of every binarization method (register subclasses with ``@register_method``).

    Override ``F`` and ``dB`` (B') on the normalised weight, reading scheduled parameters from ``self.tensors``
    (``self.tensors.mu``: a Python float ``self.mu`` works too, but ``torch.compile`` then recompiles when it
    changes); set ``identity_backward = True`` when B' ≡ 1
    so the backward saves nothing, and ``forward_is_export = True`` when F = sign (then α·F(w/α) is
    exactly ``export(w)`` and the F(w) model need not be evaluated apart from the deployed one).
    ``before_step``/``after_step`` are in-place hooks on the latent.
    """

    name: ClassVar[str] = ""
    schedules: ClassVar[dict[str, tuple[float, float]]] = {}
    constants: ClassVar[dict[str, float | str]] = {}
    # Allowed values per parameter (scheduled ones: both ends), merged with those of the base classes.
    bounds: ClassVar[dict[str, Bound]] = {"scale": one_of(*SCALES), "schedule": one_of(*SCHEDULE_SHAPES)}
    # the unit the quantizers act in unless a run sets ``scale``: "none" = the raw latent, as the references
    default_scale: ClassVar[str] = "none"
    identity_backward: ClassVar[bool] = False
    binarizes: ClassVar[bool] = True
    # F and B' act elementwise on x = w/α (no other element, no position, no shape): the fused path
    # (``methods.fuse``) may then evaluate them on the flat tensor of every layer's x at once.
    elementwise: ClassVar[bool] = False
    forward_is_export: ClassVar[bool] = False
    # The step hooks take a 0-d tensor lr too and then read only ``self.tensors`` (see ``before_step``).
    tensor_hooks: ClassVar[bool] = False
    # The activation quantizer (a key of ``methods.activations``) applied to the inputs of the binarized
    # layers, or None: a weight-only method (its config has no ``act_*`` key, so run ids never change).
    activation: ClassVar[str | None] = None
    # Human-readable formulas for `python -m bench methods`.
    forward_formula: ClassVar[str] = "F(x)"
    backward_formula: ClassVar[str] = "B'(x)"
    hooks_formula: ClassVar[str] = "—"
    # Presentation in tables and figures (``bench.report.aggregate``, ``bench.report.figures``, ``bench.report.plots``): the display
    # name (None: the registry key), a matplotlib colour and marker (None: a fixed fallback derived from the
    # registry key, out of a palette the built-ins do not use) and a symbol per parameter for axis labels
    # (merged along the class hierarchy; a parameter without one is shown by its name, a Greek letter's name
    # such as "beta" as the letter). A subclass registered under another key does not inherit label, colour
    # or marker.
    label: ClassVar[str | None] = None
    color: ClassVar[str | None] = None
    marker: ClassVar[str | None] = None
    symbols: ClassVar[dict[str, str]] = {}

    def __init__(self, **overrides):
        valid = self.valid_parameters()
        act_overrides = {}
        if self.activation is not None:  # act_<name>: a parameter of the activation quantizer
            act_keys = {f"act_{k}" for k in self.activation_class().valid_parameters() if k not in ("scale",)}
            act_overrides = {k[4:]: overrides.pop(k) for k in list(overrides) if k in act_keys}
        unknown = sorted(set(overrides) - set(valid))
        if unknown:
            raise MethodError(
                f"method {self.name!r} has no parameter {unknown[0]!r}"
                f"{close_match_hint(unknown[0], valid)} (valid: {', '.join(valid)})"
            )
        bounds = self.parameter_bounds()
        values = {key: self._checked(key, value, bounds) for key, value in overrides.items()}
        self.scale = values.pop("scale", self.default_scale)
        self.schedule = values.pop("schedule", "linear")
        self._ranges: dict[str, list[float]] = {k: list(v) for k, v in self.schedules.items()}
        self.tensors = ScheduleTensors([*self._ranges, "progress"])
        self._constants: dict[str, float | str] = dict(self.constants)
        for key, value in values.items():
            if key in self._constants:
                self._constants[key] = value
            elif key in self._ranges:  # `mu=7` fixes both ends
                self._ranges[key] = [value, value]
            else:
                base, end = key.rsplit("_", 1)
                self._ranges[base][0 if end == "start" else 1] = value
        # the class's own defaults are held to the bounds it declares too
        for key, (start, end) in self._ranges.items():
            if key in bounds:
                self._checked(f"{key}_start", start, bounds)
                self._checked(f"{key}_end", end, bounds)
            if self.schedule == "geometric" and (start <= 0 or end <= 0):
                raise MethodError(f"{self.name}: a geometric schedule needs {key} > 0, got {start} -> {end}")
        for key, value in self._constants.items():
            if key in bounds:
                self._checked(key, value, bounds)
        for key, value in self._constants.items():
            setattr(self, key, value)
        self.act = None
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
        if cls.activation is None:
            return None
        return get_activation_class(cls.activation)

    def validate(self) -> None:
        """Check parameter values after construction (beyond ``bounds``); raise ``MethodError`` (no-op by default)."""

    @classmethod
    def parameter_bounds(cls) -> dict[str, Bound]:
        """``bounds`` merged along the class hierarchy (a subclass's declaration wins), mixins included."""
        merged: dict[str, Bound] = {}
        for klass in reversed(cls.__mro__):
            merged.update(klass.__dict__.get("bounds", {}))
        return merged

    def _parameter(self, key: str) -> str:
        """The declared parameter behind an override key: 'mu_end' -> 'mu'."""
        if key in self.schedules or key in self.constants or key in ("scale", "schedule"):
            return key
        return key.rsplit("_", 1)[0]

    def _checked(self, key: str, value, bounds: dict[str, Bound]):
        """``value`` of parameter ``key`` as stored (numbers as float), or a ``MethodError`` naming the key."""
        param = self._parameter(key)
        bound = bounds.get(param)
        default = self.constants.get(param, self.default_scale if param == "scale" else "linear" if param == "schedule" else 0.0)
        where = f"method {self.name!r}: parameter {key}"
        if isinstance(default, bool):
            if not isinstance(value, bool):
                raise MethodError(f"{where} must be true or false, got {show_value(value)}")
            return value
        if isinstance(default, str):
            if bound is not None and bound.choices is not None:
                if not isinstance(value, str) or value not in bound.choices:
                    raise MethodError(f"{where} must be {bound.describe()}, got {show_value(value)}"
                                      f"{close_match_hint(str(value), list(bound.choices))}")
            elif not isinstance(value, str):
                raise MethodError(f"{where} must be a string, got {show_value(value)}")
            return value
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise MethodError(f"{where} must be a number, got {show_value(value)}")
        try:
            finite = math.isfinite(value)
        except OverflowError:  # an integer too large for a float
            finite = False
        if not finite:
            raise MethodError(f"{where} must be a finite number, got {show_value(value)}")
        if bound is not None and not bound.contains(value):
            raise MethodError(f"{where} must be {bound.describe()}, got {show_value(value)}")
        return float(value)

    @classmethod
    def valid_parameters(cls) -> list[str]:
        names = ["scale", "schedule", *cls.constants]
        for key in cls.schedules:
            names += [key, f"{key}_start", f"{key}_end"]
        act = cls.activation_class()
        if act is not None:
            names += [f"act_{k}" for k in act.valid_parameters() if k != "scale"]
        return sorted(names)

    # -- schedule -------------------------------------------------------------------------------------
    def __setattr__(self, name: str, value) -> None:
        object.__setattr__(self, name, value)
        tensors = self.__dict__.get("tensors")
        if tensors is not None and name in tensors._buffers and not self.__dict__.get("_floats_only"):
            tensors._buffers[name].fill_(value)  # a scheduled parameter or progress: its mirror

    def set_progress(self, t: float) -> None:
        """Move every scheduled parameter to training progress t ∈ [0, 1] (linear or geometric): the float
        attributes and, in place, their tensors in ``self.tensors`` (no new tensor, so no recompile)."""
        t = float(t)
        if not 0.0 <= t <= 1.0 or math.isnan(t):
            raise MethodError(f"progress must be in [0, 1], got {t}")
        self.progress = t
        for key, (start, end) in self._ranges.items():
            if self.schedule == "geometric":
                value = start * (end / start) ** t
            else:
                value = start + (end - start) * t
            setattr(self, key, value)
        if getattr(self, "act", None) is not None:
            self.act.set_progress(t)

    def set_progress_tensors(self, t: Tensor) -> None:
        """The tensor form of ``set_progress`` for a 0-d progress tensor t (not checked: the caller's t is in
        [0, 1]): ``tensors.progress`` ← t and every scheduled tensor ← start + (end − start)·t (linear) or
        start·(end/start)^t (geometric), in place, and the same for the activation quantizer's tensors. The
        float attributes are left alone (``set_progress_floats``). start/end are constants and nothing is read
        back from a tensor, so ``torch.compile`` traces it without a graph break, and a new t is a new value
        of the same input, not a recompile. Linear: the float64 arithmetic of the float form; geometric: a
        tensor pow, which may differ from Python's ``**`` in the last bit."""
        tensors = self.tensors
        with torch.no_grad():
            tensors.progress.copy_(t)
            for key, (start, end) in self._ranges.items():
                value = start * (end / start) ** t if self.schedule == "geometric" else start + (end - start) * t
                getattr(tensors, key).copy_(value)
        if self.act is not None:
            self.act.set_progress_tensors(t)

    def set_progress_floats(self, t: float) -> None:
        """``set_progress(t)`` for the float attributes only (records, logs, ``params()``): ``self.tensors``
        (and the activation quantizer's) keep their values, which ``set_progress_tensors`` wrote."""
        owners = [self] if self.act is None else [self, self.act]
        for owner in owners:
            object.__setattr__(owner, "_floats_only", True)
        try:
            self.set_progress(t)
        finally:
            for owner in owners:
                object.__setattr__(owner, "_floats_only", False)

    @property
    def schedule_traceable(self) -> bool:
        """Is ``set_progress_tensors`` the tensor form of this method's schedule (and its activation
        quantizer's)? False for a class that overrides ``set_progress`` but not ``set_progress_tensors``
        (ReCU's exponential τ): the captured step then runs ``set_progress`` eagerly."""
        cls = type(self)
        own = cls.set_progress is Method.set_progress or cls.set_progress_tensors is not Method.set_progress_tensors
        return own and (self.act is None or self.act.schedule_traceable)

    def params(self) -> dict:
        """Current parameter values, plus scale, schedule and progress (and the activation quantizer's as act_*)."""
        out = {"scale": self.scale, "schedule": self.schedule, "progress": self.progress}
        out.update({k: getattr(self, k) for k in self._ranges})
        out.update(self._constants)
        if getattr(self, "act", None) is not None:
            out.update({f"act_{k}": v for k, v in self.act.params().items() if k not in ("scale", "progress")})
        return out

    def config(self) -> dict:
        """The resolved parameters (start/end values), as recorded in run configs."""
        out: dict = {"scale": self.scale, "schedule": self.schedule}
        for key, (start, end) in self._ranges.items():
            out[f"{key}_start"], out[f"{key}_end"] = start, end
        out.update(self._constants)
        if getattr(self, "act", None) is not None:  # only W1A1 methods: weight-only configs are unchanged
            out.update({f"act_{k}": v for k, v in self.act.config().items()
                        if k != "scale" and (k != "schedule" or self.act._ranges)})
        return out

    # -- the quantizer pair ---------------------------------------------------------------------------
    def F(self, x: Tensor) -> Tensor:  # noqa: N802 - the paper's name
        """Forward quantizer on the normalised weight x = w/α."""
        raise NotImplementedError

    def B(self, x: Tensor) -> Tensor:  # noqa: N802
        """The backward quantizer itself (documentation and tests; training only uses ``dB``). Default: x."""
        return x

    def dB(self, x: Tensor) -> Tensor:  # noqa: N802
        """Derivative of the backward quantizer, B'(x); the default is the straight-through 1."""
        return torch.ones_like(x)

    def grad_dB(self, grad: Tensor, x: Tensor) -> Tensor:  # noqa: N802
        """grad · B'(x): what the backward passes on (default ``grad * self.dB(x)``). A method may override it
        with a fused form of the same product (fewer elementwise passes); it must equal ``grad * dB(x)`` up to
        float rounding."""
        return grad * self.dB(x)

    def F_all(self, xs: list[Tensor]) -> list[Tensor]:  # noqa: N802
        """F of every tensor of ``xs`` (the batched path, ``methods.batched``): per tensor by default; a method
        overrides it with multi-tensor ``torch._foreach_*`` ops giving the same bits."""
        return [self.F(x) for x in xs]

    def grad_dB_all(self, grads: list[Tensor], xs: list[Tensor]) -> list[Tensor]:  # noqa: N802
        """grad·B'(x) for every pair (the batched path's backward): per pair by default (see ``F_all``)."""
        return [self.grad_dB(g, x) for g, x in zip(grads, xs)]

    def alpha(self, w: Tensor) -> Tensor | float:
        return channel_scale(w, self.scale)

    def forward(self, w: Tensor) -> Tensor:
        """θ = α·F(w/α), differentiable with gradient grad_θ · B'(w/α).

        Eagerly through the autograd.Function (fewest ops: B' only in the backward, nothing saved when
        B' ≡ 1); under ``torch.compile`` through ``straight_through``, which dynamo traces. Both give the same
        bits (``tests/test_compile.py``)."""
        if torch.compiler.is_compiling():
            return straight_through(w, self)
        return scaled_quantize(w, _eager_alpha(w, self), self)

    @property
    def fusable(self) -> bool:
        """Can ``methods.fuse`` quantize every layer of this method in one flat tensor? Yes when F and B' are
        ``elementwise`` and the layer's weight is ``forward``'s θ = α·F(w/α) with gradient grad·B'(w/α), α =
        ``channel_scale(w, scale)``: no override of ``forward``, ``alpha``, ``quantize`` or
        ``weight_parameters`` (no per-layer learnable tensor)."""
        cls = type(self)
        return (self.elementwise and self.binarizes and cls.forward is Method.forward and cls.alpha is Method.alpha
                and cls.quantize is Method.quantize and cls.weight_parameters is Method.weight_parameters)

    def backward_factor(self, w: Tensor) -> Tensor:
        """B'(w/α), the factor the gradient reaching F(w) is multiplied by."""
        with torch.no_grad():
            return self.dB(w / self.alpha(w))

    def export(self, w: Tensor) -> Tensor:
        """The deployed tensor α·sign(w): exactly two values ±α per output channel."""
        with torch.no_grad():
            return self.alpha(w) * sign(w)

    # -- per-layer learnable tensors of the weight quantizer (XNOR-Net++'s Γ, ReCU's α) ---------------------
    def weight_parameters(self, w: Tensor) -> dict[str, Tensor]:
        """Initial values of learnable tensors this method owns on each binarized layer (none by default);
        ``binarize`` registers them as ``nn.Parameter``s of the layer's parametrization module
        (``<layer>.parametrizations.weight.0.<name>``) and passes them to ``quantize``/``export_learned``."""
        return {}

    def quantize(self, w: Tensor, **learned: Tensor) -> Tensor:
        """The training forward of a layer's weight given its learnable tensors (default ``forward(w)``)."""
        return self.forward(w)

    def export_learned(self, w: Tensor, **learned: Tensor) -> Tensor:
        """The deployed weight given the layer's learnable tensors (default ``export(w)``)."""
        return self.export(w)

    def export_parts(self, w: Tensor, **learned: Tensor) -> tuple[Tensor, Tensor | float]:
        """(bits, α) with ``export_learned(w) = α·(2·bits − 1)``: what the packed export stores."""
        return w >= 0, self.alpha(w)

    def before_step(self, w: Tensor, lr: float | Tensor) -> None:
        """In-place hook on the latent before ``optimizer.step()``; ``lr`` is the learning rate of the
        optimizer group that holds ``w`` at this step, so a proximal step can be scaled by it (no-op by default).

        ``lr`` is a Python float in the eager step; in the captured step (``tensor_hooks``) a 0-d tensor, and
        the hook then reads the schedule from ``self.tensors`` only (no float of the schedule, no Python
        branch on one), so that ``torch.compile`` traces it into the step's update graph."""

    def after_step(self, w: Tensor, lr: float | Tensor) -> None:
        """In-place hook on the latent after ``optimizer.step()`` (see ``before_step``; no-op by default)."""

    def clip_latent(self, w: Tensor) -> None:
        """w ← clamp(w, −c, c) in place after the step and its hooks, c = the ``clip`` parameter of methods
        that declare one (BinaryConnect, BNN, larq and ProxQuant keep their latents in [−1, 1]); c = 0: off."""
        limit = getattr(self, "clip", 0.0)
        if limit:
            w.clamp_(-limit, limit)

    def before_step_all(self, ws: list[Tensor], lr: float | Tensor) -> None:
        """``before_step`` on every latent of one optimizer group (lr its learning rate), in place; a method
        may override it with multi-tensor ops over the list (the same bits)."""
        for w in ws:
            self.before_step(w, lr)

    def after_step_all(self, ws: list[Tensor], lr: float | Tensor) -> None:
        """``after_step`` on every latent of one optimizer group (see ``before_step_all``)."""
        for w in ws:
            self.after_step(w, lr)

    def clip_all(self, ws: list[Tensor]) -> None:
        """``clip_latent`` on every latent: w ← min(max(w, −c), c), two multi-tensor ops (clamp's bits)."""
        limit = getattr(self, "clip", 0.0)
        if limit and type(self).clip_latent is Method.clip_latent:
            torch._foreach_clamp_min_(ws, -limit)
            torch._foreach_clamp_max_(ws, limit)
        else:
            for w in ws:
                self.clip_latent(w)

    @property
    def uses_lr(self) -> bool:
        """Does a step hook (``before_step``/``after_step``) of this method need the learning rate?"""
        cls = type(self)
        return any(getattr(cls, name) is not getattr(Method, name)
                   for name in ("before_step", "after_step", "before_step_all", "after_step_all"))

    @property
    def hooks_traceable(self) -> bool:
        """Can the captured step trace the hooks (no lr hook, or ``tensor_hooks``)? Otherwise it runs them
        eagerly around its compiled ``optimizer.step()`` with the lr as a host float."""
        return self.tensor_hooks or not self.uses_lr

    @property
    def has_hooks(self) -> bool:
        """Does the optimizer step need this method (a hook, or latent clipping)?"""
        return self.uses_lr or bool(getattr(self, "clip", 0.0))

    def __repr__(self) -> str:
        values = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in self.params().items())
        return f"{type(self).__name__}({self.name!r}, {values})"


# -- activation quantizers: F and B' of the inputs of binarized layers (methods.activations has the built-ins)
class ActivationQuantizer(Method):
    """F and B' on the raw input x of a binarized layer (α = 1). Subclass and register with
    ``@register_activation(name)``; override ``layer_parameters`` (learnable per-layer tensors) and
    ``apply``/``deploy`` when the quantizer uses them."""

    default_scale: ClassVar[str] = "none"
    forward_is_export = True  # every activation quantizer here computes its deployed form in the forward
    # the value of a binary input: "sign" (±1, an XNOR-popcount MAC) or "unipolar" ({0, 1}, an AND-popcount MAC)
    levels: ClassVar[str] = "sign"
    # Does the quantizer also multiply the layer's output (``output``: XNOR-Net++'s learnable h ⊗ w)?
    scales_output: ClassVar[bool] = False

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

    def export(self, w: Tensor) -> Tensor:
        return self.F(w).detach()


METHODS.holds(Method, "methods.Method")  # what the registries of methods.registry hold
ACTIVATIONS.holds(ActivationQuantizer, "methods.ActivationQuantizer")
