"""Browse run records: ``python -m bench runs list | show | compare``.

Records are searched in ``<results>/runs/*/`` (grid runs; ``results/`` by default) and
``<workdir>/results/runs/*/`` (ad-hoc runs; ``work/`` by default), each folder read with
``bench.report.loading.read_grid`` (a run id recorded twice in one folder counts once).

* ``list [--grid G] [--filter KEY=VALUE ...]``: one row per record, sorted by grid then run id: run id,
  grid, status, model, method, dataset, seed, epochs (``done/total`` when the run stopped early), deployed
  and F(w) accuracy. Invalid record files are named in one warning per folder on stderr. ``KEY`` is
  anything ``aggregate --by`` takes (a config key, a method parameter, a final metric, a dotted path such
  as ``method_params.mu_end``); ``VALUE`` is an fnmatch pattern on the value's text, and a number matches
  a numerically equal value (``lr=1e-3`` matches 0.001). Filters combine with "and". A key that no record
  has, or nothing left to list, is a ``UserError``.
* ``show RUN``: where the record is, the run's status, device, time and commit, the ``python -m bench run``
  command that reproduces it (``bench.run.reproduce``), its config (nested keys
  flattened, ``method_params.mu_end``), its final metrics and its history, one row per epoch.
* ``compare RUN_A RUN_B``: the config keys whose values differ (a key only one run has shows ``(absent)``),
  then the final metrics side by side with the difference B − A of numbers.

``RUN`` is a run id, a prefix of exactly one run id, ``GRID/RUN_ID`` or the path of a record file. A run id
found in several places (the same config run ad hoc and in a grid) must be given as ``GRID/RUN_ID`` or as
a path. Every failure to find a run is one line naming the closest ids (and how many invalid record files
were skipped: ``show`` and ``compare`` leave naming them to ``list``).
"""

from __future__ import annotations

import fnmatch
import json
import math
from dataclasses import dataclass
from pathlib import Path

from tabulate import tabulate

from bench.errors import UserError
from bench.report.keys import close_keys_hint, flatten, record_keys, value_of
from bench.report.loading import list_grids, read_file, read_grid
from bench.run.layout import record_path, records_dir
from bench.run.reproduce import reproduce_command


@dataclass(frozen=True)
class Entry:
    """A record and the file it was read from."""

    record: dict
    path: Path

    @property
    def run_id(self) -> str:
        return str(self.record["run_id"])

    @property
    def grid(self) -> str:
        return str(self.record["grid"])


def record_roots(results: str | Path = "results", workdir: str | Path = "work") -> list[Path]:
    """The results folders searched: ``results`` and ``<workdir>/results`` (once if they are the same)."""
    roots: list[Path] = []
    for root in (Path(results), Path(workdir) / "results"):
        if not any(_same_folder(root, r) for r in roots):
            roots.append(root)
    return roots


def _same_folder(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return a == b


def _searched(roots: list[Path]) -> str:
    return ", ".join(f"{root / 'runs'}/*/" for root in roots)


def find_entries(results: str | Path = "results", workdir: str | Path = "work", grid: str | None = None,
                 warn=None) -> list[Entry]:
    """Every valid record under the roots (``record_roots``), optionally of one ``grid``, sorted by (grid,
    run id, path)."""
    return scan_entries(results, workdir, grid, warn)[0]


def scan_entries(results: str | Path = "results", workdir: str | Path = "work", grid: str | None = None,
                 warn=None) -> tuple[list[Entry], int]:
    """(``find_entries``' entries, how many invalid record files were skipped under the roots)."""
    entries, skipped = [], 0
    for root in record_roots(results, workdir):
        for name in list_grids(root):
            if grid is not None and name != grid:
                continue
            found = read_grid(root, name, warn)
            skipped += found.skipped
            for record in found.records:
                path = record_path(root, name, record["run_id"])
                entries.append(Entry(record, path if path.is_file() else records_dir(root, name)))
    return sorted(entries, key=lambda e: (e.grid, e.run_id, str(e.path))), skipped


# ------------------------------------------------------------------------------------------------------
# finding one run


def resolve_run(spec: str, entries: list[Entry], roots: list[Path], skipped: int = 0) -> Entry:
    """The record ``spec`` names (see the module docstring); a UserError when none or several match
    (``skipped``: how many invalid record files were left out, said when none matches)."""
    path = Path(spec)
    if spec.endswith(".json") and path.is_file():
        record, why = read_file(path)
        if record is None:
            raise UserError(f"{path} is not a run record ({why})")
        return Entry(record, path)
    grid, sep, run_id = spec.rpartition("/")
    pool = [e for e in entries if e.grid == grid] if sep else entries
    if sep and not pool:
        grids = sorted({e.grid for e in entries})
        raise UserError(f"no grid {grid!r} with run records (searched {_searched(roots)}; grids: "
                        f"{', '.join(grids) or 'none'})")
    matches = [e for e in pool if e.run_id == run_id] or [e for e in pool if run_id and e.run_id.startswith(run_id)]
    ids = sorted({e.run_id for e in matches})
    if len(ids) > 1:
        raise UserError(f"run id prefix {run_id!r} matches {len(ids)} runs: {', '.join(ids[:10])}"
                        f"{', ...' if len(ids) > 10 else ''}; give more characters")
    if len(matches) > 1:
        where = "; ".join(f"{e.grid}/{e.run_id} ({e.path})" for e in matches)
        raise UserError(f"run {ids[0]} is recorded in {len(matches)} places: {where}; name one as GRID/RUN_ID "
                        "or by its file")
    if not matches:
        known = sorted({e.run_id for e in pool})
        hint = close_keys_hint(run_id, known, cutoff=0.5)
        bad = f"; {skipped} invalid record file(s) skipped, named by runs list" if skipped else ""
        raise UserError(f"no run record with id {spec!r} (searched {_searched(roots)}, {len(known)} runs{bad})"
                        f"{hint}")
    return matches[0]


# ------------------------------------------------------------------------------------------------------
# values and tables


def text(value) -> str:
    """A value as shown in the tables: strings as they are, numbers compactly, the rest as JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        return f"{value:.6g}" if math.isfinite(value) else str(value)
    return json.dumps(value, sort_keys=True)



def _number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def parse_filters(items: list[str]) -> list[tuple[str, str]]:
    out = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--filter: expected KEY=VALUE, got {item!r}")
        out.append((key.strip(), value.strip()))
    return out


def matches(record: dict, key: str, pattern: str) -> bool:
    """Whether ``value_of(record, key)`` matches ``pattern`` (fnmatch on its text, or numerically equal)."""
    value = value_of(record, key)
    if value is None and key not in record_keys(record):
        return False
    shown = "none" if value is None else text(value)
    if fnmatch.fnmatchcase(shown, pattern) or fnmatch.fnmatchcase(json.dumps(value), pattern):
        return True
    number = _number(value)
    try:
        wanted = float(pattern)
    except ValueError:
        return False
    return number is not None and math.isclose(number, wanted, rel_tol=1e-9, abs_tol=0.0)


def _epochs(record: dict) -> str:
    """The config's epochs, or ``done/total`` when the run stopped early (done: ``final.epochs_done``, else
    the last epoch of the history)."""
    total = record["config"].get("epochs")
    done = record["final"].get("epochs_done")
    if not isinstance(done, int):
        done = max((h["epoch"] for h in record["history"] if isinstance(h, dict) and isinstance(h.get("epoch"), int)),
                   default=None)
    if isinstance(done, int) and done != total:
        return f"{done}/{total}"
    return text(total)


def _accuracy(value) -> str:
    number = _number(value)
    return "-" if number is None else f"{number:.2f}"


LIST_HEADERS = ["run id", "grid", "status", "model", "method", "dataset", "seed", "epochs", "acc", "acc_forward"]


def list_rows(entries: list[Entry]) -> list[list[str]]:
    rows = []
    for e in entries:
        cfg, final = e.record["config"], e.record["final"]
        rows.append([e.run_id, e.grid, e.record["status"], cfg.get("model", "-"), cfg.get("method", "-"),
                     cfg.get("dataset", "-"), text(cfg.get("seed", "-")), _epochs(e.record),
                     _accuracy(final.get("acc")), _accuracy(final.get("acc_forward"))])
    return rows


HISTORY_ORDER = ("epoch", "train_loss", "train_acc", "test_acc", "test_acc_forward", "flip_ratio", "lr", "seconds")


def history_table(history: list) -> str:
    """One row per epoch: the metrics (``HISTORY_ORDER`` first, then any other), then the method parameters."""
    columns: list[str] = [c for c in HISTORY_ORDER if any(isinstance(h, dict) and c in h for h in history)]
    params: list[str] = []
    for entry in history:
        if not isinstance(entry, dict):
            continue
        for key, value in entry.items():
            if key == "method_params" and isinstance(value, dict):
                params += [k for k in value if k not in params]
            elif key not in columns:
                columns.append(key)
    rows = []
    for entry in history:
        if isinstance(entry, dict):
            mp = entry.get("method_params") if isinstance(entry.get("method_params"), dict) else {}
            rows.append([_cell(entry.get(c)) for c in columns] + [_cell(mp.get(p)) for p in params])
    return tabulate(rows, headers=columns + params, tablefmt="github", disable_numparse=True)


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e-3 and value else f"{value:.4f}".rstrip("0").rstrip(".")
    return text(value)


# ------------------------------------------------------------------------------------------------------
# the commands


def cli_list(args) -> int:
    """``python -m bench runs list [--grid G] [--filter KEY=VALUE ...]``."""
    roots = record_roots(args.results, args.workdir)
    filters = parse_filters(args.filter)
    entries = find_entries(args.results, args.workdir, grid=args.grid)
    if not entries:
        where = f"of grid {args.grid!r} " if args.grid is not None else ""
        grids = sorted({e.grid for e in find_entries(args.results, args.workdir, warn=lambda m: None)})
        other = f" (grids with records: {', '.join(grids)})" if args.grid is not None and grids else ""
        raise UserError(f"no run records {where}under {_searched(roots)}{other}")
    if filters:
        known = set().union(*(record_keys(e.record) for e in entries))
        for key, _ in filters:
            if key not in known:
                raise UserError(f"--filter {key}=...: no record has a key {key!r}{close_keys_hint(key, known)} "
                                "(keys: config keys, method parameters, final metrics, dotted paths)")
        kept = [e for e in entries if all(matches(e.record, k, v) for k, v in filters)]
        if not kept:
            shown = " ".join(f"{k}={v}" for k, v in filters)
            raise UserError(f"no run matches --filter {shown} ({len(entries)} records searched)")
        entries = kept
    print(tabulate(list_rows(entries), headers=LIST_HEADERS, tablefmt="github", disable_numparse=True))
    return 0


def _quiet_entries(args) -> tuple[list[Entry], list[Path], int]:
    """(entries, roots, number of invalid record files): show and compare leave naming those to list."""
    entries, skipped = scan_entries(args.results, args.workdir, warn=lambda message: None)
    return entries, record_roots(args.results, args.workdir), skipped


def cli_show(args) -> int:
    """``python -m bench runs show RUN``."""
    entries, roots, skipped = _quiet_entries(args)
    entry = resolve_run(args.run_id, entries, roots, skipped)
    r = entry.record
    print(f"run {entry.run_id} (grid {entry.grid}): {r['status']}" + (f" ({r['error']})" if r.get("error") else ""))
    print(f"record: {entry.path}")
    details = [("device", r.get("device")), ("wall", f"{r['wall_seconds']} s" if r.get("wall_seconds") is not None
                                              else None),
               ("finished", r.get("finished_at")), ("commit", (r.get("git_commit") or "")[:12] or None)]
    print("  ".join(f"{k}: {v}" for k, v in details if v is not None))
    print(f"reproduce: {reproduce_command(r['config'])}")
    print("\nconfig:")
    print(tabulate(sorted((k, text(v)) for k, v in flatten(r["config"]).items()), headers=["key", "value"],
                   tablefmt="github", disable_numparse=True))
    print("\nfinal:")
    print(tabulate([(k, text(v)) for k, v in sorted(flatten(r["final"]).items())], headers=["metric", "value"],
                   tablefmt="github", disable_numparse=True))
    print("\nhistory:")
    print(history_table(r["history"]) if r["history"] else "(no epochs)")
    return 0


ABSENT = "(absent)"


def cli_compare(args) -> int:
    """``python -m bench runs compare RUN_A RUN_B``."""
    entries, roots, skipped = _quiet_entries(args)
    a = resolve_run(args.run_a, entries, roots, skipped)
    b = resolve_run(args.run_b, entries, roots, skipped)
    label_a, label_b = f"A: {a.grid}/{a.run_id}", f"B: {b.grid}/{b.run_id}"
    ca, cb = flatten(a.record["config"], empty=False), flatten(b.record["config"], empty=False)
    diff = [(k, text(ca[k]) if k in ca else ABSENT, text(cb[k]) if k in cb else ABSENT)
            for k in sorted(set(ca) | set(cb)) if k not in ca or k not in cb or not _equal(ca[k], cb[k])]
    print("config (keys that differ):")
    if diff:
        print(tabulate(diff, headers=["key", label_a, label_b], tablefmt="github", disable_numparse=True))
    else:
        print("(identical configs)")
    fa, fb = flatten(a.record["final"]), flatten(b.record["final"])  # robustness: corruption.acc.<kind>
    rows = [("status", a.record["status"], b.record["status"], "")]
    for key in sorted(set(fa) | set(fb)):
        va, vb = fa.get(key), fb.get(key)
        na, nb = _number(va), _number(vb)
        delta = _delta(va, vb) if na is not None and nb is not None else ""
        rows.append((key, text(va) if key in fa else ABSENT, text(vb) if key in fb else ABSENT, delta))
    print("\nfinal metrics:")
    print(tabulate(rows, headers=["metric", label_a, label_b, "B − A"], tablefmt="github", disable_numparse=True))
    return 0


def _delta(a, b) -> str:
    """b - a, with a sign: exact for integers, 6 significant digits (at most 4 decimals) otherwise."""
    if isinstance(a, int) and isinstance(b, int):
        return f"{b - a:+d}"
    d = float(b) - float(a)
    return f"{d:+.6g}" if abs(d) < 1e-3 else f"{d:+.4f}".rstrip("0").rstrip(".")


def _equal(x, y) -> bool:
    """Numbers compared by value (3 == 3.0; a bool is not a number), anything else by type and value."""
    nx, ny = _number(x), _number(y)
    if nx is not None and ny is not None:
        return nx == ny
    return type(x) is type(y) and x == y
