"""The ``python -m bench run ...`` command line that reproduces a run: its config as flags.

``reproduce_command(config)`` writes the config keys whose values differ from the defaults (``bench.run.settings.DEFAULTS``):
the keys with a flag of their own as ``--key value``, the method parameters that differ from the method's
defaults as ``--param name=value``, any other key as ``--set key=<TOML value>``. Run, the command resolves
to the same config, hence the same run id (``tests/test_first_contact.py`` checks it on every committed
record). ``runs show`` prints it.
"""

from __future__ import annotations

import json
import math
import shlex

from bench.run import catalogue
from bench.run.settings import FLAG_KEYS  # config keys with their own flag of ``python -m bench run``


def toml_value(value) -> str:
    """``value`` in TOML spelling: true/false, numbers, "strings", [arrays] and {inline = tables}."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ("nan" if value != value else ("inf" if value > 0 else "-inf"))
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise ValueError(f"no TOML spelling for {value!r}")


def _flag_value(value) -> str:
    return value if isinstance(value, str) else toml_value(value)


def reproduce_args(config: dict) -> list[str]:
    """The arguments after ``python -m bench run`` that give ``config`` (a resolved config)."""
    args: list[str] = []
    defaults = catalogue.config_defaults()
    default_params = catalogue.method_defaults(config["method"])
    for key in sorted(config):
        value = config[key]
        if key == "method_params":
            for name in sorted(value):
                if name not in default_params or value[name] != default_params[name]:
                    args += ["--param", f"{name}={toml_value(value[name])}"]
            continue
        if key not in defaults or value == defaults[key] or value is None:
            continue
        if key in FLAG_KEYS and not isinstance(value, (dict, list)):
            args += [f"--{key.replace('_', '-')}", _flag_value(value)]
        else:
            args += ["--set", f"{key}={toml_value(value)}"]
    return args


def reproduce_command(config: dict) -> str:
    """``python -m bench run ...`` (shell-quoted) that trains ``config`` again: the same run id."""
    return " ".join(["python -m bench run"] + [shlex.quote(a) for a in reproduce_args(config)])
