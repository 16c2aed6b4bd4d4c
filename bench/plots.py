"""``python -m bench plot-quantizers``: F and B' of every method at the start and the end of its schedule.

One PNG per method (two panels: F(x) and B'(x), each at t = 0 and t = 1, on the normalised weight x = w/α)
plus ``overview.png`` with every method. F is drawn from ``method.forward`` and B' from
``method.backward_factor`` with α = 1 (``scale = "none"``), so the plots show exactly what the code computes.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

import methods  # noqa: E402

X = torch.linspace(-3, 3, 1201)
SAVE_ARGS = {"dpi": 110, "metadata": {"Software": None}}


def curves(key: str, t: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(F(x), B'(x)) of method ``key`` at progress t, with α = 1."""
    method = methods.create_method(key, scale="none")
    method.set_progress(t)
    return method.forward(X.clone()).detach(), method.backward_factor(X.clone())


def _label(key: str, t: float) -> str:
    method = methods.create_method(key, scale="none")
    method.set_progress(t)
    values = [f"{k}={v:g}" for k, v in method.params().items() if isinstance(v, float) and k != "progress"]
    return f"t={t:g}" + (f" ({', '.join(values)})" if values else "")


def plot_method(key: str, out: Path) -> Path:
    fig, (ax_f, ax_b) = plt.subplots(1, 2, figsize=(8, 3.2))
    for t, style in ((0.0, "--"), (1.0, "-")):
        f, b = curves(key, t)
        ax_f.plot(X, f, style, label=_label(key, t))
        ax_b.plot(X, b, style, label=_label(key, t))
    cls = methods.get_method_class(key)
    ax_f.set_title(f"{key}: F(x) = {cls.forward_formula}")
    ax_b.set_title(f"B'(x) = {cls.backward_formula}")
    low, high = ax_b.get_ylim()
    ax_b.set_ylim(min(low, -0.1), max(high, 1.1))
    for ax in (ax_f, ax_b):
        ax.axhline(0, color="grey", lw=0.5)
        ax.axvline(0, color="grey", lw=0.5)
        ax.set_xlabel("x = w/α")
        ax.legend(fontsize=7, loc="best")
    if cls.hooks_formula != "—":
        fig.suptitle(f"hooks: {cls.hooks_formula}", fontsize=8, y=0.02)
    fig.tight_layout()
    path = out / f"{key.replace('+', 'p')}.png"
    fig.savefig(path, **SAVE_ARGS)
    plt.close(fig)
    return path


def plot_overview(keys: list[str], out: Path) -> Path:
    fig, axes = plt.subplots(2, len(keys), figsize=(2.2 * len(keys), 4.4), sharex=True, squeeze=False)
    for i, key in enumerate(keys):
        for t, style in ((0.0, "--"), (1.0, "-")):
            f, b = curves(key, t)
            axes[0][i].plot(X, f, style, lw=1)
            axes[1][i].plot(X, b, style, lw=1)
        axes[0][i].set_title(key)
        axes[1][i].set_xlabel("x")
    for ax in axes[1]:
        low, high = ax.get_ylim()
        ax.set_ylim(min(low, -0.1), max(high, 1.1))  # a constant B' = 1 is drawn against 0, not zoomed in
    axes[0][0].set_ylabel("F(x)")
    axes[1][0].set_ylabel("B'(x)")
    fig.suptitle("Forward (top) and backward-derivative (bottom) quantizers; dashed t=0, solid t=1", fontsize=9)
    fig.tight_layout()
    path = out / "overview.png"
    fig.savefig(path, **SAVE_ARGS)
    plt.close(fig)
    return path


def plot_quantizers(out: str | Path, pattern: str = "*") -> list[Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    keys = methods.list_methods(pattern)
    if not keys:
        from .errors import UserError

        raise UserError(f"no method matches {pattern!r} (valid: {', '.join(methods.list_methods())})")
    return [plot_method(k, out) for k in keys] + [plot_overview(keys, out)]


def cli_plot_quantizers(args) -> int:
    for path in plot_quantizers(args.out, args.pattern):
        print(path)
    return 0
