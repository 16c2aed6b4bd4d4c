"""The per-epoch figures of one leaderboard row: accuracy per epoch, and method parameters with sign flips.

``accuracy_figure``: deployed test accuracy per epoch, one line per method: the mean over seeds, with a
shaded band of ± one standard deviation (ddof = 1) where a method has several seeds; fine-tune rows add a
dashed horizontal line at the final accuracy of their FP parent.

``schedule_figure``: one panel per method parameter (ρ, μ, ...; the training settings ``clip`` and
``freeze_at`` left out) with its schedule over training, recomputed from each record's config
(``methods.create_method(config["method"], **config["method_params"])`` evaluated with ``set_progress(t)``
on ``SCHEDULE_POINTS`` points t ∈ [0, 1], x = t · epochs) and the recorded end-of-epoch values as hollow
markers (a method that is not registered here, a plugin not loaded, or whose recorded parameters no longer
build it, is drawn from those recorded values alone, dashed); a last panel with the fraction of deployed
signs that flipped since the previous epoch (mean ± std over seeds). A parameter is named by its symbol
(``bench.report.styles.param_symbol``).
"""

from __future__ import annotations

from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from bench.report.drawing import (
    BAND_ALPHA, add_legend, draw_band, draw_line, draw_lines, figure_title, legend_proxy, new_figure, parent_accuracy,
    per_epoch, seeds_text)
from bench.report.keys import finite_number
from bench.report.styles import SETTINGS, method_sort_key, method_style, param_symbol

SCHEDULE_POINTS = 201  # t = 0, 0.005, ..., 1


def accuracy_figure(group: dict[str, list[dict]], title: str, parents: list[dict] | None = None) -> Figure:
    """Deployed test accuracy per epoch of each method of ``group`` (method -> done records), mean ± std over
    seeds; ``parents`` (the FP parents of fine-tunes) adds a dashed line at their final accuracy."""
    fig, (ax,) = new_figure(8.0, 4.5)
    series, banded = [], False
    for method in sorted(group, key=method_sort_key):
        epochs, acc, std, counts = per_epoch([r["history"] for r in group[method]], lambda e: e.get("test_acc"))
        if not epochs:
            continue
        banded |= draw_band(ax, method, epochs, acc, std)
        n = max(counts)
        label = method_style(method).label + (f" ({seeds_text(n)})" if n > 1 else "")
        series.append((method, epochs, acc, {"label": label, "zorder": 3}))
    draw_lines(ax, series)
    handles = [legend_proxy(method, kwargs["label"]) for method, _, _, kwargs in series]
    parent = parent_accuracy(parents or [])
    if parent is not None:
        mean, std, n = parent
        line = ax.axhline(mean, color=method_style("fp").color, linestyle="--", linewidth=1.2, zorder=2,
                          label=f"FP parent, final ({seeds_text(n)}): {mean:.2f}%")
        line.set_gid("fp")
        if std is not None:
            ax.axhspan(mean - std, mean + std, color=method_style("fp").color, alpha=BAND_ALPHA / 2, linewidth=0)
        handles.append(line)
    if banded:
        handles.append(Patch(color="grey", alpha=BAND_ALPHA * 2, label="± 1 std over seeds"))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("deployed test accuracy (%)")
    figure_title(fig, f"{title}: deployed test accuracy per epoch")
    ax.grid(True, alpha=0.3)
    add_legend(ax, handles, "method")
    return fig


# ------------------------------------------------------------------------------------------------------
# schedules and sign flips


def schedule_curves(record: dict) -> dict[str, tuple[list[float], list[float]]] | None:
    """Each quantizer parameter of the record's method over training, recomputed from its config: name ->
    (epochs t · epochs, values) on ``SCHEDULE_POINTS`` points t ∈ [0, 1]; None when the method is not
    registered here or its recorded parameters do not build it."""
    import methods

    cfg = record["config"]
    epochs = finite_number(cfg.get("epochs"))
    params = cfg.get("method_params") or {}
    if epochs is None or not isinstance(params, dict):
        return None
    try:
        method = methods.create_method(str(cfg["method"]), **params)
    except (methods.MethodError, TypeError, ValueError):
        return None
    names = [k for k, v in method.params().items()
             if k != "progress" and k not in SETTINGS and finite_number(v) is not None]
    ts = [i / (SCHEDULE_POINTS - 1) for i in range(SCHEDULE_POINTS)]
    values: dict[str, list[float]] = {name: [] for name in names}
    for t in ts:
        method.set_progress(t)
        current = method.params()
        for name in names:
            values[name].append(float(current[name]))
    return {name: ([t * epochs for t in ts], values[name]) for name in names}


def _recorded_params(histories: list[list[dict]]) -> list[str]:
    return sorted({k for h in histories for e in h if isinstance(e, dict)
                   for k, v in (e.get("method_params") or {}).items()
                   if finite_number(v) is not None and k != "progress" and k not in SETTINGS})


def schedule_figure(group: dict[str, list[dict]], title: str) -> Figure:
    """Panels: one per quantizer parameter (schedule from the config, recorded end-of-epoch values as hollow
    markers) and the flip ratio of the deployed signs per epoch (mean ± std over seeds)."""
    order = sorted(group, key=method_sort_key)
    curves: dict[str, dict[str, list]] = {}  # method -> parameter -> distinct curves
    recorded: dict[str, list[str]] = {}  # method -> parameters drawn from the records alone
    panels: list[str] = []
    for method in order:
        histories = [r["history"] for r in group[method]]
        per_method: dict[str, list] = {}
        fallback = False
        for record in sorted(group[method], key=lambda r: str(r["run_id"])):
            found = schedule_curves(record)
            if found is None:
                fallback = True
                continue
            for name, curve in found.items():
                if curve not in per_method.setdefault(name, []):
                    per_method[name].append(curve)
        curves[method] = per_method
        recorded[method] = [n for n in _recorded_params(histories) if n not in per_method] if fallback else []
        for name in [*per_method, *recorded[method]]:
            if name not in panels:
                panels.append(name)
    fig, axes = new_figure(4.0 * (len(panels) + 1) + 1.6, 4.2, ncols=len(panels) + 1, sharex=True)
    handles: dict[str, Line2D] = {}
    banded = False
    for panel, name in zip(axes, panels):
        symbol, geometric, series = name, False, []
        for method in order:
            histories = [r["history"] for r in group[method]]
            epochs, values, _, _ = per_epoch(histories, lambda e, n=name: (e.get("method_params") or {}).get(n))
            label = method_style(method).label
            for xs, ys in curves[method].get(name, []):
                series.append((method, xs, ys, {"marker": "", "label": label}))
                symbol = param_symbol(method, name)
                geometric |= any((r["config"].get("method_params") or {}).get("schedule") == "geometric"
                                 for r in group[method])
            if name in recorded[method] and epochs:
                series.append((method, epochs, values, {"linestyle": "--", "label": label}))
                symbol = param_symbol(method, name)
        for method, line in draw_lines(panel, series).items():
            handles.setdefault(method, line)
        for method in order:  # the recorded end-of-epoch values over the recomputed schedules
            epochs, values, _, _ = per_epoch([r["history"] for r in group[method]],
                                              lambda e, n=name: (e.get("method_params") or {}).get(n))
            if name in curves[method] and epochs:
                draw_line(panel, method, epochs, values, linestyle="none", zorder=3)
        if geometric and all(y > 0 for line in panel.lines for y in line.get_ydata()):
            panel.set_yscale("log")
        panel.set_title(f"{symbol} over training")
        panel.set_ylabel(f"{symbol} ({name}; dimensionless)" if symbol != name else f"{name} (dimensionless)")
    flips, series = axes[-1], []
    for method in order:
        epochs, values, std, _ = per_epoch([r["history"] for r in group[method]], lambda e: e.get("flip_ratio"))
        if epochs:
            banded |= draw_band(flips, method, epochs, values, std)
            series.append((method, epochs, values, {"label": method_style(method).label}))
    for method, line in draw_lines(flips, series).items():
        handles.setdefault(method, line)
    flips.set_title("sign flips per epoch")
    flips.set_ylabel("fraction of deployed signs flipped\nsince the previous epoch")
    flips.xaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(True, alpha=0.3)
    figure_title(fig, f"{title}: method parameters and sign flips")
    legend = [legend_proxy(m, method_style(m).label) for m in order if m in handles]
    if any(curves.values()):
        legend += [Line2D([], [], color="grey", label="schedule from the config"),
                   Line2D([], [], color="grey", marker="o", markerfacecolor="none", linestyle="none",
                          label="recorded at epoch end")]
    if any(recorded.values()):
        legend.append(Line2D([], [], color="grey", linestyle="--", marker="o", markerfacecolor="none",
                             label="recorded only (no schedule from the config)"))
    if banded:
        legend.append(Patch(color="grey", alpha=BAND_ALPHA * 2, label="± 1 std over seeds"))
    add_legend(axes[-1], legend, "method")
    return fig
