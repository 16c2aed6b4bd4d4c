"""Pretrained weights from the local cache only, and loading checkpoints with position-embedding resampling.

Nothing here touches the network. ``create_model(..., pretrained=True)`` looks the weight file up in the
local Hugging Face cache (timm's weights) or the torch hub cache (torchvision's) and raises ``ModelError``
at once, naming the repository and file and how to fetch them, when it is not there — instead of letting
``huggingface_hub`` retry a download offline. The cache locations are read from the environment at call
time (``HF_HUB_CACHE``, ``HF_HOME``, ``XDG_CACHE_HOME``, ``TORCH_HOME``), so they can be changed per run.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from methods.deploy import plain_key as _plain

from .registry import ModelError

HF_FILENAMES = ("model.safetensors", "pytorch_model.bin")


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache, resolved like huggingface_hub does but from the current environment."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(xdg).expanduser() / "huggingface" / "hub"


def find_hf_file(repo_id: str, filenames=HF_FILENAMES) -> Path | None:
    """The cached path of the first of ``filenames`` in ``repo_id`` (``owner/name[@revision]``), or None."""
    from huggingface_hub import try_to_load_from_cache

    repo, _, revision = repo_id.partition("@")
    for filename in filenames:
        hit = try_to_load_from_cache(repo, filename, cache_dir=hf_cache_dir(), revision=revision or None)
        if isinstance(hit, str) and Path(hit).is_file():
            return Path(hit)
    return None


def find_torch_hub_file(url: str) -> Path | None:
    """The torch hub cache copy of ``url`` (``$TORCH_HOME/hub/checkpoints/<basename>``), or None."""
    path = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)
    return path if path.is_file() else None


def missing_weights(model: str, where: str, fetch: str) -> ModelError:
    """The error for pretrained weights not in the local cache."""
    offline = " (HF_HUB_OFFLINE=1 is set)" if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes") else ""
    return ModelError(
        f"{model}: pretrained weights are not in the local cache{offline}: {where}. "
        f"Fetch them once on a machine with network access ({fetch}), or point HF_HOME/TORCH_HOME at a "
        f"cache that has them; or use pretrained=False."
    )


def unwrap_checkpoint(checkpoint) -> dict[str, torch.Tensor]:
    """The state dict inside a checkpoint: itself, or its ``state_dict``/``model``/``model_state`` entry;
    a ``module.`` prefix (DataParallel/DDP) is stripped."""
    if not isinstance(checkpoint, Mapping):
        raise ModelError(f"a checkpoint must be a state dict (a mapping), got {type(checkpoint).__name__}")
    for key in ("state_dict", "model", "model_state", "model_state_dict"):
        if isinstance(checkpoint.get(key), Mapping):
            checkpoint = checkpoint[key]
            break
    return {(k[7:] if k.startswith("module.") else k): v for k, v in checkpoint.items()}


def load_state_dict_resampled(model: nn.Module, state_dict, *, strict: bool = True) -> list[str]:
    """Load a full-precision checkpoint into ``model``, resampling ViT position embeddings if the grid differs.

    * ``state_dict`` may be a wrapped checkpoint (see ``unwrap_checkpoint``).
    * Keys are matched modulo binarization: a plain ``layer.weight`` loads into the latent
      ``layer.parametrizations.weight.original`` of a model that ``methods.binarize`` has wrapped, and back.
    * ``pos_embed`` of another patch grid (a 28-px checkpoint into a 32-px model) is resampled bicubically
      with timm's ``resample_abs_pos_embed``; prefix (class/distillation) tokens are kept as they are. A patch
      embedding of another patch size (7 → 4) is resampled with timm's ``resample_patch_embed`` (FlexiViT).
    * Anything else that does not match — a missing or unexpected key (with ``strict``), a shape that differs —
      is a ``ModelError`` naming the first such key, as a checkpoint of another architecture would be.

    Returns the keys that were resampled.
    """
    source = {_plain(k): v for k, v in unwrap_checkpoint(state_dict).items()}
    target = model.state_dict()
    name = type(model).__name__
    missing = [k for k in target if _plain(k) not in source]
    unexpected = sorted(set(source) - {_plain(k) for k in target})
    if strict and (missing or unexpected):
        first = f"key {missing[0]!r} is missing from the checkpoint" if missing else (
            f"the checkpoint has key {unexpected[0]!r} that the model does not"
        )
        raise ModelError(
            f"checkpoint does not match {name}: {first} ({len(missing)} missing, {len(unexpected)} unexpected "
            f"keys); is it a checkpoint of another model?"
        )
    loaded, resampled = {}, []
    for key, want in target.items():
        if _plain(key) not in source:
            continue
        value = source[_plain(key)]
        if not isinstance(value, torch.Tensor):
            raise ModelError(f"checkpoint does not match {name}: {key!r} is a {type(value).__name__}, not a tensor")
        if value.shape != want.shape and key.endswith("pos_embed") and value.dim() == 3:
            value = _resample_pos_embed(model, key, value, want)
            resampled.append(key)
        elif value.shape != want.shape and _plain(key).endswith("patch_embed.proj.weight") and value.dim() == 4 \
                and value.shape[:2] == want.shape[:2]:
            from timm.layers import resample_patch_embed

            value = resample_patch_embed(value, new_size=list(want.shape[2:]))
            resampled.append(key)
        if value.shape != want.shape:
            raise ModelError(
                f"checkpoint does not match {name}: {key!r} has shape {tuple(value.shape)} in the checkpoint and "
                f"{tuple(want.shape)} in the model; is it a checkpoint of another model or configuration?"
            )
        loaded[key] = value
    model.load_state_dict(loaded, strict=False)
    return resampled


def _resample_pos_embed(model: nn.Module, key: str, value: torch.Tensor, want: torch.Tensor) -> torch.Tensor:
    from timm.layers import resample_abs_pos_embed

    owner = model.get_submodule(key.rpartition(".")[0]) if "." in key else model
    patch_embed = getattr(owner, "patch_embed", None)
    grid = getattr(patch_embed, "grid_size", None)
    if grid is None or value.shape[-1] != want.shape[-1]:
        return value  # not a timm ViT or another width: the shape check reports it
    prefix = 0 if getattr(owner, "no_embed_class", False) else getattr(owner, "num_prefix_tokens", 1)
    old_tokens = value.shape[1] - prefix
    side = int(round(old_tokens**0.5))
    if side * side != old_tokens or prefix + grid[0] * grid[1] != want.shape[1]:
        return value
    return resample_abs_pos_embed(value, new_size=list(grid), old_size=[side, side], num_prefix_tokens=prefix)
