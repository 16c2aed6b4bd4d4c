"""Run records: the schema-versioned JSON every table and figure is rebuilt from.

``results/runs/<grid>/<run_id>.json``, written atomically (temp file, fsync, rename): a reader never
sees a half-written record. ``SCHEMA`` is bumped on any incompatible change; readers skip other versions.
"""

from __future__ import annotations

import json
import platform
import re
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from bench.atomic import atomic_write
from bench.errors import UserError

SCHEMA = 1
REQUIRED = ("schema", "run_id", "grid", "status", "config", "history", "final")
STATUSES = ("done", "diverged", "failed")
PACKAGES = ("torch", "torchvision", "timm", "numpy", "submitit", "pandas", "ffcv", "proxbench")


NAME_CHARS = "A-Za-z0-9._+-"
NAME = re.compile(f"[{NAME_CHARS}]+")


def check_name(name: str, where: str, what: str = "") -> None:
    """A grid name becomes a folder name (results/runs/NAME, work/grids/NAME): refuse anything unsafe.

    ``what`` follows the name in the message, e.g. "(the file name without .toml)"."""
    if not name or name.startswith(".") or not NAME.fullmatch(name):
        raise UserError(f"{where}: the grid name {name!r}{' ' + what if what else ''} cannot be a folder name under "
                        f"results/runs/ and work/grids/: it must be non-empty, must not start with '.', and may use "
                        f"only the characters {NAME_CHARS}")


def record_path(results: str | Path, grid: str, run_id: str) -> Path:
    return Path(results) / "runs" / grid / f"{run_id}.json"


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def package_versions() -> dict:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def make_record(run_id: str, grid: str, cfg: dict, *, status: str, history: list, final: dict, device: str,
                wall_seconds: float, error: str | None = None) -> dict:
    return {
        "schema": SCHEMA,
        "run_id": run_id,
        "grid": grid,
        "status": status,
        "error": error,
        "config": cfg,
        "history": history,
        "final": final,
        "git_commit": git_commit(),
        "versions": package_versions(),
        "device": device,
        "platform": f"{platform.system()} {platform.machine()}",
        "wall_seconds": round(wall_seconds, 2),
        "finished_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def write_json_atomic(obj, path: Path) -> None:
    """Write JSON to ``path`` atomically (bench.atomic)."""
    text = json.dumps(obj, indent=1, sort_keys=True, allow_nan=False, default=_jsonable) + "\n"
    atomic_write(path, lambda fh: fh.write(text.encode()))


def _jsonable(value):
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def write_record(record: dict, results: str | Path) -> Path:
    path = record_path(results, record["grid"], record["run_id"])
    write_json_atomic(_finite(record), path)
    return path


def _finite(obj):
    """NaN/inf are not JSON: store them as None (a diverged loss, for example)."""
    if isinstance(obj, float) and (obj != obj or obj in (float("inf"), float("-inf"))):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj


def validate(record) -> str | None:
    """None when ``record`` is a complete record of this schema, else why not."""
    if not isinstance(record, dict):
        return "not a JSON object"
    if record.get("schema") != SCHEMA:
        return f"unknown schema version {record.get('schema')!r} (this proxbench reads {SCHEMA})"
    missing = [k for k in REQUIRED if k not in record]
    if missing:
        return f"missing keys: {', '.join(missing)}"
    if record["status"] not in STATUSES:
        return f"unknown status {record['status']!r}"
    if not isinstance(record["final"], dict) or not isinstance(record["history"], list):
        return "final must be an object and history a list"
    return None


def read_record(path: Path) -> tuple[dict | None, str | None]:
    """(record, None) or (None, why it was skipped)."""
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        return None, f"unreadable: {exc}"
    problem = validate(record)
    return (None, problem) if problem else (record, None)


def load_records(results: str | Path, grid: str, warn=None, check=None) -> list[dict]:
    """Every valid record of ``grid``, sorted by (run id, file name); skipped files reported once through
    ``warn``. ``check(record)`` may name a further reason to skip a valid record (None: keep it).

    A run id is counted once: when valid records of one run id are in several files (a copied record), the
    one in ``<run_id>.json`` is kept (else the first file by name) and one more warning names every file."""
    folder = Path(results) / "runs" / grid
    good, skipped = [], []
    for path in sorted(folder.glob("*.json")):
        record, why = read_record(path)
        if record is not None and check is not None:
            why = check(record)
        if why is None:
            good.append((str(record["run_id"]), path.name, record))
        else:
            skipped.append(f"{path} ({why})")
    say = warn or (lambda m: print(m, file=sys.stderr))
    if skipped:
        say(f"warning: skipped {len(skipped)} record(s) of grid {grid!r}: " + "; ".join(skipped))
    by_id: dict[str, list] = {}
    for entry in sorted(good, key=lambda t: t[:2]):
        by_id.setdefault(entry[0], []).append(entry)
    kept, duplicated = [], []
    for run_id, entries in by_id.items():
        keep = next((e for e in entries if e[1] == f"{run_id}.json"), entries[0])
        kept.append(keep)
        if len(entries) > 1:
            files = ", ".join(str(folder / name) for _, name, _ in entries)
            duplicated.append(f"{run_id} in {files} (kept {keep[1]})")
    if duplicated:
        say(f"warning: {len(duplicated)} run id(s) of grid {grid!r} recorded in more than one file, each "
            "counted once: " + "; ".join(duplicated))
    return [record for _, _, record in kept]


def finished_ids(results: str | Path, grid: str) -> set[str]:
    """Run ids of ``grid`` with a record whose status is final (done or diverged)."""
    folder = Path(results) / "runs" / grid
    ids = set()
    for path in folder.glob("*.json"):
        record, _ = read_record(path)
        if record is not None and record["status"] in ("done", "diverged"):
            ids.add(record["run_id"])
    return ids
