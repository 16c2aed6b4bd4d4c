"""Registry tables for ``python -m bench methods | models | datasets``."""

from __future__ import annotations

from tabulate import tabulate

import methods


def method_rows(pattern: str = "*") -> list[list[str]]:
    """key, F, B', hooks, parameters (scheduled ones as start → end), default scale; one row per method."""
    rows = []
    for key in methods.list_methods(pattern):
        cls = methods.get_method_class(key)
        params = [f"{name}: {start:g} → {end:g}" for name, (start, end) in cls.schedules.items()]
        params += [f"{name} = {value}" for name, value in cls.constants.items()]
        rows.append([key, cls.forward_formula, cls.backward_formula, cls.hooks_formula, "; ".join(params) or "—",
                     cls.default_scale])
    return rows


def cli_methods(args) -> int:
    print(tabulate(method_rows(args.pattern), headers=["method", "F(x)", "B'(x)", "hooks", "parameters (t: 0 → 1)", "scale"],
                   tablefmt="github"))
    print("\nx = w/α: α = 1 (scale = none, the raw latent) by default, the tensor's mean |w| for pc and bnn++ "
          "(scale = tensor; also channel). η: the step's learning rate. Deployed weights: α·sign(w).")
    return 0


def cli_models(args) -> int:
    import models

    rows = []
    for name in models.list_models(args.pattern):
        info = models.model_info(name)
        shape = "×".join(str(d) for d in info.default_input)
        rows.append([name, info.family, shape, "yes" if info.has_pretrained else "", info.description])
    print(tabulate(rows, headers=["model", "family", "default input", "pretrained", "description"], tablefmt="github"))
    return 0


def cli_datasets(args) -> int:
    from . import data

    rows = []
    for name in data.list_datasets():
        info = data.dataset_info(name)
        rows.append([name, f"{info.in_chans}×{info.img_size}×{info.img_size}", info.num_classes,
                     info.train_size, info.test_size, info.description])
    print(tabulate(rows, headers=["dataset", "shape", "classes", "train", "test", "description"], tablefmt="github"))
    return 0
