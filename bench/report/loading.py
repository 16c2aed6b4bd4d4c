"""Run records as the reports read them: every record enters ``bench.report`` through this module.

``read_grid`` is the one place that calls ``bench.run.records.load_records`` (and ``read_file`` the one
that reads a single record file); both hand the rest of the package plain dicts (``as_dict``). Records are
read from ``<results>/runs/<grid>/*.json``: corrupt, partial or unknown-schema files are skipped with one
warning naming them, and a run id recorded in several files counts once, with one more warning naming the
files. A record that disagrees with its place is skipped in the same warning (``place_problem``): its
``grid`` field names another grid than its folder, or its config's seed is not an integer. ``read_grid`` also
says how many files it skipped, so no caller has to read the warning text.

``load_grid`` adds what a leaderboard needs (``aggregation_problem``): a config with the keys of a cell,
and for a done record a finite ``final.acc`` in [0, 100] (a percentage).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench.errors import UserError
from bench.report.keys import finite_number
from bench.run.layout import RUNS_DIR, records_dir
from bench.run.records import load_records, read_record

CONFIG_REQUIRED = ("model", "method", "dataset", "mode", "seed")
ACC_RANGE = (0, 100)  # final.acc is a percentage; a done record outside it is skipped with a warning


class NoRecordsError(UserError):
    """A grid without a single valid record (``python -m bench aggregate`` without a name skips such grids)."""


@dataclass
class GridRecords:
    """The valid records of one grid, sorted by (run id, file name), and how many record files were skipped."""

    records: list[dict]
    skipped: int


def as_dict(record) -> dict:
    """A run record as the plain dict (the JSON object of its file) that ``bench.report`` works on."""
    return record


def list_grids(results_dir: str | Path = "results") -> list[str]:
    """The grids with a record folder under ``<results_dir>/runs/``, sorted."""
    folder = Path(results_dir) / RUNS_DIR
    return sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []


def read_grid(results_dir: str | Path, grid: str, warn=None, check=None) -> GridRecords:
    """The valid records of ``grid`` (``bench.run.records.load_records``; skipped files reported once through
    ``warn``, default stderr); ``check(record)`` may name a further reason to skip a valid record."""
    counts = {"valid": 0, "rejected": 0}

    def counted(record) -> str | None:
        counts["valid"] += 1
        why = place_problem(as_dict(record), grid)
        if why is None and check is not None:
            why = check(as_dict(record))
        counts["rejected"] += why is not None
        return why

    records = load_records(results_dir, grid, warn, check=counted)
    files = sum(1 for _ in records_dir(results_dir, grid).glob("*.json"))
    return GridRecords([as_dict(r) for r in records], files - counts["valid"] + counts["rejected"])


def place_problem(record: dict, grid: str) -> str | None:
    """Why a valid record does not belong where it was found (None: it does)."""
    if record.get("grid") != grid:
        return f"its grid field says {record.get('grid')!r}, but it is in the folder of grid {grid!r}"
    seed = record["config"].get("seed") if isinstance(record.get("config"), dict) else None
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        return f"its config's seed {seed!r} is not an integer"
    return None


def read_file(path: Path) -> tuple[dict | None, str | None]:
    """(record, None) for a valid record file, else (None, why it is not one)."""
    record, why = read_record(path)
    return (None if record is None else as_dict(record)), why


def aggregation_problem(record: dict) -> str | None:
    """Why a valid record cannot enter a leaderboard (None: it can)."""
    cfg = record.get("config")
    if not isinstance(cfg, dict):
        return "partial: config is not an object"
    missing = [k for k in CONFIG_REQUIRED if k not in cfg]
    if missing:
        return f"partial: config lacks {', '.join(missing)}"
    if record["status"] == "done":
        acc = finite_number(record["final"].get("acc"))
        if acc is None:
            return f"partial: a done record without a finite numeric final.acc ({record['final'].get('acc')!r})"
        if not ACC_RANGE[0] <= acc <= ACC_RANGE[1]:
            return f"implausible final.acc {acc!r} (an accuracy in % must lie in [{ACC_RANGE[0]}, {ACC_RANGE[1]}])"
    return None


def load_grid(grid: str, results_dir: str | Path = "results", warn=None) -> list[dict]:
    """Valid, aggregatable records of ``grid`` sorted by (run id, file name); skipped files in one warning."""
    return read_grid(results_dir, grid, warn, check=aggregation_problem).records
