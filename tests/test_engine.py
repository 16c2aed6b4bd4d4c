"""The bit-packed W1A1 engine (``bench.infer``): layers against PyTorch's deployed layers, a whole model, the
kernels against each other, the build cache, and the bad inputs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import methods
import models
from bench.infer import build
from bench.infer.layers import HUGE_OUTPUT, EngineLayer
from bench.infer.model import compare, load
from bench.run.export import save_packed

ROOT = Path(__file__).resolve().parents[1]
ISAS = [i for i in (0, 1, 2) if i <= build.cpu_isa()]


def deployed_layer(layer: nn.Module, method: str, negative: bool = False, seed: int = 0) -> nn.Sequential:
    """``layer`` with the deployed input quantizer of ``method`` and a deployed weight ±α per output channel
    (α < 0 on some channels when ``negative``: a learned scale, XNOR-Net++'s o or ReCU's a, can be)."""
    g = torch.Generator().manual_seed(seed)
    model = nn.Sequential(layer)
    methods.binarize_inputs(model, method, policy="all")
    with torch.no_grad():
        co = layer.weight.shape[0]
        alpha = torch.rand(co, generator=g) + 0.05
        if negative:
            alpha[::3] *= -1
        shape = (co,) + (1,) * (layer.weight.dim() - 1)
        layer.weight.copy_(torch.where(torch.randn(layer.weight.shape, generator=g) >= 0, 1.0, -1.0) * alpha.view(shape))
        quant = layer.input_quantizer
        if hasattr(quant, "beta"):
            quant.beta.copy_(torch.randn(quant.beta.shape, generator=g) * 0.3)
        if hasattr(quant, "h_scale"):
            quant.h_scale.copy_(torch.rand(quant.h_scale.shape, generator=g) + 0.5)
            quant.w_scale.copy_(torch.rand(quant.w_scale.shape, generator=g) + 0.5)
    return model.eval()


def exact_output(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """α_c·dot with dot the exact integer (float64 sums of ±1 products), rounded to float32 once."""
    quant = layer.input_quantizer
    shifted = x + quant.beta.detach() if hasattr(quant, "beta") else x
    sx = torch.where(shifted >= 0, 1.0, -1.0).double()
    alpha = layer.weight.detach().abs().flatten(1)[:, 0]
    sw = torch.where(layer.weight.detach() > 0, 1.0, -1.0).double()
    if isinstance(layer, nn.Linear):
        dot = F.linear(sx, sw)
        return dot.float() * alpha
    dot = F.conv2d(sx, sw, None, layer.stride, layer.padding)
    return dot.float() * alpha.view(1, -1, 1, 1)


SHAPES = [  # (layer, input): padding, stride 2, K not a multiple of 64, 1×1, linear
    (lambda: nn.Conv2d(70, 33, 3, 2, 1, bias=False), (2, 70, 9, 11)),
    (lambda: nn.Conv2d(64, 48, 3, 1, 1, bias=False), (2, 64, 8, 8)),
    (lambda: nn.Conv2d(16, 20, 1, 1, 0, bias=False), (3, 16, 5, 5)),
    (lambda: nn.Conv2d(5, 7, 5, 1, 2, bias=False), (1, 5, 6, 4)),
    (lambda: nn.Linear(100, 7, bias=False), (5, 100)),
    # maps at least 16 wide: AVX-512 runs lines.c (tiles across two rows, padded borders, strides 1-3)
    (lambda: nn.Conv2d(70, 33, 3, 2, 1, bias=False), (2, 70, 9, 37)),
    (lambda: nn.Conv2d(64, 48, 3, 1, 1, bias=False), (2, 64, 5, 21)),
    (lambda: nn.Conv2d(16, 20, 1, 1, 0, bias=False), (3, 16, 4, 16)),
    (lambda: nn.Conv2d(5, 7, 5, 1, 2, bias=False), (1, 5, 6, 19)),
    (lambda: nn.Conv2d(130, 9, 3, 3, 0, bias=False), (1, 130, 7, 50)),
]


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("index", range(len(SHAPES)))
def test_layer_equals_exact_and_torch(isa, index):
    make, shape = SHAPES[index]
    model = deployed_layer(make(), "bireal", negative=True, seed=index)
    layer = model[0]
    x = torch.randn(shape, generator=torch.Generator().manual_seed(index))
    x.view(-1)[::7] = 0.0  # sign(0) = +1, -0 too
    x.view(-1)[1::11] = -0.0
    with torch.no_grad():
        ref = model(x)
        out = EngineLayer("0", layer, isa)(x)
    assert torch.equal(out, exact_output(layer, x))  # the popcount is exact; one rounding of α·dot
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5 * float(ref.abs().max()))


def test_threads_give_the_same_output():
    model = deployed_layer(nn.Conv2d(96, 40, 3, 2, 1, bias=False), "reactnet", negative=True, seed=3)
    x = torch.randn(5, 96, 23, 47, generator=torch.Generator().manual_seed(3))  # 24 wide: lines.c on AVX-512
    before = torch.get_num_threads()
    outs = []
    try:
        for threads in (1, 3):
            torch.set_num_threads(threads)
            with torch.no_grad():
                outs.append(EngineLayer("0", model[0], build.selected_isa())(x))
    finally:
        torch.set_num_threads(before)
    assert torch.equal(outs[0], outs[1])


def test_large_output_with_huge_page_advice_is_exact():
    # 8 MiB of output: the engine asks for transparent huge pages before writing it (HUGE_OUTPUT)
    model = deployed_layer(nn.Conv2d(64, 32, 3, 1, 1, bias=False), "bireal", negative=True, seed=7)
    x = torch.randn(1, 64, 256, 256, generator=torch.Generator().manual_seed(7))
    assert 32 * 256 * 256 * 4 >= HUGE_OUTPUT
    with torch.no_grad():
        out = EngineLayer("0", model[0], build.selected_isa())(x)
    assert torch.equal(out, exact_output(model[0], x))


@pytest.mark.parametrize("method", ["reactnet", "xnor", "xnor++", "recu", "fda", "dorefa", "bnn-w1a1"])
def test_methods_layers(method):
    model = deployed_layer(nn.Conv2d(24, 16, 3, 2, 1, bias=False), method, negative=True)
    x = torch.randn(3, 24, 7, 9, generator=torch.Generator().manual_seed(1))
    wide = torch.randn(2, 24, 5, 35, generator=torch.Generator().manual_seed(2))  # lines.c on AVX-512
    # channels-last input: the packing reads the strides
    for inp in (x, x.contiguous(memory_format=torch.channels_last), wide,
                wide.contiguous(memory_format=torch.channels_last), wide[:, :, :, 1:]):
        with torch.no_grad():
            ref, out = model(inp), EngineLayer("0", model[0], build.selected_isa())(inp)
        torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5 * float(ref.abs().max()))


def test_portable_fallback_forced_equals_simd(monkeypatch):
    model = deployed_layer(nn.Conv2d(130, 40, 3, 1, 1, bias=False), "reactnet")
    x = torch.randn(2, 130, 10, 10)
    outs = {}
    for name in ["portable"] + [n for n, i in build.ISAS.items() if 0 < i <= build.cpu_isa()]:
        monkeypatch.setenv(build.ISA_ENV, name)
        with torch.no_grad():
            outs[name] = EngineLayer("0", model[0], build.selected_isa())(x)
    for name, out in outs.items():
        assert torch.equal(out, outs["portable"]), name


def _export(tmp_path, name, method, img=28, **params) -> Path:
    torch.manual_seed(0)
    model = models.create_model(name, num_classes=10, in_chans=1, img_size=img)
    methods.binarize(model, method, policy="w1a1", **params)
    model.train()
    with torch.no_grad():  # BatchNorm statistics that are not the identity
        for _ in range(2):
            model(torch.randn(32, 1, img, img))
    path = tmp_path / f"{name}-{method}.pxb"
    cfg = {"model": name, "method": method, "method_params": params, "policy": "w1a1", "model_kwargs": {}}
    save_packed(model.eval(), path, meta={"config": cfg, "input": {"num_classes": 10, "in_chans": 1,
                                                                    "img_size": img}})
    return path


@pytest.mark.parametrize("name,method", [("fmnist-cnn-bireal", "bireal"), ("fmnist-cnn-react", "reactnet")])
def test_whole_model_identical_predictions(tmp_path, name, method):
    engine, reference, _ = load(_export(tmp_path, name, method))
    x = torch.randn(96, 1, 28, 28, generator=torch.Generator().manual_seed(3))
    result = compare(engine, reference, [(x[:48], torch.zeros(48, dtype=torch.long)),
                                         (x[48:], torch.zeros(48, dtype=torch.long))])
    assert result["agree"] == 96 and sum(result["sign_flips"].values()) == 0
    assert result["max_logit_diff"] < 1e-3


def test_weight_only_export_is_refused(tmp_path):
    torch.manual_seed(0)
    model = models.create_model("fmnist-cnn", num_classes=10, in_chans=1, img_size=28)
    methods.binarize(model, "bnn")
    path = tmp_path / "bnn.pxb"
    cfg = {"model": "fmnist-cnn", "method": "bnn", "method_params": {}, "policy": None, "model_kwargs": {},
           "dataset": "fashion-mnist"}
    save_packed(model.eval(), path, meta={"config": cfg})
    with pytest.raises(build.EngineError, match="binarizes weights only"):
        load(path)
    before = sorted(tmp_path.iterdir())
    done = subprocess.run([sys.executable, "-m", "bench", "infer", str(path)], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 2 and done.stdout == ""
    assert len(done.stderr.strip().splitlines()) == 1 and "binarizes weights only" in done.stderr
    assert sorted(tmp_path.iterdir()) == before


def test_dorefa_tensorpack_unipolar_inputs(tmp_path):
    """{0, 1} inputs (x > 0.5), α per tensor: AND-popcount through popcount(w) − popcount(x xor w)."""
    engine, reference, _ = load(_export(tmp_path, "fmnist-cnn-bireal", "dorefa", form="tensorpack"))
    x = torch.randn(64, 1, 28, 28, generator=torch.Generator().manual_seed(4))
    result = compare(engine, reference, [(x, torch.zeros(64, dtype=torch.long))])
    assert result["agree"] == 64 and result["max_logit_diff"] < 1e-3
    model = deployed_layer(nn.Conv2d(70, 9, 3, 2, 1, bias=False), "dorefa")
    model[0].input_quantizer.quantizer.unipolar = True
    x = torch.rand(2, 70, 7, 8) * 1.2
    x.view(-1)[::5] = 0.5  # round half to even: 0.5 is 0
    with torch.no_grad():
        ref = model(x)
    for isa in ISAS:
        out = EngineLayer("0", model[0], isa)(x)
        torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5 * float(ref.abs().max()))


def test_missing_instructions_are_refused(monkeypatch):
    monkeypatch.setattr(build, "cpu_isa", lambda: 0)
    monkeypatch.setenv(build.ISA_ENV, "avx512")
    with pytest.raises(build.EngineError, match="lacks the instructions of the avx512 kernel"):
        build.selected_isa()
    monkeypatch.setenv(build.ISA_ENV, "sse9")
    with pytest.raises(build.EngineError, match="unknown kernel"):
        build.selected_isa()
    # the C side refuses a kernel the CPU lacks too (isa 3 exists nowhere)
    layer = EngineLayer("0", deployed_layer(nn.Conv2d(8, 8, 3, 1, 1, bias=False), "bireal")[0], 3)
    with pytest.raises(build.EngineError, match="refused"):
        layer(torch.randn(1, 8, 4, 4))


def test_build_cache_is_verified(tmp_path):
    path = build.build(tmp_path)
    sidecar = path.with_name(path.name + ".sha256")
    assert sidecar.is_file() and build.build(tmp_path) == path
    mtime = path.stat().st_mtime_ns
    path.write_bytes(b"not a library")  # a corrupt cache entry is rebuilt, never loaded
    assert build.build(tmp_path) == path and path.stat().st_mtime_ns != mtime
    assert path.read_bytes()[:4] == b"\x7fELF"
    assert not list(tmp_path.glob("*.partial"))
