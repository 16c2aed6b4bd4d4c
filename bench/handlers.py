"""What ``python -m bench`` (``bench.cli``) needs besides its parser, without importing torch: each
subcommand's handler by name (imported when it runs), and the package version.
"""

from __future__ import annotations


# Each subcommand's handler, "module:function", imported when the subcommand runs: the modules of training,
# data and reports import torch (several seconds), which --help, --version, methods, models, datasets, runs
# and grid status (of a shipped grid) do not need (tests/test_first_contact.py checks that they leave torch
# unimported).
HANDLERS = {
    "methods": "bench.describe:cli_methods", "models": "bench.describe:cli_models",
    "datasets": "bench.describe:cli_datasets", "run": "bench.grid_cell:cli_run_config",
    "grid run": "bench.dispatch.commands:cli_grid_run", "grid status": "bench.dispatch.shipped_grids:cli_grid_status",
    "grid cancel": "bench.dispatch.commands:cli_grid_cancel", "data prepare": "bench.data.prepare:cli_prepare",
    "aggregate": "bench.report.aggregate:cli_aggregate", "plot-quantizers": "bench.report.plots:cli_plot_quantizers",
    "export": "bench.run.commands:cli_export", "perf": "bench.perf.gpu_quick:cli_perf",
    "runs list": "bench.report.runs:cli_list", "runs show": "bench.report.runs:cli_show",
    "runs compare": "bench.report.runs:cli_compare", "spread": "bench.report.spread:cli_spread",
    "compare": "bench.report.spread:cli_compare", "infer": "bench.infer.commands:cli_infer",
}


def handler(name: str):
    """The handler function of subcommand ``name`` (a key of ``HANDLERS``), imported now."""
    import importlib

    module, _, function = HANDLERS[name].partition(":")
    return getattr(importlib.import_module(module), function)


def package_version() -> str:
    """The installed proxbench version; from a source checkout that is not installed, pyproject.toml's."""
    from importlib import metadata

    try:
        return metadata.version("proxbench")
    except metadata.PackageNotFoundError:
        pass
    import tomllib
    from pathlib import Path

    try:
        with open(Path(__file__).resolve().parents[1] / "pyproject.toml", "rb") as fh:
            return str(tomllib.load(fh)["project"]["version"]) + " (not installed)"
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return "unknown (not installed)"

