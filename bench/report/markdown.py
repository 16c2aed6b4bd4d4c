"""The leaderboard as Markdown (a GitHub table) and the texts of its cells.

A cell is ``mean ± std`` of the deployed top-1 accuracy over seeds (std with ddof = 1; ``(n=k)`` shown when
fewer than 3 seeds), ``div.`` if every seed diverged, ``fail.`` if one failed, ``—`` without a run; the best
binarized cell of each row is bold, then the drop from FP (FP − best binarized) and the compression ratio of
the best binarized method. ``MD_NOTE`` is the paragraph printed under the table.
"""

from __future__ import annotations

from tabulate import tabulate

from bench.report.table import EMPTY, Cell, Table


def cell_text(cell: Cell | None, style: str = "md", digits: int = 2) -> str:
    """A cell as text: mean ± std, with (n=k) below 3 seeds; div./fail./— without a done seed (``style``:
    "md", or "tex" for LaTeX signs; ``digits`` after the point)."""
    pm, times, dash = ("$\\pm$", "$\\times$", "--") if style == "tex" else ("±", "×", EMPTY)
    if cell is None:
        return dash
    if not cell.n:
        return "div." if cell.diverged else ("fail." if cell.failed else dash)
    text = f"{cell.mean:.{digits}f}"
    if cell.std is not None:
        text += f" {pm} {cell.std:.{digits}f}"
    if cell.n < 3:
        text += f" (n={cell.n})"
    return text


def drop_text(drop: float | None, style: str) -> str:
    """The drop FP − best binarized at two decimals, or the empty mark of ``style`` ("md" or "tex")."""
    if drop is None:
        return "--" if style == "tex" else EMPTY
    return f"{drop:.2f}"


def compression_text(value: float | None, style: str) -> str:
    """A compression ratio as ``12.3×`` (``style`` "md" or "tex"), or the empty mark of ``style``."""
    if value is None:
        return "--" if style == "tex" else EMPTY
    return f"{value:.1f}$\\times$" if style == "tex" else f"{value:.1f}×"


def _header(table: Table) -> list[str]:
    extra = ["drop (FP − best)", "compression (best)"] if table.measure.accuracy else []
    return [*table.row_keys, *(table.label(c) for c in table.columns), *extra]


def to_markdown(table: Table) -> str:
    """The leaderboard as a GitHub table, the best binarized cell of each row in bold."""
    body = []
    for row in table.rows:
        cells = []
        for c in table.columns:
            text = cell_text(row.cells.get(c), "md", table.measure.digits)
            cells.append(f"**{text}**" if c in row.best else text)
        extra = [drop_text(row.drop, "md"), compression_text(row.compression, "md")] if table.measure.accuracy else []
        body.append([*row.key, *cells, *extra])
    align = ["left"] * len(table.row_keys) + ["right"] * (len(table.columns) + 2 * table.measure.accuracy)
    return tabulate(body, headers=_header(table), tablefmt="github", disable_numparse=True, colalign=align)


MD_NOTE = (
    "Top-1 accuracy (%) of the deployed binary model (α·sign(w)), mean ± std over seeds (std with ddof = 1; "
    "n shown when fewer than 3 seeds; div. = every seed diverged). Bold: best binarized method of the row, "
    "when it beats every other by more than the seed spread (the larger std; one seed: {spread} points). "
    "drop = FP − best binarized. compression = fp32 bytes / bytes of the packed file of the best binarized "
    "method. Built by `python -m bench aggregate` from results/runs/; see results/README.md."
)


def md_note(table: Table) -> str:
    """The paragraph under a Markdown table: ``MD_NOTE`` for the deployed accuracy, else the measure's."""
    spread = "no bold" if table.spread is None else f"{table.spread:g}"
    if table.measure.name == "acc":
        return MD_NOTE.format(spread=spread)
    m = table.measure
    bold = ("Bold: the best binarized method of the row, when there is one (not a tie of all, nor a lone method)"
            + (f" and beats every other by more than the seed spread (the larger std; one seed: "
               f"{spread if m.accuracy else 'never bold'})" if m.noisy else "") + ".")
    extra = " drop = FP − best binarized; compression of the best binarized method." if m.accuracy else ""
    return (f"{m.caption}, mean ± std over seeds (ddof = 1; n shown when fewer than 3 seeds; — = no value). "
            f"{'Higher' if m.higher else 'Lower'} is better. {bold}{extra} Built by `python -m bench aggregate "
            f"--metric {m.name}` from results/runs/; see results/README.md.")
