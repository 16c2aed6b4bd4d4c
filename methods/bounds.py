"""The allowed values of a method's parameters, declared as data, and the one check every value goes through.

A method declares ``bounds`` (parameter name -> ``Bound``, merged along its class hierarchy, a subclass's
declaration winning): a numeric range (``positive()``: μ > 0, ``non_negative()``: ρ ≥ 0, ``Bound(low=0,
high=1, low_inclusive=False)``: 0 < f ≤ 1) or, for a string parameter, ``one_of("linear", "clamp")``. A
scheduled parameter is held to its bound at both ends of its schedule. ``check_value`` is the check:
a scheduled parameter or numeric constant must be a finite real number (not a string, not a boolean) and is
stored as a float; a string constant a string (one of its choices, with a close-match hint); a boolean
constant true or false. Anything else is a ``MethodError`` naming the method, the key and the bound
(Lu et al., NeurIPS 2023: the PC++ methods' ρ ≥ 0 and μ > 0).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

from bench.registry import close_match_hint

from .errors import MethodError

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
    """x is one of ``choices`` (a string parameter)."""
    return Bound(choices=tuple(choices))


# every method has these two, with their types and choices
COMMON_BOUNDS = {"scale": one_of(*SCALES), "schedule": one_of(*SCHEDULE_SHAPES)}


def show_value(value) -> str:
    """A parameter value as the user wrote it (TOML spelling for booleans)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


def merged_bounds(cls) -> dict[str, Bound]:
    """``bounds`` merged along the class hierarchy of ``cls`` (a subclass's declaration wins), mixins included,
    on top of ``COMMON_BOUNDS``."""
    merged: dict[str, Bound] = dict(COMMON_BOUNDS)
    for klass in reversed(cls.__mro__):
        merged.update(klass.__dict__.get("bounds", {}))
    return merged


def check_value(where: str, value, bound: Bound | None, default):
    """``value`` as stored (numbers as float), checked against the type of ``default`` and against ``bound``;
    else a ``MethodError`` starting with ``where`` ("method 'pc': parameter rho_end")."""
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
