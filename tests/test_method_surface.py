"""What a method author may set or override is ``methods.AUTHOR_SURFACE``, and nothing else: every registered
method keeps to it, a class that uses the former interface or hides a capability is refused when defined."""

from __future__ import annotations

import pytest
import torch

import methods
from methods.method import Method, RETIRED

# not author surface: what the framework sets (the registry key) and Python's own class attributes
FRAMEWORK = {"name", "__module__", "__qualname__", "__doc__", "__dict__", "__weakref__", "__annotations__",
             "__init__", "__firstlineno__", "__static_attributes__"}


def test_the_surface_is_listed_once_and_exists_on_the_class():
    assert len(AUTHOR := methods.AUTHOR_SURFACE) == len(set(AUTHOR)) <= 20  # the former interface had 41
    missing = [name for name in AUTHOR if not hasattr(Method, name)]
    assert not missing, missing


@pytest.mark.parametrize("key", methods.list_methods(w1a1=None))
def test_every_registered_method_keeps_to_the_surface(key):
    """No class between a registered method and ``Method`` sets or overrides a ``Method`` attribute outside
    ``AUTHOR_SURFACE`` (its own helpers, which ``Method`` does not have, are its business)."""
    cls = methods.get_method_class(key)
    outside = {f"{klass.__qualname__}.{attr}" for klass in cls.__mro__ if klass not in Method.__mro__
               for attr in vars(klass) if hasattr(Method, attr) and attr not in methods.AUTHOR_SURFACE
               and attr not in FRAMEWORK}
    assert not outside, sorted(outside)


@pytest.mark.parametrize("attr", sorted(RETIRED))
def test_the_former_interface_is_refused_with_its_replacement(attr):
    with pytest.raises(methods.MethodError, match=f"sets '{attr}': methods.Method declares"):
        type("Former", (Method,), {attr: True, "__module__": "a_plugin"})


def test_a_hidden_capability_is_refused_when_the_class_is_defined():
    """A plugin with its own ``quantize`` must not be fused as θ = α·F(w/α) by default, and the deployed weight is
    always α·(2·bits − 1) of ``export_parts``, so ``export`` is not overridden."""
    with pytest.raises(methods.MethodError, match="has its own quantize: declare traits"):
        type("OwnQuantize", (Method,), {"quantize": lambda self, w: w, "__module__": "a_plugin"})
    ok = type("OwnQuantize", (Method,), {"quantize": lambda self, w: w, "__module__": "a_plugin",
                                         "traits": methods.Traits(elementwise=False)})
    assert not ok().fusable
    with pytest.raises(methods.MethodError, match="overrides export: the deployed weight is"):
        type("OwnExport", (Method,), {"export": lambda self, w: w, "__module__": "a_plugin"})
    with pytest.raises(methods.MethodError, match="hooks='sometimes'"):
        methods.Traits(hooks="sometimes")


def test_a_plugin_is_fusable_by_default_and_its_capabilities_come_from_traits():
    class Plain(Method):
        def F(self, x):  # noqa: N802
            return torch.tanh(x)

    class Hooked(Method):
        traits = methods.Traits(identity_backward=True, hooks="eager")

        def F(self, x):  # noqa: N802
            return x

    assert Plain().fusable and not Plain().uses_lr and Plain().hooks_traceable
    hooked = Hooked()
    assert hooked.uses_lr and hooked.has_hooks and not hooked.hooks_traceable and hooked.identity_backward
