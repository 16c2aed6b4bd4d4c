"""Run configurations: defaults, validation, resolution and run ids (DESIGN.md §6).

A run is fully described by its resolved config (a flat dict with the keys of ``DEFAULTS``). Its run id is
a short hash of that dict with sorted keys, so the same cell always gets the same id. Runtime options that
do not change what is computed (device, data root, worker count) are not part of the config.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import tomllib
from pathlib import Path

import methods
from methods.base import close_match_hint

from .errors import UserError

# Hyperparameters of one run, with their units; every key may be set in a grid or on the command line.
DEFAULTS: dict = {
    "model": "fmnist-cnn",       # registry key (python -m bench models)
    "method": "fp",              # registry key (python -m bench methods)
    "method_params": {},         # method parameter overrides, e.g. {mu_end = 40}
    "policy": None,              # binarize policy: preset name or {preset, include, exclude, types, ...}
    "dataset": "fashion-mnist",  # registry key (python -m bench datasets)
    "data_options": {},          # dataset options (synthetic: img_size, in_chans, num_classes, ...)
    "loader": "memory",          # memory | torch | ffcv
    "augment": True,             # training-set augmentation: random crop (zero padding) + horizontal flip
    "subset": None,              # train on the first N training samples (None: all)
    "test_subset": None,         # evaluate on the first N test samples (None: all)
    "mode": "e2e",               # e2e (from scratch) | finetune (from `init`)
    "init": None,                # finetune source: a checkpoint path, "run:<id>", "parent" (in grids) or "timm"
    "model_kwargs": {},          # extra model builder arguments (e.g. {patch_size = 4})
    "epochs": 4,                 # passes over the training split
    "batch_size": 128,           # images per step
    "optimizer": "adam",         # sgd | adam | adamw
    "lr": 1e-3,                  # peak learning rate
    "momentum": 0.9,             # SGD momentum (ignored by Adam/AdamW)
    "weight_decay": 0.0,         # decoupled for AdamW, L2 for SGD/Adam
    "lr_schedule": "cosine",     # cosine | step | constant, per step, after warm-up
    "warmup_epochs": 0.0,        # linear warm-up from 0, in epochs
    "step_milestones": [0.5, 0.75],  # step schedule: fractions of training where lr is multiplied by 0.1
    "label_smoothing": 0.0,      # cross-entropy label smoothing
    "seed": 0,                   # model init, data order and augmentation
}
CHOICES = {
    "loader": ("memory", "torch", "ffcv"),
    "mode": ("e2e", "finetune"),
    "optimizer": ("sgd", "adam", "adamw"),
    "lr_schedule": ("cosine", "step", "constant"),
}
POSITIVE_INTS = ("epochs", "batch_size")
OPTIONAL_POSITIVE_INTS = ("subset", "test_subset")
FLOATS = ("lr", "momentum", "weight_decay", "warmup_epochs", "label_smoothing")
DICTS = ("method_params", "data_options", "model_kwargs")


def check_keys(keys, where: str) -> None:
    """Unknown config keys are an error naming the closest valid key."""
    valid = sorted(DEFAULTS)
    for key in keys:
        if key not in DEFAULTS:
            raise UserError(f"{where}: unknown key {key!r}{close_match_hint(key, valid)} (valid: {', '.join(valid)})")


def resolve(raw: dict, where: str = "config") -> dict:
    """Fill defaults, check every key and value, and normalise the method parameters.

    Raises ``UserError`` (or the registries' own errors) with a message naming ``where`` and the key.
    """
    check_keys(raw, where)
    cfg = {**json.loads(json.dumps(DEFAULTS)), **raw}
    for key, choices in CHOICES.items():
        if cfg[key] not in choices:
            raise UserError(f"{where}: {key} must be one of {', '.join(choices)}, got {cfg[key]!r}"
                            f"{close_match_hint(str(cfg[key]), list(choices))}")
    for key in POSITIVE_INTS:
        if not isinstance(cfg[key], int) or isinstance(cfg[key], bool) or cfg[key] <= 0:
            raise UserError(f"{where}: {key} must be a positive integer, got {cfg[key]!r}")
    for key in OPTIONAL_POSITIVE_INTS:
        if cfg[key] is not None and (not isinstance(cfg[key], int) or cfg[key] <= 0):
            raise UserError(f"{where}: {key} must be a positive integer, got {cfg[key]!r}")
    for key in FLOATS:
        if isinstance(cfg[key], bool) or not isinstance(cfg[key], (int, float)) or not math.isfinite(cfg[key]) or cfg[key] < 0:
            raise UserError(f"{where}: {key} must be a finite number ≥ 0, got {cfg[key]!r}")
        cfg[key] = float(cfg[key])
    if cfg["lr"] <= 0:
        raise UserError(f"{where}: lr must be > 0, got {cfg['lr']}")
    if not isinstance(cfg["augment"], bool):
        raise UserError(f"{where}: augment must be true or false, got {cfg['augment']!r}")
    if not isinstance(cfg["seed"], int):
        raise UserError(f"{where}: seed must be an integer, got {cfg['seed']!r}")
    for key in DICTS:
        if not isinstance(cfg[key], dict):
            raise UserError(f"{where}: {key} must be a table, got {cfg[key]!r}")
    if cfg["mode"] == "finetune" and not cfg["init"]:
        raise UserError(f"{where}: mode = 'finetune' needs init (a checkpoint path, 'run:<id>', 'parent' or 'timm')")
    if cfg["mode"] == "e2e" and cfg["init"] not in (None, "timm"):
        raise UserError(f"{where}: init is only used with mode = 'finetune'")
    try:
        method = methods.create_method(cfg["method"], **cfg["method_params"])
    except methods.MethodError as exc:
        raise UserError(f"{where}: {exc}") from None
    cfg["method_params"] = method.config()
    if cfg["policy"] is not None and not isinstance(cfg["policy"], (str, dict)):
        raise UserError(f"{where}: policy must be a preset name or a table, got {cfg['policy']!r}")
    if isinstance(cfg["policy"], str) and cfg["policy"] not in methods.PRESETS:
        raise UserError(f"{where}: unknown policy preset {cfg['policy']!r} (valid: {', '.join(methods.PRESETS)})")
    return cfg


# Keys added after the first release, with the value every earlier run implicitly used: left out of the
# hash while at that value, so the run ids of existing records stay valid.
LATER_KEYS = {"augment": True}


def run_id(cfg: dict) -> str:
    """A 10-hex-digit hash of the resolved config with sorted keys (``LATER_KEYS`` at their value omitted)."""
    hashed = {k: v for k, v in cfg.items() if not (k in LATER_KEYS and v == LATER_KEYS[k])}
    text = json.dumps(hashed, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:10]


def load_toml(path: str | Path) -> dict:
    """Parse a TOML file; a syntax error becomes a UserError naming the file and line."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no such file: {path}")
    text = path.read_bytes().decode("utf-8", errors="replace")
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        found = re.search(r"at line (\d+), column (\d+)", str(exc))
        line = found.group(1) if found else str(max(1, len(text.rstrip().splitlines())))
        reason = re.sub(r"\s*\(at (line \d+, column \d+|end of document)\)", "", str(exc))
        raise UserError(f"{path}: line {line}: malformed TOML: {reason}") from None


def parse_assignment(text: str, where: str) -> tuple[str, object]:
    """'key=value' with a TOML value (bare words are strings): ('key', value)."""
    if "=" not in text:
        raise UserError(f"{where}: expected KEY=VALUE, got {text!r}")
    key, value = (part.strip() for part in text.split("=", 1))
    try:
        parsed = tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value
    return key, parsed
