"""How far apart runs of one benchmark land, and a fresh run held against the committed reference.

``python -m bench spread GRID... --results DIR ... --out FILE``: the records of the grids named, under every
results folder given (a grid a folder lacks is skipped), grouped by method (the runs of one method must differ in the seed alone; the thread
count is not part of a config, so a folder trained with other threads adds runs of the same configs): per
method the deployed top-1 accuracies' count, min, max, range, mean and sample std, written as JSON with the
command that made it. ``results/spread/default.json`` is the default benchmark's (README, "Run-to-run
spread").

``python -m bench compare GRID --results DIR``: each method's deployed top-1 in ``DIR/runs/GRID/`` next to
the reference record of the same run id in ``results/runs/GRID/`` (the committed one), the difference, the
measured spread of that method (``results/spread/GRID.json``) and whether the difference is within it:
|difference| ≤ the method's range (max − min) over the measured runs. ``make bench`` ends with it.
"""

from __future__ import annotations

import json
import math
import shlex
import sys
from pathlib import Path

from tabulate import tabulate

from bench.atomic import atomic_write
from bench.errors import UserError
from bench.report.loading import list_grids, load_grid
from bench.report.styles import method_sort_key

SPREAD_DIR = Path("results") / "spread"


def _records(grid: str, results: str | Path) -> list[dict]:
    if grid not in list_grids(results):
        raise UserError(f"no run records for grid {grid!r} under {Path(results) / 'runs'}")
    return [r for r in load_grid(grid, results) if r["status"] == "done"]


def collect(grids: list[str], roots: list[str]) -> dict[str, list[dict]]:
    """{method: [{run_id, seed, device, results, acc}, ...]} over every grid and results folder; a
    ``UserError`` when two runs of one method differ in more than the seed."""
    runs: dict[str, list[dict]] = {}
    shapes: dict[str, str] = {}
    for root in roots:
        for grid in grids:
            if grid not in list_grids(root):
                continue  # e.g. the seeds grid in one folder, the reference grid in another
            for r in _records(grid, root):
                method, cfg = r["config"]["method"], dict(r["config"])
                cfg.pop("seed")
                shape = json.dumps(cfg, sort_keys=True)
                if shapes.setdefault(method, shape) != shape:
                    raise UserError(f"spread: the runs of method {method!r} differ in more than the seed "
                                    f"({root}/runs/{grid}/{r['run_id']}.json)")
                runs.setdefault(method, []).append({"run_id": r["run_id"], "seed": r["config"]["seed"],
                                                    "device": r.get("device"), "platform": r.get("platform"),
                                                    "results": str(root),
                                                    "acc": r["final"]["acc"]})
    if not runs:
        raise UserError(f"spread: no finished records of {', '.join(grids)} under {', '.join(roots)}")
    return runs


def summarize(accs: list[float]) -> dict:
    n, mean = len(accs), sum(accs) / len(accs)
    std = math.sqrt(sum((a - mean) ** 2 for a in accs) / (n - 1)) if n > 1 else 0.0
    return {"n": n, "min": min(accs), "max": max(accs), "range": round(max(accs) - min(accs), 2),
            "mean": round(mean, 3), "std": round(std, 3)}


def cli_spread(args) -> int:
    """``python -m bench spread``: write the JSON (``--out``) and print its table."""
    runs = collect(args.grids, args.results)
    methods = {m: {**summarize([r["acc"] for r in runs[m]]), "runs": runs[m]}
               for m in sorted(runs, key=method_sort_key)}
    command = "python -m bench spread " + " ".join(
        [shlex.quote(g) for g in args.grids] + [f"--results {shlex.quote(r)}" for r in args.results]
        + [f"--out {shlex.quote(args.out)}"])
    data = {"about": "deployed top-1 (final.acc) of the same configs over seeds and thread counts: per method "
                     "n, min, max, range, mean, sample std", "command": command, "methods": methods}
    text = json.dumps(data, indent=1, ensure_ascii=False) + "\n"
    atomic_write(Path(args.out), lambda fh: fh.write(text.encode("utf-8")))
    rows = [[m, s["n"], f"{s['min']:.2f}", f"{s['max']:.2f}", f"{s['range']:.2f}", f"{s['std']:.3f}"]
            for m, s in methods.items()]
    print(tabulate(rows, headers=["method", "runs", "min", "max", "range", "std"], tablefmt="github",
                   disable_numparse=True))
    print(f"\nwrote {args.out}")
    return 0


def read_spread(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))["methods"]
    except (OSError, ValueError, KeyError):
        return {}


def compare_rows(grid: str, results: str, reference: str, spread: dict) -> list[list[str]]:
    """One row per method of ``results``: method, reference, this run, difference, spread, within."""
    ref = {r["run_id"]: r for r in _records(grid, reference)} if grid in list_grids(reference) else {}
    rows = []
    for r in sorted(_records(grid, results), key=lambda r: (method_sort_key(r["config"]["method"]), r["run_id"])):
        method, acc = r["config"]["method"], r["final"]["acc"]
        base = ref.get(r["run_id"])
        s = spread.get(method)
        if base is None:
            rows.append([method, "—", f"{acc:.2f}", "—", "—", "no reference run (other config)"])
            continue
        diff = acc - base["final"]["acc"]
        shown = f"{s['min']:.2f}–{s['max']:.2f} (range {s['range']:.2f}, std {s['std']:.2f}, {s['n']} runs)" if s \
            else "not measured"
        within = ("yes" if abs(diff) <= s["range"] + 1e-9 else "NO") if s else "—"
        rows.append([method, f"{base['final']['acc']:.2f}", f"{acc:.2f}", f"{diff:+.2f}", shown, within])
    return rows


def cli_compare(args) -> int:
    """``python -m bench compare GRID --results DIR``: print the comparison; exit status 0 either way."""
    path = Path(args.spread) if args.spread else SPREAD_DIR / f"{args.grid}.json"
    spread = read_spread(path)
    rows = compare_rows(args.grid, args.results, args.reference, spread)
    print(f"grid {args.grid}: this run ({args.results}/runs/{args.grid}/) against the reference "
          f"({args.reference}/runs/{args.grid}/), deployed top-1 %")
    print(tabulate(rows, headers=["method", "reference", "this run", "difference", "run-to-run spread",
                                  "within"], tablefmt="github", disable_numparse=True))
    judged = [row for row in rows if row[5] in ("yes", "NO")]
    if judged:
        inside = sum(row[5] == "yes" for row in judged)
        print(f"\n{inside} of {len(judged)} methods within the measured run-to-run spread ({path}: |difference| ≤ "
              "the method's range over the runs measured there: seeds, thread counts, CPU kinds). Outside it: "
              "a CPU kind or torch version not measured, or a change of the code.")
    else:
        print(f"\nno measured spread for grid {args.grid} ({path} is missing): the differences are not judged",
              file=sys.stderr)
    return 0
