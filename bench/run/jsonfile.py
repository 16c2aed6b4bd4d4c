"""JSON files written atomically: sorted keys, one-space indent, numpy/torch scalars as numbers.

``write_json_atomic`` refuses NaN/inf (not JSON); ``finite`` turns them into None first where a value may
legitimately be non-finite (a diverged loss). The file appears whole or not at all (``bench.atomic``).
"""

from __future__ import annotations

import json
from pathlib import Path

from bench.atomic import atomic_write


def write_json_atomic(obj, path: Path) -> None:
    """Write ``obj`` as JSON to ``path`` atomically."""
    text = json.dumps(obj, indent=1, sort_keys=True, allow_nan=False, default=_jsonable) + "\n"
    atomic_write(path, lambda fh: fh.write(text.encode()))


def _jsonable(value):
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def finite(obj):
    """``obj`` with every NaN/inf float (in nested dicts and lists too) replaced by None."""
    if isinstance(obj, float) and (obj != obj or obj in (float("inf"), float("-inf"))):
        return None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [finite(v) for v in obj]
    return obj
