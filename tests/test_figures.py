"""Figures (bench.report.figures) and quantizer plots (bench.report.plots): one style per method everywhere, seed bands,
schedules recomputed from the config, FP parents of fine-tunes, readable accuracy-vs-compression slots,
deterministic bytes.

Records: the fixture grid (tests/fixtures/records/fixture: fmnist-cnn and fmnist-mlp, up to 3 seeds) plus
fine-tunes of fmnist-cnn built from it and a run of a method that is not registered ("unloaded-plugin").
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import matplotlib
import numpy
import pytest
from matplotlib.collections import PolyCollection
from matplotlib.colors import to_hex

import methods
from bench.report import drawing, figures, plots, styles, training_figures
from bench.report.styles import Style, method_style, param_symbol

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "records"
BUILTIN = ("fp", "bc", "pc", "rpc", "pq", "bnn", "bnn+", "bnn++")


def _fixture_records() -> list[dict]:
    records = []
    for path in sorted((FIXTURES / "fixture").glob("*.json")):
        try:
            record = json.loads(path.read_text())
        except json.JSONDecodeError:
            continue
        if record.get("schema") == 1 and "model" in record.get("config", {}):
            records.append(record)
    return records


def _records() -> list[dict]:
    """The fixture's records, two seeds of fine-tunes (bc, bnn++) of its fmnist-cnn fp seed 0, and one done
    run of a method that is not registered (its history records beta per epoch)."""
    records = _fixture_records()
    parent = next(r for r in records if r["config"]["method"] == "fp" and r["config"]["model"] == "fmnist-cnn"
                  and r["config"]["seed"] == 0)
    template = next(r for r in records if r["config"]["method"] == "bnn++" and r["status"] == "done")
    for method in ("bc", "bnn++"):
        for seed in (0, 1):
            r = copy.deepcopy(template)
            r["run_id"] = f"ft{method}{seed}"
            r["config"].update(method=method, seed=seed, mode="finetune", init=f"run:{parent['run_id']}", epochs=2)
            if method == "bc":
                r["config"]["method_params"] = {"scale": "channel", "schedule": "linear"}
            r["history"] = [{"epoch": e, "test_acc": 80.0 + 3 * e + seed, "flip_ratio": None if e == 0 else 0.01 * e,
                             "method_params": {"mu": 5.0 + 12.5 * e} if method == "bnn++" else {}}
                            for e in (0, 1, 2)]
            r["final"] = {**r["final"], "acc": 86.0 + seed}
            records.append(r)
    plugin = copy.deepcopy(template)
    plugin["run_id"] = "plugin0"
    plugin["config"].update(method="unloaded-plugin", seed=0,
                            method_params={"beta_start": 1.0, "beta_end": 10.0, "scale": "none", "schedule": "linear"})
    for i, entry in enumerate(plugin["history"]):
        entry["method_params"] = {"beta": 1.0 + 3.0 * (i + 1)}
    records.append(plugin)
    return records


@pytest.fixture
def built():
    """{file name: Figure} of ``_records()``, built under matplotlib's default style."""
    with matplotlib.rc_context(matplotlib.rcParamsDefault):
        yield dict(figures.iter_figures(_records()))


def _tagged_colours(fig) -> dict[str, set[str]]:
    """method -> colours of the lines, markers and bands tagged with it (gid) in ``fig``."""
    seen: dict[str, set[str]] = {}
    for ax in fig.axes:
        for line in ax.lines:
            if line.get_gid():
                seen.setdefault(line.get_gid(), set()).add(to_hex(line.get_color()))
        for collection in ax.collections:  # seed bands (PolyCollection) and error bars (LineCollection)
            if collection.get_gid():
                rgba = (collection.get_facecolor() if isinstance(collection, PolyCollection)
                        else collection.get_edgecolor())[0]
                seen.setdefault(collection.get_gid(), set()).add(to_hex(rgba, keep_alpha=False))
    return seen


# -- styles ------------------------------------------------------------------------------------------


def test_builtin_styles_are_in_the_report_table_distinct_and_keep_the_table_labels():
    drawn = [method_style(m) for m in BUILTIN]
    assert [s.label for s in drawn] == ["FP", "BC", "PC", "rPC", "PQ", "BNN", "BNN+", "BNN++"]
    assert [styles.method_label(m) for m in BUILTIN] == [s.label for s in drawn]
    assert [styles.column_label("method", m) for m in BUILTIN] == [s.label for s in drawn]  # the tables' column labels
    assert styles.builtin_order() == BUILTIN  # the paper's order, from the classes of methods.builtin
    assert len({s.color for s in drawn}) == len(BUILTIN) and len({s.marker for s in drawn}) == len(BUILTIN)
    for key in BUILTIN:  # the report's own table, keyed by method name; the classes suggest nothing
        assert tuple(styles.STYLES[key].values()) == tuple(method_style(key).__dict__.values())
        assert methods.get_method_class(key).style is None
    assert (param_symbol("pc", "rho"), param_symbol("rpc", "rho"), param_symbol("pq", "rho")) == ("ρ", "ρ", "ρ")
    assert (param_symbol("bnn+", "mu"), param_symbol("bnn++", "mu")) == ("μ", "μ")


def test_an_unregistered_method_gets_a_fixed_style_outside_the_builtin_palette():
    builtin_colours = {method_style(m).color for m in BUILTIN}
    builtin_markers = {method_style(m).marker for m in BUILTIN}
    # SHA-256 of the key: the same on every machine and in every process (not Python's salted hash())
    assert method_style("tanh-ste") == Style("tanh-ste", "#17becf", "d")
    for key in ("tanh-ste", "my-method", "x", "ste++", "q2"):
        style = method_style(key)
        assert style.label == key and styles.method_label(key) == key
        assert style.color in styles.FALLBACK_COLORS and style.color not in builtin_colours
        assert style.marker in styles.FALLBACK_MARKERS and style.marker not in builtin_markers
    assert param_symbol("unknown", "beta") == "β" and param_symbol("unknown", "width") == "width"


@pytest.fixture
def scoped_methods():
    """The method registry as it was once the test is over (what the test registers is forgotten)."""
    with methods.registry.METHODS.scoped() as registry:
        yield registry


def test_plugins_declare_their_style_and_do_not_inherit_a_registered_ancestors(scoped_methods):

    @methods.register_method("my-ste")
    class MySTE(methods.Method):
        schedules = {"kappa": (1.0, 2.0)}
        style = {"label": "MySTE", "color": "#123456", "marker": "h", "symbols": {"kappa": "κ'"}}

        def F(self, x):
            return x

    @methods.register_method("bnn++-v2")
    class Variant(methods.get_method_class("bnn++")):
        pass

    assert method_style("my-ste") == Style("MySTE", "#123456", "h")
    assert styles.method_label("my-ste") == "MySTE" and param_symbol("my-ste", "kappa") == "κ'"
    variant = method_style("bnn++-v2")
    assert variant.label == "bnn++-v2" and variant.color in styles.FALLBACK_COLORS  # not a second "BNN++"
    assert param_symbol("bnn++-v2", "mu") == "μ"  # the parameter keeps its meaning


# -- the figures of a grid ---------------------------------------------------------------------------


def test_every_method_has_one_colour_in_every_figure(built):
    names = sorted(built)
    assert names == [
        "acc_vs_compression_fashion-mnist_e2e.png", "acc_vs_ops_fashion-mnist_finetune.png",
        "accuracy_fashion-mnist_fmnist-cnn_e2e.png", "accuracy_fashion-mnist_fmnist-cnn_finetune.png",
        "accuracy_fashion-mnist_fmnist-mlp_e2e.png",
        "schedule_fashion-mnist_fmnist-cnn_e2e.png", "schedule_fashion-mnist_fmnist-cnn_finetune.png",
        "schedule_fashion-mnist_fmnist-mlp_e2e.png"]
    everywhere: dict[str, set[str]] = {}
    for fig in built.values():
        for method, colours in _tagged_colours(fig).items():
            everywhere.setdefault(method, set()).update(colours)
    assert set(everywhere) == {"fp", "bc", "bnn", "bnn+", "bnn++", "unloaded-plugin"}
    for method, colours in everywhere.items():
        assert colours == {method_style(method).color}, method


def test_every_figure_has_a_title_labelled_axes_and_a_legend_naming_every_method(built):
    for name, fig in built.items():
        assert fig._suptitle is not None and fig._suptitle.get_text(), name
        for ax in fig.axes:
            assert ax.get_xlabel() and ax.get_ylabel(), name
        legends = [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
        assert len(legends) == 1, name
        texts = [t.get_text() for t in legends[0].get_texts()]
        for method in {line.get_gid() for ax in fig.axes for line in ax.lines if line.get_gid()}:
            assert any(t.startswith(method_style(method).label) for t in texts), (name, method, texts)
        # outside the axes: the legend's box starts right of every axes' right edge
        fig.canvas.draw()
        box = legends[0].get_window_extent()
        assert all(box.x0 >= ax.get_window_extent().x1 for ax in fig.axes), name


def test_accuracy_curves_shade_mean_plus_minus_std_where_a_method_has_several_seeds(built):
    fig = built["accuracy_fashion-mnist_fmnist-cnn_e2e.png"]
    (ax,) = fig.axes
    bands = {c.get_gid(): c for c in ax.collections if isinstance(c, PolyCollection)}
    assert set(bands) == {"fp", "bc", "bnn++"}  # 3, 2 and 3 seeds; bnn has one done seed
    bnn_pp = next(line for line in ax.lines if line.get_gid() == "bnn++")
    assert list(bnn_pp.get_ydata()) == pytest.approx([86.5, 88.0, 89.5])  # means over the 3 seeds
    band = bands["bnn++"].get_paths()[0].vertices[:, 1]
    lower, upper = band.min(), band.max()
    assert (lower, upper) == pytest.approx((86.0, 90.0))  # 86.5 - 0.5 and 89.5 + 0.5 (ddof = 1)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "BNN++ (3 seeds)" in labels and "BNN" in labels and "± 1 std over seeds" in labels


def test_finetune_figures_draw_the_fp_parents_final_accuracy(built):
    (ax,) = built["accuracy_fashion-mnist_fmnist-cnn_finetune.png"].axes
    parent = [line for line in ax.lines if line.get_gid() == "fp" and line.get_linestyle() == "--"]
    assert len(parent) == 1 and list(parent[0].get_ydata()) == [91.0, 91.0]  # fp seed 0 of fmnist-cnn
    assert "FP parent, final (1 seed): 91.00%" in [t.get_text() for t in ax.get_legend().get_texts()]
    # every fine-tuned method packs to one size: accuracy vs OPs, the FP parent as the FP point
    (ax,) = built["acc_vs_ops_fashion-mnist_finetune.png"].axes
    parent = [line for line in ax.lines if line.get_gid() == "fp"]
    assert len(parent) == 1 and list(parent[0].get_ydata()) == [91.0]
    assert "FP (the fine-tunes' parent)" in [t.get_text() for t in ax.get_legend().get_texts()]
    assert ax.get_xscale() == "log"
    (ax,) = built["accuracy_fashion-mnist_fmnist-cnn_e2e.png"].axes
    assert not [line for line in ax.lines if line.get_linestyle() == "--"]  # e2e rows have no parent


def test_schedules_are_recomputed_from_the_config_on_a_fine_grid():
    record = next(r for r in _fixture_records() if r["config"]["method"] == "bnn++" and r["status"] == "done")
    curves = training_figures.schedule_curves(record)
    assert list(curves) == ["mu"]
    xs, ys = curves["mu"]
    assert len(xs) == training_figures.SCHEDULE_POINTS and (xs[0], xs[-1]) == (0.0, 3.0) and (ys[0], ys[-1]) == (5.0, 30.0)
    # the recorded end-of-epoch values lie on the recomputed schedule
    for entry in record["history"]:
        assert numpy.interp(entry["epoch"], xs, ys) == pytest.approx(entry["method_params"]["mu"])
    pq = {**record, "config": {**record["config"], "method": "pq", "method_params": {}}}
    assert list(training_figures.schedule_curves(pq)) == ["rho"]  # clip and freeze_at are training settings
    unknown = {**record, "config": {**record["config"], "method": "unloaded-plugin"}}
    assert training_figures.schedule_curves(unknown) is None


def test_schedule_figure_has_one_panel_per_parameter_and_falls_back_to_recorded_values(built):
    fig = built["schedule_fashion-mnist_fmnist-cnn_e2e.png"]
    assert [ax.get_title() for ax in fig.axes] == ["μ over training", "β over training", "sign flips per epoch"]
    mu, beta, flips = fig.axes
    schedule = [line for line in mu.lines if line.get_gid() == "bnn++" and len(line.get_xdata()) > 10]
    assert len(schedule) == 1 and schedule[0].get_xdata()[-1] == 3.0  # x in epochs: t · epochs
    recorded = [line for line in beta.lines if line.get_gid() == "unloaded-plugin"]
    assert len(recorded) == 1 and recorded[0].get_linestyle() == "--" and list(recorded[0].get_xdata()) == [1, 2, 3]
    assert {line.get_gid() for line in flips.lines} >= {"bc", "bnn", "bnn++"}
    fig = built["schedule_fashion-mnist_fmnist-mlp_e2e.png"]
    assert [ax.get_title() for ax in fig.axes] == ["μ over training", "sign flips per epoch"]  # BNN+'s μ = 5


def test_coinciding_lines_are_interleaved_dashes_so_none_hides_another():
    fig, (ax,) = drawing.new_figure(4, 3)
    drawn = drawing.draw_lines(ax, [(m, [1, 2, 3], [1.0, 2.0, 3.0], {}) for m in ("pc", "rpc", "pq")]
                           + [("bnn", [1, 2, 3], [0.0, 0.0, 1.0], {})])
    patterns = [drawn[m]._unscaled_dash_pattern for m in ("pc", "rpc", "pq")]  # (offset, (on, off))
    dash = drawing.DASH
    assert patterns == [(0.0, (dash, 2 * dash)), (dash, (dash, 2 * dash)), (2 * dash, (dash, 2 * dash))]
    assert drawn["bnn"].get_linestyle() == "-"


def test_accuracy_vs_compression_puts_each_model_in_its_own_slot_with_fixed_method_offsets(built):
    (ax,) = built["acc_vs_compression_fashion-mnist_e2e.png"].axes
    ticks = [t.get_text() for t in ax.get_xticklabels()]
    assert ticks == ["fmnist-cnn\n20.0×", "fmnist-mlp\n25.0–25.5×"]  # ordered by compression
    assert ax.get_xscale() == "linear" and ax.get_xlim() == (-0.5, 1.5)
    points = {line.get_gid(): line for line in ax.lines
              if line.get_gid() and line.get_marker() == method_style(line.get_gid()).marker}
    assert set(points) == {"fp", "bc", "bnn", "bnn+", "bnn++", "unloaded-plugin"}
    offsets = {m: [x - round(x) for x in line.get_xdata()] for m, line in points.items()}
    assert all(max(o) - min(o) < 1e-9 for o in offsets.values())  # one offset per method in every slot
    assert len({round(o[0], 9) for o in offsets.values()}) == len(offsets)  # and no two methods share one
    assert "FP (1.0×)" in [t.get_text() for t in ax.get_legend().get_texts()]


def test_render_writes_the_same_bytes_twice(tmp_path):
    records = _records()
    first = figures.render(records, tmp_path / "a")
    second = figures.render(list(reversed(records)), tmp_path / "b")
    assert [p.name for p in first] == [p.name for p in second] and len(first) == 16  # 8 PNGs, 8 PDFs
    assert [p.with_suffix("").name for p in first[::2]] == [p.with_suffix("").name for p in first[1::2]]
    for a, b in zip(first, second):
        assert a.read_bytes() == b.read_bytes(), a.name
        if a.suffix == ".png":
            assert a.read_bytes().startswith(b"\x89PNG") and b"Software" not in a.read_bytes()
        else:
            assert a.read_bytes().startswith(b"%PDF") and b"CreationDate" not in a.read_bytes()


# -- plot-quantizers ---------------------------------------------------------------------------------


def test_plot_quantizers_order_scales_prox_and_determinism(tmp_path):
    # only the built-ins: other test modules register plugin methods (tanh-ste) when they are imported
    with methods.registry.METHODS.scoped(keep=lambda name: name in BUILTIN):
        paths = plots.plot_quantizers(tmp_path / "a")
        again = plots.plot_quantizers(tmp_path / "b")
    assert [p.name for p in paths] == ["fp.png", "bc.png", "pc.png", "rpc.png", "pq.png", "bnn.png", "bnnp.png",
                                       "bnnpp.png", "overview.png"]
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(paths, again))
    prox = plots.prox_curve(plots.Variant("pq"))
    assert prox is not None and prox[1] == pytest.approx(plots.PROX_LR * 10)  # s = η·ρ_end = 0.1 · 10
    w, s = prox
    assert float(w[-1]) == pytest.approx((3 + s) / (1 + s))  # LQ_s(3) = (x + s·sign x)/(1 + s)
    assert plots.prox_curve(plots.Variant("bnn++")) is None


def test_overview_has_the_papers_order_one_y_scale_per_row_and_method_colours(tmp_path, monkeypatch):
    figs = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: figs.append(fig) or path)
    plots.plot_overview(sorted(BUILTIN, key=styles.method_sort_key), tmp_path)
    (fig,) = figs
    axes = fig.axes
    top, bottom = axes[: len(BUILTIN)], axes[len(BUILTIN):]
    assert [ax.get_title() for ax in top] == ["FP", "BC", "PC", "rPC", "PQ", "BNN", "BNN+", "BNN++"]
    assert len({ax.get_ylim() for ax in top}) == 1 and len({ax.get_ylim() for ax in bottom}) == 1
    for ax in axes:
        for line in ax.lines:
            if line.get_gid():
                assert to_hex(line.get_color()) == method_style(line.get_gid()).color
    dotted = {line.get_gid() for ax in top for line in ax.lines if line.get_linestyle() == ":"}
    assert dotted == {"rpc", "pq"}
    assert "s = η·ρ_end, η = 0.1" in fig._supxlabel.get_text()


def test_plot_quantizers_with_a_grid_draws_its_cells_parameters(tmp_path, monkeypatch):
    grid = tmp_path / "g.toml"
    grid.write_text('description = "t"\n[defaults]\nmodel = "fmnist-cnn"\ndataset = "fashion-mnist"\nlr = 0.05\n'
                    '[axes]\nmethod = ["bnn++", "pq"]\n[method."bnn++"]\nmethod_params = { mu_end = 40.0 }\n')
    variants = plots.grid_variants(str(grid), list(BUILTIN))
    assert list(variants) == ["bnn++", "pq"]
    assert variants["bnn++"][0].params["mu_end"] == 40.0 and variants["pq"][0].lr == 0.05
    figs = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: figs.append(fig) or path)
    paths = plots.plot_quantizers(tmp_path / "out", grid=str(grid))
    assert [p.name for p in paths] == ["pq.png", "bnnpp.png", "overview.png"]
    pq, bnn_pp, overview = figs
    assert "μ=40" in " ".join(t.get_text() for t in bnn_pp.axes[0].get_legend().get_texts())
    assert [t.get_text() for t in pq.axes[0].get_legend().get_texts()] == [
        "t=0 (ρ=0.01)", "t=1 (ρ=10)", "hook: prox_s(x), s = η·ρ_end = 0.05·10 = 0.5"]
    assert "(parameters of grid g)" in overview._suptitle.get_text()


def test_cli_plot_quantizers_grid_option(tmp_path, capsys):
    from bench import cli

    assert cli.main(["plot-quantizers", "--out", str(tmp_path), "--grid", "vit-demo", "bnn*"]) == 0
    assert capsys.readouterr().out.split() == [str(tmp_path / n) for n in ("bnn.png", "bnnp.png", "bnnpp.png",
                                                                            "overview.png")]
    shutil.rmtree(tmp_path)


def test_figure_titles_wrap_only_where_the_figure_is_too_narrow_for_them():
    title = "fashion-mnist / fmnist-cnn-react / e2e: method parameters and sign flips"  # 72 characters
    narrow, _ = drawing.new_figure(5.6, 4.2)  # a schedule figure with only the sign-flip panel
    wide, _ = drawing.new_figure(8.0, 4.2)
    drawing.figure_title(narrow, title)
    drawing.figure_title(wide, title)
    assert wide.get_suptitle() == title
    lines = narrow.get_suptitle().splitlines()
    assert len(lines) == 2 and " ".join(lines) == title
    narrow.canvas.draw()  # the wrapped title fits inside the figure
    box = narrow._suptitle.get_window_extent()
    assert box.x0 >= 0 and box.x1 <= narrow.bbox.width
