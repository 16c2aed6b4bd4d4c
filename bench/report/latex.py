"""The leaderboard as LaTeX: a booktabs ``tabular`` laid out to fit one column of a two-column paper.

Row keys with one value in every row leave the table for the caption; of the others, the last labels the
rows and the ones before it head groups of rows. The data columns (FP, the methods, drop, comp.) are split
into the fewest consecutive blocks that fit ``TEX_WIDTH_PT``, stacked in one tabular. A cell is the mean,
bold when best, with ``$_{\\pm std}$`` when it has several seeds; the number of seeds is stated once.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.report.markdown import compression_text, drop_text
from bench.report.styles import FP
from bench.report.table import EMPTY, Cell, Table


_TEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "−": "$-$",
                "—": "---", "–": "--", "±": r"$\pm$", "×": r"$\times$", "<": r"\textless{}", ">": r"\textgreater{}",
                "|": r"\textbar{}", "μ": r"$\mu$", "ρ": r"$\rho$", "β": r"$\beta$", "α": r"$\alpha$", "η": r"$\eta$"}


def tex_escape(text: str) -> str:
    """``text`` as LaTeX source that prints it: the special characters escaped, −, ±, ×, dashes and the Greek
    letters of method parameters as their LaTeX commands."""
    return "".join(_TEX_ESCAPES.get(ch, ch) for ch in text)


# The .tex leaderboard is laid out for one column of a two-column paper at 10 pt: \columnwidth of LaTeX's
# article class with [twocolumn], 229.5 pt (ICML's column is 234.9 pt, CVPR's 237.1 pt, ACM's 241.1 pt). Widths
# are estimated from Computer Modern's glyph widths (pt at 10 pt, cmr10; bold ×1.15, subscripts ×0.8; 4% to
# spare); tests/test_aggregate.py compiles the tables and measures them.
TEX_WIDTH_PT = 229.5
TEX_GAP_PT = 8.0  # the space between two columns (the spec's @{\hspace{8pt}}; no space outside the first and last)
_CMR10 = dict(zip("abcdefghijklmnopqrstuvwxyz", (5.0, 5.56, 4.44, 5.56, 4.44, 3.06, 5.0, 5.56, 2.78, 3.06, 5.28, 2.78,
                                                 8.33, 5.56, 5.0, 5.56, 5.28, 3.92, 3.94, 3.89, 5.56, 5.28, 7.22, 5.28,
                                                 5.28, 4.44)))
_CMR10.update(dict(zip("ABCDEFGHIJKLMNOPQRSTUVWXYZ", (7.5, 7.08, 7.22, 7.64, 6.81, 6.53, 7.85, 7.5, 3.61, 5.14, 7.78,
                                                      6.25, 9.17, 7.5, 7.78, 6.81, 7.78, 7.36, 5.56, 7.22, 7.5, 7.5,
                                                      10.28, 7.5, 7.5, 6.11))))
_CMR10.update({**dict.fromkeys("0123456789", 5.0), ".": 2.78, ",": 2.78, " ": 3.33, "-": 3.33, "+": 7.78, "=": 7.78,
               "(": 3.89, ")": 3.89, "/": 5.0, ":": 2.78, "_": 5.0, "±": 7.78, "×": 7.78, "−": 7.78, "—": 10.0})


def _tex_width(text: str, scale: float = 1.0) -> float:
    """Estimated printed width (pt) of plain ``text`` at 10 pt, times ``scale`` (bold 1.15, subscript 0.8)."""
    return 1.04 * scale * sum(_CMR10.get(ch, 7.5) for ch in text)


@dataclass
class _TexCell:
    source: str
    width: float  # estimated, pt


def _tex_number_cell(cell: Cell | None, bold: bool, seeds: int, digits: int = 2) -> _TexCell:
    """mean, bold when best, the std as a subscript ``$_{\\pm s}$`` and, when the cell's seed count differs from
    the table's ``seeds``, the count as a superscript ``$^{(k)}$``."""
    if cell is None or not cell.n:
        text = "--" if cell is None else ("div." if cell.diverged else ("fail." if cell.failed else "--"))
        return _TexCell(text, _tex_width(text.replace("--", "–")))
    mean = f"{cell.mean:.{digits}f}"
    source, width = (f"\\textbf{{{mean}}}", _tex_width(mean, 1.15)) if bold else (mean, _tex_width(mean))
    script = []
    if cell.std is not None:
        script.append(f"_{{\\pm {cell.std:.{digits}f}}}")
        width += _tex_width(f"±{cell.std:.{digits}f}", 0.8)
    if cell.n != seeds:
        script.append(f"^{{({cell.n})}}")
        width += _tex_width(f"({cell.n})", 0.8) if cell.std is None else 0.0  # stacked over the subscript
    if script:
        source += "$" + "".join(script) + "$"
    return _TexCell(source, width)


def tex_number(cell: Cell | None, bold: bool, seeds: int, digits: int = 2) -> str:
    """A cell's LaTeX source as in ``to_latex`` (mean, bold, ``$_{\\pm std}$``, ``$^{(k)}$`` off ``seeds``)."""
    return _tex_number_cell(cell, bold, seeds, digits).source


def _tex_plain(text: str) -> _TexCell:
    return _TexCell(tex_escape(text), _tex_width(text))


def common_seeds(table: Table) -> int:
    """The most done seeds of any cell (the seeds the grid asked for, unless every cell lost one); 1 without any."""
    return max((cell.n for row in table.rows for cell in row.cells.values()), default=0) or 1


def _blocks(label_width: float, columns: list[list[_TexCell]]) -> list[list[int]]:
    """The data columns (each a list of cells, header first) in the fewest consecutive blocks, of sizes as
    equal as possible (larger first), whose stacked tabular fits ``TEX_WIDTH_PT`` next to the row labels'
    ``label_width`` (their gap included; 0 without row labels); one column per block at worst."""
    n = len(columns)
    widths = [max(c.width for c in column) for column in columns]
    for count in range(1, n + 1):
        size, extra = divmod(n, count)
        blocks, start = [], 0
        for b in range(count):
            end = start + size + (1 if b < extra else 0)
            blocks.append(list(range(start, end)))
            start = end
        slots = max(len(b) for b in blocks)
        slot_widths = [max(widths[b[j]] for b in blocks if j < len(b)) for j in range(slots)]
        if label_width + sum(slot_widths) + TEX_GAP_PT * (slots - 1) <= TEX_WIDTH_PT:
            return blocks
    return [[i] for i in range(n)]


def tex_caption(table: Table, seeds: int, constant: list[tuple[str, str]]) -> str:
    """The caption-ready sentence of ``to_latex``'s table (LaTeX source)."""
    where = f" ({', '.join(f'{k} {v}' for k, v in constant)})" if constant else ""
    std = "" if seeds == 1 else r", mean$_{\pm\mathrm{std}}$ over the seeds (ddof = 1)"
    marks = any(cell.n and cell.n != seeds for row in table.rows for cell in row.cells.values())
    per_cell = f"{seeds} seed{'s' if seeds != 1 else ''} (n = {seeds}) per cell"
    per_cell += r"; a superscript $^{(k)}$: k seeds" if marks else ""
    columns = "" if table.column_key == "method" else f" Columns: {tex_escape(table.column_key)}."
    m = table.measure
    what = "Top-1 accuracy (\\%) of the deployed binary model" if m.name == "acc" else tex_escape(m.caption)
    spread = ("" if not m.noisy else " when it beats every other by more than the seed spread (the larger std"
              + ("" if not m.accuracy or table.spread is None else f"; one seed: {table.spread:g} points") + ")")
    extra = (" drop: FP $-$ best binarized (points); comp.: compression (fp32 bytes / packed bytes) of the best "
             "binarized method;" if m.accuracy else f" {'Higher' if m.higher else 'Lower'} is better;")
    return (f"{what}{tex_escape(where)}{std}; {per_cell}. Bold: the best binarized method of the row{spread}."
            f"{extra} div.: every seed diverged; fail.: every seed failed; --: no run.{columns}")


def to_latex(table: Table, float_env: bool = True, tex_label: str | None = None) -> str:
    """The leaderboard as a booktabs ``tabular`` that fits one column of a two-column paper (``TEX_WIDTH_PT``).

    Row keys with one value in every row leave the table for the caption; of the others, the last labels the
    rows and the ones before it head groups of rows (a ``\\multicolumn`` row in italics, e.g.
    "cifar10 / resnet20" over the rows e2e and finetune); a table of one row has no label column. The data
    columns (FP, the methods, drop, comp.) are split into the fewest consecutive blocks that fit, stacked in
    one tabular, each with its own header row. A cell is the mean, bold when best, with ``$_{\\pm std}$``
    when it has several seeds; the number of seeds is stated once, in a comment line and in the commented
    ``\\caption`` (a cell with fewer seeds than the most of any cell carries its count as a superscript).
    ``float_env``: the tabular inside a ``table`` float with its ``\\caption`` and ``\\label{tex_label}`` (else
    the bare tabular, the caption a comment line, to ``\\input`` into a float of one's own)."""
    seeds = common_seeds(table)
    varying = [i for i in range(len(table.row_keys)) if len({row.key[i] for row in table.rows}) > 1]
    constant = [(table.row_keys[i], table.rows[0].key[i]) for i in range(len(table.row_keys))
                if i not in varying and table.rows]
    groups, labels = varying[:-1], varying[-1:]  # no label: one row, named by the caption alone

    def header(column) -> str:
        text = table.label(column)
        return text.split("=", 1)[1] if table.column_key != "method" and column != FP else text

    label_cells = [_tex_plain(text) for i in labels
                   for text in (table.row_keys[i], *(row.key[i] for row in table.rows))]
    digits = table.measure.digits
    columns = [[_tex_plain(header(c))] + [_tex_number_cell(row.cells.get(c), c in row.best, seeds, digits)
                                          for row in table.rows] for c in table.columns]
    if table.measure.accuracy:
        columns.append([_tex_plain("drop")] + [_tex_plain(drop_text(row.drop, "md").replace(EMPTY, "–")
                                                          .replace("-", "−")) for row in table.rows])  # −: minus
        columns.append([_tex_plain("comp.")] + [_tex_plain(compression_text(row.compression, "md")
                                                           .replace(EMPTY, "–")) for row in table.rows])
    label_width = max((c.width + TEX_GAP_PT for c in label_cells), default=0.0)
    blocks = _blocks(label_width, columns)
    slots = max(len(b) for b in blocks)
    gap = f"@{{\\hspace{{{TEX_GAP_PT:g}pt}}}}"
    spec = "@{}" + gap.join(["l"] * bool(label_cells) + ["r"] * slots) + "@{}"
    label = [c.source for c in label_cells]
    width = slots + bool(label_cells)
    lines = [f"\\begin{{tabular}}{{{spec}}}", "\\toprule"]
    for b, block in enumerate(blocks):
        if b:
            lines.append("\\midrule[\\heavyrulewidth]")  # a block starts: as heavy as the top rule
        pad = [""] * (slots - len(block))
        lines += [" & ".join([*label[:1], *(columns[i][0].source for i in block), *pad]) + " \\\\", "\\midrule"]
        heading = None
        for r, row in enumerate(table.rows):
            if groups and tuple(row.key[i] for i in groups) != heading:
                heading = tuple(row.key[i] for i in groups)
                text = tex_escape(" / ".join(heading))
                lines.append(f"\\multicolumn{{{width}}}{{@{{}}l}}{{\\textit{{{text}}}}} \\\\")
            cells = [*label[r + 1:r + 2], *(columns[i][r + 1].source for i in block), *pad]
            lines.append(" & ".join(cells) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}"]
    head = [
        "% Requires \\usepackage{booktabs}. Generated by `python -m bench aggregate`; do not edit.",
        f"% n = {seeds} seed{'s' if seeds != 1 else ''} per cell. Laid out for a {TEX_WIDTH_PT:g} pt column: "
        + (f"{len(blocks)} blocks of columns, stacked." if len(blocks) > 1 else "one block of columns."),
    ]
    caption = f"\\caption{{{tex_caption(table, seeds, constant)}}}"
    if not float_env:
        return "\n".join(head + [f"% {caption}"] + lines) + "\n"
    label_line = [f"\\label{{{tex_label}}}"] if tex_label else []
    return "\n".join(head + ["\\begin{table}[t]", "\\centering", caption, *label_line] + lines
                     + ["\\end{table}"]) + "\n"
