"""``python -m bench``: the command line (DESIGN.md §9).

Each subcommand's handler lives in the module that does the work and is imported only when that
subcommand runs, so ``python -m bench methods`` stays fast.

Errors: user errors (``bench.errors.user_error_types``: bad options, configs, files) and ``OSError`` (a
missing or unwritable path, a full disk) are printed as one line ``error: ...`` on stderr, exit status 2.
Any other exception is a bug: one line ``internal error: ...``, exit status 1. ``--debug`` (before the
subcommand) re-raises every exception, so Python prints the full traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


def _handler(spec: str):
    """'module:function' -> a callable taking the parsed args (imported lazily)."""

    def call(args):
        module, function = spec.split(":")
        return getattr(importlib.import_module(module), function)(args)

    return call


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line on stderr (exit 2), like every other user error."""

    def error(self, message: str):
        self.exit(2, f"error: {self.prog}: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m bench",
        description="proxbench: benchmark neural-network binarization methods (ProxConnect++ framework).",
        epilog="Errors: bad input (an option, a config value, a file, a full disk) prints one line 'error: ...' "
               "and exits with status 2; an unexpected exception (a bug) prints one line 'internal error: ...' "
               "and exits with status 1. --debug shows the full traceback instead.",
    )
    parser.add_argument(
        "--debug", action="store_true",
        help="re-raise errors: print the full Python traceback instead of the one-line message",
    )
    parser.add_argument(
        "--plugin", action="append", default=[], metavar="MODULE",
        help="import MODULE before the method registry is read (third-party methods); repeatable",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("methods", help="table of registered binarization methods")
    p.add_argument("pattern", nargs="?", default="*", help="fnmatch filter, e.g. 'bnn*'")
    p.set_defaults(func=_handler("bench.describe:cli_methods"))

    p = sub.add_parser("models", help="table of registered models")
    p.add_argument("pattern", nargs="?", default="*")
    p.set_defaults(func=_handler("bench.describe:cli_models"))

    p = sub.add_parser("datasets", help="table of registered datasets and where their files are")
    p.add_argument("--data-root", default=None)
    p.set_defaults(func=_handler("bench.describe:cli_datasets"))

    p = sub.add_parser("run", help="train and evaluate one model x method x dataset cell")
    p.add_argument("--config", help="a run TOML file (keys as in a grid's [defaults])")
    for key in ("model", "method", "dataset", "loader", "mode", "init", "optimizer", "lr-schedule", "device", "policy"):
        p.add_argument(f"--{key}")
    for key in ("epochs", "batch-size", "seed", "subset", "test-subset"):
        p.add_argument(f"--{key}", type=int)
    for key in ("lr", "weight-decay", "momentum", "warmup-epochs"):
        p.add_argument(f"--{key}", type=float)
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="method parameter, e.g. --param mu_end=40; repeatable")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any other config key (TOML value), e.g. --set model_kwargs={width=2}")
    p.add_argument("--data-root", default=None, help="where datasets live (default $PROXBENCH_DATA, then standard places)")
    p.add_argument("--workdir", default="work", help="checkpoints and scratch (default: work/)")
    p.add_argument("--results", default="results", help="where run records go (default: results/)")
    p.add_argument("--grid", default="adhoc", help="record folder name under results/runs/ (default: adhoc)")
    p.add_argument("--fresh", action="store_true", help="ignore an existing checkpoint of this run and start over")
    p.set_defaults(func=_handler("bench.train:cli_run"))

    grid = sub.add_parser("grid", help="run, inspect or cancel a grid of runs")
    gsub = grid.add_subparsers(dest="grid_command", required=True, metavar="ACTION", parser_class=_Parser)
    p = gsub.add_parser("run", help="submit every unfinished cell of a grid")
    p.add_argument("name", help="grid name (bench/grids/NAME.toml) or a path to a TOML file")
    p.add_argument("--executor", choices=["local", "debug", "slurm"], default="local")
    p.add_argument("--cluster", default=None, help="cluster profile TOML (slurm/PROFILE.toml) for --executor slurm")
    p.add_argument("--dry-run", action="store_true", help="print the cells and jobs without submitting")
    p.add_argument("--parallel", type=int, default=None, help="local executor: cells at a time (default: 1)")
    p.add_argument("--wait", action=argparse.BooleanOptionalAction, default=None,
                   help="wait for the jobs to finish (default: yes for local/debug, no for slurm)")
    _grid_common(p)
    p.set_defaults(func=_handler("bench.dispatch:cli_grid_run"))
    p = gsub.add_parser("status", help="table of the grid's cells and their state")
    p.add_argument("name")
    _grid_common(p)
    p.set_defaults(func=_handler("bench.dispatch:cli_grid_status"))
    p = gsub.add_parser("cancel", help="cancel the grid's queued and running jobs")
    p.add_argument("name")
    _grid_common(p)
    p.set_defaults(func=_handler("bench.dispatch:cli_grid_cancel"))

    data = sub.add_parser("data", help="dataset files")
    dsub = data.add_subparsers(dest="data_command", required=True, metavar="ACTION", parser_class=_Parser)
    p = dsub.add_parser("prepare", help="write FFCV .beton files (idempotent, with a manifest)")
    p.add_argument("dataset")
    p.add_argument("--split", default="train,test")
    p.add_argument("--format", choices=["raw", "jpg"], default=None)
    p.add_argument("--max-res", type=int, default=None)
    p.add_argument("--quality", type=int, default=None)
    p.add_argument("--data-root", default=None)
    p.add_argument("--out", default=None, help="output folder (default: <data-root>/ffcv/<dataset>)")
    p.set_defaults(func=_handler("bench.prepare:cli_prepare"))

    p = sub.add_parser("aggregate", help="rebuild leaderboards and figures from run records")
    p.add_argument("name", nargs="?", default=None, help="grid name (default: every grid with records)")
    p.add_argument("--results", default="results")
    p.add_argument("--by", default=None, help="row keys and column key, e.g. 'dataset,model,mode:method'")
    p.add_argument("--no-figures", action="store_true")
    p.set_defaults(func=_handler("bench.aggregate:cli_aggregate"))

    p = sub.add_parser("plot-quantizers", help="plot F and B' of every method at the start and end of its schedule")
    p.add_argument("--out", default="results/quantizers")
    p.add_argument("pattern", nargs="?", default="*")
    p.set_defaults(func=_handler("bench.plots:cli_plot_quantizers"))

    p = sub.add_parser("export", help="write a run's deployed model bit-packed (1 bit per binarized weight)")
    p.add_argument("source", help="a run id (looked up in the work directory) or a checkpoint path")
    p.add_argument("--out", required=True)
    p.add_argument("--workdir", default="work")
    p.set_defaults(func=_handler("bench.packing:cli_export"))

    p = sub.add_parser("perf", help="performance benchmarks (ratios measured in one run)")
    p.add_argument("what", choices=["step", "loaders", "all", "gpu"],
                   help="gpu: the CUDA report (step ratios, GPU loaders, e2e ResNet-20 epochs) -> results/perf/cuda.md")
    p.add_argument("--model", default="resnet20")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--device", default="cpu")
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--compile", action="store_true", help="torch.compile the model (one-time cost reported apart)")
    p.add_argument("--methods", default="*", help="fnmatch pattern or comma list of methods for perf step")
    p.add_argument("--data-root", default=None)
    p.add_argument("--out", default=None)
    p.set_defaults(func=_handler("bench.perf:cli_perf"))
    return parser


def _grid_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workdir", default="work")
    p.add_argument("--results", default="results")
    p.add_argument("--data-root", default=None)


def _one_line(text: str) -> str:
    return " ".join(line.strip() for line in str(text).splitlines() if line.strip())


def describe_os_error(exc: OSError) -> str:
    """'PATH: reason' (or 'PATH -> PATH2: reason' for a rename) from an OSError."""
    reason = exc.strerror or _one_line(str(exc)) or type(exc).__name__
    if exc.filename is not None and exc.filename2 is not None:
        return f"{exc.filename} -> {exc.filename2}: {reason}"
    if exc.filename is not None:
        return f"{exc.filename}: {reason}"
    return reason


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from bench.errors import user_error_types

    errors = user_error_types()
    try:
        import methods

        methods.load_plugins(args.plugin)
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except errors as exc:
        if args.debug:
            raise
        print(f"error: {_one_line(str(exc))}", file=sys.stderr)
        return 2
    except OSError as exc:
        if args.debug:
            raise
        print(f"error: {describe_os_error(exc)}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - a bug: one line here, the traceback with --debug
        if args.debug:
            raise
        message = _one_line(str(exc))
        print(f"internal error: {type(exc).__name__}{': ' + message if message else ''} "
              "(a bug; run with --debug for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
