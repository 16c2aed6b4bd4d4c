"""``python -m bench run --config GRID_FILE``: one cell of a grid, run on its own.

A ``--config`` file with a ``[defaults]`` or ``[axes]`` table is a grid file (``bench/grids/*.toml``; its
top-level keys such as ``description`` and ``gpu_hours`` are the grid's, not config keys). Its cells are
expanded as ``grid run`` does; the flags given on an axis that varies (``--method pq``, ``--seed 1``) pick
the cell, which must then be exactly one; the cell's config is the run's, and the other flags, ``--set``
and ``--param`` override it. Nothing overridden, the run is the grid's cell: the same run id.
"""

from __future__ import annotations

from pathlib import Path

from bench.dispatch.grid import load_grid
from bench.errors import UserError
from bench.tomlfile import load_toml
from bench.run import config as configs
from bench.run.commands import cli_run
from bench.run.settings import FLAG_KEYS


def is_grid_file(path: str | Path) -> bool:
    """Does the TOML file ``path`` hold a grid (a ``[defaults]`` or ``[axes]`` table)?"""
    raw = load_toml(path)
    return isinstance(raw.get("defaults"), dict) or isinstance(raw.get("axes"), dict)


def _same(a, b) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool) \
            and not isinstance(b, bool):
        return float(a) == float(b)
    return a == b


def grid_cell_config(path: str, args) -> dict:
    """The resolved config of the cell of grid file ``path`` that the flags of ``args`` pick (see the
    module doc); a ``UserError`` naming the cells when none or several match."""
    grid = load_grid(path)
    given = {k: getattr(args, k) for k in FLAG_KEYS if getattr(args, k, None) is not None}
    cells = grid.cells
    for key, value in given.items():
        if len({configs.run_id({"v": c.config[key]}) for c in grid.cells}) > 1:  # an axis of the grid
            cells = [c for c in cells if _same(c.config[key], value)]
            if not cells:
                values = sorted({configs.show(c.config[key]) for c in grid.cells})
                raise UserError(f"run --config {path}: no cell of grid {grid.name!r} has {key} = "
                                f"{configs.show(value)} (its cells have: {', '.join(values)})")
    if len(cells) > 1:
        raise UserError(f"run --config {path}: {len(cells)} cells of grid {grid.name!r} match; pick one with "
                        f"their axis flags (e.g. --method, --seed): {'; '.join(c.label for c in cells[:6])}"
                        + (", ..." if len(cells) > 6 else ""))
    return dict(cells[0].config)


def cli_run_config(args) -> int:
    """``python -m bench run``: with a grid file as ``--config``, the picked cell's config as the base."""
    if args.config and is_grid_file(args.config):
        args.config_raw = grid_cell_config(args.config, args)
    return cli_run(args)
