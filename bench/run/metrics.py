"""What a run measures: test accuracy of the deployed and F(w) models, the flip ratio of the deployed signs,
BatchNorm re-estimation, and the final numbers of its record (sizes, operation counts, peak memory).

The deployed model computes with α·sign(w) (``methods.deployed``); the F(w) model with the method's forward
quantizer. The flip ratio of an epoch is the share of deployed binary weights whose sign changed during it.
"""

from __future__ import annotations

import resource

import torch
from torch import nn

import methods

from bench.run import export, flops
from bench.run.records import EpochMetrics, FinalMetrics


def autocast(device: torch.device):
    """bfloat16 autocast on CUDA; disabled (full float32) on the CPU."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


def evaluate(model: nn.Module, loader, device: torch.device) -> float:
    """Top-1 accuracy in percent."""
    model.eval()
    correct = total = 0
    with torch.no_grad(), autocast(device):
        for x, y in loader:
            correct += (model(x).argmax(1) == y).sum().item()
            total += y.numel()
    return 100.0 * correct / max(1, total)


def deployed_signs(model: nn.Module) -> list[torch.Tensor]:
    """The sign bits (w ≥ 0) of every binarized latent weight, on the CPU."""
    return [(w.detach() >= 0).cpu() for w in methods.latent_weights(model)]


def flip_ratio(before: list[torch.Tensor], after: list[torch.Tensor]) -> float | None:
    """Fraction of deployed binary weights whose sign changed (None when nothing is binarized)."""
    total = sum(t.numel() for t in after)
    if not before or total == 0:
        return None
    return sum((a != b).sum().item() for a, b in zip(before, after)) / total


def peak_memory_mb(device: torch.device) -> float:
    """Peak CUDA memory allocated on ``device``, or the process's peak resident size on the CPU, in MiB."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def device_name(dev: torch.device) -> str:
    """The record's ``device``: "cuda (<GPU name>)" or "cpu (<n> threads)"."""
    if dev.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(dev)})"
    return f"cpu ({torch.get_num_threads()} threads)"


def epoch_metrics(epoch, model, test_loader, dev, train, before, after, optimizer) -> EpochMetrics:
    """Test accuracy of the deployed and F(w) models, lr, method parameters, flip ratio (``seconds`` 0: the
    caller sets it). ``train``: (mean loss, accuracy) of the epoch's training, None for epoch 0;
    ``before``/``after``: the deployed signs before and after it (``before`` None: no flip ratio)."""
    method = methods.get_method(model)
    with methods.deployed(model):
        acc = evaluate(model, test_loader, dev)
    separate = method.binarizes and not method.forward_is_export  # else the F(w) model is the deployed one
    acc_forward = evaluate(model, test_loader, dev) if separate else acc
    params = {k: v for k, v in method.params().items() if isinstance(v, float) and k != "progress"}
    return EpochMetrics(
        epoch=epoch,
        train_loss=None if train is None else round(train[0], 6),
        train_acc=None if train is None else round(train[1], 4),
        test_acc=round(acc, 4),
        test_acc_forward=round(acc_forward, 4),
        lr=float(optimizer.param_groups[0]["lr"]),
        method_params=params,
        flip_ratio=None if before is None else flip_ratio(before, after),
        seconds=0.0,
    )


def reestimated_accuracy(model: nn.Module, train_loader, test_loader, dev: torch.device, batches: int,
                         epoch: int) -> float | None:
    """Top-1 of the deployed model after re-estimating every BatchNorm's running statistics with the
    deployed weights: the statistics are reset and averaged (cumulative, momentum None) over ``batches``
    training batches of epoch index ``epoch`` (a deterministic order), in train mode for the norms only and
    without gradients. The model's own statistics are restored afterwards. None without BatchNorm layers."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms or batches <= 0:
        return None
    saved = [({k: v.clone() for k, v in bn.state_dict().items()}, bn.momentum) for bn in norms]
    try:
        with methods.deployed(model):
            model.eval()
            for bn in norms:
                bn.reset_running_stats()
                bn.momentum = None
                bn.train()
            train_loader.set_epoch(epoch)
            with torch.no_grad(), autocast(dev):
                for i, (x, _) in enumerate(train_loader):
                    if i == batches:
                        break
                    model(x.contiguous(memory_format=torch.channels_last) if dev.type == "cuda" else x)
            return round(evaluate(model, test_loader, dev), 4)
    finally:
        for bn, (state, momentum) in zip(norms, saved):
            bn.load_state_dict(state)
            bn.momentum = momentum


def final_metrics(model: nn.Module, history: list[EpochMetrics], info, dev: torch.device, cfg: dict,
                  train_loader, test_loader) -> FinalMetrics:
    """The record's final numbers: the last epoch's accuracies and training loss, the BatchNorm-re-estimated
    accuracy (``bn_reestimate`` batches, binarizing methods only), ``export.measure``'s sizes, ``flops``'s
    operation counts (the W1A1 counts for W1A1 models only), peak memory and the epochs done."""
    sizes = export.measure(model)
    ops = flops.count_ops(model, (1, info.in_chans, info.img_size, info.img_size))
    last = history[-1].to_dict() if history else {}
    return FinalMetrics.from_dict({
        "acc": last.get("test_acc"),
        "acc_forward": last.get("test_acc_forward"),
        **({"acc_bn": reestimated_accuracy(model, train_loader, test_loader, dev, cfg["bn_reestimate"],
                                           cfg["epochs"])}
           if cfg["bn_reestimate"] and methods.get_method(model).binarizes else {}),
        "train_loss": last.get("train_loss"),
        **sizes,
        "flops": ops["flops"],
        "bops": ops["bops"],
        **({"bops_w1a1": ops["bops_w1a1"], "flops_w1a1": ops["flops_w1a1"], "ops": ops["ops"]}
           if "ops" in ops else {}),  # W1A1 models only: weight-only records keep their keys
        "peak_memory_mb": round(peak_memory_mb(dev), 1),
        "epochs_done": max((h.epoch for h in history), default=0),
    })
