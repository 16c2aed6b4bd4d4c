"""The binarized model of a run: built from its config, started from its fine-tune init, or loaded back
from a run's checkpoint.

A fine-tune (``mode = "finetune"``) starts from ``init``: "timm" (the builder's pretrained weights), "run:<id>"
(a finished run of the work directory, binarized or not) or a checkpoint file; a binarized parent's latent
weights (``<layer>.parametrizations.weight.original``) load as the plain ``<layer>.weight``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

import methods
import models
from methods.deploy import plain_key

from bench import data
from bench.errors import UserError
from bench.run import config as configs
from bench.run.checkpoints import bad_checkpoint, load_model_state, one_line, read_checkpoint
from bench.run.layout import checkpoint_path


def build_model(cfg: dict, info=None, *, method: methods.Method | None = None, load_init: bool = True,
                workdir: str | Path = "work", check_inputs: bool = True) -> nn.Module:
    """Create the model for resolved config ``cfg``, load its fine-tune init when asked, and binarize it with
    ``method``: the one ``bench.run.config.resolve_run`` built, not built a second time (None: built here from
    ``cfg``; a method belongs to one model); ``check_inputs``: then ``check_binary_inputs`` (off to load a
    finished run back)."""
    info = info or data.dataset_info(cfg["dataset"], cfg["data_options"])
    pretrained = cfg["init"] == "timm"
    try:
        model = models.create_model(
            cfg["model"], num_classes=info.num_classes, in_chans=info.in_chans, img_size=info.img_size,
            pretrained=pretrained and load_init, **cfg["model_kwargs"],
        )
    except (TypeError, ValueError, RuntimeError) as exc:
        if not cfg["model_kwargs"] or isinstance(exc, models.ModelError):
            raise
        # the builder refused a value of model_kwargs (a string where a width belongs, ...)
        raise UserError(f"model {cfg['model']!r} cannot be built with model_kwargs {cfg['model_kwargs']} "
                        f"({type(exc).__name__}: {one_line(exc)})") from None
    if load_init and cfg["mode"] == "finetune" and not pretrained:
        state = load_init_state(cfg["init"], workdir)
        models.load_state_dict_resampled(model, state)
    methods.binarize(model, method if method is not None else configs.build_method(cfg), policy=cfg["policy"],
                     fused=cfg["fuse"])
    if check_inputs:
        check_binary_inputs(model, cfg, info)
    return model


def constant_binary_inputs(model: nn.Module, input_shape: tuple[int, ...]) -> list[str]:
    """The input-binarized layers whose binarized input is one constant per sample on a random batch of
    ``input_shape`` (in eval mode, so nothing learned moves): a ReLU output's sign is +1 everywhere
    (sign(0) = +1; XNOR's K·sign(x) is K), and a binary convolution of a constant sees nothing of the image.
    [] for a weight-only model."""
    layers = methods.input_binarized_layers(model)
    if not layers:
        return []
    constant: dict[str, bool] = {}

    def record(name):
        def check(module, args, out):  # one value per sample (sign, or XNOR's K·sign) sees nothing of the image
            flat = out.flatten(1) if out.dim() > 1 else out.flatten().unsqueeze(0)
            constant[name] = bool((flat == flat[:, :1]).all())

        return check

    hooks = [layer.input_quantizer.register_forward_hook(record(name)) for name, layer in layers]
    was_training = model.training
    device = next(model.parameters()).device
    try:
        model.eval()
        with torch.no_grad():
            model(torch.randn((2, *input_shape), generator=torch.Generator().manual_seed(0)).to(device))
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    return [name for name, _ in layers if constant.get(name, False)]


def check_binary_inputs(model: nn.Module, cfg: dict, info) -> None:
    """A ``UserError`` when the model feeds a binarized layer's input quantizer a constant (see
    ``constant_binary_inputs``): the run would train a network whose binary layers see nothing."""
    dead = constant_binary_inputs(model, (info.in_chans, info.img_size, info.img_size))
    if not dead:
        return
    variants = [m for m in (f"{cfg['model']}-bireal", f"{cfg['model']}-react") if m in models.list_models()]
    use = f"use a model built for binary activations ({', '.join(variants) or 'e.g. resnet20-bireal'})"
    raise UserError(f"model {cfg['model']!r} with method {cfg['method']!r}: the binarized inputs of {len(dead)} "
                    f"layer(s) ({', '.join(dead[:3])}{', ...' if len(dead) > 3 else ''}) are one constant on a "
                    f"random batch (a ReLU output's sign is +1 everywhere): {use}, or an activation quantizer "
                    f"with levels {{0, 1}} (dorefa with form = \"tensorpack\")")


def load_init_state(init: str, workdir: str | Path) -> dict:
    """The full-precision weights a fine-tune starts from: 'run:<id>' (a finished run) or a file."""
    if init.startswith("run:"):
        path = checkpoint_path(workdir, init[4:])
    else:
        path = Path(init)
    if not path.is_file():
        raise UserError(f"fine-tune checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is a user error here
        raise UserError(f"cannot read checkpoint {path}: {one_line(exc)}") from None
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        if state.get("status", "done") != "done" or state.get("epoch") != state.get("config", {}).get("epochs"):
            raise UserError(f"fine-tune parent {path} has not finished (epoch {state.get('epoch')})")
        state = state["model"]
    return strip_parametrizations(state)


def strip_parametrizations(state: dict) -> dict:
    """Map 'layer.parametrizations.weight.original' keys back to 'layer.weight' (a binarized parent)."""
    return {plain_key(k): v for k, v in state.items()}


def load_run_model(source: str, workdir: str | Path = "work",
                   allow_unfinished: bool = False) -> tuple[nn.Module, dict, str]:
    """A run id (looked up in the work directory) or a checkpoint path -> (trained binarized model, config,
    ``unfinished``: '' for a finished run, else 'epoch E of N'). A run that has not finished its epochs is a
    UserError unless ``allow_unfinished``."""
    path = Path(source) if Path(source).is_file() else checkpoint_path(workdir, source)
    if not path.is_file():
        raise UserError(f"no checkpoint for {source!r} (looked for {path})")
    state = read_checkpoint(path, keys=("config", "model"), hint=None)
    try:
        cfg, method = configs.resolve_run(state["config"], "its config")
    except UserError as exc:
        raise bad_checkpoint(path, str(exc), hint=None) from None
    unfinished = ""
    if state.get("status", "done") != "done":
        unfinished = f"epoch {state.get('epoch', '?')} of {cfg['epochs']}"
        if not allow_unfinished:
            raise UserError(f"run {source!r} is unfinished: its checkpoint {path} is at {unfinished}; let it finish "
                            "(run it again to resume) or pass --allow-unfinished to export it as it stands")
    model = build_model(cfg, method=method, load_init=False, check_inputs=False)
    load_model_state(model, state["model"], path, cfg["model"])
    return model.eval(), cfg, unfinished
