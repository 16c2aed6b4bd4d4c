"""The method registry, the plugin loader and the composed-name grammar (``"<weight>+<activation>-act"``).

The quantizer interface itself is ``methods.method.Method`` (Lu et al., NeurIPS 2023: F, B', schedules and
bounds declared in one screen); its parts live in ``methods.bounds`` (parameter bounds and the value check),
``methods.schedule`` (schedule tensors), ``methods.autograd`` (the autograd Function and the straight path)
and ``methods.deploy`` (the deployed form). Their public names are re-exported here and from ``methods``.
"""

from __future__ import annotations

import fnmatch
import importlib
from importlib import metadata
from typing import Callable, ClassVar

import torch
from torch import Tensor, nn

ENTRY_POINT_GROUP = "proxbench.methods"


from methods.errors import MethodError, close_match_hint  # noqa: E402,F401 - defined there, re-exported here


from .autograd import channel_scale, quantize_eagerly, scaled_quantize, straight_through  # noqa: E402,F401
from .bounds import SCALES, SCHEDULE_SHAPES, Bound, non_negative, one_of, positive, show_value  # noqa: E402,F401
from .method import Method, Traits  # noqa: E402,F401
from .schedule import ScheduleTensors  # noqa: E402,F401

_REGISTRY: dict[str, type[Method]] = {}
_entry_points_loaded = False


def register_method(name: str) -> Callable[[type[Method]], type[Method]]:
    """Class decorator: register a ``Method`` subclass under ``name``.

    A name is registered once: a class from another module under a taken name (a plugin reusing ``bnn``, say)
    is a ``MethodError`` naming both modules. The same module registering it again (a reload) replaces it."""

    def decorator(cls: type[Method]) -> type[Method]:
        if not (isinstance(cls, type) and issubclass(cls, Method)):
            raise MethodError(f"@register_method({name!r}) needs a subclass of methods.Method")
        for key in cls.schedules:
            if key in cls.constants:
                raise MethodError(f"{name}: {key!r} is both scheduled and constant")
        clash = registration_clash("method", name, _REGISTRY.get(name), cls)
        if clash:
            raise MethodError(clash)
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorator


def registration_clash(kind: str, name: str, existing: type | None, new: type) -> str:
    """The message refusing ``new`` under ``name`` when another module's ``existing`` class holds it, else ''."""
    if existing is None or existing is new or existing.__module__ == new.__module__:
        return ""
    return (f"{kind} {name!r} is already registered by module {existing.__module__!r} "
            f"({existing.__qualname__}); module {new.__module__!r} cannot register it again: pick another name")


def load_plugins(modules: list[str] | tuple[str, ...] = ()) -> None:
    """Import plugin modules (``--plugin some.module``) and the ``proxbench.methods`` entry points.

    A module that cannot be found, raises while it is imported, or calls ``sys.exit`` is one ``MethodError``
    line naming it and what it raised (the CLI exits with status 2); a name clash is ``register_method``'s."""
    global _entry_points_loaded
    for module in modules:
        _import_plugin(module, lambda: importlib.import_module(module))
    if not _entry_points_loaded:
        _entry_points_loaded = True
        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
            _import_plugin(f"{ep.value} (entry point {ep.name!r})", ep.load)


def _import_plugin(label: str, load) -> None:
    try:
        load()
    except MethodError:
        raise
    except ImportError as exc:
        raise MethodError(f"cannot import plugin module {label!r}: {exc}") from None
    except SystemExit as exc:
        raise MethodError(f"plugin module {label!r} called sys.exit({exc.code!r}) while being imported") from exc
    except Exception as exc:  # noqa: BLE001 - the plugin's bug, reported as such
        text = " ".join(str(exc).split())
        raise MethodError(f"plugin module {label!r} raised {type(exc).__name__} while being imported"
                          + (f": {text}" if text else "")) from exc


def list_methods(pattern: str = "*", w1a1: bool | None = False) -> list[str]:
    """Sorted registry keys matching an fnmatch pattern (``list_methods("bnn*")``).

    ``w1a1=False`` (default): the weight-only methods (the PC++ weight quantizers); ``True``: the methods
    that binarize activations too; ``None``: both. Composed names (``"bnn+++ste-sign-act"``) are never listed.
    """
    load_plugins()
    return sorted(k for k, cls in _REGISTRY.items() if fnmatch.fnmatchcase(k, pattern)
                  and (w1a1 is None or (cls.activation is not None) == w1a1))


from .compose import COMPOSE_SUFFIX, compose_class  # noqa: E402  (the composed-name grammar)


def compose(weight: str, activation: str) -> type[Method]:
    """The class of ``"<weight>+<activation>-act"`` (``methods.compose``)."""
    return compose_class(get_method_class(weight), weight, activation)


def get_method_class(name: str) -> type[Method]:
    load_plugins()
    try:
        return _REGISTRY[name]
    except KeyError:
        if name.endswith(COMPOSE_SUFFIX) and "+" in name and name not in _REGISTRY:
            weight, activation = name[: -len(COMPOSE_SUFFIX)].rsplit("+", 1)
            if weight in _REGISTRY:
                return compose(weight, activation)
        valid = sorted(_REGISTRY)
        raise MethodError(
            f"unknown method {name!r}{close_match_hint(name, valid)} (valid: {', '.join(valid)})"
        ) from None


def create_method(name: str, **params) -> Method:
    """Instantiate a registered method; unknown keys or parameters are a ``MethodError``."""
    return get_method_class(name)(**params)


# -- activation quantizers: F and B' of the inputs of binarized layers (methods.activations has the built-ins)
from .activation_base import ACTIVATIONS as _ACT_REGISTRY, get_activation_class, list_activations  # noqa: E402


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


def register_activation(name: str) -> Callable[[type[ActivationQuantizer]], type[ActivationQuantizer]]:
    """Class decorator: register an ``ActivationQuantizer`` under ``name``; a name held by another module's
    class is a ``MethodError`` naming both modules (as ``register_method``)."""

    def decorator(cls: type[ActivationQuantizer]) -> type[ActivationQuantizer]:
        if not (isinstance(cls, type) and issubclass(cls, ActivationQuantizer)):
            raise MethodError(f"@register_activation({name!r}) needs a subclass of methods.ActivationQuantizer")
        clash = registration_clash("activation quantizer", name, _ACT_REGISTRY.get(name), cls)
        if clash:
            raise MethodError(clash)
        cls.name = name
        _ACT_REGISTRY[name] = cls
        return cls

    return decorator
