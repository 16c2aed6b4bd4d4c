"""The static catalogue of the built-in methods and models, and of the run config's defaults:
``bench/run/catalogue.json``.

``python -m bench methods`` and ``models`` print their tables from it, and ``runs show`` its reproducing
command, so they answer without importing torch (the registries live in modules that do). It is generated from the live registries by
``python -m bench.run.catalogue`` (run it after adding or changing a built-in method or model);
``tests/test_first_contact.py`` checks that it equals the live registries. It is used only when nothing can
add to the registries: no ``--plugin`` and no installed plugin entry point (``bench.plugins``).
"""

from __future__ import annotations

import json
from pathlib import Path

from bench.plugins import installed_entry_points

PATH = Path(__file__).resolve().with_name("catalogue.json")


def build() -> dict:
    """The catalogue from the live registries (imports methods and models, hence torch): the rows of the
    ``methods`` and ``models`` tables, the weight-only methods, and each method's default parameters (its
    resolved ``method_params`` when none is given)."""
    import methods

    from bench.run import config

    import models

    # built-ins only: a plugin another piece of code registered in this process is not the catalogue's
    every = [k for k in methods.list_methods(w1a1=None) if methods.registry.METHODS.is_builtin(k)]
    shipped = {name for name in models.list_models() if models.registry.MODELS.is_builtin(name)}
    return {"methods": [row for row in method_rows("*") if row[0] in every],
            "weight_methods": [k for k in methods.list_methods() if k in every],
            "models": [row for row in model_rows("*") if row[0] in shipped],
            "method_defaults": {name: methods.create_method(name).config() for name in every},
            "config_defaults": config.DEFAULTS}


def method_rows(pattern: str = "*") -> list[list[str]]:
    """key, F, B', hooks, parameters (scheduled ones as start → end), default scale; one row per method."""
    import methods

    rows = []
    for key in methods.list_methods(pattern, w1a1=None):
        cls = methods.get_method_class(key)
        params = [f"{name}: {start:g} → {end:g}" for name, (start, end, *_) in cls.schedules.items()]
        params += [f"{name} = {value}" for name, value in cls.constants.items()]
        forward, backward, hooks = cls.formulas
        act = cls.activation_class()
        if act is not None:  # W1A1: the input quantizer's pair after the weights'
            forward += f"; input: {act.formulas[0]}"
            backward += f"; input: {act.formulas[1]}"
            params += [f"act {name}: {start:g} → {end:g}" for name, (start, end, *_) in act.schedules.items()]
        rows.append([key, forward, backward, hooks, "; ".join(params) or "—", cls.default_scale])
    return rows


def model_rows(pattern: str = "*") -> list[list[str]]:
    """name, family, default input, pretrained, description; one row per registered model."""
    import models

    rows = []
    for name in models.list_models(pattern):
        info = models.model_info(name)
        shape = "×".join(str(d) for d in info.default_input)
        rows.append([name, info.family, shape, "yes" if info.has_pretrained else "", info.description])
    return rows


def keyed_rows(mapping: dict, indent: str) -> str:
    """``"key": value`` one entry a line (JSON, ``indent`` before each line after the first)."""
    return f",\n{indent}".join(f"{json.dumps(k)}: {json.dumps(v, ensure_ascii=False)}" for k, v in mapping.items())


def text(catalogue: dict) -> str:
    """The file's text: one table row a line (readable diffs)."""
    parts = []
    for key, value in catalogue.items():
        if isinstance(value, dict):
            parts.append(f"{json.dumps(key)}: {{\n  {keyed_rows(value, '  ')}\n }}")
        elif value and isinstance(value[0], list):
            rows = ",\n  ".join(json.dumps(row, ensure_ascii=False) for row in value)
            parts.append(f"{json.dumps(key)}: [\n  {rows}\n ]")
        else:
            parts.append(f"{json.dumps(key)}: {json.dumps(value, ensure_ascii=False)}")
    return "{\n " + ",\n ".join(parts) + "\n}\n"


def usable(plugins=()) -> dict | None:
    """The catalogue, when it describes every registered method and model: None with plugin modules, an
    installed plugin entry point (``bench.plugins.GROUPS``), or no (readable) catalogue file."""
    if plugins or installed_entry_points():
        return None
    try:
        return json.loads(PATH.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def method_defaults(name: str) -> dict:
    """Method ``name``'s resolved parameters when none is given: from the catalogue, else (a plugin's
    method) the live registry; {} for a method that is not registered here."""
    static = usable()
    if static is not None and name in static["method_defaults"]:
        return static["method_defaults"][name]
    import methods

    try:
        return methods.create_method(name).config()
    except methods.MethodError:
        return {}


def config_defaults() -> dict:
    """The run config's defaults (``bench.run.config.DEFAULTS``): from the catalogue when it is usable."""
    static = usable()
    if static is not None:
        return static["config_defaults"]
    from bench.run.config import DEFAULTS

    return DEFAULTS


def write() -> Path:
    """Write ``bench/catalogue.json`` from the live registries; its path."""
    PATH.write_text(text(build()), encoding="utf-8")
    return PATH


if __name__ == "__main__":
    print(write())
