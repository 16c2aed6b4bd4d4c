"""Bit-packed export (bench.run.export): round trips for every registered model, the byte formula, the ratios."""

from __future__ import annotations

import argparse
import copy
import json
import math

import pytest
import torch
from torch import nn

import methods
import models
from bench.run import export as packing

torch.set_num_threads(max(1, min(2, torch.get_num_threads())))


def _input_for(name: str):
    """(model, input) at a small size: native size for CNNs, 32 px and patch 4 for timm ViTs."""
    info = models.model_info(name)
    if info.family == "vit":
        model = models.create_model(name, num_classes=10, in_chans=3, img_size=32, patch_size=4)
        return model, torch.randn(2, 3, 32, 32)
    c, s = info.default_in_chans, min(info.default_img_size, 64)  # ImageNet ResNet-18 at 64 px: same layers
    return models.create_model(name, num_classes=10, img_size=s), torch.randn(2, c, s, s)


def _perturb_norm_stats(model: nn.Module) -> None:
    """Make BN running statistics non-trivial (as after training) so they must round-trip too."""
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
            m.num_batches_tracked.fill_(7)


def _overhead_bound(n_entries: int, meta: dict | None = None) -> int:
    """magic + length + padding + a zlib'd JSON header of at most ~16 bytes per tensor after compression."""
    return 64 + 24 * n_entries + len(json.dumps(meta or {}))


@pytest.mark.parametrize("name", models.list_models())
def test_roundtrip_every_registered_model(name, tmp_path):
    torch.manual_seed(0)
    model, x = _input_for(name)
    _perturb_norm_stats(model)
    # a fresh unbinarized model of the same architecture (a copy: building a ViT-B twice costs seconds),
    # every tensor overwritten with NaN so that only what the packed file holds can produce the outputs
    fresh = copy.deepcopy(model).eval()
    with torch.no_grad():
        for t in fresh.state_dict().values():
            t.fill_(float("nan") if t.is_floating_point() else 0)
    methods.binarize(model, "bnn++")
    model.eval()
    with methods.deployed(model), torch.no_grad():
        expected = model(x)
    path = tmp_path / "model.pxb"
    written = packing.save_packed(model, path, meta={"model": name})
    assert written == path.stat().st_size

    assert packing.load_packed_into(fresh, path) == {"model": name}
    with torch.no_grad():
        got = fresh(x)
    assert torch.equal(got, expected), f"{name}: reloaded outputs differ from the deployed model"

    # every binarized weight is exactly ±α per output channel; the byte count is the formula + a bounded header
    state, _ = packing.load_packed(path)
    for layer, module in methods.binarized_layers(model):
        w = state[f"{layer}.weight"]
        alpha = methods.get_method(model).alpha(module.parametrizations.weight.original)
        assert torch.equal(w.abs(), torch.as_tensor(alpha, dtype=w.dtype).expand_as(w))
    n_entries = len(model.state_dict())
    overhead = written - packing.payload_bytes(model)
    assert 16 <= overhead <= _overhead_bound(n_entries, {"model": name})


@pytest.mark.parametrize("scale", ["channel", "tensor", "none"])
@pytest.mark.parametrize("method", ["bc", "pq", "bnn++"])
def test_roundtrip_scales(scale, method, tmp_path):
    torch.manual_seed(1)

    def net():
        return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                             nn.Conv2d(8, 13, 3, padding=1), nn.BatchNorm2d(13), nn.ReLU(), nn.Flatten(),
                             nn.Linear(13 * 5 * 5, 7), nn.Linear(7, 3))

    model = net()
    _perturb_norm_stats(model)
    methods.binarize(model, method, policy="all", scale=scale)
    model.eval()
    x = torch.randn(4, 3, 5, 5)
    with methods.deployed(model), torch.no_grad():
        expected = model(x)
    path = tmp_path / "m.pxb"
    written = packing.save_packed(model, path)
    fresh = net().eval()
    packing.load_packed_into(fresh, path)
    with torch.no_grad():
        assert torch.equal(fresh(x), expected)
    # formula: ceil(n/8) bytes per binarized tensor (2275 and 21 weights are not multiples of 8)
    n_alpha = {"channel": 8 + 13 + 7 + 3, "tensor": 4, "none": 0}[scale]
    bits = math.ceil(8 * 27 / 8) + math.ceil(13 * 72 / 8) + math.ceil(7 * 325 / 8) + math.ceil(3 * 7 / 8)
    floats = 8 + 13 + 7 + 3 + 4 * (8 + 13)  # biases, BN weight/bias/mean/var
    assert packing.payload_bytes(model) == bits + 4 * n_alpha + 4 * floats + 8 * 2
    assert written - packing.payload_bytes(model) <= _overhead_bound(len(model.state_dict()))


def test_state_dict_conventions(tmp_path):
    """Keys are plain (no parametrizations), dtypes restored, num_batches_tracked kept as int64."""
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Conv2d(4, 4, 1), nn.Flatten(), nn.Linear(4, 2))
    _perturb_norm_stats(model)
    methods.binarize(model, "bc")
    packing.save_packed(model, tmp_path / "m.pxb")
    state, meta = packing.load_packed(tmp_path / "m.pxb")
    assert meta == {}
    plain = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Conv2d(4, 4, 1), nn.Flatten(), nn.Linear(4, 2))
    assert list(state) == list(plain.state_dict())
    assert state["1.num_batches_tracked"].dtype == torch.int64 and int(state["1.num_batches_tracked"]) == 7
    assert torch.equal(state["1.running_var"], model[1].running_var)
    assert torch.equal(state["0.weight"], model[0].weight)  # the first layer stays full precision
    assert len(state["2.weight"][0].unique()) <= 2


def test_fully_binarized_layer_reaches_31_5x():
    # channel α costs 32 bits per output row: in_features = 4096 keeps it at 1/128 of the bits
    wide = nn.Sequential(nn.Linear(4096, 256, bias=False))
    methods.binarize(wide, "bc", policy="all")
    r = packing.measure(wide)
    assert r["binarized_params"] == r["params"] == 4096 * 256
    assert r["compression"] >= 31.5, r
    square = nn.Sequential(nn.Linear(1024, 1024, bias=False))
    methods.binarize(square, "bc", policy="all", scale="tensor")
    assert packing.measure(square)["compression"] >= 31.5


def test_resnet20_default_policy_compression():
    """ResNet-20 (option A), default policy: the first conv, the classifier, every BN (weight, bias, running
    mean/var) and one α per output channel stay fp32. The payload bound is fp32/payload ≈ 21.0×; the file
    must reach ≥ 20× and be within 3 % of that bound (the container is lean)."""
    model = models.create_model("resnet20", num_classes=10)
    methods.binarize(model, "bnn++")
    r = packing.measure(model)
    bound = r["fp32_bytes"] / packing.payload_bytes(model)
    assert r["compression"] >= 20.0, r
    assert r["compression"] >= 0.97 * bound
    assert r["params"] == sum(p.numel() for p in model.parameters())
    assert r["fp32_bytes"] == packing.fp32_bytes(model)


def test_unbinarized_and_fp_models(tmp_path):
    for binarize in (False, True):
        model = nn.Sequential(nn.Linear(8, 8), nn.BatchNorm1d(8), nn.Linear(8, 2))
        if binarize:
            methods.binarize(model, "fp")
        r = packing.measure(model)
        assert r["binarized_params"] == 0
        assert packing.payload_bytes(model) == r["fp32_bytes"] == 4 * (8 * 8 + 8 + 4 * 8 + 8 * 2 + 2) + 8
        assert r["fp32_bytes"] < r["packed_bytes"] <= r["fp32_bytes"] + _overhead_bound(7)


def test_bad_files_and_models(tmp_path):
    path = tmp_path / "bad.pxb"
    path.write_bytes(b"not a packed model")
    with pytest.raises(packing.PackingError, match="bad magic"):
        packing.load_packed(path)
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 2))
    methods.binarize(model, "bc")
    good = tmp_path / "good.pxb"
    packing.save_packed(model, good)
    before = good.read_bytes()
    with pytest.raises(packing.PackingError, match="JSON"):
        packing.save_packed(model, good, meta={"x": object()})
    assert good.read_bytes() == before  # a failing write leaves the old file intact
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    truncated = tmp_path / "trunc.pxb"
    truncated.write_bytes(before[:-10])
    with pytest.raises(packing.PackingError, match="truncated"):
        packing.load_packed(truncated)
    with pytest.raises(packing.PackingError, match="unbinarized"):
        packing.load_packed_into(model, good)


def test_cli_export_real_checkpoint(tmp_path, capsys):
    from bench.run import config as configs
    from bench.run.commands import cli_export
    from bench.run.layout import checkpoint_path
    from bench.run.model import build_model

    cfg = configs.resolve({"model": "fmnist-cnn", "method": "bnn++", "dataset": "fashion-mnist", "epochs": 1})
    model = build_model(cfg, load_init=False)
    _perturb_norm_stats(model)
    ckpt = checkpoint_path(tmp_path / "work", "abc")
    ckpt.parent.mkdir(parents=True)
    torch.save({"config": cfg, "model": model.state_dict()}, ckpt)
    out = tmp_path / "export" / "model.pxb"
    args = argparse.Namespace(source="abc", out=str(out), workdir=str(tmp_path / "work"))
    assert cli_export(args) == 0
    text = capsys.readouterr().out
    assert "compression" in text and str(out) in text
    state, meta = packing.load_packed(out)
    assert meta["config"]["model"] == "fmnist-cnn"
    fresh = models.create_model("fmnist-cnn", num_classes=10).eval()
    fresh.load_state_dict(state)
    x = torch.randn(3, 1, 28, 28)
    model.eval()
    with methods.deployed(model), torch.no_grad():
        assert torch.equal(fresh(x), model(x))


def test_method_whose_export_is_not_binary_is_refused_and_a_declared_form_is_packed(tmp_path):
    """The deployed weight is always α·(2·bits − 1): a class that overrides ``export`` (a ternary one, say) is refused
    when defined; one that declares another deployed form (``custom_export``: bits of w ≥ 0.1) is packed from its
    ``export_parts``, and the file loads back to exactly the weights the deployed model computes with."""
    with pytest.raises(methods.MethodError, match="overrides export"):
        type("Ternary", (methods.Method,), {"export": lambda self, w: torch.round(w.clamp(-1, 1))})

    class Centred(methods.Method):  # deliberately not registered (the registry-driven tests would pick it up)
        name = "centred-test"
        traits = methods.Traits(custom_export=True)

        def F(self, x):  # noqa: N802
            return methods.sign(x)

        def export_parts(self, w):
            return w >= 0.1, self.alpha(w)

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 2))
    methods.binarize(model, Centred(scale="channel"))
    packing.save_packed(model, tmp_path / "c.pxb")
    state, _ = packing.load_packed(tmp_path / "c.pxb")
    latent = model[1].parametrizations.weight.original.detach()
    with methods.deployed(model), torch.no_grad():
        assert torch.equal(state["1.weight"], model[1].weight)
        assert torch.equal(model[1].weight, latent.abs().mean(1, keepdim=True) * torch.where(latent >= 0.1, 1.0, -1.0))
        assert not torch.equal(model[1].weight, latent.abs().mean(1, keepdim=True) * methods.sign(latent))
