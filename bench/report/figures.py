"""Figures of a grid, rebuilt from its run records, as reproducible PNGs.

``render(records, out_dir)`` writes, for every leaderboard row (dataset × model × mode by default) of
``done`` records:

* ``accuracy_<row>.png``: deployed test accuracy per epoch, one line per method: the mean over seeds, with a
  shaded band of ± one standard deviation (ddof = 1) where a method has several seeds; fine-tune rows add a
  dashed horizontal line at the final accuracy of their FP parent (``_fp_parents``);
* ``schedule_<row>.png``: one panel per method parameter (ρ, μ, ...; the training settings ``clip`` and
  ``freeze_at`` left out) with its schedule over training, recomputed from each record's config
  (``methods.create_method(config["method"], **config["method_params"])`` evaluated with ``set_progress(t)``
  on 201 points t ∈ [0, 1], x = t · epochs) and the recorded end-of-epoch values as hollow markers (a method
  that is not registered here, a plugin not loaded, or whose recorded parameters no longer build it, is drawn
  from those recorded values alone, dashed); a last panel with the fraction of deployed signs that flipped
  since the previous epoch (mean ± std over seeds);

and, per row without the model, ``acc_vs_compression_<row>.png``: one slot per model on the x axis, ordered
by the compression of its binarized methods (the tick label gives the model and that compression), each method
at a fixed offset inside the slot, the mean accuracy over seeds with ± std error bars, and for fine-tunes the
FP parent's accuracy as a dashed segment over the slot.

Each method keeps one colour and one marker in every figure (``method_style``: the ``color`` and ``marker``
its class declares, else a fixed choice derived from its key, from a palette the built-ins do not use); a
parameter is named by the symbol its class declares (``param_symbol``). Legends sit outside the axes.

Reproducibility: the Agg backend, matplotlib's default style (not the user's matplotlibrc), no PNG
"Software" metadata, fixed size/dpi and sorted inputs, so the same records give the same bytes.
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from bench.report.aggregate import (  # noqa: E402
    DEFAULT_ROWS, Cell, finite_number, method_attribute, method_label, method_sort_key, value_of)
from bench.atomic import atomic_write  # noqa: E402

PREFIXES = ("accuracy_", "schedule_", "acc_vs_compression_")
_SAVE = {"dpi": 100, "format": "png", "metadata": {"Software": None}}
# method parameters that are training settings, not quantizer parameters: no schedule panel
SETTINGS = ("clip", "freeze_at")
SCHEDULE_POINTS = 201  # t = 0, 0.005, ..., 1
# for methods whose class declares no colour or marker: colours far from the built-ins' (black, and tab10's
# blue, orange, green, red, purple, brown, pink): tab10's cyan, olive and grey, then navy, moss, gold, teal
FALLBACK_COLORS = ("#17becf", "#bcbd22", "#7f7f7f", "#393b79", "#637939", "#e7ba52", "#006d6f")
FALLBACK_MARKERS = ("h", "p", "<", ">", "d", "8", "H")
_GREEK_NAMES = ("alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa", "lambda",
                "mu", "nu", "xi", "omicron", "pi", "rho", "sigma", "tau", "upsilon", "phi", "chi", "psi", "omega")
_GREEK = {name: chr(0x3B1 + i + (1 if i >= 17 else 0)) for i, name in enumerate(_GREEK_NAMES)}  # skips final ς
_BAND_ALPHA = 0.18
_DASH = 5.0  # points: the dash length of coinciding lines


@dataclass(frozen=True)
class Style:
    """How one method is drawn: display name, matplotlib colour and marker."""

    label: str
    color: str
    marker: str


def method_style(method: str) -> Style:
    """The style of ``method`` in every figure: its class's ``label``, ``color`` and ``marker``; where the class
    declares none (or the method is not registered here), a colour and a marker picked by the SHA-256 of the
    key from ``FALLBACK_COLORS`` / ``FALLBACK_MARKERS``, the same on every machine and in every run."""
    digest = hashlib.sha256(method.encode("utf-8")).digest()
    return Style(method_label(method),
                 method_attribute(method, "color") or FALLBACK_COLORS[digest[0] % len(FALLBACK_COLORS)],
                 method_attribute(method, "marker") or FALLBACK_MARKERS[digest[1] % len(FALLBACK_MARKERS)])


def param_symbol(method: str, param: str) -> str:
    """The symbol of parameter ``param`` of ``method``: from the ``symbols`` of its class (merged along its base
    classes), else the Greek letter a parameter named after one stands for ("beta" -> β), else the name."""
    import methods

    try:
        cls = methods.get_method_class(method)
    except methods.MethodError:
        cls = None
    for klass in (cls.__mro__ if cls is not None else ()):
        symbol = (klass.__dict__.get("symbols") or {}).get(param)
        if symbol:
            return symbol
    return _GREEK.get(param, param)


def _slug(*parts) -> str:
    return "_".join(re.sub(r"[^A-Za-z0-9.+-]+", "-", str(p)) for p in parts)


def _mean_std(values: list[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (ddof = 1; None for one value)."""
    cell = Cell(list(values))
    return cell.mean, cell.std


def _per_epoch(histories: list[list[dict]], key) -> tuple[list[int], list[float], list[float | None], list[int]]:
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
    stats = [_mean_std(values[e]) for e in epochs]
    return epochs, [m for m, _ in stats], [s for _, s in stats], [len(values[e]) for e in epochs]


def _new_figure(width: float, height: float, ncols: int = 1, sharex: bool = False):
    """A constrained-layout figure with ``ncols`` axes; callers hold ``rc_context(rcParamsDefault)``."""
    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, list(fig.subplots(1, ncols, squeeze=False, sharex=sharex)[0])


def _save(fig, path: Path) -> Path:
    return atomic_write(path, lambda fh: fig.savefig(fh, **_SAVE))


def _line(ax, method: str, xs, ys, **kwargs):
    """A method's line in its colour and marker (hollow), tagged with the method key as its gid."""
    style = method_style(method)
    kwargs.setdefault("marker", style.marker)
    kwargs.setdefault("markersize", 7 if kwargs["marker"] == "*" else 5)
    kwargs.setdefault("markerfacecolor", "none")
    (line,) = ax.plot(xs, ys, color=style.color, **kwargs)
    line.set_gid(method)
    return line


def _lines(ax, series: list[tuple[str, list, list, dict]]) -> dict[str, Line2D]:
    """Draw (method, xs, ys, plot kwargs) series with ``_line``; series with identical points are drawn as
    interleaved dashes (each method's colour in turn, ``_DASH`` points each), so none hides another."""
    same: dict[tuple, list[int]] = defaultdict(list)
    for i, (_, xs, ys, _) in enumerate(series):
        same[(tuple(xs), tuple(ys))].append(i)
    drawn = {}
    for i, (method, xs, ys, kwargs) in enumerate(series):
        twins = same[(tuple(xs), tuple(ys))]
        if len(twins) > 1 and kwargs.get("linestyle", "-") == "-":
            kwargs = {**kwargs, "linestyle": (twins.index(i) * _DASH, (_DASH, (len(twins) - 1) * _DASH))}
        line = _line(ax, method, xs, ys, **kwargs)
        drawn.setdefault(method, line)
    return drawn


def _band(ax, method: str, xs, means, stds) -> bool:
    """Shade mean ± std where a std exists (several seeds); whether anything was shaded."""
    points = [(x, m, s) for x, m, s in zip(xs, means, stds) if s is not None]
    if not any(s > 0 for _, _, s in points):
        return False
    band = ax.fill_between([p[0] for p in points], [p[1] - p[2] for p in points], [p[1] + p[2] for p in points],
                           color=method_style(method).color, alpha=_BAND_ALPHA, linewidth=0)
    band.set_gid(method)
    return True


def _legend(ax, handles: list, title: str | None = None) -> None:
    """One legend for the figure, right of its last axes ``ax`` (the constrained layout makes room for it)."""
    if handles:
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0,
                  fontsize="small", title=title, title_fontsize="small")


def _proxy(method: str, label: str) -> Line2D:
    """A legend entry for ``method``: a solid line with its hollow marker, as in the line plots."""
    style = method_style(method)
    return Line2D([], [], color=style.color, marker=style.marker, markersize=7 if style.marker == "*" else 5,
                  markerfacecolor="none", label=label)


def _fp_parents(group: dict[str, list[dict]], done: list[dict]) -> list[dict]:
    """The FP parents of a row's fine-tunes: the done fp records their ``init = "run:<id>"`` names, else
    (parents not in the grid) the done fp e2e records of the same dataset and model; [] without fine-tunes."""
    finetunes = [r for runs in group.values() for r in runs if r["config"].get("mode") == "finetune"]
    if not finetunes:
        return []
    by_id = {str(r["run_id"]): r for r in done if r["config"]["method"] == "fp"}
    named = {str(r["config"].get("init"))[4:] for r in finetunes if str(r["config"].get("init")).startswith("run:")}
    parents = [by_id[i] for i in sorted(named) if i in by_id]
    if parents:
        return parents
    where = {(r["config"]["dataset"], r["config"]["model"]) for r in finetunes}
    return sorted((r for r in done if r["config"]["method"] == "fp" and r["config"].get("mode") == "e2e"
                   and (r["config"]["dataset"], r["config"]["model"]) in where), key=lambda r: str(r["run_id"]))


def _parent_accuracy(parents: list[dict]) -> tuple[float, float | None, int] | None:
    accs = [a for a in (finite_number(r["final"].get("acc")) for r in parents) if a is not None]
    return (*_mean_std(accs), len(accs)) if accs else None


def _seeds_text(n: int) -> str:
    return f"{n} seed{'s' if n != 1 else ''}"


# ------------------------------------------------------------------------------------------------------
# accuracy per epoch


def accuracy_figure(group: dict[str, list[dict]], title: str, parents: list[dict] | None = None) -> Figure:
    """Deployed test accuracy per epoch of each method of ``group`` (method -> done records), mean ± std over
    seeds; ``parents`` (the FP parents of fine-tunes) adds a dashed line at their final accuracy."""
    fig, (ax,) = _new_figure(8.0, 4.5)
    series, banded = [], False
    for method in sorted(group, key=method_sort_key):
        epochs, acc, std, counts = _per_epoch([r["history"] for r in group[method]], lambda e: e.get("test_acc"))
        if not epochs:
            continue
        banded |= _band(ax, method, epochs, acc, std)
        n = max(counts)
        label = method_style(method).label + (f" ({_seeds_text(n)})" if n > 1 else "")
        series.append((method, epochs, acc, {"label": label, "zorder": 3}))
    _lines(ax, series)
    handles = [_proxy(method, kwargs["label"]) for method, _, _, kwargs in series]
    parent = _parent_accuracy(parents or [])
    if parent is not None:
        mean, std, n = parent
        line = ax.axhline(mean, color=method_style("fp").color, linestyle="--", linewidth=1.2, zorder=2,
                          label=f"FP parent, final ({_seeds_text(n)}): {mean:.2f}%")
        line.set_gid("fp")
        if std is not None:
            ax.axhspan(mean - std, mean + std, color=method_style("fp").color, alpha=_BAND_ALPHA / 2, linewidth=0)
        handles.append(line)
    if banded:
        handles.append(Patch(color="grey", alpha=_BAND_ALPHA * 2, label="± 1 std over seeds"))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("deployed test accuracy (%)")
    fig.suptitle(f"{title}: deployed test accuracy per epoch")
    ax.grid(True, alpha=0.3)
    _legend(ax, handles, "method")
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
    fig, axes = _new_figure(4.0 * (len(panels) + 1) + 1.6, 4.2, ncols=len(panels) + 1, sharex=True)
    handles: dict[str, Line2D] = {}
    banded = False
    for panel, name in zip(axes, panels):
        symbol, geometric, series = name, False, []
        for method in order:
            histories = [r["history"] for r in group[method]]
            epochs, values, _, _ = _per_epoch(histories, lambda e, n=name: (e.get("method_params") or {}).get(n))
            label = method_style(method).label
            for xs, ys in curves[method].get(name, []):
                series.append((method, xs, ys, {"marker": "", "label": label}))
                symbol = param_symbol(method, name)
                geometric |= any((r["config"].get("method_params") or {}).get("schedule") == "geometric"
                                 for r in group[method])
            if name in recorded[method] and epochs:
                series.append((method, epochs, values, {"linestyle": "--", "label": label}))
                symbol = param_symbol(method, name)
        for method, line in _lines(panel, series).items():
            handles.setdefault(method, line)
        for method in order:  # the recorded end-of-epoch values over the recomputed schedules
            epochs, values, _, _ = _per_epoch([r["history"] for r in group[method]],
                                              lambda e, n=name: (e.get("method_params") or {}).get(n))
            if name in curves[method] and epochs:
                _line(panel, method, epochs, values, linestyle="none", zorder=3)
        if geometric and all(y > 0 for line in panel.lines for y in line.get_ydata()):
            panel.set_yscale("log")
        panel.set_title(f"{symbol} over training")
        panel.set_ylabel(f"{symbol} ({name}; dimensionless)" if symbol != name else f"{name} (dimensionless)")
    flips, series = axes[-1], []
    for method in order:
        epochs, values, std, _ = _per_epoch([r["history"] for r in group[method]], lambda e: e.get("flip_ratio"))
        if epochs:
            banded |= _band(flips, method, epochs, values, std)
            series.append((method, epochs, values, {"label": method_style(method).label}))
    for method, line in _lines(flips, series).items():
        handles.setdefault(method, line)
    flips.set_title("sign flips per epoch")
    flips.set_ylabel("fraction of deployed signs flipped\nsince the previous epoch")
    flips.xaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(True, alpha=0.3)
    fig.suptitle(f"{title}: method parameters and sign flips")
    legend = [_proxy(m, method_style(m).label) for m in order if m in handles]
    if any(curves.values()):
        legend += [Line2D([], [], color="grey", label="schedule from the config"),
                   Line2D([], [], color="grey", marker="o", markerfacecolor="none", linestyle="none",
                          label="recorded at epoch end")]
    if any(recorded.values()):
        legend.append(Line2D([], [], color="grey", linestyle="--", marker="o", markerfacecolor="none",
                             label="recorded only (no schedule from the config)"))
    if banded:
        legend.append(Patch(color="grey", alpha=_BAND_ALPHA * 2, label="± 1 std over seeds"))
    _legend(axes[-1], legend, "method")
    return fig


# ------------------------------------------------------------------------------------------------------
# accuracy vs. compression


@dataclass
class Point:
    """One method on one model in ``tradeoff_figure``: mean compression and accuracy over its done seeds."""

    method: str
    model: str
    compression: float
    acc: float
    std: float | None
    n: int


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
    fig, (ax,) = _new_figure(max(8.0, 1.3 * len(models) + 4.0), 4.5)
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
        parent = _parent_accuracy(parents.get(model, []))
        if parent is None:
            continue
        mean, std, n = parent
        x = slot[model]
        (line,) = ax.plot([x - 0.45, x + 0.45], [mean, mean], color=method_style("fp").color, linestyle="--",
                          linewidth=1.2, zorder=1, label=f"FP parent, final ({_seeds_text(n)})")
        line.set_gid("fp")
        ax.annotate(f"FP parent {mean:.2f}", (x, mean), xytext=(0, 3), textcoords="offset points", ha="center",
                    va="bottom", fontsize="small", color=method_style("fp").color)
        if std is not None:
            band = ax.fill_between([x - 0.45, x + 0.45], mean - std, mean + std, color=method_style("fp").color,
                                   alpha=_BAND_ALPHA / 2, linewidth=0)
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
    fig.suptitle(f"{title}: accuracy vs. compression")
    ax.grid(True, axis="y", alpha=0.3)
    for i in range(1, len(models)):
        ax.axvline(i - 0.5, color="grey", linewidth=0.5, alpha=0.5)
    _legend(ax, legend, "method")
    return fig


# ------------------------------------------------------------------------------------------------------


def iter_figures(records: list[dict], row_keys: tuple[str, ...] = DEFAULT_ROWS):
    """(file name, Figure) of every figure of ``records`` (done ones), in file-name order within each kind.

    One accuracy and one schedule figure per leaderboard row (``row_keys``: dataset, model, mode by default;
    a grid's ``leaderboard_by`` may add keys such as ``scale``, and then each of their values gets its own
    figure instead of being averaged with the others; no schedule figure for a row of fp runs only); the
    accuracy-vs-compression figures per row without the model. Callers hold
    ``matplotlib.rc_context(matplotlib.rcParamsDefault)`` while they iterate and save."""
    done = [r for r in records if r.get("status") == "done"]
    groups: dict[tuple, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    row_keys = tuple(row_keys) if "model" in row_keys else ("model", *row_keys)
    for r in done:
        key = tuple(str(value_of(r, k)) for k in row_keys)
        groups[key][str(r["config"]["method"])].append(r)
    at = row_keys.index("model")
    tradeoffs: dict[tuple, list[Point]] = defaultdict(list)
    tradeoff_parents: dict[tuple, dict[str, list[dict]]] = defaultdict(dict)
    for key in sorted(groups):
        title = " / ".join(key)
        parents = _fp_parents(groups[key], done)
        yield f"accuracy_{_slug(*key)}.png", accuracy_figure(groups[key], title, parents)
        if any(m != "fp" for m in groups[key]):
            yield f"schedule_{_slug(*key)}.png", schedule_figure(groups[key], title)
        rest = key[:at] + key[at + 1:]
        if parents:
            tradeoff_parents[rest][key[at]] = parents
        for method, runs in sorted(groups[key].items()):
            accs = [a for a in (finite_number(r["final"].get("acc")) for r in runs) if a is not None]
            comps = [c for c in (finite_number(r["final"].get("compression")) for r in runs) if c is not None]
            if accs and comps:
                mean, std = _mean_std(accs)
                tradeoffs[rest].append(Point(method, key[at], sum(comps) / len(comps), mean, std, len(accs)))
    for key, points in sorted(tradeoffs.items()):
        yield (f"acc_vs_compression_{_slug(*key)}.png",
               tradeoff_figure(points, " / ".join(key), tradeoff_parents.get(key)))


def render(records: list[dict], out_dir: str | Path, row_keys: tuple[str, ...] = DEFAULT_ROWS) -> list[Path]:
    """Write every figure of ``records`` (``iter_figures``) under ``out_dir``; the figures of ours already
    there (``PREFIXES``) are removed first. The paths written, in ``iter_figures``' order."""
    out_dir = Path(out_dir)
    if out_dir.is_dir():
        for old in out_dir.glob("*.png"):
            if old.name.startswith(PREFIXES):
                old.unlink()
    with matplotlib.rc_context(matplotlib.rcParamsDefault):
        return [_save(fig, out_dir / name) for name, fig in iter_figures(records, row_keys)]
