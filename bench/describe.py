"""Registry tables for ``python -m bench methods | models | datasets``.

``methods PATTERN`` and ``models PATTERN`` filter by fnmatch pattern; a pattern that matches nothing is a
``UserError`` naming what is registered. Both read the rows from the static catalogue
(``bench/run/catalogue.json``, ``bench.run.catalogue``) when no plugin can add to the registries, without importing
torch (a second instead of several); with ``--plugin`` or an installed ``proxbench.methods`` entry point,
from the live registries. ``datasets`` says for each dataset whether its files are here and
where (without downloading anything), or ``missing`` and how to get them.
"""

from __future__ import annotations


import fnmatch

from tabulate import tabulate

from bench.run import catalogue
from bench.run.catalogue import method_rows, model_rows
from bench.errors import UserError


def _no_match(kind: str, pattern: str, registered: list[str]) -> UserError:
    return UserError(f"no {kind} matches {pattern!r} (registered: {', '.join(registered) or 'none'})")


def markdown_cell(value) -> str:
    """``value`` as text for a markdown table cell: ``|`` escaped (``1[|x| ≤ 1]`` would split the cell)."""
    return str(value).replace("|", "\\|")


def cli_methods(args) -> int:
    static = catalogue.usable(getattr(args, "plugin", ()))
    if static is not None:
        rows = [row for row in static["methods"] if fnmatch.fnmatchcase(row[0], args.pattern)]
        registered = static["weight_methods"]
    else:
        import methods

        rows, registered = method_rows(args.pattern), methods.list_methods()
    if not rows:
        raise _no_match("method", args.pattern, registered)
    rows = [[markdown_cell(v) for v in row] for row in rows]
    print(tabulate(rows, headers=["method", "F(x)", "B'(x)", "hooks", "parameters (t: 0 → 1)", "scale"],
                   tablefmt="github"))
    print("\nx = w/α: α = 1 (scale = none, the raw latent) by default, the tensor's mean |w| for pc and bnn++ "
          "(scale = tensor; also channel). η: the step's learning rate. Deployed weights: α·sign(w).")
    return 0


def cli_models(args) -> int:
    static = catalogue.usable(getattr(args, "plugin", ()))
    if static is not None:
        every = static["models"]
        rows = [row for row in every if fnmatch.fnmatchcase(row[0], args.pattern)]
    else:
        every, rows = model_rows(), model_rows(args.pattern)
    if not rows:
        raise _no_match("model", args.pattern, [row[0] for row in every])
    rows = [[markdown_cell(v) for v in row] for row in rows]
    print(tabulate(rows, headers=["model", "family", "default input", "pretrained", "description"], tablefmt="github"))
    return 0


def dataset_files(name: str, data_root=None) -> tuple[str, str]:
    """(state, detail) of a dataset's files under ``data_root``: ("present", the folders holding them),
    ("missing", how to get them: the dataset's not-found message) or ("none needed", ...) for generated data.
    Asks the dataset (``bench.data.Dataset.locate``), which writes nothing and never downloads."""
    from bench import data

    return data.get_dataset(name).locate(data_root)


def cli_datasets(args) -> int:
    """The registry table with a files column: the folder holding a dataset's files, ``missing`` (how to get
    them is listed below the table) or ``none needed``."""
    from bench import data

    rows, missing = [], []
    for name in data.list_datasets():
        info = data.dataset_info(name)
        state, detail = dataset_files(name, args.data_root)
        if state == "missing":
            missing.append(f"{name}: {detail}")
        rows.append([name, f"{info.in_chans}×{info.img_size}×{info.img_size}", info.num_classes,
                     info.train_size, info.test_size, detail if state == "present" else state, info.description])
    print(tabulate(rows, headers=["dataset", "shape", "classes", "train", "test", "files", "description"],
                   tablefmt="github"))
    print(f"\ndata root: {data.resolve_data_root(args.data_root)} (--data-root, else $PROXBENCH_DATA, "
          "else ~/.cache/proxbench/data)")
    if missing:
        print("\nmissing:")
        for line in missing:
            print(f"  {line}")
    return 0
