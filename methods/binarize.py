"""Attach a method to the weights of a model's layers without editing the model's code.

Each selected weight becomes a ``torch.nn.utils.parametrize`` parametrization: the latent full-precision
tensor lives at ``<layer>.parametrizations.weight.original`` (what the optimizer updates) and
``<layer>.weight`` evaluates to θ = α·F(w/α). One method instance is shared by the whole model, since its
schedule is global.

The training loop makes one call per step after ``loss.backward()``::

    methods.optimizer_step(model, optimizer, progress=(step + 1) / total_steps)

which runs every ``before_step`` hook, ``optimizer.step()``, every ``after_step`` hook, then
``set_progress`` for the next forward. ``with methods.deployed(model):`` evaluates the deployed model
(every binarized weight replaced by ``export(w) = α·sign(w)``).
"""

from __future__ import annotations

import contextlib
import fnmatch
import warnings
from dataclasses import dataclass, field
from typing import Iterator

import torch
from torch import nn
from torch.nn.utils import parametrize

from .errors import MethodError
from .method import Method
from .registry import create_method
from .activation_base import attach_input_quantizer
from .batched import BatchedWeights
from .deploy import LATENT_WEIGHT_KEY, deployed_weight  # noqa: F401  (LATENT_WEIGHT_KEY: re-exported)
from .fused import FusedWeights

LAYER_TYPES = {"conv": nn.Conv2d, "conv2d": nn.Conv2d, "linear": nn.Linear, "conv1d": nn.Conv1d}


@dataclass
class Policy:
    """Which layer weights to binarize.

    ``types``: layer types considered (names from ``LAYER_TYPES``). ``include``/``exclude``: fnmatch globs on
    module names (``blocks.*.attn.qkv``); an empty include means every layer of those types.
    ``keep_first``/``keep_last``: leave the first considered layer (the one that sees the input) and the
    last (the classifier) in full precision; first/last are among all conv/linear layers, whatever ``types``
    says, in module registration order, which is
    forward order for every model in this project and for timm/torchvision models. A layer named
    explicitly in ``include`` (no wildcard) is binarized even if it is the first or last.

    ``inputs``: the binarized layers whose *input* the method's activation quantizer binarizes (W1A1), as
    fnmatch globs on their names; None (default) = every binarized layer, [] = none. It only matters for a
    method that declares an activation quantizer; a weight-only method ignores it.
    """

    types: tuple[str, ...] = ("conv2d", "linear")
    include: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)
    keep_first: bool = True
    keep_last: bool = True
    inputs: list[str] | None = None

    def select_inputs(self, names: list[str]) -> list[str]:
        """The binarized layers (``names``) whose inputs are binarized too."""
        if self.inputs is None:
            return list(names)
        return [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in self.inputs)]

    def select(self, model: nn.Module) -> list[str]:
        for t in self.types:
            if t not in LAYER_TYPES:
                raise MethodError(f"unknown layer type {t!r} in policy (valid: {', '.join(LAYER_TYPES)})")
        kinds = tuple(LAYER_TYPES[t] for t in self.types)
        layers = [(n, m) for n, m in model.named_modules()
                  if isinstance(m, tuple(LAYER_TYPES.values())) and _weight_of(m) is not None]
        first, last = (layers[0][0], layers[-1][0]) if layers else (None, None)
        explicit = {p for p in self.include if not any(c in p for c in "*?[")}
        chosen = []
        for name, module in layers:
            if not isinstance(module, kinds):
                continue
            if self.include and not any(fnmatch.fnmatchcase(name, p) for p in self.include):
                continue
            if any(fnmatch.fnmatchcase(name, p) for p in self.exclude):
                continue
            edge = (self.keep_first and name == first) or (self.keep_last and name == last)
            if edge and name not in explicit:
                continue
            chosen.append(name)
        return chosen


# Named presets per model family.
PRESETS: dict[str, Policy] = {
    # every conv/linear except the first layer and the classifier
    "cnn-default": Policy(),
    # every conv/linear, first layer and classifier included
    "all": Policy(keep_first=False, keep_last=False),
    # timm ViT/DeiT: every Linear in the model (qkv, proj, fc1, fc2 and the head) and the patch embedding
    "vit-all-linear": Policy(types=("conv2d", "linear"), keep_first=False, keep_last=False),
    # timm ViT/DeiT: the Linear layers of the transformer blocks only; patch embedding and head stay FP
    "vit-keep-embed-head": Policy(types=("linear",), include=["blocks.*"], keep_first=False, keep_last=False),
    # W1A1 (BiBench): weights and inputs of every conv/linear binarized, except the first layer, the
    # classifier and the downsampling shortcuts' 1x1 convs (``*.downsample.*``: Bi-Real Net's and BiBench's
    # ResNets, torchvision's), which stay full precision (weights and inputs), as in BiBench's code
    "w1a1": Policy(exclude=["*.downsample.*"], inputs=None),
    # the same for timm ViT/DeiT: every Linear of the transformer blocks, binary weights and binary inputs
    "vit-w1a1": Policy(types=("linear",), include=["blocks.*"], keep_first=False, keep_last=False, inputs=None),
}


def _weight_of(module: nn.Module):
    return getattr(module, "weight", None)


def _is_vit(model: nn.Module) -> bool:
    return hasattr(model, "blocks") and hasattr(model, "patch_embed")


def resolve_policy(policy, model: nn.Module) -> Policy:
    """None -> the family default; a preset name; a dict {preset?, include?, exclude?, types?, ...}; a Policy."""
    if policy is None:
        return PRESETS["vit-keep-embed-head" if _is_vit(model) else "cnn-default"]
    if isinstance(policy, Policy):
        return policy
    if isinstance(policy, str):
        if policy not in PRESETS:
            raise MethodError(f"unknown policy preset {policy!r} (valid: {', '.join(PRESETS)})")
        return PRESETS[policy]
    if isinstance(policy, dict):
        spec = dict(policy)
        base = resolve_policy(spec.pop("preset", None), model)
        unknown = sorted(set(spec) - set(Policy.__dataclass_fields__))
        if unknown:
            raise MethodError(
                f"unknown policy key {unknown[0]!r} (valid: preset, {', '.join(Policy.__dataclass_fields__)})"
            )
        values = {**base.__dict__, **spec}
        values["types"] = tuple(values["types"])
        if values.get("inputs") is not None:
            values["inputs"] = list(values["inputs"])
        return Policy(**values)
    raise MethodError(f"a policy is a preset name, a dict or a methods.Policy, got {type(policy).__name__}")


class BinarizedWeight(nn.Module):
    """The parametrization: ``weight = method.forward(latent)``, or its deployed form (``methods.deploy``).

    The method's ``tensors`` (its scheduled parameters as 0-d tensors, ``methods.schedule.ScheduleTensors``) are a
    submodule (``schedule``) of every layer's parametrization, the same module each time, so that moving the
    model moves them (and the graph ``torch.compile`` builds reads them on the model's device); they are
    not in ``state_dict()``.

    With ``methods.fuse`` (``fused``), inside a forward of the root model the weight is this layer's view of
    the θ that ``methods.fused.FusedWeights`` computes for every layer at once (the same bits).

    A method with per-layer learnable tensors (``Method.weight_parameters``: XNOR-Net++'s Γ, ReCU's α) has
    them registered here as ``nn.Parameter``s and gets them in ``quantize``/``export_parts``."""

    def __init__(self, method: Method, weight: torch.Tensor | None = None):
        super().__init__()
        self.method = method
        self.deployed = False
        self.fused = None  # the model's ``FusedWeights`` (``methods.fuse``) and this layer's index in it
        self.fused_index = 0
        if isinstance(getattr(method, "tensors", None), nn.Module):
            # the method's live μ/ρ (one module shared by every layer): it follows ``model.to(device)``
            self.schedule = method.tensors
        self._names: list[str] = []
        if weight is not None and method.traits.learned:
            with torch.no_grad():
                for name, value in method.weight_parameters(weight.detach()).items():
                    self.register_parameter(name, nn.Parameter(value.to(weight.device, torch.float32)))
                    self._names.append(name)

    def learned(self) -> dict[str, torch.Tensor]:
        return {name: getattr(self, name) for name in self._names}

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        if self._names:
            learned = self.learned()
            if self.deployed:
                return deployed_weight(self.method, latent, learned)
            return self.method.quantize(latent, **learned)
        if self.deployed:
            return self.method.export(latent)
        fused = self.fused
        if fused is not None and not torch.compiler.is_compiling() and fused.active:
            return fused.weight(self.fused_index)
        return self.method.forward(latent)


def binarize(model: nn.Module, method: str | Method, policy=None, fused: bool = False, **params) -> nn.Module:
    """Binarize the weights of the layers ``policy`` selects with ``method``; returns the model (in place).

    ``method`` is a registry key (``params`` go to ``create_method``) or a ``Method`` instance. The
    ``fp`` method binarizes nothing. A policy that selects no layer is an error. ``fused=True``: then
    ``fuse(model)`` (all layers quantized at once per forward in one flat tensor, the same bits). Otherwise a
    weight-only ``Method.fusable`` method quantizes every layer at once with multi-tensor ops
    (``methods.batched``, the same bits; ``unfuse(model)`` goes back to one layer at a time).
    """
    if isinstance(method, str):
        method = create_method(method, **params)
    elif params:
        raise MethodError("pass parameters either to create_method or to binarize, not both")
    if getattr(model, "_proxbench_method", None) is not None:
        raise MethodError("this model is already binarized")
    if not method.binarizes:
        model._proxbench_method = method
        return model
    resolved = resolve_policy(policy, model)
    names = resolved.select(model)
    if not names:
        raise MethodError(f"the binarization policy selects no layer of {type(model).__name__}: {resolved}")
    model._proxbench_method = method
    modules = dict(model.named_modules())
    for name in names:
        parametrize.register_parametrization(modules[name], "weight", BinarizedWeight(method, modules[name].weight),
                                             unsafe=True)
    model._proxbench_layers = [(name, modules[name]) for name in names]  # hooks run every step: no tree walk
    if method.act is not None:
        _attach_inputs(model, method, resolved.select_inputs(names))
    if fused:
        fuse(model)
    elif method.fusable and method.act is None:
        model._proxbench_fused = BatchedWeights(model, method, [modules[name] for name in names])
    return model


def fuse(model: nn.Module) -> FusedWeights | None:
    """Quantize every binarized weight of ``model`` at once per forward (``methods.fused``): θ_i = α_i·F(w_i/α_i)
    for all layers i in one flat tensor, grad_{w_i} = grad_{θ_i}·B'(w_i/α_i) (α_i detached) in one backward,
    each layer's weight a view. Outputs, gradients, hooks and export are bit for bit the per-layer path's.

    Returns the ``FusedWeights`` (the same one when called again), or None where the per-layer path stays:
    a model with no binarized layer; rPC and PQ (θ = w: no kernel to fuse); a method that is not
    ``Method.fusable`` (its ``traits``: F or B' not elementwise or its own ``quantize``, per-layer learnable
    tensors: most W1A1 methods), with a warning saying so. ``unfuse`` undoes it."""
    method = get_method(model)
    layers = [module for _, module in binarized_layers(model)]
    if method is None or not layers:
        return None
    existing = getattr(model, "_proxbench_fused", None)
    if existing is not None and not isinstance(existing, BatchedWeights):
        return existing
    if not method.fusable:
        if not method.elementwise:
            warnings.warn(f"method {method.name!r} is not fusable (its weight quantizer is not an elementwise "
                          "F/B' pair of methods.Method): its layers keep the per-layer path", stacklevel=2)
        return None
    if existing is not None:  # the default multi-tensor path gives way to the flat tensor
        existing.remove()
    model._proxbench_fused = FusedWeights(model, method, layers)
    return model._proxbench_fused


def unfuse(model: nn.Module) -> None:
    """Back to the per-layer path (no-op for a model ``fuse`` did not fuse)."""
    fused = getattr(model, "_proxbench_fused", None)
    if fused is not None:
        fused.remove()
        model._proxbench_fused = None


def _attach_inputs(model: nn.Module, method: Method, names: list[str], deployed: bool = False) -> None:
    modules = dict(model.named_modules())
    for name in names:
        attach_input_quantizer(modules[name], method.act).deployed = deployed
    model._proxbench_inputs = [(name, modules[name]) for name in names]


def binarize_inputs(model: nn.Module, method: str | Method, policy=None, **params) -> nn.Module:
    """The deployed-model skeleton of a W1A1 method: attach the method's activation quantizer, in its deployed
    form, to the inputs of the layers ``binarize`` would binarize, *without* touching the weights. A packed
    export (``bench.run.export.load_packed_into``) loads into such a model: its plain weights are α·sign(w) and
    its ``input_quantizer`` parameters (thresholds) come from the file."""
    if isinstance(method, str):
        method = create_method(method, **params)
    if method.act is None:
        raise MethodError(f"method {method.name!r} does not binarize activations")
    resolved = resolve_policy(policy, model)
    _attach_inputs(model, method, resolved.select_inputs(resolved.select(model)), deployed=True)
    return model


def input_binarized_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(module name, module) of every layer whose input is binarized (an ``input_quantizer`` attached)."""
    cached = getattr(model, "_proxbench_inputs", None)
    if cached is not None:
        return list(cached)
    return [(n, m) for n, m in model.named_modules() if hasattr(m, "_proxbench_input_hook")]


def get_method(model: nn.Module) -> Method | None:
    """The method ``binarize`` attached to ``model`` (None for a model never binarized)."""
    return getattr(model, "_proxbench_method", None)


def binarized_layers(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """(module name, module) of every layer whose weight is binarized."""
    cached = getattr(model, "_proxbench_layers", None)
    if cached is not None:
        yield from cached
        return
    for name, module in model.named_modules():
        if parametrize.is_parametrized(module, "weight") and any(
            isinstance(p, BinarizedWeight) for p in module.parametrizations.weight
        ):
            yield name, module


def latent_weights(model: nn.Module) -> list[torch.Tensor]:
    """The latent full-precision tensors of every binarized layer (the optimizer's parameters)."""
    return [module.parametrizations.weight.original for _, module in binarized_layers(model)]


def set_progress(model: nn.Module, t: float) -> None:
    method = get_method(model)
    if method is not None:
        method.set_progress(t)


def optimizer_step(model: nn.Module, optimizer: torch.optim.Optimizer, progress: float | torch.Tensor | None = None) -> None:
    """before_step hooks, ``optimizer.step()``, after_step hooks, latent clipping, then ``set_progress(progress)``.

    Each hook gets the learning rate of the optimizer group holding its latent at this step (a latent in no
    group is not trained: its hooks see lr = 0). Eager form: float lrs and a float progress. Tensor form
    (the captured step, traced by ``torch.compile``): a group whose ``lr`` is a tensor gives its hooks that
    0-d tensor, and a 0-d tensor ``progress`` moves the schedule with ``set_progress_tensors`` (the float
    attributes are then the caller's to update, ``set_progress_floats``)."""
    method = get_method(model)
    hooks = method is not None and method.has_hooks
    latents = latent_weights(model) if hooks else ()
    lrs = _group_lrs(optimizer, latents) if hooks and method.uses_lr else [0.0] * len(latents)
    traced = any(isinstance(lr, torch.Tensor) for lr in lrs) or isinstance(progress, torch.Tensor)
    # traced: the parameters themselves under no_grad (``.data`` does not trace); eager: their ``.data``
    targets = list(latents) if traced else [w.data for w in latents]
    groups = _by_lr(targets, lrs)
    with torch.no_grad() if traced else contextlib.nullcontext():
        if method is not None and method.uses_lr:
            for ws, lr in groups:
                method.before_step_all(ws, lr)
        optimizer.step()
        for ws, lr in groups:
            if method.uses_lr:
                method.after_step_all(ws, lr)
            method.clip_all(ws)
    if progress is not None and method is not None:
        if isinstance(progress, torch.Tensor):
            method.set_progress_tensors(progress)
        else:
            method.set_progress(progress)


def _by_lr(latents: list, lrs: list) -> list[tuple[list, object]]:
    """The latents grouped by the lr object their hooks get (one optimizer group each), in first-seen order."""
    groups: dict[tuple, tuple[list, object]] = {}
    for w, lr in zip(latents, lrs):
        key = ("tensor", id(lr)) if isinstance(lr, torch.Tensor) else ("float", float(lr))
        groups.setdefault(key, ([], lr))[0].append(w)
    return list(groups.values())


def _group_lrs(optimizer: torch.optim.Optimizer, params: list[torch.Tensor]) -> list:
    """The current learning rate of each parameter's optimizer group (0 when it is in none): a float, or the
    group's 0-d tensor when its lr is one (then 0 is a zero tensor)."""
    by_id = {id(p): group["lr"] if isinstance(group["lr"], torch.Tensor) else float(group["lr"])
             for group in optimizer.param_groups for p in group["params"]}
    lrs = [by_id.get(id(p)) for p in params]
    like = next((lr for lr in lrs if isinstance(lr, torch.Tensor)), None)
    zero = 0.0 if like is None else torch.zeros_like(like)
    return [zero if lr is None else lr for lr in lrs]
