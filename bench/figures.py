"""Figures of a grid, rebuilt from its run records (DESIGN.md §8), as reproducible PNGs.

``render(records, out_dir)`` writes, for every dataset × model × mode group of ``done`` records:

* ``accuracy_<dataset>_<model>_<mode>.png``: deployed test accuracy per epoch, one line per method (mean
  over seeds at each epoch);
* ``schedule_<dataset>_<model>_<mode>.png``: the method parameters (μ, ρ) per epoch and the flip ratio of the
  deployed signs per epoch, one line per method (mean over seeds);

and, per dataset × mode, ``acc_vs_compression_<dataset>_<mode>.png``: one point per method and model (mean
accuracy over seeds against the compression ratio of the packed file).

Reproducibility: the Agg backend, matplotlib's default style (not the user's matplotlibrc), no PNG
"Software" metadata, fixed size/dpi and sorted inputs, so the same records give the same bytes.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from bench.aggregate import DEFAULT_ROWS, METHOD_LABELS, finite_number, method_sort_key, value_of  # noqa: E402
from bench.atomic import atomic_write  # noqa: E402

PREFIXES = ("accuracy_", "schedule_", "acc_vs_compression_")
_SAVE = {"dpi": 100, "format": "png", "metadata": {"Software": None}}
_MARKERS = "osD^v<>ph*"
_GREEK = {"mu": "μ", "rho": "ρ"}


def _slug(*parts) -> str:
    return "_".join(re.sub(r"[^A-Za-z0-9.+-]+", "-", str(p)) for p in parts)


def _label(method: str) -> str:
    return METHOD_LABELS.get(method, method)


def _mean_curve(histories: list[list[dict]], key) -> tuple[list[int], list[float]]:
    """Epochs and the mean over seeds of ``key(entry)`` at each epoch (entries without a value ignored)."""
    values: dict[int, list[float]] = defaultdict(list)
    for history in histories:
        for entry in history:
            if not isinstance(entry, dict) or not isinstance(entry.get("epoch"), int):
                continue
            v = finite_number(key(entry))
            if v is not None:
                values[entry["epoch"]].append(v)
    epochs = sorted(values)
    return epochs, [sum(values[e]) / len(values[e]) for e in epochs]


def _new_figure(width: float = 6.0, height: float = 4.0, ncols: int = 1):
    """A figure with ``ncols`` axes; callers hold ``rc_context(rcParamsDefault)`` around building and saving."""
    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig, list(fig.subplots(1, ncols, squeeze=False)[0])


def _save(fig, path: Path) -> Path:
    return atomic_write(path, lambda fh: fig.savefig(fh, **_SAVE))


def _accuracy(group: dict[str, list[dict]], title: str, path: Path) -> Path:
    with matplotlib.rc_context(matplotlib.rcParamsDefault):
        fig, (ax,) = _new_figure()
        for i, method in enumerate(sorted(group, key=method_sort_key)):
            epochs, acc = _mean_curve([r["history"] for r in group[method]], lambda e: e.get("test_acc"))
            if epochs:
                ax.plot(epochs, acc, marker=_MARKERS[i % len(_MARKERS)], markersize=3, label=_label(method))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel("test accuracy of the deployed model (%)")
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
        if ax.lines:
            ax.legend(loc="lower right", fontsize="small")
        fig.tight_layout()
        return _save(fig, path)


# method parameters that are training settings, not quantizer parameters: left out of the schedule panel
SETTINGS = ("clip", "freeze_at")


def _schedule(group: dict[str, list[dict]], title: str, path: Path) -> Path:
    with matplotlib.rc_context(matplotlib.rcParamsDefault):
        fig, (left, right) = _new_figure(11.0, 4.0, ncols=2)
        for i, method in enumerate(sorted(group, key=method_sort_key)):
            histories = [r["history"] for r in group[method]]
            names = sorted({k for h in histories for e in h if isinstance(e, dict)
                            for k, v in (e.get("method_params") or {}).items() if finite_number(v) is not None
                            and k != "progress"})
            for name in names:
                epochs, values = _mean_curve(histories, lambda e, n=name: (e.get("method_params") or {}).get(n))
                if epochs and name not in SETTINGS:
                    left.plot(epochs, values, marker=_MARKERS[i % len(_MARKERS)], markersize=3, color=f"C{i % 10}",
                              label=f"{_label(method)} {_GREEK.get(name, name)}")
            epochs, flips = _mean_curve(histories, lambda e: e.get("flip_ratio"))
            if epochs:
                right.plot(epochs, flips, marker=_MARKERS[i % len(_MARKERS)], markersize=3, color=f"C{i % 10}",
                           label=_label(method))  # one colour per method in both panels
        plotted = [v for line in left.lines for v in line.get_ydata()]
        if plotted and min(plotted) > 0 and max(plotted) / min(plotted) > 100:
            left.set_yscale("log")  # e.g. ρ from 1e-4 next to μ = 10: a linear axis flattens the small ones
        left.set_xlabel("epoch")
        left.set_ylabel("μ / ρ at the end of the epoch")
        left.set_title(f"{title}: schedule")
        right.set_xlabel("epoch")
        right.set_ylabel("flip ratio of deployed signs")
        right.set_title(f"{title}: sign flips")
        for ax in (left, right):
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.grid(True, alpha=0.3)
            if ax.lines:
                ax.legend(loc="best", fontsize="small")
        fig.tight_layout()
        return _save(fig, path)


def _tradeoff(points: list[tuple[str, str, float, float]], title: str, path: Path) -> Path:
    """points: (method, model, compression, accuracy)."""
    with matplotlib.rc_context(matplotlib.rcParamsDefault):
        fig, (ax,) = _new_figure()
        methods_seen = sorted({p[0] for p in points}, key=method_sort_key)
        for i, method in enumerate(methods_seen):
            pts = sorted((p for p in points if p[0] == method), key=lambda p: p[1])
            ax.scatter([p[2] for p in pts], [p[3] for p in pts], marker=_MARKERS[i % len(_MARKERS)],
                       label=_label(method))
            for _m, model, x, y in pts:
                ax.annotate(model, (x, y), fontsize=6, xytext=(3, 3), textcoords="offset points")
        ax.set_xscale("log")
        ax.set_xlabel("compression (fp32 bytes / packed bytes, log scale)")
        ax.set_ylabel("test accuracy of the deployed model (%)")
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
        if methods_seen:
            ax.legend(loc="best", fontsize="small")
        fig.tight_layout()
        return _save(fig, path)


def render(records: list[dict], out_dir: str | Path, row_keys: tuple[str, ...] = DEFAULT_ROWS) -> list[Path]:
    """Write every figure of ``records`` (done ones) under ``out_dir``; stale figures of ours are removed first.

    One accuracy and one schedule figure per leaderboard row (``row_keys``: dataset, model, mode by default;
    a grid's ``leaderboard_by`` may add keys such as ``scale``, and then each of their values gets its own
    figure instead of being averaged with the others); the accuracy-vs-compression figures per row without
    the model."""
    out_dir = Path(out_dir)
    if out_dir.is_dir():
        for old in out_dir.glob("*.png"):
            if old.name.startswith(PREFIXES):
                old.unlink()
    done = [r for r in records if r.get("status") == "done"]
    groups: dict[tuple, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    row_keys = tuple(row_keys) if "model" in row_keys else ("model", *row_keys)
    for r in done:
        key = tuple(str(value_of(r, k)) for k in row_keys)
        groups[key][str(r["config"]["method"])].append(r)
    written = []
    for key in sorted(groups):
        title = " / ".join(key)
        written.append(_accuracy(groups[key], title, out_dir / f"accuracy_{_slug(*key)}.png"))
        if any(m != "fp" for m in groups[key]):
            written.append(_schedule(groups[key], title, out_dir / f"schedule_{_slug(*key)}.png"))
    at = row_keys.index("model")
    tradeoffs: dict[tuple, list] = defaultdict(list)
    for key, by_method in sorted(groups.items()):
        for method, runs in sorted(by_method.items()):
            accs = [finite_number(r["final"].get("acc")) for r in runs]
            comps = [finite_number(r["final"].get("compression")) for r in runs]
            accs, comps = [a for a in accs if a is not None], [c for c in comps if c is not None]
            if accs and comps:
                tradeoffs[key[:at] + key[at + 1:]].append((method, key[at], sum(comps) / len(comps),
                                                           sum(accs) / len(accs)))
    for key, points in sorted(tradeoffs.items()):
        written.append(_tradeoff(points, f"{' / '.join(key)}: accuracy vs. compression",
                                 out_dir / f"acc_vs_compression_{_slug(*key)}.png"))
    return written
