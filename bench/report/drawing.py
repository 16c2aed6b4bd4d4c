"""Drawing primitives shared by the figures of a grid: figures, lines, bands, legends, seed statistics.

Each method is drawn in its style (``bench.report.styles.method_style``) with hollow markers and tagged
with its key as the artist's gid. Series with identical points are drawn as interleaved dashes so none
hides another. Figures use a constrained layout, the Agg canvas and are saved without the PNG "Software"
metadata (``SAVE_ARGS``), so the same inputs give the same bytes.
"""

from __future__ import annotations

import re
import textwrap
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from bench.atomic import atomic_write  # noqa: E402
from bench.report.keys import finite_number  # noqa: E402
from bench.report.styles import method_style  # noqa: E402
from bench.report.table import Cell  # noqa: E402

SAVE_ARGS = {"dpi": 100, "format": "png", "metadata": {"Software": None}}
BAND_ALPHA = 0.18
DASH = 5.0  # points: the dash length of coinciding lines


def slug(*parts) -> str:
    """The parts joined by "_" as a file-name part: runs of other characters than A-Z a-z 0-9 . + - become "-"."""
    return "_".join(re.sub(r"[^A-Za-z0-9.+-]+", "-", str(p)) for p in parts)


def mean_std(values: list[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (ddof = 1; None for one value)."""
    cell = Cell(list(values))
    return cell.mean, cell.std


def per_epoch(histories: list[list[dict]], key) -> tuple[list[int], list[float], list[float | None], list[int]]:
    """Epochs, mean over seeds of ``key(entry)``, its std (None with one seed) and the seed count per epoch."""
    values: dict[int, list[float]] = defaultdict(list)
    for history in histories:
        for entry in history:
            if not isinstance(entry, dict) or not isinstance(entry.get("epoch"), int):
                continue
            v = finite_number(key(entry))
            if v is not None:
                values[entry["epoch"]].append(v)
    epochs = sorted(values)
    stats = [mean_std(values[e]) for e in epochs]
    return epochs, [m for m, _ in stats], [s for _, s in stats], [len(values[e]) for e in epochs]


def new_figure(width: float, height: float, ncols: int = 1, sharex: bool = False):
    """A constrained-layout figure with ``ncols`` axes; callers hold ``rc_context(rcParamsDefault)``."""
    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, list(fig.subplots(1, ncols, squeeze=False, sharex=sharex)[0])


# characters of a suptitle (figure.titlesize "large", 14.4 pt: ~0.08 in an average character, some margin kept)
# per inch of figure width
TITLE_CHARS_PER_INCH = 11


def figure_title(fig, text: str) -> None:
    """``fig.suptitle(text)``, wrapped onto more lines where the figure is too narrow for it (a one-panel
    figure with a long grid / model / mode title would clip it at both edges)."""
    width = int(fig.get_figwidth() * TITLE_CHARS_PER_INCH)
    fig.suptitle(textwrap.fill(text, width=width) if len(text) > width else text)


def save_figure(fig, path: Path) -> Path:
    return atomic_write(path, lambda fh: fig.savefig(fh, **SAVE_ARGS))


# PDF without the creation date and producer, so that the same figure gives the same bytes
PDF_ARGS = {"format": "pdf", "metadata": {"CreationDate": None, "Producer": None, "Creator": None}}


def save_pdf(fig, path: Path) -> Path:
    """``fig`` as a vector PDF, reproducible byte for byte (``PDF_ARGS``)."""
    return atomic_write(path, lambda fh: fig.savefig(fh, **PDF_ARGS))


def draw_line(ax, method: str, xs, ys, **kwargs):
    """A method's line in its colour and marker (hollow), tagged with the method key as its gid."""
    style = method_style(method)
    kwargs.setdefault("marker", style.marker)
    kwargs.setdefault("markersize", 7 if kwargs["marker"] == "*" else 5)
    kwargs.setdefault("markerfacecolor", "none")
    (line,) = ax.plot(xs, ys, color=style.color, **kwargs)
    line.set_gid(method)
    return line


def draw_lines(ax, series: list[tuple[str, list, list, dict]]) -> dict[str, Line2D]:
    """Draw (method, xs, ys, plot kwargs) series with ``draw_line``; series with identical points are drawn as
    interleaved dashes (each method's colour in turn, ``DASH`` points each), so none hides another."""
    same: dict[tuple, list[int]] = defaultdict(list)
    for i, (_, xs, ys, _) in enumerate(series):
        same[(tuple(xs), tuple(ys))].append(i)
    drawn = {}
    for i, (method, xs, ys, kwargs) in enumerate(series):
        twins = same[(tuple(xs), tuple(ys))]
        if len(twins) > 1 and kwargs.get("linestyle", "-") == "-":
            kwargs = {**kwargs, "linestyle": (twins.index(i) * DASH, (DASH, (len(twins) - 1) * DASH))}
        line = draw_line(ax, method, xs, ys, **kwargs)
        drawn.setdefault(method, line)
    return drawn


def draw_band(ax, method: str, xs, means, stds) -> bool:
    """Shade mean ± std where a std exists (several seeds); whether anything was shaded."""
    points = [(x, m, s) for x, m, s in zip(xs, means, stds) if s is not None]
    if not any(s > 0 for _, _, s in points):
        return False
    band = ax.fill_between([p[0] for p in points], [p[1] - p[2] for p in points], [p[1] + p[2] for p in points],
                           color=method_style(method).color, alpha=BAND_ALPHA, linewidth=0)
    band.set_gid(method)
    return True


def add_legend(ax, handles: list, title: str | None = None) -> None:
    """One legend for the figure, right of its last axes ``ax`` (the constrained layout makes room for it)."""
    if handles:
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0,
                  fontsize="small", title=title, title_fontsize="small")


def legend_proxy(method: str, label: str) -> Line2D:
    """A legend entry for ``method``: a solid line with its hollow marker, as in the line plots."""
    style = method_style(method)
    return Line2D([], [], color=style.color, marker=style.marker, markersize=7 if style.marker == "*" else 5,
                  markerfacecolor="none", label=label)



def parent_accuracy(parents: list[dict]) -> tuple[float, float | None, int] | None:
    accs = [a for a in (finite_number(r["final"].get("acc")) for r in parents) if a is not None]
    return (*mean_std(accs), len(accs)) if accs else None


def seeds_text(n: int) -> str:
    return f"{n} seed{'s' if n != 1 else ''}"
