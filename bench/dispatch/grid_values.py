"""The shapes of a grid file's values, checked before any cell is resolved, and values written back as TOML
text for one-line messages.

A method, model or dataset is a string, a seed an integer, ``data_options`` a table, ``step_milestones`` an
array of numbers, and so on: each config key's shape follows from its default in
``bench.run.config.DEFAULTS`` (``kind_of``). A method parameter is a number, or a string / true or false
where its method's default is one (``scale``, ``schedule``, ``lq``, a plugin's flag). ``check_value`` and
``check_param`` raise a one-line UserError naming where the value is (``where``) and what it should be;
``bench.run.config.resolve`` checks the values themselves later.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import methods

from bench.run import config as configs
from bench.errors import UserError

BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


@dataclass(frozen=True)
class Kind:
    one: str    # "a string"
    many: str   # "strings"
    test: object


def is_number(value) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        float(value)
    except OverflowError:  # a TOML integer too large for a float
        return False
    return True


STRING = Kind("a string", "strings", lambda v: isinstance(v, str))
INTEGER = Kind("an integer", "integers", lambda v: isinstance(v, int) and not isinstance(v, bool))
NUMBER = Kind("a number", "numbers", is_number)
BOOL = Kind("true or false", "true or false", lambda v: isinstance(v, bool))
TABLE = Kind("a table", "tables", lambda v: isinstance(v, dict))
NUMBERS = Kind("an array of numbers", "arrays of numbers", lambda v: isinstance(v, list) and all(map(is_number, v)))
POLICY = Kind("a string (a preset name) or a table", "strings (a preset name) or tables",
               lambda v: isinstance(v, (str, dict)))
NAMES = {"method": " (a method name)", "model": " (a model name)", "dataset": " (a dataset name)"}


def kind_of(key: str) -> Kind | None:
    """The shape a config key's value has (from its default); None: left to bench.run.config.resolve."""
    default = configs.DEFAULTS.get(key)
    if key == "policy":
        return POLICY
    if key in ("subset", "test_subset"):  # None (all) or a count
        return INTEGER
    if key == "init":  # None or a string
        return STRING
    for types, kind in ((bool, BOOL), (dict, TABLE), (str, STRING), (list, NUMBERS), (float, NUMBER), (int, INTEGER)):
        if isinstance(default, types):
            return kind
    return None


KINDS = {key: kind_of(key) for key in configs.DEFAULTS}


def check_value(key: str, value, where: str, classes: list, plural: bool = False) -> None:
    """The value of config key ``key`` has the right shape (a string, a table, ...), or a UserError."""
    kind = KINDS.get(key)
    if kind is not None and not kind.test(value):
        if plural:
            raise UserError(f"{where}: {key} values must be {kind.many}{NAMES.get(key, '')}, got {show(value)}")
        raise UserError(f"{where}: {key} must be {kind.one}{NAMES.get(key, '')}, got {show(value)}")
    if key == "method_params":
        for param, param_value in value.items():
            check_param(param, param_value, where, classes, prefix="method_params.")


def check_param(key: str, value, where: str, classes: list, prefix: str = "") -> None:
    """A method parameter has the shape its method declares: a number, or a string / true or false where the
    parameter's default is one (``scale``, ``schedule``, ``lq``, a plugin's flag)."""
    kinds = set()
    for cls in classes:
        if key not in cls.valid_parameters():
            continue
        constant = cls.constants.get(key)
        kinds.add(STRING if key in ("scale", "schedule") or isinstance(constant, str) else
                  BOOL if isinstance(constant, bool) else NUMBER)
    kind = kinds.pop() if len(kinds) == 1 else None  # None: unknown or ambiguous, the method checks it
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
