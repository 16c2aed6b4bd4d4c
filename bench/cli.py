"""``python -m bench``: the command line (argparse), each subcommand wired to its handler function.

Every option's help shows its default and choices (``_HelpFormatter``); ``run``'s flags default to ``bench.run.config``'s.

Errors: user errors (``bench.errors.UserError``: bad options, configs, files, methods, models) and ``OSError``
(a missing or unwritable path, a full disk) are printed as one line ``error: ...`` on stderr, exit status 2.
Any other exception is a bug: one line ``internal error: ...``, exit status 1. ``--debug`` (before the
subcommand) re-raises every exception, so Python prints the full traceback.
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
from bench.dispatch.executors import list_executors  # noqa: E402 - no torch below: --help stays fast
from bench.errors import UserError, describe_os_error, one_line  # noqa: E402
from bench.handlers import handler, package_version  # noqa: E402
from bench.report.measures import add_aggregate_options  # noqa: E402
from bench.run.settings import BY_NAME, FLAG_KEYS, show  # noqa: E402

class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Help texts end with the option's default: ``(default: X)`` appended unless the text already says it
    (``default:``), ``(default: off)`` for on/off flags; a ``run`` flag of a config key (``_config_flags``)
    shows the config default and the key's choices."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        setting = getattr(action, "config_setting", None)
        if setting is not None:
            choices = setting.options()
            if setting.name == "policy":
                import methods

                choices = list(methods.PRESETS)
            if choices:
                text += f"; one of: {', '.join(choices)}"
            shown = setting.none_means if setting.default is None else show(setting.default).strip("'")
            return f"{text} (default: {shown})".replace("%", "%%")
        if "%(default)" in text or "default:" in text or action.default is argparse.SUPPRESS:
            return text
        if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
            return f"{text} (default: {'on' if action.default else 'off'})"
        if action.default is None or action.default == []:
            return text
        if action.option_strings or action.nargs in (argparse.OPTIONAL, argparse.ZERO_OR_MORE):
            return f"{text} (default: %(default)s)"
        return text


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line on stderr (exit 2), like every other user error; help with defaults."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        self.exit(2, f"error: {self.prog}: {message} (see --help)\n")


def _config_flags(p: argparse.ArgumentParser) -> None:
    """``--KEY`` for each config key of ``FLAG_KEYS`` (``_`` spelled ``-``; default None = the config's value),
    its help text and type from its setting (``bench.run.settings``)."""
    for key in FLAG_KEYS:
        setting = BY_NAME[key]
        action = p.add_argument(f"--{key.replace('_', '-')}", type=setting.kind.type, metavar=key.upper(),
                                help=setting.help)
        action.config_setting = setting


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m bench",
        description="proxbench: benchmark neural-network binarization methods (ProxConnect++ framework).",
        epilog="Errors: bad input (an option, a config value, a file, a full disk) prints one line 'error: ...' "
               "and exits with status 2; an unexpected exception (a bug) prints one line 'internal error: ...' "
               "and exits with status 1. --debug shows the full traceback instead.",
    )
    parser.add_argument("--debug", action="store_true",
                        help="re-raise errors: print the full Python traceback instead of the one-line message")
    parser.add_argument("--plugin", action="append", default=[], metavar="MODULE", help="import MODULE before the "
                        "method registry is read (third-party methods); repeatable (default: none)")
    parser.add_argument("--version", action="version", version=f"proxbench {package_version()}",
                        help="print the proxbench version and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser,
                                help="what to do; python -m bench COMMAND --help for its options")

    p = sub.add_parser("methods", help="table of registered binarization methods")
    p.add_argument("pattern", nargs="?", default="*", help="fnmatch filter on method names, e.g. 'bnn*'")
    p.set_defaults(func="methods")

    p = sub.add_parser("models", help="table of registered models")
    p.add_argument("pattern", nargs="?", default="*", help="fnmatch filter on model names, e.g. 'resnet*'")
    p.set_defaults(func="models")

    p = sub.add_parser("datasets", help="table of registered datasets and where their files are")
    p.add_argument("--data-root", default=None, help=DATA_ROOT_HELP)
    p.set_defaults(func="datasets")

    p = sub.add_parser("run", help="train and evaluate one model x method x dataset cell",
                       description="Train and evaluate one run. Config keys come from their defaults (shown "
                                   "below; the default grid overrides some of them), then --config, then the "
                                   "flags, then --set and --param.")
    p.add_argument("--config", metavar="FILE",
                   help="a run TOML file (keys as in a grid's [defaults]), or a grid file (bench/grids/NAME.toml): "
                        "the cell its axis flags pick (--method, --seed), the same run id as the grid's; flags "
                        "override it (default: none)")
    _config_flags(p)
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="method parameter, e.g. --param mu_end=40; repeatable (default: the method's, "
                        "python -m bench methods)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any other config key (TOML value), e.g. --set model_kwargs={width=2}; repeatable "
                        "(default: none)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:<index> (not part of the config)")
    p.add_argument("--data-root", default=None, help=DATA_ROOT_HELP)
    p.add_argument("--workdir", default="work", help="checkpoints, per-step logs and scratch")
    p.add_argument("--results", default=None,
                   help="where run records go: RESULTS/runs/GRID/RUN_ID.json (default: WORKDIR/results for "
                        "an ad-hoc run, results with --grid)")
    p.add_argument("--grid", default=None, help="record folder name under RESULTS/runs/ (default: adhoc, an ad-hoc run)")
    p.add_argument("--fresh", action="store_true", help="ignore an existing checkpoint of this run and start over")
    p.add_argument("--log-every", type=int, default=50, metavar="N",
                   help="write the training loss, lr and method parameters to WORKDIR/runs/RUN_ID/steps.jsonl "
                        "every N steps and at each epoch's end (not part of the config)")
    p.add_argument("--logger", choices=["none", "tensorboard"], default="none",
                   help="also log the per-step and per-epoch metrics to TensorBoard, in "
                        "WORKDIR/runs/RUN_ID/tensorboard (needs: pip install tensorboard; not part of the config)")
    p.set_defaults(func="run")

    gsub = _actions(sub, "grid", "run, inspect or cancel a grid of runs")
    p = gsub.add_parser("run", help="submit every unfinished cell of a grid")
    p.add_argument("name", help=GRID_NAME_HELP)
    p.add_argument("--executor", choices=list_executors(),
                   default="local",
                   help="local: one subprocess per cell on this machine; debug: every cell in this process, one "
                        "after the other; slurm: job arrays on a SLURM cluster (needs --cluster)")
    p.add_argument("--cluster", default=None, metavar="PROFILE",
                   help="cluster profile for --executor slurm, required there: a shipped one (slurm/local.toml, "
                        "slurm/v100.toml, or just its name) or a path to your own; fields in slurm/README.md "
                        "(default: none)")
    p.add_argument("--device", default=None, metavar="DEVICE",
                   help="where the cells train: cpu, cuda (every visible GPU; the local executor spreads the cells "
                        "over them) or cuda:N (that GPU only) (default: cpu; with --executor slurm the profile "
                        "decides: cuda when its gpus_per_node is at least 1)")
    p.add_argument("--cells-per-gpu", type=int, default=None, metavar="K",
                   help="local executor with --device cuda or cuda:N: cells trained at once on each GPU "
                        "(default: 1); slurm executor: cells packed into one job, on each of its GPUs (on its "
                        "CPUs without GPUs), overriding the profile's cells_per_gpu")
    p.add_argument("--dry-run", action="store_true",
                   help="print the cells and the pre-flight checks (data, pretrained weights, device, GPU-hours) "
                        "without submitting")
    p.add_argument("--parallel", type=int, default=None, metavar="N",
                   help="local executor on the CPU: cells at a time, the cores shared among them (default: 1)")
    p.add_argument("--wait", action=argparse.BooleanOptionalAction, default=None,
                   help="wait for the jobs to finish, showing the grid's progress (default: yes for local/debug, "
                        "no for slurm)")
    _grid_common(p)
    p.set_defaults(func="grid run")
    for action, text in (("status", "table of the grid's cells and their state"),
                         ("cancel", "cancel the grid's queued and running jobs")):
        p = gsub.add_parser(action, help=text)
        p.add_argument("name", help=GRID_NAME_HELP)
        _grid_common(p)
        p.set_defaults(func=f"grid {action}")

    dsub = _actions(sub, "data", "dataset files")
    p = dsub.add_parser("prepare", help="write FFCV .beton files (idempotent, with a manifest)")
    p.add_argument("dataset", help="dataset registry name (python -m bench datasets)")
    p.add_argument("--split", default="train,test", help="comma-separated splits to write")
    p.add_argument("--format", choices=["raw", "jpg"], default=None,
                   help="image storage (default: jpg for imagenet, raw for the others)")
    p.add_argument("--max-res", type=int, default=None,
                   help="imagenet: longest side of stored images in pixels (default: 512; other datasets are "
                        "stored at full size)")
    p.add_argument("--quality", type=int, default=None, help="JPEG quality 1..100 for --format jpg (default: 90)")
    p.add_argument("--data-root", default=None, help=DATA_ROOT_HELP)
    p.add_argument("--out", default=None, help="output folder (default: <data-root>/ffcv/<dataset>)")
    p.set_defaults(func="data prepare")

    p = sub.add_parser("aggregate", help="rebuild leaderboards and figures from run records")
    p.add_argument("name", nargs="?", default=None, help="grid name (default: every grid with records)")
    p.add_argument("--results", default="results", help="reads RESULTS/runs/GRID/*.json, writes RESULTS/GRID/")
    p.add_argument("--by", default=None, metavar="ROWS:COLUMN",
                   help="row keys and column key (config keys, method parameters, final metrics), e.g. "
                        "'dataset,model,mode,lr:method' (default: dataset,model,mode:method)")
    p.add_argument("--no-figures", action="store_true", help="write the tables only, no figures")
    add_aggregate_options(p)  # --metric, --transpose, --spread
    p.set_defaults(func="aggregate")

    p = sub.add_parser("spread", help="per method: min, max, std of the deployed accuracy over the runs of grids")
    p.add_argument("grids", nargs="+", metavar="GRID", help="grids whose records to pool (configs differing in the seed)")
    p.add_argument("--results", action="append", required=True, help="a results folder (RESULTS/runs/GRID/); repeatable")
    p.add_argument("--out", required=True, help="the JSON file to write, e.g. results/spread/default.json")
    p.set_defaults(func="spread")
    p = sub.add_parser("compare", help="a run of a grid against the reference records, with the run-to-run spread")
    p.add_argument("grid", help="grid name")
    p.add_argument("--results", required=True, help="the run's results folder (RESULTS/runs/GRID/), e.g. work/bench")
    p.add_argument("--reference", default="results", help="the reference's results folder")
    p.add_argument("--spread", default=None, help="the spread JSON (default: results/spread/GRID.json)")
    p.set_defaults(func="compare")

    p = sub.add_parser("plot-quantizers", help="plot F and B' of every method at the start and end of its schedule")
    p.add_argument("--out", default="results/quantizers", help="output folder")
    p.add_argument("pattern", nargs="?", default="*", help="fnmatch filter on method names")
    p.add_argument("--grid", default=None, metavar="NAME",
                   help="draw the method parameters (and, for rPC/PQ's prox, the lr) of this grid's cells "
                        "(bench/grids/NAME.toml or a path) (default: the registry's defaults)")
    p.set_defaults(func="plot-quantizers")

    p = sub.add_parser("export", help="write a run's deployed model bit-packed (1 bit per binarized weight)")
    p.add_argument("source", help="a run id, a unique prefix of one or GRID/RUN_ID (its checkpoint is looked up in "
                                  "the work directory) or a checkpoint path")
    p.add_argument("--out", required=True, help="the packed file to write (required)")
    p.add_argument("--workdir", default="work", help="where a run id's checkpoint is looked up")
    p.add_argument("--results", default="results",
                   help="where a run without a checkpoint is looked up, to say how to train it again")
    p.add_argument("--allow-unfinished", action="store_true", help="export a run that has not finished its epochs")
    p.set_defaults(func="export")

    p = sub.add_parser("infer", help="run a W1A1 export with the bit-packed CPU engine; compare with PyTorch")
    p.add_argument("source", help="a packed file (python -m bench export), a run id or a checkpoint path")
    p.add_argument("--workdir", default="work", help="where a run id's checkpoint is looked up")
    p.add_argument("--batch", type=int, default=256, help="test batch size")
    p.add_argument("--subset", type=int, default=None, help="only the first N test images (default: all)")
    p.add_argument("--threads", type=int, default=None, help="torch and engine threads (default: torch's)")
    p.add_argument("--data-root", default=None, help="where datasets live (default: $PROXBENCH_DATA, else ~/.cache/…)")
    p.set_defaults(func="infer")

    p = sub.add_parser("perf", help="performance benchmarks (ratios measured in one run)")
    p.add_argument("what", choices=["step", "loaders", "all", "gpu", "infer"],
                   help="gpu: the CUDA report (--quick: ~4 min); infer: the bit-packed engine against torch fp32")
    p.add_argument("--threads", type=int, default=None, help="perf infer: engine and torch threads (default: 1)")
    p.add_argument("--model", default="resnet20", help="model of perf step")
    p.add_argument("--batch", type=int, default=128, help="batch size")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:<index> (default: cuda for gpu, else cpu)")
    p.add_argument("--quick", action="store_true", help="gpu: the ~4-min report; with --device cpu a smoke run")
    p.add_argument("--jobs", type=int, default=None, help="gpu --quick: jobs compiling at once (default: CPUs/2, ≤ 8)")
    p.add_argument("--dataset", default="fashion-mnist", help="dataset of perf loaders")
    p.add_argument("--repeats", type=int, default=None,
                   help="timed steps per method in perf step and gpu (default: 20 on cpu, 100 on cuda)")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (one-time cost reported apart)")
    p.add_argument("--fuse", action="store_true", help="perf step: also each fusable method fused (methods.fuse)")
    p.add_argument("--methods", default="*", help="fnmatch pattern or comma list of methods for perf step")
    p.add_argument("--data-root", default=None, help=DATA_ROOT_HELP)
    p.add_argument("--out", default=None,
                   help="report file (default: results/perf/DEVICE.md for all and gpu; step and loaders only print)")
    p.set_defaults(func="perf")

    rsub = _actions(sub, "runs", "list, show or compare run records")
    p = rsub.add_parser("list", help="table of run records: id, grid, status, config, accuracies")
    p.add_argument("--grid", default=None, help="only this grid's records (default: every grid)")
    p.add_argument("--filter", action="append", default=[], metavar="KEY=VALUE",
                   help="keep records whose KEY (a config key, method parameter, final metric, dotted path) "
                        "matches VALUE (fnmatch pattern, numbers compared as numbers); repeatable (default: none)")
    _runs_common(p)
    p.set_defaults(func="runs list")
    p = rsub.add_parser("show", help="one run: config, final metrics and history")
    p.add_argument("run_id", metavar="RUN_ID", help="a run id, a unique prefix of one, GRID/RUN_ID or a record file")
    _runs_common(p)
    p.set_defaults(func="runs show")
    p = rsub.add_parser("compare", help="two runs: the config keys that differ, then final metrics side by side")
    p.add_argument("run_a", metavar="RUN_A", help="a run id, a unique prefix of one, GRID/RUN_ID or a record file")
    p.add_argument("run_b", metavar="RUN_B", help="the same for the second run")
    _runs_common(p)
    p.set_defaults(func="runs compare")
    return parser


DATA_ROOT_HELP = "where datasets live (default: $PROXBENCH_DATA, else ~/.cache/proxbench/data)"
GRID_NAME_HELP = "grid name (bench/grids/NAME.toml) or a path to a TOML file"


def _actions(sub, command: str, text: str):
    """The actions of ``python -m bench COMMAND ACTION`` (a subparsers object; ``text``: COMMAND's help)."""
    return sub.add_parser(command, help=text).add_subparsers(
        dest=f"{command}_command", required=True, metavar="ACTION", parser_class=_Parser,
        help=f"python -m bench {command} ACTION --help for its options")


def _grid_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workdir", default="work", help="checkpoints, job logs and scratch")
    p.add_argument("--results", default="results", help="run records go to RESULTS/runs/GRID/")
    p.add_argument("--data-root", default=None, help=DATA_ROOT_HELP)


def _runs_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--results", default="results", help="records are read from RESULTS/runs/*/")
    p.add_argument("--workdir", default="work", help="ad-hoc records are read from WORKDIR/results/runs/*/ too")


# Subcommands that answer without torch: they leave the plugins to the registries they may read.
TORCH_FREE = ("methods", "models", "datasets", "runs list", "runs show", "runs compare", "grid status")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.plugin or args.func not in TORCH_FREE:
            import methods

            methods.load_plugins(args.plugin)
        return int(handler(args.func)(args) or 0)
    except KeyboardInterrupt as exc:  # Ctrl-C; a local grid's Ctrl-C or SIGTERM says what became of its cells
        print("interrupted" + (f": {one_line(str(exc))}" if str(exc) else ""), file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:  # noqa: BLE001 - a user error, an OSError or a bug, each one line
        if args.debug:
            raise
        if isinstance(exc, UserError):
            print(f"error: {one_line(str(exc))}", file=sys.stderr)
            return 2
        if isinstance(exc, OSError):
            print(f"error: {describe_os_error(exc)}", file=sys.stderr)
            return 2
        message = one_line(str(exc))
        print(f"internal error: {type(exc).__name__}{': ' + message if message else ''} "
              "(a bug; run with --debug for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
