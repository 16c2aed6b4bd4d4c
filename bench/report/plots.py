"""``python -m bench plot-quantizers``: F and B' of every method at the start and the end of its schedule.

One PNG per method (two panels: F(x) and B'(x), each at t = 0, dashed, and t = 1, solid, on the normalised
weight x = w/α) plus ``overview.png`` with every method, in the paper's order (fp, bc, pc, rpc, pq, bnn, bnn+,
bnn++, then other methods alphabetically), F in the top row and B' in the bottom row, one y scale per row. F
is drawn from ``method.forward`` and B' from ``method.backward_factor`` with α = 1 (``scale = "none"``), so
the plots show exactly what the code computes. Each method has its colour of ``bench.report.styles.method_style``.

rPC and PQ compute with F(x) = x and B'(x) = 1: what binarizes is their hook, a proximal step on the latent.
Their F panel also draws that step's map, x ↦ prox_s(x) (dotted), computed by the method's own
``prox_step`` at the end of the schedule with strength s = η·ρ_end: η = ``PROX_LR`` = 0.1 (the paper's CIFAR
learning rate, ``bench/grids/paper-cifar.toml``), so s = 1 with ρ_end = 10; with ``--grid`` η is each cell's
``lr``. A step at η = 1e-3 has s = 0.01 and is within 1% of the identity; such steps compound over training.

``--grid NAME`` draws the method parameters of the grid's cells (``bench.dispatch.grid.load_grid``) instead of the
registry's defaults: every distinct parameter set (and, for rPC and PQ, learning rate) of a method is drawn,
the first in the method's colour and the others in lighter shades of it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import torch  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.colors import to_hex, to_rgb  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

import methods  # noqa: E402
from bench.atomic import atomic_write  # noqa: E402
from bench.report.styles import SETTINGS, method_sort_key, method_style, param_symbol  # noqa: E402

X = torch.linspace(-3, 3, 1201)
SAVE_ARGS = {"dpi": 110, "format": "png", "metadata": {"Software": None}}
PROX_LR = 0.1  # η of the prox strength s = η·ρ_end drawn for rPC and PQ without --grid


@dataclass
class Variant:
    """One parameter set of a method to draw: ``create_method`` overrides (``scale`` is always "none") and
    the learning rate η of its proximal step."""

    key: str
    params: dict = field(default_factory=dict)
    lr: float = PROX_LR

    def create(self, t: float) -> methods.Method:
        method = methods.create_method(self.key, **{**self.params, "scale": "none"})
        method.set_progress(t)
        return method


def curves(key: str, t: float, params: dict | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(F(x), B'(x)) of method ``key`` (with ``params``) at progress t, with α = 1."""
    method = Variant(key, params or {}).create(t)
    return method.forward(X.clone()).detach(), method.backward_factor(X.clone())


def prox_curve(variant: Variant) -> tuple[torch.Tensor, float] | None:
    """(prox_s(x), s) of the method's proximal step at t = 1 with s = η·ρ_end (η = ``variant.lr``); None for a
    method without one (``prox_step``) or with ρ_end = 0."""
    method = variant.create(1.0)
    rho = getattr(method, "rho", None)
    if not hasattr(method, "prox_step") or not rho:
        return None
    w = X.clone()
    method.prox_step(w, variant.lr)
    return w, variant.lr * rho


def _values(method: methods.Method) -> str:
    """The quantizer parameters' values, e.g. 'μ=5' (progress and the training settings clip, freeze_at left out)."""
    return ", ".join(f"{param_symbol(method.name, k)}={v:g}" for k, v in method.params().items()
                     if isinstance(v, float) and k != "progress" and k not in SETTINGS)


def _label(variant: Variant, t: float) -> str:
    values = _values(variant.create(t))
    return f"t={t:g}" + (f" ({values})" if values else "")


def _shade(color: str, i: int, n: int) -> str:
    """The i-th of n shades of ``color``: the colour itself, then mixed with up to 55% white."""
    if n <= 1 or i == 0:
        return color
    mix = 0.55 * i / (n - 1)
    return to_hex(tuple(c + (1 - c) * mix for c in to_rgb(color)))


def _figure(width: float, height: float, rows: int, cols: int, **kwargs):
    fig = Figure(figsize=(width, height), dpi=SAVE_ARGS["dpi"], layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(rows, cols, squeeze=False, **kwargs)


def _save(fig: Figure, path: Path) -> Path:
    return atomic_write(path, lambda fh: fig.savefig(fh, **SAVE_ARGS))


def _draw(ax_f, ax_b, variants: list[Variant], labels: bool, lw: float = 1.5) -> None:
    """F and B' of every variant at t = 0 (dashed) and t = 1 (solid), and the prox map (dotted) if any."""
    base = method_style(variants[0].key).color
    drawn: list[dict] = []  # parameter sets drawn: variants that differ in the lr only share F and B'
    for i, variant in enumerate(variants):
        color = _shade(base, i, len(variants))
        if variant.params not in drawn:
            drawn.append(variant.params)
            for t, style in ((0.0, "--"), (1.0, "-")):
                f, b = curves(variant.key, t, variant.params)
                label = _label(variant, t) if labels else None
                ax_f.plot(X, f, style, color=color, lw=lw, label=label, gid=variant.key)
                ax_b.plot(X, b, style, color=color, lw=lw, label=label, gid=variant.key)
        prox = prox_curve(variant)
        if prox is not None:
            w, s = prox
            rho = variant.create(1.0).rho
            ax_f.plot(X, w, ":", color=color, lw=lw + 0.5, gid=variant.key,
                      label=f"hook: prox_s(x), s = η·ρ_end = {variant.lr:g}·{rho:g} = {s:g}" if labels else None)


def _axes_lines(ax) -> None:
    ax.axhline(0, color="grey", lw=0.5)
    ax.axvline(0, color="grey", lw=0.5)


def plot_method(key: str, out: Path, variants: list[Variant] | None = None, source: str = "") -> Path:
    """``<out>/<key>.png`` ('+' spelt 'p'): F and B' of ``key`` (its ``variants``, default: the registry's)."""
    variants = variants or [Variant(key)]
    cls = methods.get_method_class(key)
    with matplotlib.rc_context(matplotlib.rcParamsDefault):
        fig, ((ax_f, ax_b),) = _figure(10, 3.8, 1, 2)
        _draw(ax_f, ax_b, variants, labels=True)
        forward, backward, hooks = cls.formulas
        ax_f.set_title(f"F(x) = {forward}")
        ax_b.set_title(f"B'(x) = {backward}")
        low, high = ax_b.get_ylim()
        ax_b.set_ylim(min(low, -0.1), max(high, 1.1))
        for ax, name in ((ax_f, "F(x)"), (ax_b, "B'(x)")):
            _axes_lines(ax)
            ax.set_xlabel("x = w/α (normalised latent weight)")
            ax.set_ylabel(name)
            ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
        hooks = f"; hooks: {hooks}" if hooks != "—" else ""
        name = method_style(key).label + (f" ({key})" if method_style(key).label != key else "")
        fig.suptitle(f"{name}: forward and backward quantizers{source}{hooks}",
                     fontsize=10)
        return _save(fig, out / f"{key.replace('+', 'p')}.png")


def plot_overview(keys: list[str], out: Path, variants: dict[str, list[Variant]] | None = None,
                  source: str = "") -> Path:
    """``<out>/overview.png``: F (top row) and B' (bottom row) of every method of ``keys``, in that order."""
    variants = variants or {}
    with matplotlib.rc_context(matplotlib.rcParamsDefault):
        fig, axes = _figure(2.3 * len(keys) + 0.6, 5.6, 2, len(keys), sharex=True, sharey="row")
        prox_lrs = set()
        for i, key in enumerate(keys):
            chosen = variants.get(key) or [Variant(key)]
            _draw(axes[0][i], axes[1][i], chosen, labels=False, lw=1.2)
            prox_lrs |= {v.lr for v in chosen if prox_curve(v) is not None}
            axes[0][i].set_title(method_style(key).label, color=method_style(key).color, fontweight="bold")
            axes[1][i].set_xlabel("x = w/α")
            for ax in (axes[0][i], axes[1][i]):
                _axes_lines(ax)
                ax.grid(True, alpha=0.3)
        low, high = axes[1][0].get_ylim()
        axes[1][0].set_ylim(min(low, -0.1), max(high, 1.1))  # a constant B' = 1 is drawn against 0
        axes[0][0].set_ylabel("F(x)")
        axes[1][0].set_ylabel("B'(x)")
        fig.suptitle(f"Forward quantizers F (top) and backward derivatives B' (bottom){source}; "
                     "one y scale per row", fontsize=10)
        note = "dashed: t = 0 (start of the schedule); solid: t = 1 (end); x = w/α, α = 1."
        if prox_lrs:
            which = (f"η = {PROX_LR:g}, the paper's CIFAR learning rate" if not source
                     else f"η = the cells' lr ({', '.join(f'{lr:g}' for lr in sorted(prox_lrs))})")
            note += (f"  Dotted (rPC, PQ; F = x, B' = 1): their hook's proximal map x ↦ prox_s(x) at "
                     f"s = η·ρ_end, {which}.")
        fig.supxlabel(note, fontsize=8)
        return _save(fig, out / "overview.png")


def grid_variants(grid, keys: list[str]) -> dict[str, list[Variant]]:
    """The distinct method parameters (``scale`` aside) of the cells of ``grid`` (a name, a path, or a loaded
    ``bench.dispatch.grid.Grid``) for each method of ``keys``, with the cells' lr for methods with a proximal step; in
    the grid's cell order."""
    from bench.dispatch.grid import load_grid

    found: dict[str, list[Variant]] = {}
    for cell in (load_grid(grid) if isinstance(grid, str) else grid).cells:
        key = str(cell.config["method"])
        if key not in keys:
            continue
        params = {k: v for k, v in (cell.config.get("method_params") or {}).items() if k != "scale"}
        variant = Variant(key, params, float(cell.config.get("lr", PROX_LR)))
        if prox_curve(Variant(key, params)) is None:
            variant.lr = PROX_LR  # the lr matters to the prox only
        seen = {json.dumps([v.params, v.lr], sort_keys=True) for v in found.get(key, [])}
        if json.dumps([variant.params, variant.lr], sort_keys=True) not in seen:
            found.setdefault(key, []).append(variant)
    return found


def plot_quantizers(out: str | Path, pattern: str = "*", grid: str | None = None) -> list[Path]:
    """Write one PNG per method matching ``pattern`` and ``overview.png`` under ``out``; the paths, in order.

    With ``grid``, only the methods of the grid's cells, with their parameters (``grid_variants``)."""
    from bench.errors import UserError

    out = Path(out)
    keys = sorted(methods.list_methods(pattern, w1a1=None), key=method_sort_key)  # W1A1 methods too
    if not keys:
        raise UserError(f"no method matches {pattern!r} (valid: {', '.join(methods.list_methods(w1a1=None))})")
    variants, source = None, ""
    if grid is not None:
        from bench.dispatch.grid import load_grid

        loaded = load_grid(grid)
        variants = grid_variants(loaded, keys)
        keys = [k for k in keys if k in variants]
        if not keys:
            raise UserError(f"grid {loaded.name!r} has no cell with a method matching {pattern!r}")
        source = f" (parameters of grid {loaded.name})"
    out.mkdir(parents=True, exist_ok=True)
    paths = [plot_method(k, out, (variants or {}).get(k), source) for k in keys]
    return paths + [plot_overview(keys, out, variants, source)]


def cli_plot_quantizers(args) -> int:
    for path in plot_quantizers(args.out, args.pattern, getattr(args, "grid", None)):
        print(path)
    return 0
