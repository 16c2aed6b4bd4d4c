"""The registries of methods and activation quantizers, and the composed-name grammar.

Both are ``bench.registry.Registry`` instances (the one registry of every extension point, on the ground
floor below ``methods``): a name taken by another module's class is a ``MethodError`` naming both modules,
an unknown name a ``MethodError`` with the closest valid one. ``methods.method`` and ``methods.activation_base`` name the classes they hold
(``Method``, ``ActivationQuantizer``); this module imports nothing of it, so that ``Method`` can look its
activation quantizer up here.

A W1A1 method may also be named by composition: ``"<weight>+<activation>-act"`` is the weight method
unchanged with the activation quantizer on the inputs of its binarized layers (``compose``), e.g.
``"bnn+++ste-sign-act"``; composed names are never listed. Plugins (``load_plugins``, ``--plugin``, the
``proxbench.methods`` entry points) are ``bench.plugins``'.
"""

from __future__ import annotations

from typing import Callable

from bench.plugins import load_entry_points, load_plugins  # noqa: F401 - part of this API (methods.load_plugins)
from bench.registry import Registry

from .errors import MethodError

METHODS: Registry[type] = Registry("method", error=MethodError, sort=True)
ACTIVATIONS: Registry[type] = Registry("activation quantizer", error=MethodError, sort=True,
                                       decorator="register_activation")
COMPOSE_SUFFIX = "-act"
_COMPOSED: dict[str, type] = {}


def register_method(name: str) -> Callable[[type], type]:
    """Class decorator: register a ``Method`` subclass under ``name`` (``cls.name = name``).

    A name is registered once: a class from another module under a taken name (a plugin reusing ``bnn``, say)
    is a ``MethodError`` naming both modules. The same module registering it again (a reload) replaces it."""
    register = METHODS.register(name)

    def decorator(cls: type) -> type:
        for key in getattr(cls, "schedules", {}):
            if key in getattr(cls, "constants", {}):
                raise MethodError(f"{name}: {key!r} is both scheduled and constant")
        return register(cls)

    return decorator


def register_activation(name: str) -> Callable[[type], type]:
    """Class decorator: register an ``ActivationQuantizer`` under ``name`` (the rules of ``register_method``)."""
    return ACTIVATIONS.register(name)


def list_methods(pattern: str = "*", w1a1: bool | None = False) -> list[str]:
    """Sorted registry keys matching an fnmatch pattern (``list_methods("bnn*")``).

    ``w1a1=False`` (default): the weight-only methods (the PC++ weight quantizers); ``True``: the methods
    that binarize activations too; ``None``: both. Composed names (``"bnn+++ste-sign-act"``) are never listed.
    """
    return [k for k in METHODS.names(pattern) if w1a1 is None or (METHODS.get(k).activation is not None) == w1a1]


def list_activations(pattern: str = "*") -> list[str]:
    return ACTIVATIONS.names(pattern)


def get_activation_class(name: str) -> type:
    return ACTIVATIONS.get(name)


def compose(weight: str, activation: str) -> type:
    """The class of ``"<weight>+<activation>-act"``: weight method ``weight`` unchanged, with the activation
    quantizer ``activation`` on the inputs of its binarized layers (no class to write)."""
    base = get_method_class(weight)
    if base.activation is not None:
        raise MethodError(f"cannot compose {weight!r} with an activation quantizer: it already has {base.activation!r}")
    if not base.traits.binarizes:
        raise MethodError(f"cannot compose {weight!r} with an activation quantizer: it binarizes nothing")
    get_activation_class(activation)
    name = f"{weight}+{activation}{COMPOSE_SUFFIX}"
    if name not in _COMPOSED or _COMPOSED[name].__mro__[1] is not base:
        cls = type(f"{base.__name__}With{activation.title().replace('-', '')}", (base,),
                   {"activation": activation, "__doc__": f"{weight} weights (see {base.__name__}) with the "
                    f"{activation!r} activation quantizer on the inputs of the binarized layers."})
        cls.name = name
        _COMPOSED[name] = cls
    return _COMPOSED[name]


def get_method_class(name: str) -> type:
    """The registered class of ``name``, or the composed class of ``"<weight>+<activation>-act"``."""
    load_entry_points()
    if (isinstance(name, str) and name not in METHODS and name.endswith(COMPOSE_SUFFIX) and "+" in name
            and name[: -len(COMPOSE_SUFFIX)].rsplit("+", 1)[0] in METHODS):
        return compose(*name[: -len(COMPOSE_SUFFIX)].rsplit("+", 1))
    return METHODS.get(name)


def create_method(name: str, **params):
    """Instantiate a registered method; unknown keys or parameters are a ``MethodError``."""
    return get_method_class(name)(**params)
