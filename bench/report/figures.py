"""Figures of a grid, rebuilt from its run records, as reproducible PNGs.

``render(records, out_dir)`` writes, for every leaderboard row (dataset × model × mode by default) of
``done`` records, ``accuracy_<row>.png`` (``bench.report.training_figures.accuracy_figure``: accuracy per
epoch, mean ± std over seeds; fine-tune rows add their FP parent's final accuracy, ``fp_parents``) and, unless
the row has fp runs only, ``schedule_<row>.png`` (``schedule_figure``: each method parameter's schedule and
the sign flips per epoch); and, per row without the model, ``acc_vs_compression_<row>.png``
(``bench.report.tradeoff.tradeoff_figure``), or ``acc_vs_ops_<row>.png`` (``bench.report.ops_figure``) when
every binarized method packs to the same size. Every figure is written as a PNG and as a PDF (vector, for
a paper; no creation date or producer in it, so it is reproducible too).

Each method keeps one colour and one marker in every figure (``bench.report.styles.method_style``: the
``color`` and ``marker`` its class declares, else a fixed choice derived from its key, from a palette the
built-ins do not use); a parameter is named by the symbol its class declares (``param_symbol``). Legends
sit outside the axes.

Reproducibility: the Agg backend, matplotlib's default style (not the user's matplotlibrc), no PNG
"Software" metadata, fixed size/dpi and sorted inputs, so the same records give the same bytes.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import matplotlib

from bench.report.drawing import mean_std, save_figure, save_pdf, slug
from bench.report.keys import DEFAULT_ROWS, finite_number, value_of
from bench.report.measures import get_measure
from bench.report.ops_figure import degenerate, ops_figure
from bench.report.tradeoff import Point, tradeoff_figure
from bench.report.training_figures import accuracy_figure, schedule_figure

PREFIXES = ("accuracy_", "schedule_", "acc_vs_compression_", "acc_vs_ops_")


def fp_parents(group: dict[str, list[dict]], done: list[dict]) -> list[dict]:
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
        parents = fp_parents(groups[key], done)
        yield f"accuracy_{slug(*key)}.png", accuracy_figure(groups[key], title, parents)
        if any(m != "fp" for m in groups[key]):
            yield f"schedule_{slug(*key)}.png", schedule_figure(groups[key], title)
        rest = key[:at] + key[at + 1:]
        if parents:
            tradeoff_parents[rest][key[at]] = parents
        for method, runs in sorted(groups[key].items()):
            accs = [a for a in (finite_number(r["final"].get("acc")) for r in runs) if a is not None]
            comps = [c for c in (finite_number(r["final"].get("compression")) for r in runs) if c is not None]
            ops = [o for o in (get_measure("ops").value(r) for r in runs) if o is not None]
            if accs and comps:
                mean, std = mean_std(accs)
                tradeoffs[rest].append(Point(method, key[at], sum(comps) / len(comps), mean, std, len(accs),
                                             1e6 * sum(ops) / len(ops) if ops else None))
    for key, points in sorted(tradeoffs.items()):
        if degenerate(points) and all(p.ops for p in points):
            yield f"acc_vs_ops_{slug(*key)}.png", ops_figure(points, " / ".join(key), tradeoff_parents.get(key))
        else:
            yield (f"acc_vs_compression_{slug(*key)}.png",
                   tradeoff_figure(points, " / ".join(key), tradeoff_parents.get(key)))


def render(records: list[dict], out_dir: str | Path, row_keys: tuple[str, ...] = DEFAULT_ROWS) -> list[Path]:
    """Write every figure of ``records`` (``iter_figures``) under ``out_dir``; the figures of ours already
    there (``PREFIXES``) are removed first. The paths written, in ``iter_figures``' order."""
    out_dir = Path(out_dir)
    if out_dir.is_dir():
        for old in [*out_dir.glob("*.png"), *out_dir.glob("*.pdf")]:
            if old.name.startswith(PREFIXES):
                old.unlink()
    written = []
    with matplotlib.rc_context(matplotlib.rcParamsDefault):
        for name, fig in iter_figures(records, row_keys):
            written.append(save_figure(fig, out_dir / name))
            written.append(save_pdf(fig, out_dir / f"{name[:-4]}.pdf"))
    return written
