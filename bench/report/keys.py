"""Keys and values of run records: what ``aggregate --by`` and ``runs list --filter`` can name.

A key is a config key (``lr``), a method parameter (``scale``, found in ``config.method_params``), a dotted
path into the record or into its config (``final.acc``, ``method_params.mu_end``), a final metric (``acc``)
or a top-level key (``status``), looked up in that order (``value_of``). Values are shown as text by
``value_text`` (floats by ``repr``, tables as sorted JSON) and ordered by ``value_sort_key`` (numbers
numerically, then strings, None last). A key no record has is a one-line error naming the closest keys.
"""

from __future__ import annotations

import difflib
import json
import math

from bench.errors import UserError

DEFAULT_ROWS = ("dataset", "model", "mode")
DEFAULT_COLUMN = "method"


def finite_number(value) -> float | None:
    """``value`` as a float if it is a finite int/float (not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


_NOWHERE = object()  # what ``_walk`` finds at a path that is not there


def _walk(node, parts: list[str]):
    """The value at ``parts`` inside nested dicts, or ``_NOWHERE``."""
    for part in parts:
        if not isinstance(node, dict) or part not in node:
            return _NOWHERE
        node = node[part]
    return node


def value_of(record: dict, key: str):
    """A grouping key: a config key, a method parameter (``scale``), a dotted path, a final metric or top-level."""
    cfg = record["config"]
    if key in cfg:
        return cfg[key]
    params = cfg.get("method_params") or {}
    if isinstance(params, dict) and key in params:
        return params[key]
    if "." in key:
        parts = key.split(".")
        node = _walk(record, parts)
        if node is _NOWHERE or node is None:
            node = _walk(cfg, parts)
        return None if node is _NOWHERE else node
    if key in record["final"]:
        return record["final"][key]
    return record.get(key)


def config_path(record: dict, key: str) -> tuple | None:
    """Where ``value_of(record, key)`` reads inside the config (None: outside it, or nowhere)."""
    cfg = record["config"]
    if key in cfg:
        return (key,)
    params = cfg.get("method_params")
    if isinstance(params, dict) and key in params:
        return ("method_params", key)
    if "." not in key:
        return None
    parts = key.split(".")
    if _walk(record, parts) not in (_NOWHERE, None):
        return tuple(parts[1:]) if parts[0] == "config" and len(parts) > 1 else None
    return None if _walk(cfg, parts) is _NOWHERE else tuple(parts)


def value_text(value) -> str:
    """A value as a leaderboard shows it: None as '-', booleans in lower case, floats by ``repr``, lists and
    dicts as compact sorted JSON, the rest by ``str``."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    return str(value)


def value_sort_key(value):
    """Numbers numerically, then strings, None last; total and deterministic."""
    if value is None:
        return (2, 0.0, "")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (0, float(value), "")
    return (1, 0.0, value_text(value))


def maybe_number(text: str):
    """``text`` as a float when it reads as one, else the text itself."""
    try:
        return float(text)
    except ValueError:
        return text


def flatten(obj: dict, prefix: str = "", empty: bool = True) -> dict:
    """{'method_params': {'mu_end': 30}} -> {'method_params.mu_end': 30}; an empty table stays as {} unless
    ``empty`` is False (then it is left out, as a table without keys)."""
    out: dict = {}
    for key, value in obj.items():
        if isinstance(value, dict) and (value or not empty):
            out.update(flatten(value, f"{prefix}{key}.", empty))
        else:
            out[f"{prefix}{key}"] = value
    return out


def parse_by(by: str | None) -> tuple[tuple[str, ...], str]:
    """'dataset,model:method' -> (('dataset', 'model'), 'method'); None -> the paper's layout."""
    if by is None or not by.strip():
        return DEFAULT_ROWS, DEFAULT_COLUMN
    rows_text, _, column = by.partition(":")
    rows = tuple(k.strip() for k in rows_text.split(",") if k.strip())
    column = column.strip() or DEFAULT_COLUMN
    if not rows:
        raise UserError(f"--by {by!r}: give at least one row key, e.g. 'dataset,model:method'")
    if column in rows:
        raise UserError(f"--by {by!r}: {column!r} is both a row key and the column key")
    repeated = sorted({k for k in rows if rows.count(k) > 1})
    if repeated:
        raise UserError(f"--by {by!r}: row key {repeated[0]!r} given twice")
    return rows, column


def _paths(obj, prefix: str, out: set) -> set:
    """Every dotted path into the nested dicts of ``obj`` (intermediate dicts included)."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            path = f"{prefix}{key}"
            out.add(path)
            _paths(value, f"{path}.", out)
    return out


def record_keys(record: dict) -> set[str]:
    """Every key ``value_of`` finds in ``record``: config keys, method parameters, final metrics, top-level
    keys, and dotted paths into the record and into its config (``method_params.mu_end``, ``final.acc``)."""
    cfg = record.get("config") or {}
    params = cfg.get("method_params") if isinstance(cfg, dict) else None
    keys = set(cfg) | set(record) | set(record.get("final") or {})
    if isinstance(params, dict):
        keys |= set(params)
    return keys | _paths(record, "", set()) | _paths(cfg, "", set())


def close_keys_hint(key: str, known, cutoff: float = 0.6) -> str:
    """'; did you mean 'a' or 'b'?' with up to three keys of ``known`` close to ``key``, or ''."""
    close = difflib.get_close_matches(key, sorted(known), n=3, cutoff=cutoff)
    return f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


def check_keys(keys, records_by_grid: dict[str, list[dict]], option: str) -> None:
    """Each key of ``keys`` must be a key (``record_keys``) of at least one record of every grid of
    ``records_by_grid`` (grids without records are not checked); else a one-line UserError naming ``option``,
    the key, the grid and up to three keys of that grid close to it."""
    for grid, records in records_by_grid.items():
        if not records:
            continue
        known = set().union(*(record_keys(r) for r in records))
        for key in keys:
            if key not in known:
                hint = close_keys_hint(key, known)
                raise UserError(f"{option}: no record of grid {grid!r} has a key {key!r}{hint} (keys: config keys, "
                                "method parameters, final metrics, or dotted paths like method_params.mu_end)")
