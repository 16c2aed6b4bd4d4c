"""The shapes of a grid file's values, checked before any cell is resolved, and values written back as TOML
text for one-line messages.

A method, model or dataset is a string, a seed an integer, ``data_options`` a table, ``step_milestones`` an
array of numbers, and so on: each config key's shape is its ``kind`` in ``bench.run.settings.SETTINGS``. A
method parameter has the kind its method class declares (``bench.run.settings.method_parameters``: a number,
or a string / true or false where its default is one: ``scale``, ``schedule``, ``lq``, a plugin's flag).
``check_value`` and ``check_param`` raise a one-line UserError naming where the value is (``where``) and what
it should be; ``bench.run.config.resolve`` checks the values themselves (ranges, bounds) when the cells resolve.
"""

from __future__ import annotations

import json
import re

import methods

from bench.errors import UserError
from bench.run.settings import BY_NAME, Kind, method_parameters

BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
KINDS: dict[str, Kind] = {name: setting.kind for name, setting in BY_NAME.items()}


def check_value(key: str, value, where: str, classes: list, plural: bool = False) -> None:
    """The value of config key ``key`` has the right shape (a string, a table, ...), or a UserError."""
    kind = KINDS.get(key)
    if kind is not None and not kind.test(value):
        noun = BY_NAME[key].noun
        if plural:
            raise UserError(f"{where}: {key} values must be {kind.many}{noun}, got {show(value)}")
        raise UserError(f"{where}: {key} must be {kind.one}{noun}, got {show(value)}")
    if key == "method_params":
        for param, param_value in value.items():
            check_param(param, param_value, where, classes, prefix="method_params.")


def check_param(key: str, value, where: str, classes: list, prefix: str = "") -> None:
    """A method parameter has the kind its method class declares (``method_parameters``); unknown to every
    class in ``classes`` or of different kinds in two of them: left to the method's own check."""
    kinds = {params[key].kind for params in map(method_parameters, classes) if key in params}
    kind = kinds.pop() if len(kinds) == 1 else None
    if kind is not None and not kind.test(value):
        raise UserError(f"{where}: {prefix}{key} must be {kind.one}, got {show(value)}")


def method_classes(names: list) -> list:
    """The registered method classes among ``names`` (other values are reported when cells resolve)."""
    known = methods.list_methods(w1a1=None)
    return [methods.get_method_class(n) for n in dict.fromkeys(n for n in names if isinstance(n, str)) if n in known]


def key_text(value) -> str:
    """An axis value as the key of its per-value override table: [seed.0], [augment.true], [method."bnn++"]."""
    return value if isinstance(value, str) else toml_text(value)


def table_name(axis: str, text: str) -> str:
    return f"[{axis}.{text if BARE_KEY.fullmatch(text) else json.dumps(text, ensure_ascii=False)}]"


def toml_text(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, dict):
        items = (f"{k if BARE_KEY.fullmatch(k) else json.dumps(k)} = {toml_text(v)}" for k, v in value.items())
        return "{" + ", ".join(items) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(toml_text(v) for v in value) + "]"
    return str(value)


def show(value, limit: int = 60) -> str:
    """A value as TOML text, shortened to fit in a one-line message."""
    text = toml_text(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
