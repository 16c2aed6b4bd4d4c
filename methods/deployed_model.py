"""The deployed form of a whole binarized model (``methods.deploy`` gives it per layer).

Lu et al., NeurIPS 2023 (PC++): the deployed network computes with α·sign(w) for every binarized latent w, or
with the bits and α a method's ``export_parts`` gives. ``deployed_entries`` yields every state-dict entry of
the deployed model under its plain key (what ``bench.run.export`` serializes); ``deployed`` switches a model
to its deployed form; ``summary`` tabulates a model's layers (bits per deployed weight, binary inputs).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from tabulate import tabulate
from torch import Tensor, nn

from .binarize import BinarizedWeight, binarized_layers, get_method, input_binarized_layers
from .deploy import LATENT_WEIGHT_KEY, deployed_parts, plain_key

LAYER_KINDS = (nn.Conv1d, nn.Conv2d, nn.Linear)


def _layer_prefixes(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(f"{name}." if name else "", module) for name, module in binarized_layers(model)]


def _learned(module: nn.Module) -> dict[str, Tensor]:
    learned = {}
    for p in module.parametrizations.weight:
        if hasattr(p, "learned"):
            learned.update(p.learned())
    return learned


def _plain_order(state: dict, latents: dict[str, str]) -> dict:
    """The state dict in the order of the unparametrized model: a binarized weight goes back in front of its
    layer's other direct entries (parametrize moves it behind the bias)."""
    by_prefix = {plain[: -len("weight")]: latent for latent, plain in latents.items()}
    keys, placed = [], set()
    for key in state:
        prefix, _, leaf = key.rpartition(".")
        latent = key if key in latents else by_prefix.get(f"{prefix}." if prefix else "")
        if latent is not None and latent not in placed and (key == latent or "." not in leaf):
            keys.append(latent)
            placed.add(latent)
        if key not in placed:
            keys.append(key)
    return {k: state[k] for k in keys}


def deployed_entries(model: nn.Module):
    """Yield (plain key, kind, tensor, alpha) for every state-dict entry of the deployed model.

    kind "bin": ``tensor`` is the bits (bool, CPU; True = +α) and ``alpha`` the α tensor (or None for α = 1);
    kind "f32"/"i64": ``tensor`` is the value itself and ``alpha`` is None. Learnable weight tensors of a
    method (``Method.weight_parameters``) are folded into α and not yielded.
    """
    method = get_method(model)
    latents, learned_of, folded = {}, {}, set()
    for prefix, module in _layer_prefixes(model):
        latent = f"{prefix}{LATENT_WEIGHT_KEY}"
        latents[latent] = plain_key(latent)
        learned_of[latent] = _learned(module)
        folded |= {f"{prefix}parametrizations.weight.0.{k}" for k in learned_of[latent]}
    for key, value in _plain_order(model.state_dict(), latents).items():
        if key in folded:
            continue
        value = value.detach().cpu()
        if key in latents:
            learned = {k: v.detach().cpu().float() for k, v in learned_of[key].items()}
            bits, alpha = deployed_parts(method, value.float(), learned)
            yield latents[key], "bin", bits, alpha
        elif value.is_floating_point() or value.is_complex():
            yield key, "f32", value, None
        else:
            yield key, "i64", value, None


@contextlib.contextmanager
def deployed(model: nn.Module):
    """Within the block every binarized weight evaluates to its deployed form (the deployed binary model)."""
    params = [p for _, m in binarized_layers(model) for p in m.parametrizations.weight if isinstance(p, BinarizedWeight)]
    params += [m.input_quantizer for _, m in input_binarized_layers(model)]
    for p in params:
        p.deployed = True
    try:
        yield model
    finally:
        for p in params:
            p.deployed = False


@dataclass
class LayerInfo:
    name: str
    kind: str
    binarized: bool
    params: int
    bits: int  # storage bits of the weight in the deployed model (1 per binarized weight, 32 otherwise)
    input_binarized: bool = False  # the layer's input is binarized (W1A1)


@dataclass
class Summary:
    """Per-layer table of a (binarized) model; ``str(summary)`` is a tabulate table."""

    layers: list[LayerInfo]
    total_params: int
    binarized_params: int

    def __str__(self) -> str:
        rows = [(l.name, l.kind, "yes" if l.binarized else "no", l.params, l.bits,
                 "1-bit" if l.input_binarized else "fp") for l in self.layers]
        table = tabulate(rows, headers=["layer", "type", "binarized", "weights", "bits/weight", "input"],
                         tablefmt="github")
        return f"{table}\n\nparameters: {self.total_params:,}  binarized: {self.binarized_params:,}"


def summary(model: nn.Module) -> Summary:
    """Every conv/linear layer: binarized or not, weight count, bits per deployed weight, and whether its input
    is binarized (``input``: 1-bit or fp)."""
    binarized = {name for name, _ in binarized_layers(model)}
    inputs = {name for name, _ in input_binarized_layers(model)}
    layers = []
    for name, module in model.named_modules():
        if not isinstance(module, LAYER_KINDS):
            continue
        is_bin = name in binarized
        w = module.parametrizations.weight.original if is_bin else module.weight
        kind = type(module).__mro__[1].__name__ if is_bin else type(module).__name__  # parametrize subclasses it
        layers.append(LayerInfo(name, kind, is_bin, w.numel(), 1 if is_bin else 32, name in inputs))
    total = sum(p.numel() for p in model.parameters())
    return Summary(layers, total, sum(l.params for l in layers if l.binarized))
