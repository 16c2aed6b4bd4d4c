"""The deployed form of a binarized model: bits and α per layer, and the latent-key mapping.

Lu et al., NeurIPS 2023 (PC++): the deployed network computes with α·sign(w) for every binarized latent w
(sign(0) = +1), i.e. with bits b = 1[w ≥ 0] and θ = α·(2b − 1); a method with per-layer learnable tensors or
another deployed form (``Traits.learned``/``custom_export``) says which bits and α through ``export_parts``
(XNOR-Net++'s Γ and ReCU's learnable scale are the α). This module is the one place that
* maps a binarized layer's latent key ``<layer>.parametrizations.weight.original`` to its plain key
  ``<layer>.weight`` (``plain_key``: loading checkpoints, fine-tune parents, packed files);
* gives the deployed weight and the (bits, α) of one layer (``deployed_weight``, ``deployed_parts``).
``methods.deployed_model`` applies it to a whole model (the entries ``bench.run.export`` serializes).
"""

from __future__ import annotations

import torch
from torch import Tensor

# Where a binarized layer keeps its latent weight, relative to the layer: its state-dict key is
# ``<layer>.`` + this (``torch.nn.utils.parametrize``'s naming of the weight's original tensor).
LATENT_WEIGHT_KEY = "parametrizations.weight.original"


def plain_key(key: str) -> str:
    """'layer.parametrizations.weight.original' -> 'layer.weight' (any other key unchanged)."""
    return key.replace(f".{LATENT_WEIGHT_KEY}", ".weight")


def signed(bits: Tensor, alpha: Tensor | float | None, dtype=torch.float32) -> Tensor:
    """α·(2·bits − 1) in ``dtype``: exactly ±α (α None or 1: ±1)."""
    signs = torch.where(bits, 1.0, -1.0).to(dtype)
    if alpha is None or (not isinstance(alpha, Tensor) and float(alpha) == 1.0):
        return signs
    return (alpha.to(dtype) if isinstance(alpha, Tensor) else alpha) * signs


def rebuild(bits: Tensor, alpha: Tensor | None) -> Tensor:
    """α·(2·bit − 1) in float32 (exactly ±α): a packed tensor read back."""
    return signed(bits, alpha)


def deployed_weight(method, w: Tensor, learned: dict[str, Tensor]) -> Tensor:
    """The deployed weight of one layer: ``method.export(w)``, or with learnable tensors α·(2·bits − 1) of
    ``export_parts(w, **learned)``."""
    if not learned:
        return method.export(w)
    with torch.no_grad():
        bits, alpha = method.export_parts(w, **learned)
        return signed(bits, alpha.detach() if isinstance(alpha, Tensor) else alpha, w.dtype)


def deployed_parts(method, w: Tensor, learned: dict[str, Tensor]) -> tuple[Tensor, Tensor | None]:
    """(bits, α) of one deployed layer on the CPU: bits bool (True = +α), α float32 (0-d for one value) or
    None for α = 1."""
    bits, alpha = method.export_parts(w, **learned)
    if isinstance(alpha, Tensor):
        alpha = alpha.detach().cpu().float()
        return bits, alpha.reshape(()) if alpha.numel() == 1 else alpha
    return bits, None if float(alpha) == 1.0 else torch.tensor(float(alpha))
