"""proxbench methods: the PC++ quantizer interface, the method registry and ``binarize``.

Lu, Yu, Li & Partovi Nia, "Understanding Neural Network Binarization with Forward and Backward Proximal
Quantizers", NeurIPS 2023. See ``methods.method`` for the interface (``AUTHOR_SURFACE``: all a method author
may set or override), ``methods.bounds``, ``methods.schedule``, ``methods.deploy`` for its parts.
"""

from . import builtin as _builtin  # noqa: F401  (registers the eight built-in methods)
from . import activations as _activations  # noqa: F401  (registers the activation quantizers)
from . import w1a1 as _w1a1  # noqa: F401  (registers the eight BiBench W1A1 methods)
from .activations import create_activation
from .activation_base import ActivationQuantizer
from .method import AUTHOR_SURFACE, Method, Traits
from .errors import MethodError
from .registry import (
    compose,
    create_method,
    get_activation_class,
    get_method_class,
    list_activations,
    list_methods,
    load_plugins,
    register_activation,
    register_method,
)
from .bounds import Bound, non_negative, one_of, positive
from .deploy import plain_key
from .binarize import (
    PRESETS,
    Policy,
    binarize,
    binarize_inputs,
    binarized_layers,
    input_binarized_layers,
    fuse,
    get_method,
    latent_weights,
    optimizer_step,
    resolve_policy,
    set_progress,
    unfuse,
)
from .deployed_model import deployed, summary
from .functional import clamp_quantizer, linear_quantizer, sign, sign_swish, sign_swish_grad

__all__ = [
    "Method", "MethodError", "create_method", "get_method_class", "list_methods", "load_plugins",
    "register_method", "PRESETS", "Policy", "binarize", "binarized_layers", "deployed", "get_method",
    "latent_weights", "optimizer_step", "resolve_policy", "set_progress", "summary", "sign",
    "linear_quantizer", "clamp_quantizer", "sign_swish", "sign_swish_grad", "ActivationQuantizer",
    "create_activation", "get_activation_class", "list_activations", "register_activation", "compose",
    "binarize_inputs", "input_binarized_layers", "fuse", "unfuse", "Traits", "AUTHOR_SURFACE", "Bound",
    "positive", "non_negative", "one_of", "plain_key",
]
