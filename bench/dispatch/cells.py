"""A grid and its cells as the dispatcher and ``grid status`` see them (no config resolution here, so
``grid status`` of a shipped grid answers from the static catalogue without importing torch)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Cell:
    """One run of a grid: its run id, resolved config, fp parent (a fine-tune's), stage and axis label."""

    run_id: str
    config: dict
    parent: str | None = None  # run id of the fp cell a fine-tune starts from
    stage: int = 0
    label: str = ""


@dataclass
class Grid:
    """A grid's name (its file's, without .toml), file, description, GPU-hour estimate and cells."""

    name: str
    path: Path
    description: str
    gpu_hours: float | None = None  # the grid file's estimate for the whole grid (None: none given)
    cells: list[Cell] = field(default_factory=list)

    def stages(self) -> list[list[Cell]]:
        top = max((c.stage for c in self.cells), default=-1)
        return [[c for c in self.cells if c.stage == s] for s in range(top + 1)]
