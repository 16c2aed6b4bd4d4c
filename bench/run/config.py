"""Run configurations: defaults, validation, resolution and run ids.

A run is fully described by its resolved config (a flat dict with the keys of ``DEFAULTS``). Its run id is
a short hash of that dict with sorted keys, so the same cell always gets the same id. Runtime options that
do not change what is computed (device, data root, worker count) are not part of the config.

``resolve`` checks the type and range of every key (``CHECKS`` has one rule per key of ``DEFAULTS``): booleans
are not numbers, numbers must be finite, seeds lie in [0, 2**32 - 1], subsets must not exceed the dataset's
split, and every number must be one the computation can represent (``CEILINGS``: the learning rate and the
weight decays at most 1e3; epochs, batch size and re-estimation batches far above any real run); model, method, dataset, policy and their options are looked up in their registries. Every problem is
a ``UserError`` of one line naming the key, what it must be and the value given.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import tomllib
from pathlib import Path

import methods
from methods import kernels
from bench.registry import close_match_hint

from bench.data import list_loaders
from bench.errors import UserError
from bench.run import robustness

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
    "weight_decay": 0.0,         # decoupled for AdamW, L2 for SGD/Adam; every parameter but the binarized latents
    "latent_weight_decay": 0.0,  # weight decay of the binarized latents (0: none, whatever weight_decay says)
    "bn_reestimate": 0,          # batches to re-estimate BN statistics of the deployed model on (final.acc_bn); 0: off
    "lr_schedule": "cosine",     # cosine | step | constant, per step, after warm-up
    "warmup_epochs": 0.0,        # linear warm-up from 0, in epochs
    "step_milestones": [0.5, 0.75],  # step schedule: fractions of training where lr is multiplied by 0.1
    "label_smoothing": 0.0,      # cross-entropy label smoothing
    "seed": 0,                   # model init, data order and augmentation
    "capture": "none",           # none (eager) | compile: the training step through torch.compile (CUDA graphs on CUDA)
    "fuse": False,               # all binarized weights quantized at once per forward (methods.fuse; same bits)
    "robustness": True,          # corrupted test sets at the end (bench.run.robustness): true | false | a table
}
CHOICES = {
    "loader": tuple(list_loaders()),  # the loader registry (bench.data)
    "mode": ("e2e", "finetune"),
    "optimizer": ("sgd", "adam", "adamw"),
    "lr_schedule": ("cosine", "step", "constant"),
    "capture": ("none", "compile"),  # bench.run.step.CAPTURES
}
FLOATS = ("lr", "momentum", "weight_decay", "latent_weight_decay", "warmup_epochs", "label_smoothing")  # stored as float
SEED_MAX = 2**32 - 1  # torch, numpy and the data order's generators all take seeds in [0, 2**32 - 1]
# Upper bounds of the numeric keys. lr and the weight decays: published recipes stay below 10; at 1e3 an SGD or
# AdamW step already moves a float32 weight by ~1e3 times its gradient or multiplies it by (1 − lr·wd) < −1e5,
# so larger values only overflow (to inf/NaN) or flip the weights every step. The counts: far above any real
# run, and below where the step counter, the schedules' float progress and the data plan lose their meaning.
CEILINGS = {"lr": 1e3, "weight_decay": 1e3, "latent_weight_decay": 1e3, "warmup_epochs": 1e5, "epochs": 100_000,
            "batch_size": 1 << 20, "bn_reestimate": 1_000_000}


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    try:
        return math.isfinite(v)
    except OverflowError:  # a TOML integer too large for a float
        return False


def _name(v) -> bool:
    return isinstance(v, str) and v != ""


def _unit(v) -> bool:
    return _is_number(v) and 0 <= v <= 1


# key -> (is the value acceptable, what it must be). Registry lookups and cross-key rules follow in resolve().
CHECKS: dict[str, tuple] = {
    "model": (_name, "a registry name (a string)"),
    "method": (_name, "a registry name (a string)"),
    "method_params": (lambda v: isinstance(v, dict), "a table"),
    "policy": (lambda v: v is None or isinstance(v, (str, dict)), "a preset name or a table"),
    "dataset": (_name, "a registry name (a string)"),
    "data_options": (lambda v: isinstance(v, dict), "a table"),
    "loader": (lambda v: v in CHOICES["loader"], f"one of {', '.join(CHOICES['loader'])}"),
    "augment": (lambda v: isinstance(v, bool), "true or false"),
    "subset": (lambda v: v is None or (_is_int(v) and v > 0), "a positive integer"),
    "test_subset": (lambda v: v is None or (_is_int(v) and v > 0), "a positive integer"),
    "mode": (lambda v: v in CHOICES["mode"], f"one of {', '.join(CHOICES['mode'])}"),
    "init": (lambda v: v is None or _name(v), "a checkpoint path, 'run:<id>', 'parent' or 'timm'"),
    "model_kwargs": (lambda v: isinstance(v, dict), "a table"),
    "epochs": (lambda v: _is_int(v) and v > 0, "a positive integer"),
    "batch_size": (lambda v: _is_int(v) and v > 0, "a positive integer"),
    "optimizer": (lambda v: v in CHOICES["optimizer"], f"one of {', '.join(CHOICES['optimizer'])}"),
    "lr": (lambda v: _is_number(v) and v > 0, "a finite number > 0"),
    "momentum": (lambda v: _is_number(v) and 0 <= v < 1, "a number in [0, 1)"),
    "weight_decay": (lambda v: _is_number(v) and v >= 0, "a finite number ≥ 0"),
    "latent_weight_decay": (lambda v: _is_number(v) and v >= 0, "a finite number ≥ 0"),
    "bn_reestimate": (lambda v: _is_int(v) and v >= 0, "an integer ≥ 0 (batches)"),
    "lr_schedule": (lambda v: v in CHOICES["lr_schedule"], f"one of {', '.join(CHOICES['lr_schedule'])}"),
    "warmup_epochs": (lambda v: _is_number(v) and v >= 0, "a finite number ≥ 0"),
    "step_milestones": (lambda v: isinstance(v, list) and all(_unit(m) for m in v), "a list of numbers in [0, 1]"),
    "label_smoothing": (_unit, "a number in [0, 1]"),
    "seed": (lambda v: _is_int(v) and 0 <= v <= SEED_MAX, f"an integer in [0, {SEED_MAX}]"),
    "capture": (lambda v: v in CHOICES["capture"], f"one of {', '.join(CHOICES['capture'])}"),
    "fuse": (lambda v: isinstance(v, bool), "true or false"),
    "robustness": (lambda v: isinstance(v, (bool, dict)), "true, false or a table {corruptions, severities, subset}"),
}
assert set(CHECKS) == set(DEFAULTS)


def show(value) -> str:
    """A config value as the user wrote it (TOML spelling for booleans)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


def check_keys(keys, where: str) -> None:
    """Unknown config keys are an error naming the closest valid key."""
    valid = sorted(DEFAULTS)
    for key in keys:
        if key not in DEFAULTS:
            raise UserError(f"{where}: unknown key {key!r}{close_match_hint(key, valid)} (valid: {', '.join(valid)})")


def resolve(raw: dict, where: str = "config") -> dict:
    """Fill defaults, check every key and value, and normalise the method parameters.

    Raises ``UserError`` with a one-line message naming ``where`` and the key.
    """
    if not isinstance(raw, dict):
        raise UserError(f"{where}: a config is a table of keys, got {show(raw)}")
    check_keys(raw, where)
    cfg = {**json.loads(json.dumps(DEFAULTS)), **raw}
    for key, (ok, expected) in CHECKS.items():
        if not ok(cfg[key]):
            hint = close_match_hint(str(cfg[key]), list(CHOICES[key])) if key in CHOICES else ""
            raise UserError(f"{where}: {key} must be {expected}, got {show(cfg[key])}{hint}")
    for key, ceiling in CEILINGS.items():
        if cfg[key] > ceiling:
            raise UserError(f"{where}: {key} must be at most {ceiling:.15g}, got {show(cfg[key])} (larger values "
                            "overflow float32 training or exceed any real run)")
    for key in FLOATS:
        cfg[key] = float(cfg[key])
    if cfg["warmup_epochs"] > cfg["epochs"]:
        raise UserError(f"{where}: warmup_epochs must be ≤ epochs ({cfg['epochs']}), got {cfg['warmup_epochs']}")
    if cfg["mode"] == "finetune" and not cfg["init"]:
        raise UserError(f"{where}: mode = 'finetune' needs init (a checkpoint path, 'run:<id>', 'parent' or 'timm')")
    if cfg["mode"] == "e2e" and cfg["init"] not in (None, "timm"):
        raise UserError(f"{where}: init is only used with mode = 'finetune'")
    _check_model(cfg, where)
    _check_dataset(cfg, where)
    try:
        method = methods.create_method(cfg["method"], **cfg["method_params"])
    except methods.MethodError as exc:
        raise UserError(f"{where}: {exc}") from None
    cfg["method_params"] = method.config()
    try:
        kernels.check_environment()  # PROXBENCH_KERNELS: refused before anything runs, not at the first W1A1 step
    except methods.MethodError as exc:
        raise UserError(str(exc)) from None
    cfg["robustness"] = robustness.resolve(cfg["robustness"], where)
    _check_policy(cfg["policy"], where)
    return cfg


def _check_model(cfg: dict, where: str) -> None:
    """The model is registered and takes the ``model_kwargs`` given (their values are checked by its builder)."""
    import inspect

    import models

    try:
        info = models.model_info(cfg["model"])
    except models.ModelError as exc:
        raise UserError(f"{where}: {exc}") from None
    if any(p.kind is p.VAR_KEYWORD for p in inspect.signature(info.builder).parameters.values()):
        return
    for key in cfg["model_kwargs"]:
        if key not in info.kwargs:
            valid = ", ".join(info.kwargs) or "none"
            raise UserError(f"{where}: model_kwargs: unknown keyword argument {key!r} of model {info.name!r}"
                            f"{close_match_hint(str(key), list(info.kwargs))} (valid: {valid})")


def _check_dataset(cfg: dict, where: str) -> None:
    """The dataset is registered, its options are valid, and the subsets fit in its splits."""
    from bench import data

    try:
        info = data.dataset_info(cfg["dataset"], cfg["data_options"])
    except UserError as exc:
        raise UserError(f"{where}: {exc}") from None
    for key, split, size in (("subset", "training", info.train_size), ("test_subset", "test", info.test_size)):
        if cfg[key] is not None and cfg[key] > size:
            raise UserError(f"{where}: {key} {cfg[key]} exceeds the {size} {split} samples of dataset "
                            f"{info.name!r}")


def _check_policy(policy, where: str) -> None:
    """A preset name, or a table of ``methods.Policy`` fields (and ``preset``) with values of the right type."""
    from methods.binarize import LAYER_TYPES, Policy

    if policy is None:
        return
    if isinstance(policy, str):
        policy = {"preset": policy}
    fields = ["preset", *Policy.__dataclass_fields__]
    for key, value in policy.items():
        if key not in fields:
            raise UserError(f"{where}: unknown policy key {key!r}{close_match_hint(str(key), fields)} "
                            f"(valid: {', '.join(fields)})")
        if key == "preset" and value not in methods.PRESETS:
            presets = list(methods.PRESETS)
            raise UserError(f"{where}: unknown policy preset {value!r}{close_match_hint(str(value), presets)} "
                            f"(valid: {', '.join(presets)})")
        if key in ("include", "exclude") and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            raise UserError(f"{where}: policy {key} must be a list of strings, got {show(value)}")
        if key == "types" and not (isinstance(value, list) and all(v in LAYER_TYPES for v in value)):
            raise UserError(f"{where}: policy types must be a list of {', '.join(LAYER_TYPES)}, got {show(value)}")
        if key == "inputs" and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            raise UserError(f"{where}: policy inputs must be a list of strings, got {show(value)}")
        if key in ("keep_first", "keep_last") and not isinstance(value, bool):
            raise UserError(f"{where}: policy {key} must be true or false, got {show(value)}")


# Keys added after the first release, with the value every earlier run implicitly used: left out of the
# hash while at that value, so the run ids of existing records stay valid.
LATER_KEYS = {"augment": True, "latent_weight_decay": 0.0, "bn_reestimate": 0, "capture": "none", "fuse": False,
              "robustness": True}


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
    try:
        text = path.read_bytes().decode("utf-8", errors="replace")
    except OSError as exc:
        raise UserError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        found = re.search(r"at line (\d+), column (\d+)", str(exc))
        line = found.group(1) if found else str(max(1, len(text.rstrip().splitlines())))
        raise UserError(f"{path}: line {line}: malformed TOML: {_toml_reason(exc)}") from None


def _toml_reason(exc: tomllib.TOMLDecodeError) -> str:
    """tomllib's message without its '(at line L, column C)' position."""
    return re.sub(r"\s*\(at (line \d+, column \d+|end of document)\)", "", str(exc))


def parse_assignment(text: str, where: str) -> tuple[str, object]:
    """'key=value' with a TOML value (bare words are strings): ('key', value).

    A value that starts like a TOML array, table or string but does not parse is an error, not a string."""
    key, eq, value = (part.strip() for part in text.partition("="))
    if not eq or not key:
        raise UserError(f"{where}: expected KEY=VALUE, got {text!r}")
    if not value:
        raise UserError(f"{where}: {key}: missing value (expected {key}=VALUE)")
    try:
        parsed = tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError as exc:
        if value[0] in "[{\"'" or "\n" in value:
            raise UserError(f"{where}: {key}: malformed TOML value {value!r}: {_toml_reason(exc)}") from None
        parsed = value
    return key, parsed
