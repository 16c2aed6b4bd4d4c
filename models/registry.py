"""The model registry, shaped like timm's and like ``methods``' own registry.

A model is a plain builder function registered with one decorator::

    @register_model("resnet20", default_img_size=32, family="cnn")
    def resnet20(num_classes, in_chans, img_size, pretrained):
        ...

``create_model(name, num_classes, in_chans, img_size, pretrained, **kwargs)`` looks the builder up and calls
it. Extra keyword arguments are checked against the builder's own keyword parameters, so a typo is a
``ModelError`` naming the valid ones rather than a ``TypeError`` from deep inside the builder.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Callable

from torch import nn

from bench.errors import UserError
from bench.registry import Registry, close_match_hint

FAMILIES = ("cnn", "vit")
_POSITIONAL = ("num_classes", "in_chans", "img_size", "pretrained")


class ModelError(UserError, ValueError):
    """A user-facing error about models: unknown name or keyword, bad input size, missing weights."""


@dataclass(frozen=True)
class ModelInfo:
    """What the registry knows about a model without building it."""

    name: str
    family: str  # "cnn" or "vit" (picks the default binarization policy preset)
    description: str
    default_in_chans: int
    default_img_size: int
    has_pretrained: bool
    kwargs: tuple[str, ...]  # extra keyword arguments the builder accepts
    builder: Callable[..., nn.Module] = field(repr=False)
    # keyword arguments that leave the parameters as they are (an activation): a fine-tune's fp parent may
    # have been built with other values of them (``bench.dispatch.grid``)
    same_weights_kwargs: tuple[str, ...] = ()

    @property
    def default_input(self) -> tuple[int, int, int]:
        """(C, H, W) of the input the model is registered for."""
        return (self.default_in_chans, self.default_img_size, self.default_img_size)


MODELS: Registry[ModelInfo] = Registry("model", error=ModelError, sort=True)


def register_model(
    name: str,
    *,
    default_img_size: int,
    default_in_chans: int = 3,
    family: str = "cnn",
    description: str | None = None,
    has_pretrained: bool = False,
    same_weights_kwargs: tuple[str, ...] = (),
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: register ``fn(num_classes, in_chans, img_size, pretrained, **kw) -> nn.Module`` as ``name``.

    ``description`` defaults to the first paragraph of the builder's docstring (on one line). ``has_pretrained`` says whether
    the builder can load pretrained weights; ``create_model(..., pretrained=True)`` of any other model is a
    ``ModelError``. ``same_weights_kwargs``: builder keywords that do not change the parameters (a grid's
    fine-tune may start from an fp parent built with other values of them). A name held by another module's
    builder is a ``ModelError`` naming both modules; the same module registering it again replaces it.
    """
    if family not in FAMILIES:
        raise ModelError(f"@register_model({name!r}): family must be one of {', '.join(FAMILIES)}, got {family!r}")

    def decorator(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        params = inspect.signature(fn).parameters
        missing = [p for p in _POSITIONAL if p not in params]
        if missing:
            raise ModelError(f"@register_model({name!r}): the builder must take {', '.join(_POSITIONAL)}")
        extra = tuple(p for p, v in params.items() if p not in _POSITIONAL and v.kind is not v.VAR_KEYWORD)
        if set(same_weights_kwargs) - set(extra):
            raise ModelError(f"@register_model({name!r}): same_weights_kwargs must be keywords of the builder")
        doc = " ".join((inspect.getdoc(fn) or name).strip().split("\n\n")[0].split())  # the first paragraph
        MODELS.add(name, ModelInfo(
            name=name,
            family=family,
            description=description or doc,
            default_in_chans=default_in_chans,
            default_img_size=default_img_size,
            has_pretrained=has_pretrained,
            kwargs=extra,
            builder=fn,
            same_weights_kwargs=tuple(same_weights_kwargs),
        ), fn.__module__)
        return fn

    return decorator


def list_models(pattern: str = "*") -> list[str]:
    """Sorted registered names matching an fnmatch pattern (``list_models("resnet*")``)."""
    return MODELS.names(pattern)


def model_info(name: str) -> ModelInfo:
    """The registry entry of ``name`` (family, description, default input, accepted keywords)."""
    return MODELS.get(name)


def create_model(
    name: str,
    num_classes: int = 10,
    in_chans: int | None = None,
    img_size: int | None = None,
    pretrained: bool = False,
    **kwargs,
) -> nn.Module:
    """Build a registered model for ``in_chans``×``img_size``×``img_size`` inputs and ``num_classes`` outputs.

    ``in_chans``/``img_size`` left as None take the model's registered default input (``model_info``).
    ``kwargs`` go to the builder (``patch_size`` for ViTs, ``shortcut`` for CIFAR ResNets, ...).
    """
    info = model_info(name)
    in_chans = info.default_in_chans if in_chans is None else in_chans
    img_size = info.default_img_size if img_size is None else img_size
    for key, value in (("num_classes", num_classes), ("in_chans", in_chans), ("img_size", img_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ModelError(f"{name}: {key} must be a positive integer, got {value!r}")
    accepts_any = any(
        v.kind is v.VAR_KEYWORD for v in inspect.signature(info.builder).parameters.values()
    )
    if not accepts_any:
        unknown = sorted(set(kwargs) - set(info.kwargs))
        if unknown:
            valid = ", ".join(info.kwargs) or "none"
            raise ModelError(
                f"{name}: unknown keyword argument {unknown[0]!r}{close_match_hint(unknown[0], list(info.kwargs))}"
                f" (valid: {valid})"
            )
    if pretrained and not info.has_pretrained:
        raise ModelError(f"{name}: no pretrained weights exist for this model; use pretrained=False")
    return info.builder(num_classes=num_classes, in_chans=in_chans, img_size=img_size, pretrained=bool(pretrained), **kwargs)
