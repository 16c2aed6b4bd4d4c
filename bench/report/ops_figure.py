"""Accuracy against operations for one leaderboard row without the model: ``acc_vs_ops_<row>.png``.

Drawn instead of the accuracy-vs-compression strip (``bench.report.tradeoff``) when that strip is degenerate:
every binarized method of every model packs to the same size at one decimal (weight-only methods differ in
how they train, not in what they store), so compression tells them apart from FP only. OPs do the same for
weight-only methods, but they separate W1A1 from weight-only binarization and the models from each other,
and the axis is the one papers plot against (Bi-Real Net, ReActNet, BiBench): OPs = BOPs/64 + FLOPs per image
(``bench.report.measures``), log scale; mean accuracy over seeds with ± std error bars. Methods with equal
OPs on one model would hide each other: they are spread over ±4% of the OPs around the true value (stated
on the axis).
"""

from __future__ import annotations

from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from bench.report.drawing import add_legend, figure_title, mean_std, new_figure
from bench.report.measures import get_measure
from bench.report.styles import method_sort_key, method_style
from bench.report.tradeoff import Point


def degenerate(points) -> bool:
    """Whether every model's binarized methods pack to one compression at one decimal."""
    models = {p.model for p in points}
    return all(len({f"{p.compression:.1f}" for p in points if p.model == m and p.method != "fp"}) <= 1
               for m in models)


def ops_figure(points, title: str, parents: dict[str, list[dict]] | None = None) -> Figure:
    """Mean accuracy (± std) against OPs (M, log), one marker per method and model, the model named;
    ``parents`` (model -> FP parent records of fine-tunes) adds each parent as an FP point."""
    points = list(points)
    borrowed = not any(p.method == "fp" for p in points)
    if borrowed:
        for model, records in sorted((parents or {}).items()):
            accs = [a for a in (r["final"].get("acc") for r in records) if isinstance(a, (int, float))]
            ops = [o for o in (get_measure("ops").value(r) for r in records) if o is not None]
            if accs and ops:
                mean, std = mean_std(accs)
                points.append(Point("fp", model, 1.0, mean, std, len(accs), 1e6 * sum(ops) / len(ops)))
    methods_seen = sorted({p.method for p in points}, key=method_sort_key)
    fig, (ax,) = new_figure(8.0, 4.5)
    handles = {}
    spread = {}
    for p in points:
        spread.setdefault((p.model, round(p.ops, 6)), []).append(p.method)
    for method in methods_seen:
        style = method_style(method)
        pts = sorted((p for p in points if p.method == method and p.ops), key=lambda p: p.model)
        xs = []
        for p in pts:
            group = sorted(spread[(p.model, round(p.ops, 6))], key=method_sort_key)
            k = len(group)
            xs.append(p.ops / 1e6 * (1 + (0.08 * (group.index(method) - (k - 1) / 2) / max(k - 1, 1) if k > 1 else 0)))
        ys = [p.acc for p in pts]
        errs = [(x, p) for x, p in zip(xs, pts) if p.std is not None]
        if errs:
            ax.errorbar([x for x, _ in errs], [p.acc for _, p in errs], yerr=[p.std for _, p in errs], fmt="none",
                        ecolor=style.color, elinewidth=1, capsize=3, zorder=2)
        (line,) = ax.plot(xs, ys, linestyle="none", marker=style.marker, color=style.color,
                          markersize=12 if style.marker == "*" else 8, markeredgecolor="white", markeredgewidth=0.6,
                          label=style.label, zorder=3)
        line.set_gid(method)
        if method == "fp" and borrowed:
            line.set_label(f"{style.label} (the fine-tunes' parent)")
        handles[method] = line
    for model in sorted({p.model for p in points}):
        mine = [p for p in points if p.model == model and p.ops]
        if mine:
            low = min(mine, key=lambda p: (p.ops, p.acc))
            ax.annotate(model, (low.ops / 1e6 * 0.96, min(p.acc for p in mine)), xytext=(0, -14),
                        textcoords="offset points", ha="center", va="top", fontsize="small", color="grey")
    ax.set_xscale("log")
    values = [p.ops / 1e6 for p in points if p.ops]
    if values:  # at least a factor 4 wide: the ±4% spread must not look like a difference in OPs
        lo, hi = min(values), max(values)
        centre = (lo * hi) ** 0.5
        ax.set_xlim(min(lo / 1.3, centre / 2), max(hi * 1.3, centre * 2))
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.margins(y=0.15)
    ax.set_xlabel("OPs per image (M) = BOPs/64 + FLOPs, log scale (equal OPs spread ±4% to stay visible)")
    ax.set_ylabel("deployed test accuracy (%)")
    figure_title(fig, f"{title}: accuracy vs. operations")
    ax.grid(True, which="both", alpha=0.3)
    legend = [handles[m] for m in methods_seen]
    if any(p.std is not None for p in points):
        legend.append(Line2D([], [], color="grey", marker="|", linestyle="none", markersize=10,
                             label="± 1 std over seeds"))
    add_legend(ax, legend, "method")
    return fig
