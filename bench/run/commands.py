"""The command-line handlers of one run: ``python -m bench run`` and ``python -m bench export``.

``run`` builds the raw config from ``--config``, the flags, ``--set`` and ``--param`` (in that order, later
wins), resolves it, trains it (``train.execute``) and prints one summary line; its exit status is 1 when the
run diverged. ``export`` packs a run's deployed model (``export.save_packed``), checks the round trip and
prints its sizes; a run whose record has no checkpoint here is one line saying how to train it again.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

import methods

from bench.errors import UserError
from bench.run import config as configs
from bench.run.export import (PackingError, deployed_entries, fp32_bytes, load_packed, payload_bytes, rebuild,
                              save_packed)
from bench.run.layout import CHECKPOINT_FILE, RUNS_DIR, check_name, checkpoint_path, record_path
from bench.run.model import load_run_model
from bench.run.records import read_record
from bench.run.reproduce import reproduce_command
from bench.run.settings import FLAG_KEYS
from bench.run.train import execute
from bench.tomlfile import load_toml, parse_assignment


def config_from_args(args) -> dict:
    """The raw config of ``python -m bench run``: --config file (or ``args.config_raw``, the config of a grid
    file's cell), then flags, then --set/--param."""
    raw: dict = {}
    if getattr(args, "config_raw", None) is not None:  # a grid file's cell (bench.grid_cell)
        raw.update(args.config_raw)
    elif args.config:
        raw.update(load_toml(args.config))
    for key in FLAG_KEYS:
        value = getattr(args, key, None)
        if value is not None:
            raw[key] = value
    for item in args.set:
        key, value = parse_assignment(item, "--set")
        raw[key] = value
    params = raw.get("method_params", {})
    if not isinstance(params, dict):
        raise UserError(f"run: method_params must be a table, got {configs.show(params)}")
    params = dict(params)
    for item in args.param:
        key, value = parse_assignment(item, "--param")
        params[key] = value
    if params:
        raw["method_params"] = params
    return raw


def record_location(args) -> tuple[str, Path]:
    """(grid, results folder) of ``python -m bench run``: without ``--grid``, an ad-hoc run whose record goes
    under the work directory (``<workdir>/results/runs/adhoc/``), out of the git-tracked ``results/``; with
    ``--grid G``, ``results/runs/G/``. An explicit ``--results`` wins in both cases."""
    grid = args.grid if args.grid is not None else "adhoc"
    if args.results is not None:
        return grid, Path(args.results)
    return grid, (Path("results") if args.grid is not None else Path(args.workdir) / "results")


def cli_run(args) -> int:
    grid, results = record_location(args)
    check_name(grid, "run --grid")
    if args.log_every < 1:
        raise UserError(f"--log-every must be a positive integer, got {args.log_every}")
    cfg, method = configs.resolve_run(config_from_args(args), "run")
    record = execute(cfg, method=method, grid=grid, workdir=args.workdir, results=results, device=args.device or "cpu",
                     data_root=args.data_root, fresh=args.fresh, logger=args.logger, log_every=args.log_every)
    final = record["final"]
    print(f"{record['run_id']} {record['status']}: deployed acc {final['acc']}%  F(w) acc {final['acc_forward']}%  "
          f"compression {final['compression']:.1f}x  -> {record_path(results, grid, record['run_id'])}")
    return 0 if record["status"] == "done" else 1


def export_source(source: str, workdir: str | Path, results: str | Path = "results") -> str:
    """What ``export`` loads: a checkpoint file as given; ``GRID/RUN_ID``, a run id or a unique prefix of one
    whose checkpoint is in the work directory, as its run id. A run with a record but no checkpoint (the
    records of ``results/`` are committed without their weights) is a ``UserError`` saying how to train it
    again: ``python -m bench run ...`` (``bench.run.reproduce``)."""
    if Path(source).is_file():
        return source
    grid, _, run_id = source.rpartition("/")
    found = sorted(p.parent.name for p in Path(workdir, RUNS_DIR).glob(f"{glob_escape(run_id)}*/{CHECKPOINT_FILE}"))
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        raise UserError(f"export: {source!r} is the prefix of {len(found)} runs' ids ({', '.join(found[:4])}); "
                        "give more of the id")
    pattern = f"{glob_escape(grid) if grid else '*'}/{glob_escape(run_id)}*.json"
    for root in (Path(results), Path(workdir) / "results"):
        for path in sorted((root / RUNS_DIR).glob(pattern)):
            record, _ = read_record(path)
            if record is not None:
                rid = record["run_id"]
                raise UserError(f"export: run {record['grid']}/{rid} has a record ({path}) but no checkpoint "
                                f"(looked for {checkpoint_path(workdir, rid)}): records are kept without their "
                                f"weights; train it again ({record.get('wall_seconds', '?')} s last time) with: "
                                f"{reproduce_command(record['config'])}, then export {rid}")
    return source


def glob_escape(text: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", text)


def cli_export(args) -> int:
    """``python -m bench export SOURCE --out FILE``: pack a run's deployed model and print its sizes. SOURCE is a
    checkpoint, ``GRID/RUN_ID`` or a run id (prefix). An unfinished run (its checkpoint before the last epoch)
    is refused unless ``--allow-unfinished``; then the output says so first, and the file's metadata holds
    ``unfinished``."""
    model, config, unfinished = load_run_model(export_source(args.source, args.workdir, getattr(args, "results", "results")),
                                               args.workdir, allow_unfinished=getattr(args, "allow_unfinished", False))
    model = model.cpu().eval()
    meta = {"source": str(args.source), "config": config, **({"unfinished": unfinished} if unfinished else {})}
    if unfinished:
        print(f"unfinished run ({unfinished}): exporting its model as it stands (--allow-unfinished)")
    try:
        written = save_packed(model, args.out, meta=meta)
    except PackingError as exc:
        raise UserError(str(exc)) from None
    except OSError as exc:
        raise UserError(f"cannot write {args.out}: {exc}") from None
    # Check the round trip: every reloaded tensor equals the deployed one.
    state, _ = load_packed(args.out)
    for key, kind, tensor, alpha in deployed_entries(model):
        expect = rebuild(tensor, alpha) if kind == "bin" else tensor
        if not torch.equal(state[key].to(expect.dtype), expect):
            raise UserError(f"round-trip check failed for {key} in {args.out}")
    params = sum(p.numel() for p in model.parameters())
    binarized = sum(m.parametrizations.weight.original.numel() for _, m in methods.binarized_layers(model))
    fp = fp32_bytes(model)
    share = 100.0 * binarized / params if params else 0.0
    payload = payload_bytes(model)
    print(f"wrote {args.out}: {written:,} bytes (payload {payload:,} + container {written - payload:,})")
    print(f"parameters {params:,}, binarized {binarized:,} ({share:.1f}%)")
    print(f"fp32 {fp:,} bytes -> packed {written:,} bytes: compression {fp / written:.2f}x")
    return 0
