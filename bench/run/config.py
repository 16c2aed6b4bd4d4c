"""Run configurations: resolution, the method built once, and run ids.

A run is fully described by its resolved config (a flat dict with one value per key of
``bench.run.settings.SETTINGS``, the single source of every key's default, kind, valid values, ceiling and
help text). Its run id is a short hash of that dict with sorted keys, so the same cell always gets the same id.
Runtime options that do not change what is computed (device, data root, worker count) are not part of the
config.

``resolve`` fills the defaults and checks every key against its setting (booleans are not numbers, numbers
are finite and at most their ceiling, seeds lie in [0, 2**32 - 1], subsets do not exceed the dataset's
split); model, method, dataset, policy and their options are looked up in their registries. Every problem is
a ``UserError`` of one line naming the key, what it must be and the value given. The method is built there:
its parameters are checked by ``methods.create_method`` and recorded as ``method.config()`` (every parameter,
start and end values); ``resolve_run`` returns that instance with the config, for the model builder to take,
so a run builds its method once. The config stays a plain dict (the checkpoint stores it as it is).
"""

from __future__ import annotations

import hashlib
import json

import methods
from methods import kernels
from bench.registry import close_match_hint

from bench.errors import UserError
from bench.run import robustness
from bench.run.settings import DEFAULTS, NUMBER, SETTINGS, show

__all__ = ["DEFAULTS", "LATER_KEYS", "build_method", "check_keys", "resolve", "resolve_run", "run_id", "show"]


def check_keys(keys, where: str) -> None:
    """Unknown config keys are an error naming the closest valid key."""
    valid = sorted(DEFAULTS)
    for key in keys:
        if key not in DEFAULTS:
            raise UserError(f"{where}: unknown key {key!r}{close_match_hint(key, valid)} (valid: {', '.join(valid)})")


def build_method(cfg: dict, where: str = "config") -> methods.Method:
    """The method of config ``cfg`` (``methods.create_method``); a bad name or parameter is a one-line UserError."""
    try:
        return methods.create_method(cfg["method"], **cfg["method_params"])
    except methods.MethodError as exc:
        raise UserError(f"{where}: {exc}") from None


def resolve(raw: dict, where: str = "config") -> dict:
    """``resolve_run``'s config alone (a model built from it builds its own method)."""
    return resolve_run(raw, where)[0]


def resolve_run(raw: dict, where: str = "config") -> tuple[dict, methods.Method]:
    """(the resolved config, its method): fill defaults, check every key and value, build the method and
    record its parameters as ``method.config()``. The model builder takes that method (``build_model(cfg,
    method=...)``), so a run builds it once.

    Raises ``UserError`` with a one-line message naming ``where`` and the key.
    """
    if not isinstance(raw, dict):
        raise UserError(f"{where}: a config is a table of keys, got {show(raw)}")
    check_keys(raw, where)
    cfg = {**json.loads(json.dumps(DEFAULTS)), **raw}
    for setting in SETTINGS:
        value = cfg[setting.name]
        if not setting.accepts(value):
            options = setting.options()
            hint = close_match_hint(str(value), list(options)) if options is not None else ""
            raise UserError(f"{where}: {setting.name} must be {setting.describe()}, got {show(value)}{hint}")
    for setting in SETTINGS:
        if setting.ceiling is not None and cfg[setting.name] > setting.ceiling:
            raise UserError(f"{where}: {setting.name} must be at most {setting.ceiling:.15g}, got "
                            f"{show(cfg[setting.name])} (larger values overflow float32 training or exceed any real run)")
    for setting in SETTINGS:
        if setting.kind is NUMBER:
            cfg[setting.name] = float(cfg[setting.name])
    if cfg["warmup_epochs"] > cfg["epochs"]:
        raise UserError(f"{where}: warmup_epochs must be ≤ epochs ({cfg['epochs']}), got {cfg['warmup_epochs']}")
    if cfg["mode"] == "finetune" and not cfg["init"]:
        raise UserError(f"{where}: mode = 'finetune' needs init (a checkpoint path, 'run:<id>', 'parent' or 'timm')")
    if cfg["mode"] == "e2e" and cfg["init"] not in (None, "timm"):
        raise UserError(f"{where}: init is only used with mode = 'finetune'")
    _check_model(cfg, where)
    _check_dataset(cfg, where)
    method = build_method(cfg, where)
    cfg["method_params"] = method.config()
    try:
        kernels.check_environment()  # PROXBENCH_KERNELS: refused before anything runs, not at the first W1A1 step
    except methods.MethodError as exc:
        raise UserError(str(exc)) from None
    cfg["robustness"] = robustness.resolve(cfg["robustness"], where)
    _check_policy(cfg["policy"], where)
    return cfg, method


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
LATER_KEYS = {s.name: s.default for s in SETTINGS if s.later}


def run_id(cfg: dict) -> str:
    """A 10-hex-digit hash of the resolved config with sorted keys (``LATER_KEYS`` at their value omitted)."""
    hashed = {k: v for k, v in cfg.items() if not (k in LATER_KEYS and v == LATER_KEYS[k])}
    text = json.dumps(hashed, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:10]
