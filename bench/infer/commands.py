"""``python -m bench infer RUN_OR_FILE``: evaluate a W1A1 export with the engine against PyTorch's deployed model.

RUN_OR_FILE is a packed file (``python -m bench export``) or a run id / checkpoint, which is exported to a
temporary file first (the same ``save_packed``). Both models see the whole test split of the run's dataset;
the report gives each one's accuracy, the predictions that agree, the sign flips at the binarized layers'
inputs (``bench.infer.model.compare``), the exact ties of PyTorch's top-2 logits and the time of each pass.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch

from bench import data
from bench.errors import UserError
from bench.run.export import PackingError, save_packed
from bench.run.model import load_run_model

from . import build
from .model import compare, is_packed, load


def resolve_source(source: str, workdir: str, tmp: str) -> Path:
    """A packed file as it is; a run id or checkpoint exported to ``tmp``."""
    if is_packed(source):
        return Path(source)
    model, config, _ = load_run_model(source, workdir)
    path = Path(tmp) / "model.pxb"
    try:
        save_packed(model.cpu().eval(), path, meta={"source": str(source), "config": config})
    except PackingError as exc:
        raise UserError(str(exc)) from None
    return path


def _timed(model, batches) -> float:
    start = time.perf_counter()
    with torch.no_grad():
        for x, _ in batches:
            model(x)
    return time.perf_counter() - start


def cli_infer(args) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="proxbench-infer-") as tmp:
        path = resolve_source(args.source, args.workdir, tmp)
        engine, reference, meta = load(path)
        cfg = meta.get("config") or {}
        if not cfg.get("dataset"):
            raise build.EngineError(f"{args.source}: its meta names no dataset to evaluate on")
        loader = data.build_loader(cfg["dataset"], "test", loader="memory", batch_size=args.batch, train=False,
                                   data_root=args.data_root, options=cfg.get("data_options") or {},
                                   subset=args.subset)
        batches = list(loader)
        isa = build.ISA_NAMES[engine_isa(engine)]
        print(f"engine: kernel {isa}, {torch.get_num_threads()} thread(s); model {cfg['model']}, method "
              f"{cfg['method']}, source {args.source}")
        result = compare(engine, reference, batches)
        seconds_engine, seconds_torch = _timed(engine, batches), _timed(reference, batches)
    n = result["images"]
    flips = sum(result["sign_flips"].values())
    print(f"{cfg['dataset']} test: {n} images; accuracy engine {result['acc_engine']:.2f}%, PyTorch deployed "
          f"{result['acc_torch']:.2f}%; identical predictions on {result['agree']}/{n} images")
    print(f"binary inputs that differ from PyTorch's: {flips} of {result['binary_inputs']:,}; exact top-2 ties of "
          f"PyTorch's logits: {result['ties']}; max |logit difference| {result['max_logit_diff']:.3g}")
    print(f"time for the test set (batch {args.batch}): engine {seconds_engine:.2f} s, PyTorch deployed "
          f"{seconds_torch:.2f} s ({seconds_torch / seconds_engine:.2f}x)")
    return 0 if result["agree"] == n else 1


def engine_isa(model) -> int:
    from .layers import EngineLayer

    return next(m.isa for m in model.modules() if isinstance(m, EngineLayer))
