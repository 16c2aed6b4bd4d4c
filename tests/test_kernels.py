"""The compiled CPU kernels of the activation quantizers (``methods.kernels``) against their eager forms.

Each activation quantizer with a kernel runs forward and backward on an input above ``MIN_ELEMENTS`` twice,
kernels off and on: the outputs must be equal (signs) and the gradients equal to float32 rounding. The first
compile of each kernel takes seconds (tens with a cold inductor cache), hence ``slow``.
"""

from __future__ import annotations

import pytest
import torch

from methods import kernels
from methods.activations import create_activation

SHAPE = (96, 16, 12, 12)  # 221k elements: above MIN_ELEMENTS, a batch size no other test compiles for


@pytest.fixture
def kernels_on():
    previous = kernels.set_enabled(True)
    yield
    kernels.set_enabled(previous)


def forward_backward(name: str, x: torch.Tensor, grad: torch.Tensor, on: bool, **params):
    kernels.set_enabled(on)
    q = create_activation(name, **params)
    x = x.clone().requires_grad_()
    learned = {"beta": (torch.linspace(-0.3, 0.3, x.shape[1]).reshape(1, -1, 1, 1)).requires_grad_()} \
        if name == "rsign" else {}
    y = q.apply(x, training=True, **learned)
    y.backward(grad)
    return y.detach(), x.grad, learned["beta"].grad if learned else None


@pytest.mark.slow
@pytest.mark.usefixtures("kernels_on")
@pytest.mark.parametrize("name, params, kernel", [
    ("recu-sign", {}, kernels.recu_sign_backward), ("fda-sign", {}, kernels.fourier_sign_backward),
    ("fda-sign", {"n": 18.0}, kernels.fourier_sign_backward), ("approx-sign", {}, kernels.approx_sign_backward),
    ("rsign", {}, kernels.rsign_backward)])
def test_compiled_kernels_follow_the_eager_forms(name, params, kernel):
    torch.manual_seed(0)
    x = torch.randn(SHAPE) * 0.8
    x[0, 0, 0, :3] = torch.tensor([0.0, -0.0, 1.0])  # sign(±0) = +1; the clip edge |x| = 1 is inside
    grad = torch.randn(SHAPE)
    eager, fused = forward_backward(name, x, grad, False, **params), forward_backward(name, x, grad, True, **params)
    assert kernel in kernels._compiled and not kernels._state["failed"]
    assert torch.equal(eager[0], fused[0])
    torch.testing.assert_close(fused[1], eager[1], rtol=1e-5, atol=1e-5 * float(eager[1].abs().max()))
    if eager[2] is not None:
        torch.testing.assert_close(fused[2], eager[2], rtol=1e-4, atol=1e-4 * float(eager[2].abs().max()))


@pytest.mark.usefixtures("kernels_on")
def test_kernels_are_used_only_for_large_contiguous_float32_cpu_tensors():
    big = torch.zeros(SHAPE)
    assert kernels.usable(big)
    assert not kernels.usable(torch.zeros(8, 8))  # few elements: the eager form
    assert not kernels.usable(big.double())
    assert not kernels.usable(big.transpose(1, 2))
    assert kernels.run(kernels.approx_sign_backward, big, big.transpose(1, 2)) is None  # a strided gradient
    assert kernels.run(kernels.approx_sign_backward, big.double(), big.double()) is None
    kernels.set_enabled(False)
    assert not kernels.usable(big) and kernels.run(kernels.approx_sign_backward, big, big) is None


def test_a_failed_compile_warns_once_and_falls_back(monkeypatch, kernels_on):
    def broken(fn, **kwargs):
        def call(*args):
            raise RuntimeError("no C++ compiler here")
        return call

    monkeypatch.setattr(torch, "compile", broken)
    monkeypatch.setattr(kernels, "_compiled", {})
    monkeypatch.setitem(kernels._state, "failed", False)
    x, grad = torch.randn(SHAPE), torch.randn(SHAPE)
    with pytest.warns(RuntimeWarning, match="compiling recu_sign_forward failed .*no C\\+\\+ compiler here"):
        y, dx, _ = forward_backward("recu-sign", x, grad, True)
    assert kernels._state["failed"] and not kernels.usable(x)
    kernels.set_enabled(False)
    y_eager, dx_eager, _ = forward_backward("recu-sign", x, grad, False)
    assert torch.equal(y, y_eager) and torch.equal(dx, dx_eager)  # the eager form, bit for bit
