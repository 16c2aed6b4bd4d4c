"""The built-in methods against their reference implementations.

Each expected value below is written out from the reference's own code or paper (named in the test), not from
this project's functions, so a change of definition here shows up as a failure there. The formula tests of
``tests/test_methods.py`` check the project's stated math; these check that the math is the references'.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import methods
from methods.functional import soft_sign_prox

POINTS = torch.tensor([-2.0, -1.0, -0.75, -0.3, -1e-3, 0.0, 1e-3, 0.3, 0.75, 1.0, 2.0], dtype=torch.float64)


def proxquant_binary_prox(p: torch.Tensor, reg: float) -> torch.Tensor:
    """allenbai01/ProxQuant, reg.py, ``BinOp.prox_operator(reg, 'binary')``, with torch's sign (sign(0) = 0):
    p ← sign(p)·(relu(||p| − 1| − reg)·sign(|p| − 1) + 1)."""
    p_sign, p_abs = p.sign(), p.abs()
    return p_sign * (torch.relu((p_abs - 1).abs() - reg) * (p_abs - 1).sign() + 1)


@pytest.mark.parametrize("reg", [0.0, 0.05, 0.5, 1.0, 3.0])
def test_l1_prox_is_proxquants_binary_prox(reg):
    """Source: allenbai01/ProxQuant reg.py (BinOp.prox_operator, reg_type 'binary'). The reference maps 0 to 0
    (torch.sign(0) = 0); ours maps it to +reg, since our sign(0) = +1 (a binarized weight is never 0)."""
    ours = soft_sign_prox(POINTS, reg)
    ref = proxquant_binary_prox(POINTS, reg)
    nonzero = POINTS != 0
    assert torch.equal(ours[nonzero], ref[nonzero])
    assert ours[~nonzero].item() == pytest.approx(min(reg, 1.0))


def _one_layer(method: str, **params) -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    layer = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 4), nn.Linear(4, 2))
    methods.binarize(layer, method, **params)
    return layer, layer[1].parametrizations.weight.original


@pytest.mark.parametrize("prox", ["l1", "lq"])
def test_pq_step_is_sgd_then_prox_with_lr_times_rho_then_clip(prox):
    """Source: allenbai01/ProxQuant main_binary_reg.py (train loop, projection_mode 'prox'):
    ``optimizer.step(); curr_lr = optimizer.param_groups[0]['lr']; bin_op.prox_operator(curr_lr * br, 'binary');
    bin_op.clip()`` (clip: clamp to [−1, 1]). ``prox = "lq"`` replaces the soft threshold by the PC++ paper's LQ
    with the same strength: (x + s·sign x)/(1 + s), s = lr·ρ."""
    lr, rho = 0.1, 4.0
    model, w = _one_layer("pq", scale="none", prox=prox, rho_start=rho, rho_end=rho)
    with torch.no_grad():
        w.copy_(torch.tensor([[-1.3, -0.6, 0.02, 0.9]] * 4) * torch.tensor([[1.0], [0.5], [-1.0], [2.0]]))
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    x = torch.randn(5, 3, generator=torch.Generator().manual_seed(1))
    model(x).square().sum().backward()
    expected = (w - lr * w.grad).detach().double()  # plain SGD step
    s = lr * rho
    if prox == "l1":
        expected = proxquant_binary_prox(expected, s)
    else:
        expected = (expected + s * torch.where(expected >= 0, 1.0, -1.0)) / (1 + s)
    expected = expected.clamp(-1, 1)
    methods.optimizer_step(model, opt, progress=0.5)
    assert torch.allclose(w.double(), expected, atol=1e-6)


def test_pq_freeze_signs_the_latents_and_keeps_them():
    """Source: ProxQuant reg.py ``BinOp.quantize('binary_freeze')``: p ← sign(p), then no more updates."""
    model, w = _one_layer("pq", scale="none", freeze_at=0.5)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    methods.set_progress(model, 0.5)
    for _ in range(3):
        opt.zero_grad()
        model(torch.randn(8, 3)).sum().backward()
        methods.optimizer_step(model, opt, progress=0.6)
        assert set(w.detach().unique().tolist()) <= {-1.0, 1.0}
    before = w.detach().clone()
    opt.zero_grad()
    model(torch.randn(8, 3)).sum().backward()
    methods.optimizer_step(model, opt, progress=0.7)
    assert torch.equal(w.detach(), before)


def test_rpc_prox_strength_is_scaled_by_the_learning_rate():
    """rPC's prox is a proximal-gradient step like ProxQuant's: before the step w ← LQ_{lr·ρ}(w)."""
    lr, rho = 0.05, 2.0
    model, w = _one_layer("rpc", scale="none", rho_start=rho, rho_end=rho)
    before = w.detach().clone()
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    model(torch.randn(6, 3)).sum().backward()
    grad = w.grad.clone()
    s = lr * rho
    expected = (before + s * torch.where(before >= 0, 1.0, -1.0)) / (1 + s) - lr * grad
    methods.optimizer_step(model, opt, progress=0.5)
    assert torch.allclose(w.detach(), expected, atol=1e-6)


def larq_ste_sign_grad(x: torch.Tensor, clip_value: float = 1.0) -> torch.Tensor:
    """larq.quantizers.ste_sign: ``grad * (|x| <= clip_value)`` (larq/quantizers.py, _clipped_gradient)."""
    return (x.abs() <= clip_value).to(x.dtype)


def larq_swish_sign_grad(x: torch.Tensor, beta: float = 5.0) -> torch.Tensor:
    """larq.quantizers.SwishSign: ``beta * (2 - beta * x * tanh(beta * x / 2)) / (1 + cosh(beta * x))``."""
    return beta * (2 - beta * x * torch.tanh(beta * x / 2)) / (1 + torch.cosh(beta * x))


@pytest.mark.parametrize("method, reference", [("bnn", larq_ste_sign_grad), ("bnn+", larq_swish_sign_grad)])
def test_gradients_are_larqs(method, reference):
    """Sources: larq/quantizers.py (``ste_sign``: forward sign with sign(0) = +1, clipped straight-through
    gradient; ``SwishSign``, BNN+ of Darabi et al., beta = 5). With the default scale (the raw latent) the
    gradient reaching w is exactly the reference's pseudo-gradient."""
    m = methods.create_method(method)
    assert m.scale == "none"
    w = POINTS.clone().float().requires_grad_(True)
    theta = m.forward(w)
    assert torch.equal(theta.detach(), torch.where(w >= 0, 1.0, -1.0))  # larq: sign with sign(0) = +1
    theta.backward(torch.ones_like(theta))
    assert torch.allclose(w.grad.double(), reference(POINTS), atol=1e-5)


@pytest.mark.parametrize("method", ["bc", "bnn", "bnn+", "pq"])
def test_latents_are_clipped_like_the_references(method):
    """Sources: BinaryConnect (Courbariaux et al. 2015, ``clip`` of the latents to [−H, H], H = 1 after every
    update), BinaryNet.pytorch (``p.org.copy_(p.data.clamp_(-1, 1))``), larq (weight clip constraint with
    SwishSign), ProxQuant (``bin_op.clip()``)."""
    model, w = _one_layer(method)
    assert methods.get_method(model).params()["clip"] == 1.0
    opt = torch.optim.SGD(model.parameters(), lr=10.0)  # a huge step pushes latents far out of [−1, 1]
    model(torch.randn(4, 3)).square().sum().backward()
    methods.optimizer_step(model, opt, progress=0.1)
    assert w.detach().abs().max().item() <= 1.0
    model, w = _one_layer(method, clip=0.0)  # clip = 0 turns it off
    opt = torch.optim.SGD(model.parameters(), lr=10.0)
    model(torch.randn(4, 3)).square().sum().backward()
    methods.optimizer_step(model, opt, progress=0.1)
    assert w.detach().abs().max().item() > 1.0


def test_methods_that_do_not_clip_in_their_reference_do_not():
    for name in ("pc", "rpc", "bnn++"):
        assert "clip" not in methods.create_method(name).params()


def test_paper_hyperparameters_are_the_registry_defaults():
    """The PC++ paper (Lu et al., NeurIPS 2023, Section 5): ρ from 0.01 to 10 for PC, rPC and PQ; μ = 5 for BNN+;
    μ from 5 to 30 for BNN++."""
    for name in ("pc", "rpc", "pq"):
        cfg = methods.create_method(name).config()
        assert (cfg["rho_start"], cfg["rho_end"], cfg["schedule"]) == (0.01, 10.0, "linear")
    assert methods.create_method("bnn+").config()["mu"] == 5.0
    cfg = methods.create_method("bnn++").config()
    assert (cfg["mu_start"], cfg["mu_end"]) == (5.0, 30.0)
    assert math.isclose(methods.create_method("bnn++").params()["mu"], 5.0)
