"""The optimizer of a run and its per-step learning-rate multiplier."""

from __future__ import annotations

import math

import torch
from torch import nn

import methods


def make_optimizer(cfg: dict, model: nn.Module) -> torch.optim.Optimizer:
    """The optimizer with two parameter groups: the binarized latents, with weight decay
    ``latent_weight_decay`` (0 by default: decay pulls latents towards 0, against a prox towards ±1), and
    every other trainable parameter, with ``weight_decay``."""
    latent_ids = {id(w) for w in methods.latent_weights(model)}
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if id(p) in latent_ids], "weight_decay": cfg["latent_weight_decay"]},
              {"params": [p for p in params if id(p) not in latent_ids], "weight_decay": cfg["weight_decay"]}]
    groups = [g for g in groups if g["params"]]
    if cfg["optimizer"] == "sgd":
        return torch.optim.SGD(groups, lr=cfg["lr"], momentum=cfg["momentum"])
    if cfg["optimizer"] == "adam":
        return torch.optim.Adam(groups, lr=cfg["lr"])
    return torch.optim.AdamW(groups, lr=cfg["lr"])


def lr_factor(cfg: dict, step: int, total: int, steps_per_epoch: int) -> float:
    """Multiplier of the peak lr at ``step``: linear warm-up, then cosine to 0, step (×0.1) or constant."""
    warmup = int(cfg["warmup_epochs"] * steps_per_epoch)
    if step < warmup:
        return (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    if cfg["lr_schedule"] == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * t))
    if cfg["lr_schedule"] == "step":
        return 0.1 ** sum(t >= m for m in cfg["step_milestones"])
    return 1.0
