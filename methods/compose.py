"""The composed-name grammar: ``"<weight>+<activation>-act"`` names a weight method with an activation
quantizer on the inputs of its binarized layers (W1A1, BiBench), without a class to write: ``"bnn+++ste-sign-act"``
is BNN++'s F and B' on the weights (Lu et al., NeurIPS 2023) and sign with the straight-through 1[|x| ≤ 1] on
the inputs. The weight method must binarize something and have no activation quantizer of its own.
"""

from __future__ import annotations

from .activation_base import get_activation_class
from .errors import MethodError
from .method import Method

_COMPOSED: dict[str, type[Method]] = {}
COMPOSE_SUFFIX = "-act"


def compose_class(base: type[Method], weight: str, activation: str) -> type[Method]:
    """The class of ``"<weight>+<activation>-act"``: weight method ``base`` (registered as ``weight``) unchanged,
    with the activation quantizer ``activation`` on the inputs of its binarized layers (no class to write)."""
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
