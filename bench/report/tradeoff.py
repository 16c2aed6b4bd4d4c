"""Accuracy against compression for one leaderboard row without the model: one slot per model.

The x axis has one slot per model, ordered by the compression of its binarized methods (the tick label gives
the model and that compression); each method sits at a fixed offset inside the slot, at its mean accuracy
over seeds with ± std error bars; for fine-tunes the FP parent's accuracy is a dashed segment over the slot.
"""

from __future__ import annotations

from dataclasses import dataclass

from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from bench.report.drawing import BAND_ALPHA, add_legend, figure_title, new_figure, parent_accuracy, seeds_text
from bench.report.styles import method_sort_key, method_style


@dataclass
class Point:
    """One method on one model in ``tradeoff_figure``: mean compression and accuracy over its done seeds."""

    method: str
    model: str
    compression: float
    acc: float
    std: float | None
    n: int
    ops: float | None = None  # OPs per image, BOPs/64 + FLOPs (bench.report.measures)


def _compression_text(values: list[float]) -> str:
    low, high = f"{min(values):.1f}", f"{max(values):.1f}"
    return f"{low}×" if low == high else f"{low}–{high}×"


def tradeoff_figure(points: list[Point], title: str, parents: dict[str, list[dict]] | None = None) -> Figure:
    """Accuracy against compression: one slot per model on the x axis (ordered by the compression of its
    binarized methods, which the tick label gives), every method at its own fixed offset in each slot,
    mean ± std over seeds; ``parents`` (model -> FP parent records) adds the parents' accuracy as a dashed
    segment across the model's slot."""
    parents = parents or {}
    methods_seen = sorted({p.method for p in points}, key=method_sort_key)
    models = sorted({p.model for p in points} | set(parents))

    def binarized(model: str) -> list[float]:
        return [p.compression for p in points if p.model == model and p.method != "fp"]

    def slot_key(model: str):
        comps = binarized(model) or [p.compression for p in points if p.model == model] or [0.0]
        return (sum(comps) / len(comps), model)

    models.sort(key=slot_key)
    slot = {m: i for i, m in enumerate(models)}
    step = 0.8 / max(len(methods_seen), 1)
    offset = {m: (i - (len(methods_seen) - 1) / 2) * step for i, m in enumerate(methods_seen)}
    fig, (ax,) = new_figure(max(8.0, 1.3 * len(models) + 4.0), 4.5)
    handles = {}
    for method in methods_seen:
        style = method_style(method)
        pts = sorted((p for p in points if p.method == method), key=lambda p: slot[p.model])
        xs = [slot[p.model] + offset[method] for p in pts]
        errs = [(x, p) for x, p in zip(xs, pts) if p.std is not None]
        if errs:
            bars = ax.errorbar([x for x, _ in errs], [p.acc for _, p in errs], yerr=[p.std for _, p in errs],
                               fmt="none", ecolor=style.color, elinewidth=1, capsize=3, zorder=2)
            for artist in bars.lines[2]:  # the bars (LineCollection); the caps are markers in the same colour
                artist.set_gid(method)
        comps = [p.compression for p in pts]
        label = style.label + (f" ({_compression_text(comps)})" if method == "fp" else "")
        (line,) = ax.plot(xs, [p.acc for p in pts], linestyle="none", marker=style.marker, color=style.color,
                          markersize=12 if style.marker == "*" else 8, markeredgecolor="white", markeredgewidth=0.6,
                          label=label, zorder=3)
        line.set_gid(method)
        handles[method] = line
    legend = [handles[m] for m in methods_seen]
    parent_line = None
    for model in models:
        parent = parent_accuracy(parents.get(model, []))
        if parent is None:
            continue
        mean, std, n = parent
        x = slot[model]
        (line,) = ax.plot([x - 0.45, x + 0.45], [mean, mean], color=method_style("fp").color, linestyle="--",
                          linewidth=1.2, zorder=1, label=f"FP parent, final ({seeds_text(n)})")
        line.set_gid("fp")
        ax.annotate(f"FP parent {mean:.2f}", (x, mean), xytext=(0, 3), textcoords="offset points", ha="center",
                    va="bottom", fontsize="small", color=method_style("fp").color)
        if std is not None:
            band = ax.fill_between([x - 0.45, x + 0.45], mean - std, mean + std, color=method_style("fp").color,
                                   alpha=BAND_ALPHA / 2, linewidth=0)
            band.set_gid("fp")
        parent_line = parent_line or line
    if parent_line is not None:
        legend.append(parent_line)
    if any(p.std is not None for p in points):
        legend.append(Line2D([], [], color="grey", marker="|", linestyle="none", markersize=10,
                             label="± 1 std over seeds"))
    ticks = []
    for model in models:
        comps = binarized(model)
        ticks.append(f"{model}\n{_compression_text(comps)}" if comps else model)
    ax.set_xticks(range(len(models)), ticks)
    ax.set_xlim(-0.5, len(models) - 0.5)
    ax.margins(y=0.12)
    ax.set_xlabel("model and the compression of its binarized methods (fp32 bytes / packed bytes)")
    ax.set_ylabel("deployed test accuracy (%)")
    figure_title(fig, f"{title}: accuracy vs. compression")
    ax.grid(True, axis="y", alpha=0.3)
    for i in range(1, len(models)):
        ax.axvline(i - 0.5, color="grey", linewidth=0.5, alpha=0.5)
    add_legend(ax, legend, "method")
    return fig
