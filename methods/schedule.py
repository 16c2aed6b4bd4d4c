"""The schedule of a method's parameters: each scheduled parameter p moves from ``p_start`` to ``p_end`` over
training progress t = step / total_steps ∈ [0, 1], linearly, p(t) = start + (end − start)·t, or
geometrically, p(t) = start·(end/start)^t (``schedule = "geometric"``, both ends > 0); at t = 0 it is the
start value (Lu et al., NeurIPS 2023: ρ of PC 0.01 → 10, μ of BNN++ 5 → 30). A class may declare a
parameter's own shape as a third entry, ``schedules = {"tau": (0.85, 0.99, "exponential")}``: p(t) =
A·e^t + B, A = (end − start)/(e − 1), B = start − A (ReCU's τ, Xu et al., ICCV 2021), whatever ``schedule``
says; every shape has a tensor form, so the captured step moves the whole schedule in its graph.

Each value lives twice: as a Python float attribute (``self.mu``: configs, records, ``params()``, the eager
step hooks, ``repr``) and as a 0-d tensor (``self.tensors.mu``, ``ScheduleTensors``) written in place, which
F and B' read, so that ``torch.compile`` traces a binarized layer into the model's graph and a new μ is a new
value of the same input, not a recompile. Assigning a scheduled attribute writes its tensor too.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .bounds import Bound, check_value, merged_bounds
from bench.registry import close_match_hint

from .errors import MethodError


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


def scheduled_value(start, end, t, shape: str):
    """p(t): start + (end − start)·t (linear), start·(end/start)^t (geometric) or A·e^t + B (exponential,
    A = (end − start)/(e − 1), B = start − A: p(0) = start, p(1) = end); t a float or a 0-d tensor."""
    if shape == "exponential":
        a = (end - start) / (math.e - 1.0)
        return a * (torch.exp(t) if isinstance(t, Tensor) else math.exp(t)) + (start - a)
    return start * (end / start) ** t if shape == "geometric" else start + (end - start) * t


class Parameters:
    """Declared parameters and their schedule, the half of ``methods.Method`` (and of an activation quantizer)
    that is data: ``schedules`` (name -> (start, end)), ``constants`` (name -> value), ``bounds``
    (``methods.bounds``) and ``default_scale``; ``init_parameters`` checks and resolves a run's overrides
    (``mu=7`` fixes both ends, ``mu_end=40`` one end) into ``_ranges``, ``_constants`` and ``tensors``."""

    name = ""
    schedules: dict = {}
    constants: dict = {}
    bounds: dict = {}
    default_scale = "none"

    @classmethod
    def parameter_bounds(cls) -> dict[str, Bound]:
        """``bounds`` merged along the class hierarchy (a subclass's declaration wins), mixins included."""
        return merged_bounds(cls)

    @classmethod
    def parameter_default(cls, param: str):
        """The default of a declared parameter (a scheduled one: 0.0, its type)."""
        return cls.constants.get(param, cls.default_scale if param == "scale" else
                                 "linear" if param == "schedule" else 0.0)

    @classmethod
    def declared_parameters(cls) -> list[str]:
        """scale, schedule, the constants, and each scheduled p as p, p_start, p_end."""
        names = ["scale", "schedule", *cls.constants]
        for key in cls.schedules:
            names += [key, f"{key}_start", f"{key}_end"]
        return names

    @classmethod
    def valid_parameters(cls) -> list[str]:
        return sorted(cls.declared_parameters())

    def _checked(self, key: str, value, bounds: dict[str, Bound]):
        """``value`` of parameter ``key`` as stored (numbers as float), or a ``MethodError`` naming the key."""
        declared = key in self.schedules or key in self.constants or key in ("scale", "schedule")
        param = key if declared else key.rsplit("_", 1)[0]
        return check_value(f"method {self.name!r}: parameter {key}", value, bounds.get(param),
                           self.parameter_default(param))

    def init_parameters(self, overrides: dict, valid: list[str]) -> None:
        """Check ``overrides`` (unknown keys, types, bounds, both ends of each schedule) and set ``scale``,
        ``schedule``, ``_ranges``, ``tensors``, ``_constants`` and each constant's attribute."""
        unknown = sorted(set(overrides) - set(valid))
        if unknown:
            raise MethodError(f"method {self.name!r} has no parameter {unknown[0]!r}"
                              f"{close_match_hint(unknown[0], valid)} (valid: {', '.join(valid)})")
        bounds = self.parameter_bounds()
        values = {key: self._checked(key, value, bounds) for key, value in overrides.items()}
        self.scale = values.pop("scale", self.default_scale)
        self.schedule = values.pop("schedule", "linear")
        self._ranges: dict[str, list[float]] = {k: list(v[:2]) for k, v in self.schedules.items()}
        self._shapes: dict[str, str] = {k: v[2] for k, v in self.schedules.items() if len(v) > 2}
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
        for key, (start, end) in self._ranges.items():  # the class's own defaults are held to its bounds too
            if key in bounds:
                self._checked(f"{key}_start", start, bounds)
                self._checked(f"{key}_end", end, bounds)
            if self.schedule_shape(key) == "geometric" and (start <= 0 or end <= 0):
                raise MethodError(f"{self.name}: a geometric schedule needs {key} > 0, got {start} -> {end}")
        for key, value in self._constants.items():
            if key in bounds:
                self._checked(key, value, bounds)
            setattr(self, key, value)

    def __setattr__(self, name: str, value) -> None:
        object.__setattr__(self, name, value)
        tensors = self.__dict__.get("tensors")
        if tensors is not None and name in tensors._buffers and not self.__dict__.get("_floats_only"):
            tensors._buffers[name].fill_(value)  # a scheduled parameter or progress: its mirror

    def schedule_shape(self, key: str) -> str:
        """The schedule shape of parameter ``key``: its declared one, else ``schedule``."""
        return self._shapes.get(key, self.schedule)

    def set_progress(self, t: float) -> None:
        """Move every scheduled parameter to training progress t ∈ [0, 1] (linear or geometric): the float
        attributes and, in place, their tensors in ``self.tensors`` (no new tensor, so no recompile)."""
        t = float(t)
        if not 0.0 <= t <= 1.0 or math.isnan(t):
            raise MethodError(f"progress must be in [0, 1], got {t}")
        self.progress = t
        for key, (start, end) in self._ranges.items():
            setattr(self, key, scheduled_value(start, end, t, self.schedule_shape(key)))
        if getattr(self, "act", None) is not None:
            self.act.set_progress(t)

    def set_progress_tensors(self, t: Tensor) -> None:
        """The tensor form of ``set_progress`` for a 0-d progress tensor t (not checked: the caller's t is in
        [0, 1]): ``tensors.progress`` ← t and every scheduled tensor ← p(t), in place, and the same for the
        activation quantizer's tensors. The float attributes are left alone (``set_progress_floats``).
        start/end are constants and nothing is read back from a tensor, so ``torch.compile`` traces it without
        a graph break, and a new t is a new value of the same input, not a recompile. Linear: the float64
        arithmetic of the float form; geometric and exponential: a tensor pow or exp, which may differ from
        Python's in the last bit. A class whose own ``set_progress`` moves something else (no tensor form)
        declares ``traits.traced_schedule = False``: the captured step then runs ``set_progress`` eagerly."""
        tensors = self.tensors
        with torch.no_grad():
            tensors.progress.copy_(t)
            for key, (start, end) in self._ranges.items():
                getattr(tensors, key).copy_(scheduled_value(start, end, t, self.schedule_shape(key)))
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

    def __repr__(self) -> str:
        values = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in self.params().items())
        return f"{type(self).__name__}({self.name!r}, {values})"
