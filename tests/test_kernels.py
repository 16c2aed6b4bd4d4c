"""The one-pass CPU loops of the W1A1 quantizers (``methods.kernels``, ``methods/kernels.c``) against their eager
PyTorch forms: each activation quantizer runs forward and backward on an input above ``MIN_ELEMENTS`` with
the kernels off and on. Signs and the elementwise backwards must agree bit for bit; the backwards with
per-sample or per-channel sums (ReCU, RSign's β) to float32 rounding. Also: ReCU's weight kernel, the gates,
the build cache, thread-count independence and the fallback when no compiler is there.
"""

from __future__ import annotations

import ctypes

import pytest
import torch

import methods
from methods import kernels
from methods.activations import create_activation
from methods.functional import sign

SHAPE = (96, 16, 12, 12)  # 221k elements: above MIN_ELEMENTS
EXACT = ["ste-sign", "xnor-sign", "approx-sign", "rsign", "dorefa", "fda-sign"]
# FDA without its noise term is exact; with it (the default) sin and cos come from glibc's vector library
NEAR = {"fda-sign": {"noise": True}}


@pytest.fixture(autouse=True)
def kernels_on():
    previous = kernels.set_enabled(True)
    yield
    kernels.set_enabled(previous)


def edge_input(shape=SHAPE) -> torch.Tensor:
    torch.manual_seed(0)
    x = torch.randn(shape) * 0.8
    x.view(-1)[:7] = torch.tensor([0.0, -0.0, 1.0, -1.0, 0.5, 1.0000001, -0.9999999])  # ±0, the clip edges
    return x


def forward_backward(name: str, x: torch.Tensor, grad: torch.Tensor, on: bool, **params):
    kernels.set_enabled(on)
    noise = params.pop("noise", False)
    q = create_activation(name, **params)
    if name == "fda-sign":  # the method's setting (``fda``'s ``noise``), at λ(0.3)
        q.noise = noise
        q.set_progress(0.3)
    x = x.clone().requires_grad_()
    learned = {"beta": (torch.linspace(-0.3, 0.3, x.shape[1]).reshape(1, -1, 1, 1)).requires_grad_()} \
        if name == "rsign" else {}
    y = q.apply(x, training=True, **learned)
    y.backward(grad)
    return y.detach(), x.grad, learned["beta"].grad if learned else None


@pytest.mark.parametrize("name, params", [(n, {}) for n in EXACT] + [("fda-sign", {"n": 18.0}), ("recu-sign", {})]
                         + list(NEAR.items()) + [("fda-sign", {"noise": True, "n": 18.0})])
def test_kernels_follow_the_eager_forms(name, params):
    x, grad = edge_input(), torch.randn(SHAPE)
    near = params.get("noise", False)
    eager, fused = forward_backward(name, x, grad, False, **params), forward_backward(name, x, grad, True, **params)
    assert kernels._state["lib"] is not None and not kernels._state["failed"]
    if near:  # sign(x) + c·sin(x): within an ulp of ±1; grad·B' + (grad·c)·cos(x): within two ulps
        torch.testing.assert_close(fused[0], eager[0], rtol=1.2e-7, atol=0.0)
        assert float((fused[0] != eager[0]).float().mean()) < 0.01  # the sum with ±1 absorbs most sin ulps
        torch.testing.assert_close(fused[1], eager[1], rtol=2.5e-7, atol=1e-7 * float(eager[1].abs().max()))
        return
    assert torch.equal(eager[0], fused[0])
    if name in EXACT:
        assert torch.equal(fused[1], eager[1])
    else:
        torch.testing.assert_close(fused[1], eager[1], rtol=1e-5, atol=1e-5 * float(eager[1].abs().max()))
    if eager[2] is not None:  # RSign's ∂L/∂β: per-channel sums of 13,824 terms (double here, float in ATen)
        torch.testing.assert_close(fused[2], eager[2], rtol=1e-4, atol=1e-4 * float(eager[2].abs().max()))


def test_sign_kernel_is_the_eager_sign_bit_for_bit():
    x = edge_input()
    x.view(-1)[7:11] = torch.tensor([float("nan"), float("inf"), -float("inf"), -1e-45])
    kernels.set_enabled(False)
    eager = sign(x)
    kernels.set_enabled(True)
    fused = kernels.sign(x)
    assert fused is not None and torch.equal(fused, eager) and torch.equal(sign(x), eager)
    assert fused.view(-1)[:2].tolist() == [1.0, 1.0] and fused.view(-1)[7:11].tolist() == [-1.0, 1.0, -1.0, -1.0]


@pytest.mark.parametrize("shape", [(16, 16, 3, 3), (64, 32, 3, 3), (10, 7)])
def test_recu_weight_kernel_follows_the_eager_form(shape):
    method = methods.create_method("recu")
    method.set_progress(0.3)
    torch.manual_seed(1)
    w, up = torch.randn(shape) * 0.1, torch.randn(shape)
    a = method.weight_parameters(w)["scale_a"]
    runs = []
    for on, off_before_backward in ((False, False), (True, False), (True, True)):
        kernels.set_enabled(on)
        wl, al = w.clone().requires_grad_(), a.clone().requires_grad_()
        theta = method.quantize(wl, al)
        kernels.set_enabled(not off_before_backward and on)  # switched off between forward and backward
        (theta * up).sum().backward()
        runs.append((theta.detach(), wl.grad, al.grad))
    eager = runs[0]
    for fused in runs[1:]:
        assert torch.equal(fused[0], eager[0])
        torch.testing.assert_close(fused[1], eager[1], rtol=1e-5, atol=1e-5 * float(eager[1].abs().max()))
        torch.testing.assert_close(fused[2], eager[2], rtol=1e-5, atol=1e-5 * float(eager[2].abs().max()))


@pytest.mark.parametrize("name", ["recu-sign", "rsign", "approx-sign"])
def test_results_do_not_depend_on_the_thread_count(name):
    x, grad = edge_input(), torch.randn(SHAPE)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = forward_backward(name, x, grad, True)
        torch.set_num_threads(max(2, threads))
        many = forward_backward(name, x, grad, True)
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(one, many):
        assert (a is None and b is None) or torch.equal(a, b)


def test_recu_weights_do_not_depend_on_the_thread_count():
    method = methods.create_method("recu")
    torch.manual_seed(2)
    w, up = torch.randn(64, 64, 3, 3) * 0.1, torch.randn(64, 64, 3, 3)  # 36,864 elements: split across threads
    a = method.weight_parameters(w)["scale_a"]
    threads, runs = torch.get_num_threads(), []
    try:
        for n in (1, max(2, threads)):
            torch.set_num_threads(n)
            wl, al = w.clone().requires_grad_(), a.clone().requires_grad_()
            theta = method.quantize(wl, al)
            (theta * up).sum().backward()
            runs.append((theta.detach(), wl.grad, al.grad))
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(x, y) for x, y in zip(*runs))


def test_kernels_are_used_only_for_large_contiguous_float32_cpu_tensors():
    big = torch.zeros(SHAPE)
    assert kernels.usable(big) and kernels.sign(big) is not None
    assert not kernels.usable(torch.zeros(8, 8))  # few elements: the eager form
    assert kernels.usable(torch.zeros(8, 8), min_elements=0)  # ReCU's weights ask for any size
    assert not kernels.usable(big.double()) and kernels.sign(big.double()) is None
    assert not kernels.usable(big.transpose(1, 2))
    assert kernels.approx_sign_backward(big, big.transpose(1, 2)) is None  # a strided gradient
    assert kernels.rsign_forward(big, torch.zeros(1, 16, 12, 1)) is None  # β along two dimensions
    kernels.set_enabled(False)
    assert not kernels.usable(big) and kernels.sign(big) is None


def test_channel_layout_covers_conv_linear_and_single_thresholds():
    x = torch.zeros(4, 5, 6, 7)
    assert kernels._channel_layout(x, torch.zeros(1, 5, 1, 1)) == (4, 5, 42)
    assert kernels._channel_layout(torch.zeros(3, 10, 8), torch.zeros(8)) == (30, 8, 1)  # a ViT linear's input
    assert kernels._channel_layout(x, torch.zeros(1)) == (1, 1, 840)
    assert kernels._channel_layout(x, torch.zeros(5, 6, 1)) is None


def test_the_library_is_built_once_per_source_and_machine(tmp_path):
    first = kernels.build(tmp_path)
    stamp = first.stat().st_mtime_ns
    assert kernels.build(tmp_path) == first and first.stat().st_mtime_ns == stamp  # cached, not rebuilt
    assert [p.name for p in tmp_path.iterdir()] == [first.name]  # no partial file left behind


def test_a_failed_build_warns_once_and_falls_back(monkeypatch, tmp_path):
    monkeypatch.setenv("CC", str(tmp_path / "no-such-compiler"))
    monkeypatch.setenv(kernels.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setitem(kernels._state, "lib", None)
    monkeypatch.setitem(kernels._state, "failed", False)
    x, grad = edge_input(), torch.randn(SHAPE)
    with pytest.warns(RuntimeWarning, match="building the CPU kernels failed .*no C compiler"):
        y, dx, _ = forward_backward("recu-sign", x, grad, True)
    assert kernels._state["failed"] and not kernels.usable(x)
    y_eager, dx_eager, _ = forward_backward("recu-sign", x, grad, False)
    assert torch.equal(y, y_eager) and torch.equal(dx, dx_eager)  # the eager form, bit for bit


def test_records_say_how_the_kernels_ran(monkeypatch):
    assert kernels.sign(torch.zeros(SHAPE)) is not None
    assert kernels.describe().startswith("c proxbench-kernels-")
    monkeypatch.setitem(kernels._state, "lib", None)
    assert kernels.describe() == "c"  # enabled, not needed yet in this process
    kernels.set_enabled(False)
    assert kernels.describe() == "eager"
    kernels.set_enabled(True)
    monkeypatch.setitem(kernels._state, "failed", True)
    assert kernels.describe() == "eager (build failed)"


def test_a_compiler_without_march_native_or_openmp_still_builds(monkeypatch, tmp_path):
    picky = tmp_path / "picky-cc"  # refuses the flags Apple's clang and some cross compilers do not know
    calls = tmp_path / "calls"
    picky.write_text(f'#!/bin/sh\necho "$@" >> {calls}\n'
                     'for a in "$@"; do case "$a" in -march=native|-fopenmp) exit 1;; esac; done\nexec cc "$@"\n')
    picky.chmod(0o755)
    monkeypatch.setenv("CC", str(picky))
    built = kernels.build(tmp_path / "cache")
    assert len(calls.read_text().splitlines()) == 4  # --version, then three tries
    assert kernels.build(tmp_path / "cache") == built
    assert len(calls.read_text().splitlines()) == 5  # only --version: the fallback build is reused
    lib = ctypes.CDLL(str(built))
    x = edge_input((4, 5))
    out = torch.empty_like(x)
    lib.pb_sign(ctypes.c_void_p(x.data_ptr()), ctypes.c_void_p(out.data_ptr()), ctypes.c_int64(x.numel()),
                ctypes.c_int(1))
    assert torch.equal(out, torch.where(x >= 0, 1.0, -1.0))
    monkeypatch.setenv("CC", "false")  # a compiler that always fails: the first error is the one raised
    with pytest.raises(RuntimeError, match="false failed"):
        kernels.build(tmp_path / "other")


def test_float32_results_whatever_the_default_dtype():
    x, grad = edge_input(), torch.randn(SHAPE)
    eager = forward_backward("recu-sign", x, grad, False)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # the statistics' buffers must still be float32
    try:
        fused = forward_backward("recu-sign", x, grad, True)
        method = methods.create_method("recu")
        w = torch.randn(16, 8, 3, 3, dtype=torch.float32)
        a = method.weight_parameters(w)["scale_a"].float()
        out = kernels.recu_weight_forward(w, a, 0.9)
    finally:
        torch.set_default_dtype(previous)
    assert torch.equal(fused[0], eager[0])
    torch.testing.assert_close(fused[1], eager[1], rtol=1e-5, atol=1e-5 * float(eager[1].abs().max()))
    assert out is not None and all(t.dtype == torch.float32 for t in out[:3])
    torch.testing.assert_close(out[0], a * torch.where(w - w.mean(dim=(1, 2, 3), keepdim=True) >= 0, 1.0, -1.0))
