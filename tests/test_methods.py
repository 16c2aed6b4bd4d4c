"""Properties of every registered method (registry-driven) and of ``binarize``."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import methods
from methods import MethodError
from methods.functional import sign

import plugin_methods  # noqa: F401  (tests/plugin_methods.py registers "tanh-ste" like a third-party plugin)


def ss(x, mu):
    """SignSwish straight from its definition (the unstable textbook form, fine at moderate μx)."""
    s = torch.sigmoid(mu * x)
    return 2 * s * (1 + mu * x * (1 - s)) - 1


def ss_grad(x, mu):
    return mu * (2 - mu * x * torch.tanh(mu * x / 2)) / (1 + torch.cosh(mu * x))


def lq(x, rho):
    return (x + rho * torch.where(x >= 0, 1.0, -1.0)) / (1 + rho)


# Reference formulas, written independently of the implementation: F and B' at progress t.
REFERENCE = {
    "fp": (lambda x, t: x, lambda x, t: torch.ones_like(x)),
    "bc": (lambda x, t: torch.where(x >= 0, 1.0, -1.0), lambda x, t: torch.ones_like(x)),
    "pc": (lambda x, t: lq(x, 0.01 + (10 - 0.01) * t), lambda x, t: torch.ones_like(x)),
    "rpc": (lambda x, t: x, lambda x, t: torch.ones_like(x)),
    "pq": (lambda x, t: x, lambda x, t: torch.ones_like(x)),
    "bnn": (lambda x, t: torch.where(x >= 0, 1.0, -1.0), lambda x, t: (x.abs() <= 1).float()),
    "bnn+": (lambda x, t: torch.where(x >= 0, 1.0, -1.0), lambda x, t: ss_grad(x, 5.0)),
    "bnn++": (lambda x, t: ss(x, 5 + 25 * t), lambda x, t: ss_grad(x, 5 + 25 * t)),
    "tanh-ste": (lambda x, t: torch.tanh((1 + 9 * t) * x),
                 lambda x, t: (1 + 9 * t) * (1 - torch.tanh((1 + 9 * t) * x) ** 2)),
}
SCHEDULE_ENDS = {"pc": {"rho": (0.01, 10.0)}, "rpc": {"rho": (0.01, 10.0)}, "pq": {"rho": (0.01, 10.0)},
                 "bnn+": {"mu": (5.0, 5.0)}, "bnn++": {"mu": (5.0, 30.0)}, "tanh-ste": {"beta": (1.0, 10.0)}}
POINTS = torch.tensor([-3.0, -1.5, -1.0, -0.7, -0.2, -1e-3, 0.0, 1e-3, 0.2, 0.7, 1.0, 1.5, 3.0], dtype=torch.float64)
ALL = methods.list_methods()


def test_registry_lists_the_eight_methods_and_the_plugin():
    assert {"fp", "bc", "pc", "rpc", "pq", "bnn", "bnn+", "bnn++"} <= set(ALL)
    assert "tanh-ste" in ALL
    assert methods.list_methods("bnn*") == ["bnn", "bnn+", "bnn++"]


@pytest.mark.parametrize("key", ALL)
@pytest.mark.parametrize("t", [0.0, 1.0])
def test_forward_matches_reference_formula(key, t):
    m = methods.create_method(key, scale="none")
    m.set_progress(t)
    f_ref, _ = REFERENCE[key]
    torch.testing.assert_close(m.forward(POINTS.clone()), f_ref(POINTS, t).to(POINTS.dtype), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("key", ALL)
@pytest.mark.parametrize("scale", ["channel", "tensor", "none"])
def test_gradient_reaching_latent_is_backward_factor_times_upstream(key, scale):
    torch.manual_seed(0)
    m = methods.create_method(key, scale=scale)
    m.set_progress(0.3)
    w = (torch.randn(6, 4, 3, 3, dtype=torch.float64) * 0.05).requires_grad_()
    upstream = torch.randn_like(w)
    (m.forward(w) * upstream).sum().backward()
    torch.testing.assert_close(w.grad, m.backward_factor(w) * upstream)
    # and B' is the reference B' on the normalised weight
    alpha = w.detach().abs().mean(dim=(1, 2, 3), keepdim=True) if scale == "channel" else (
        w.detach().abs().mean() if scale == "tensor" else 1.0)
    _, b_ref = REFERENCE[key]
    expected = b_ref(w.detach() / alpha, 0.3).to(w.dtype) if key != "fp" else torch.ones_like(w)
    torch.testing.assert_close(m.backward_factor(w), expected)


@pytest.mark.parametrize("key", ALL)
def test_forward_is_alpha_times_F_of_normalised_weight(key):
    torch.manual_seed(1)
    m = methods.create_method(key, scale="channel")
    w = torch.randn(5, 7, dtype=torch.float64) * 0.1
    alpha = w.abs().mean(dim=1, keepdim=True)
    f_ref, _ = REFERENCE[key]
    torch.testing.assert_close(m.forward(w), alpha * f_ref(w / alpha, 0.0).to(w.dtype))


@pytest.mark.parametrize("key", ALL)
def test_default_units_are_the_measured_ones(key):
    """θ = F(w) on the raw latent (the references' unit), except PC and BNN++, whose smooth forward acts on
    w/mean|w| of the tensor (results/ablation-scale)."""
    m = methods.create_method(key)
    assert m.scale == type(m).default_scale
    if key in REFERENCE and key != "tanh-ste":
        assert m.scale == ("tensor" if key in ("pc", "bnn++") else "none")
    w = torch.randn(5, 7, dtype=torch.float64) * 0.1
    alpha = w.abs().mean() if m.scale == "tensor" else 1.0
    f_ref, _ = REFERENCE[key]
    torch.testing.assert_close(m.forward(w), alpha * f_ref(w / alpha, 0.0).to(w.dtype))


@pytest.mark.parametrize("key", ALL)
@pytest.mark.parametrize("t", [0.0, 0.5, 1.0])
def test_backward_factor_is_derivative_of_B_where_smooth(key, t):
    """B and B' against the independent reference B (autograd gives its derivative), away from kinks. B itself is
    documentation (training uses only B'): a class that does not write one has the straight-through B(x) = x."""
    m = methods.create_method(key, scale="none")
    m.set_progress(t)
    x = torch.linspace(-2.5, 2.5, 501, dtype=torch.float64)
    x = x[(x.abs() - 1).abs() > 1e-3].requires_grad_()  # kinks of hardtanh (BNN); SS and identity are smooth
    REFERENCE_B[key](x, t).sum().backward()
    if key != "tanh-ste":  # the README's plugin writes B' only
        B = getattr(m, "B", lambda x: x)  # noqa: N806 - the paper's name
        torch.testing.assert_close(B(x.detach()), REFERENCE_B[key](x.detach(), t))
    torch.testing.assert_close(m.backward_factor(x.detach()), x.grad, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("key", ALL)
def test_forward_is_odd_away_from_zero(key):
    m = methods.create_method(key, scale="none")
    for t in (0.0, 1.0):
        m.set_progress(t)
        x = POINTS[POINTS != 0]
        torch.testing.assert_close(m.forward(-x), -m.forward(x))


@pytest.mark.parametrize("key", ALL)
@pytest.mark.parametrize("scale", ["channel", "tensor", "none"])
def test_export_gives_exactly_plus_minus_alpha_per_channel(key, scale):
    torch.manual_seed(2)
    m = methods.create_method(key, scale=scale)
    w = torch.randn(8, 3, 3, 3)
    w[0, 0, 0, 0] = 0.0  # sign(0) = +1, never 0
    out = m.export(w)
    if key == "fp":
        assert torch.equal(out, w)
        return
    for c in range(w.shape[0]):
        values = out[c].unique()
        assert len(values) == 2 and torch.equal(values[0], -values[1])
        assert torch.equal(torch.sign(out[c]), sign(w[c]))
    if scale == "none":
        assert set(out.unique().tolist()) == {-1.0, 1.0}
    if scale == "channel":
        torch.testing.assert_close(out.abs().amax(dim=(1, 2, 3)), w.abs().mean(dim=(1, 2, 3)))


@pytest.mark.parametrize("key", ALL)
@pytest.mark.parametrize("t", [0.0, 1.0])
def test_forward_is_export_claim_holds_exactly(key, t):
    """A method that says forward_is_export (the run then skips the separate F(w) evaluation) must
    compute exactly export(w); the SS- and LQ-forward methods must not claim it."""
    torch.manual_seed(4)
    m = methods.create_method(key)
    m.set_progress(t)
    w = torch.randn(8, 3, 3, 3)
    w[1, 0, 0, 0] = 0.0
    if m.forward_is_export:
        assert torch.equal(m.forward(w), m.export(w))
    if key in REFERENCE and key != "tanh-ste":  # the built-ins: exactly the three sign-forward methods claim it
        assert m.forward_is_export == (key in {"bc", "bnn", "bnn+"})


@pytest.mark.parametrize("key", ALL)
def test_hooks_change_latent_only_for_proximal_methods(key):
    torch.manual_seed(3)
    m = methods.create_method(key, scale="channel")
    m.set_progress(0.5)
    w = torch.randn(4, 9) * 0.1
    before = w.clone()
    lr = 0.2
    m.before_step_all([w], lr)
    changed_before = not torch.equal(w, before)
    mid = w.clone()
    m.after_step_all([w], lr)
    changed_after = not torch.equal(w, mid)
    assert changed_before == (key == "rpc")
    assert changed_after == (key == "pq")
    if key in ("rpc", "pq"):  # w <- α·LQ_{lr·ρ}(w/α) with ρ = 5.005: a proximal-gradient step
        alpha = before.abs().mean(dim=1, keepdim=True)
        torch.testing.assert_close(w, alpha * lq(before / alpha, lr * (0.01 + (10 - 0.01) * 0.5)))


@pytest.mark.parametrize("key", sorted(SCHEDULE_ENDS))
def test_schedule_end_points(key):
    m = methods.create_method(key)
    for name, (start, end) in SCHEDULE_ENDS[key].items():
        m.set_progress(0.0)
        assert m.params()[name] == pytest.approx(start)
        m.set_progress(1.0)
        assert m.params()[name] == pytest.approx(end)
        m.set_progress(0.5)
        assert m.params()[name] == pytest.approx((start + end) / 2)


def test_parameter_overrides_and_geometric_schedule():
    m = methods.create_method("bnn++", mu_end=40)
    m.set_progress(1.0)
    assert m.mu == 40
    g = methods.create_method("pc", schedule="geometric")
    g.set_progress(0.5)
    assert g.rho == pytest.approx(math.sqrt(0.01 * 10))
    assert methods.create_method("bnn+", mu=7).mu == 7
    x = torch.tensor([0.2, 0.7, -2.0])
    torch.testing.assert_close(methods.create_method("pc", lq="clamp", rho=1.0, scale="none").forward(x),
                               torch.tensor([0.4, 1.0, -1.0]))


def test_sign_swish_is_stable_everywhere():
    x = torch.tensor([-1e30, -1e6, -50.0, -1e-30, 0.0, 1e-30, 50.0, 1e6, 1e30])
    for mu in (1e-3, 5.0, 30.0, 1e4):
        f, g = methods.sign_swish(x, mu), methods.sign_swish_grad(x, mu)
        assert torch.isfinite(f).all() and torch.isfinite(g).all()
        assert f.abs().max() <= 1.2
    assert methods.sign_swish(torch.tensor(0.0), 5.0) == 0.0
    assert methods.sign_swish_grad(torch.tensor(0.0), 5.0) == pytest.approx(5.0)
    peak = methods.sign_swish(torch.tensor(2.3994 / 5.0), 5.0)
    assert peak.item() == pytest.approx(1.1997, abs=1e-4)
    x = torch.linspace(-1.5, 1.5, 301, dtype=torch.float64)
    torch.testing.assert_close(methods.sign_swish(x, 5.0), ss(x, 5.0))
    torch.testing.assert_close(methods.sign_swish_grad(x, 5.0), ss_grad(x, 5.0))


def test_linear_quantizer_limits():
    x = torch.tensor([-0.8, -0.1, 0.3, 2.0])
    torch.testing.assert_close(methods.linear_quantizer(x, 0.0), x)
    torch.testing.assert_close(methods.linear_quantizer(x, 1e9), torch.tensor([-1.0, -1.0, 1.0, 1.0]))


# -- bad input -----------------------------------------------------------------------------------------------
def test_unknown_method_lists_valid_keys_and_closest_match():
    with pytest.raises(MethodError) as err:
        methods.create_method("bnn+++")
    assert "did you mean 'bnn++'" in str(err.value) and "bc" in str(err.value)


def test_unknown_parameter_is_an_error():
    with pytest.raises(MethodError, match="no parameter 'mu_ned'.*mu_end"):
        methods.create_method("bnn++", mu_ned=3)
    with pytest.raises(MethodError, match="scale"):
        methods.create_method("bc", scale="row")
    with pytest.raises(MethodError, match="lq"):
        methods.create_method("pc", lq="cubic")


@pytest.mark.parametrize("t", [-0.1, 1.5, float("nan")])
def test_progress_outside_unit_interval_is_an_error(t):
    with pytest.raises(MethodError, match="progress"):
        methods.create_method("bnn++").set_progress(t)


# -- binarize ------------------------------------------------------------------------------------------------
def small_cnn():
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(16, 10),
    )


def test_binarize_small_cnn_default_policy_and_one_step():
    torch.manual_seed(0)
    model = methods.binarize(small_cnn(), "bnn++")
    assert [name for name, _ in methods.binarized_layers(model)] == ["3", "6"]
    assert not hasattr(model[0], "parametrizations") and not hasattr(model[10], "parametrizations")
    s = methods.summary(model)
    assert s.binarized_params == 8 * 16 * 9 + 16 * 16 * 9
    assert s.total_params == sum(p.numel() for p in model.parameters())
    assert [(l.name, l.binarized, l.bits) for l in s.layers] == [
        ("0", False, 32), ("3", True, 1), ("6", True, 1), ("10", False, 32)]
    assert "binarized" in str(s)
    before = [w.detach().clone() for w in methods.latent_weights(model)]
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model(torch.randn(4, 1, 8, 8)).logsumexp(1).mean().backward()
    methods.optimizer_step(model, opt, progress=0.5)
    assert all(not torch.equal(a, b) for a, b in zip(before, methods.latent_weights(model)))
    assert methods.get_method(model).mu == pytest.approx(17.5)
    with methods.deployed(model):
        assert model[3].weight.unique().numel() <= 2 * 16


def test_binarize_policy_globs_types_and_presets():
    model = methods.binarize(small_cnn(), "bc", policy={"include": ["3"], "keep_first": False})
    assert [n for n, _ in methods.binarized_layers(model)] == ["3"]
    model = methods.binarize(small_cnn(), "bc", policy="all")
    assert [n for n, _ in methods.binarized_layers(model)] == ["0", "3", "6", "10"]
    model = methods.binarize(small_cnn(), "bc", policy={"types": ["linear"], "keep_last": False})
    assert [n for n, _ in methods.binarized_layers(model)] == ["10"]
    model = methods.binarize(small_cnn(), "bc", policy={"exclude": ["6"]})
    assert [n for n, _ in methods.binarized_layers(model)] == ["3"]


def test_fp_binarizes_nothing():
    model = methods.binarize(small_cnn(), "fp")
    assert list(methods.binarized_layers(model)) == []
    assert methods.summary(model).binarized_params == 0


def test_policy_selecting_no_layer_is_an_error():
    with pytest.raises(MethodError, match="selects no layer"):
        methods.binarize(small_cnn(), "bnn", policy={"include": ["nothing.*"]})
    with pytest.raises(MethodError, match="unknown policy key"):
        methods.binarize(small_cnn(), "bnn", policy={"inclde": ["3"]})
    with pytest.raises(MethodError, match="unknown policy preset"):
        methods.binarize(small_cnn(), "bnn", policy="vit-everything")


def test_binarize_timm_vit():
    """vit-mini is timm's VisionTransformer (6 blocks): the ViT policies pick its linear layers by timm's names."""
    import models

    model = models.create_model("vit-mini", num_classes=10, in_chans=3, img_size=32)
    methods.binarize(model, "bnn++")  # family default for a ViT: vit-keep-embed-head
    names = [n for n, _ in methods.binarized_layers(model)]
    expected = [f"blocks.{i}.{layer}" for i in range(6) for layer in ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2")]
    assert names == expected
    assert not hasattr(model.patch_embed.proj, "parametrizations") and not hasattr(model.head, "parametrizations")
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    before = model.blocks[0].attn.qkv.parametrizations.weight.original.detach().clone()
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    methods.optimizer_step(model, opt, progress=0.1)
    assert not torch.equal(before, model.blocks[0].attn.qkv.parametrizations.weight.original)
    all_linear = methods.binarize(models.create_model("vit-mini", num_classes=10, in_chans=3, img_size=32), "bc",
                                  policy="vit-all-linear")
    names = [n for n, _ in methods.binarized_layers(all_linear)]
    assert names[0] == "patch_embed.proj" and names[-1] == "head" and len(names) == 6 * 4 + 2


# B itself, written with plain differentiable torch ops (autograd gives B' for the reference gradient).
REFERENCE_B = {
    "fp": lambda x, t: x, "bc": lambda x, t: x, "pc": lambda x, t: x, "rpc": lambda x, t: x, "pq": lambda x, t: x,
    "bnn": lambda x, t: torch.clamp(x, -1.0, 1.0),
    "bnn+": lambda x, t: ss(x, 5.0),
    "bnn++": lambda x, t: ss(x, 5 + 25 * t),
    "tanh-ste": lambda x, t: torch.tanh((1 + 9 * t) * x),
}


@pytest.mark.parametrize("key", ALL)
@pytest.mark.parametrize("scale", ["channel", "none"])
def test_fused_function_gradient_equals_plain_autograd_reference(key, scale):
    """θ_ref = α·[F(x) − B(x)].detach() + α·B(x), x = w/α (α detached): autograd of θ_ref is the PC++ gradient."""
    torch.manual_seed(4)
    t = 0.4
    m = methods.create_method(key, scale=scale)
    m.set_progress(t)
    w = (torch.randn(8, 3, 3, 3, dtype=torch.float64) * 0.2).requires_grad_()
    w_ref = w.detach().clone().requires_grad_()
    upstream = torch.randn_like(w)
    (m.forward(w) * upstream).sum().backward()
    alpha = w_ref.detach().abs().mean(dim=(1, 2, 3), keepdim=True) if scale == "channel" else 1.0
    x = w_ref / alpha
    f_ref, _ = REFERENCE[key]
    b = REFERENCE_B[key](x, t)
    theta_ref = alpha * (f_ref(x.detach(), t).to(x.dtype) - b.detach()) + alpha * b
    (theta_ref * upstream).sum().backward()
    torch.testing.assert_close(m.forward(w.detach()), theta_ref.detach())
    torch.testing.assert_close(w.grad, w_ref.grad)
