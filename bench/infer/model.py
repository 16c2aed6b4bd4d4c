"""A packed W1A1 export -> (the engine model, the PyTorch deployed model), and their comparison.

The PyTorch deployed model is the export's own reading: the model built from the config stored in the
file's meta, the method's deployed input quantizers attached (``methods.binarize_inputs``) and the packed
weights loaded (``bench.run.export.load_packed_into``: each binarized weight exactly α·sign(w)). The engine
model is a copy in which every input-binarized conv/linear is an ``EngineLayer``; everything else (the
full-precision stem and classifier, BatchNorm, shortcuts, RPReLU, pooling) stays the same torch code.

Agreement (``compare``): the binary inputs of the first binarized layer are PyTorch's bit for bit (the same
float32 comparison), the popcount sums are exact integers, and each binary layer's float output differs from
PyTorch's by PyTorch's own rounding of its sum of ±α (``bench.infer.layers``). A later sign can therefore
differ only where PyTorch's value lies within a few ulps of 0; ``compare`` counts those sign flips at every
binarized layer's input, the predictions that differ, and the test images whose PyTorch top-2 logits are tied
exactly (argmax then takes the first index in both models: a tie is reported, not broken differently).
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch import nn

import methods
import models

from bench.data import dataset_info
from bench.run.export import MAGIC, PackingError, load_packed, load_packed_into

from . import build
from .layers import EngineLayer


def is_packed(path: str | Path) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(8) == MAGIC
    except OSError:
        return False


def model_shape(meta: dict) -> dict:
    """num_classes, in_chans, img_size of the model a packed file holds (its config's dataset, or meta["input"])."""
    cfg = meta.get("config") or {}
    if meta.get("input"):
        return dict(meta["input"])
    if cfg.get("dataset"):
        info = dataset_info(cfg["dataset"], cfg.get("data_options") or {})
        return {"num_classes": info.num_classes, "in_chans": info.in_chans, "img_size": info.img_size}
    raise build.EngineError("the packed file's meta has no config with a dataset (nor an input shape): export it "
                            "with python -m bench export")


def reference_model(path: str | Path) -> tuple[nn.Module, dict]:
    """(the PyTorch deployed model of the packed file ``path``, its meta); an EngineError for a weight-only
    method's export or a file without a config."""
    try:
        _, meta = load_packed(path)
    except PackingError as exc:
        raise build.EngineError(str(exc)) from None
    cfg = meta.get("config") or {}
    if not cfg.get("model") or not cfg.get("method"):
        raise build.EngineError(f"{path}: its meta names no model and method: export it with python -m bench export")
    method = methods.create_method(cfg["method"], **(cfg.get("method_params") or {}))
    if method.act is None:
        raise build.EngineError(f"{path}: method {cfg['method']!r} binarizes weights only; the engine runs W1A1 "
                                "exports (binary weights and inputs); nothing written")
    model = models.create_model(cfg["model"], pretrained=False, **model_shape(meta), **(cfg.get("model_kwargs") or {}))
    methods.binarize_inputs(model, method, policy=cfg.get("policy", "w1a1"))
    load_packed_into(model, path)
    return model.eval(), meta


def engine_model(reference: nn.Module, isa: int | None = None) -> nn.Module:
    """A copy of ``reference`` with every input-binarized layer an ``EngineLayer`` (kernel ``isa``, default
    ``build.selected_isa()``)."""
    isa = build.selected_isa() if isa is None else isa
    model = copy.deepcopy(reference)
    layers = methods.input_binarized_layers(model)
    if not layers:
        raise build.EngineError("the model has no binarized input: nothing for the engine to run")
    for name, layer in layers:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, EngineLayer(name, layer, isa))
    model._proxbench_inputs = None
    return model.eval()


def load(path: str | Path, isa: int | None = None) -> tuple[nn.Module, nn.Module, dict]:
    """(engine model, PyTorch deployed model, meta) of the packed file ``path``."""
    reference, meta = reference_model(path)
    return engine_model(reference, isa), reference, meta


def _sign_recorder(model: nn.Module, names: list[str], store: dict):
    """Forward pre-hooks recording the binary input (bit per element) of each named layer."""
    handles = []
    for name in names:
        layer = model.get_submodule(name)

        def hook(module, args, name=name):
            x = args[0].detach().float()
            quant = module.input_quantizer
            beta = getattr(quant, "beta", None) if quant.quantizer.name == "rsign" else None
            if getattr(quant.quantizer, "unipolar", False):  # DoReFa's {0, 1} inputs
                bits = x > 0.5
            else:
                bits = (x + beta.detach().float()) >= 0 if beta is not None else x >= 0
            store[name] = bits.contiguous()

        handles.append(layer.register_forward_pre_hook(hook))
    return handles


@torch.no_grad()
def compare(engine: nn.Module, reference: nn.Module, batches) -> dict:
    """Run both models on ``batches`` of (images, labels): accuracy of each, predictions that agree, exact
    top-2 ties of the PyTorch logits, sign flips at each binarized layer's input, max |logit difference|."""
    names = [n for n, _ in methods.input_binarized_layers(reference)]
    total = agree = correct_e = correct_r = ties = 0
    flips, bits_seen, max_diff = dict.fromkeys(names, 0), 0, 0.0
    seen_e, seen_r = {}, {}
    handles = _sign_recorder(engine, names, seen_e) + _sign_recorder(reference, names, seen_r)
    try:
        for x, y in batches:
            le, lr = engine(x), reference(x)
            pe, pr = le.argmax(1), lr.argmax(1)
            top2 = lr.topk(2, dim=1).values
            ties += int((top2[:, 0] == top2[:, 1]).sum())
            agree += int((pe == pr).sum())
            correct_e += int((pe == y).sum())
            correct_r += int((pr == y).sum())
            total += y.numel()
            max_diff = max(max_diff, float((le - lr).abs().max()))
            for name in names:
                flips[name] += int((seen_e[name] != seen_r[name]).sum())
                bits_seen += seen_r[name].numel()
    finally:
        for h in handles:
            h.remove()
    return {"images": total, "agree": agree, "acc_engine": 100.0 * correct_e / max(total, 1),
            "acc_torch": 100.0 * correct_r / max(total, 1), "ties": ties, "sign_flips": flips,
            "binary_inputs": bits_seen, "max_logit_diff": max_diff}
