"""The public names of the quantizer interface, gathered for the modules that import them from here.

The interface itself (Lu et al., NeurIPS 2023: F, B', schedules and bounds declared in one screen) is
``methods.method.Method``; its parts are ``methods.bounds`` (parameter bounds and the one value check),
``methods.schedule`` (declared parameters, schedule tensors), ``methods.autograd`` (the autograd Function and
the straight path), ``methods.deploy`` (the deployed form), ``methods.activation_base`` (the activation
quantizers' small base) and ``methods.registry`` (the registries and the composed-name grammar).
"""

from __future__ import annotations

from .activation_base import ActivationQuantizer  # noqa: F401
from .autograd import channel_scale, quantize_eagerly, scaled_quantize, straight_through  # noqa: F401
from .bounds import SCALES, SCHEDULE_SHAPES, Bound, non_negative, one_of, positive, show_value  # noqa: F401
from .errors import MethodError  # noqa: F401
from .method import Method, Traits  # noqa: F401
from .registry import (  # noqa: F401
    ACTIVATIONS, METHODS, compose, create_method, get_activation_class, get_method_class, list_activations,
    list_methods, load_plugins, register_activation, register_method)
from .schedule import ScheduleTensors  # noqa: F401
