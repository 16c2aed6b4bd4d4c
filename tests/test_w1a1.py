"""W1A1: the activation quantizers, the eight BiBench methods, composition by name, plugins, counting, packing.

Every reference formula below is written out from the papers (and the official codes the docstrings name),
independently of the implementation.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import methods
import models
from bench.run.flops import count_ops
from bench.run.export import load_packed_into, save_packed

W1A1 = methods.list_methods(w1a1=True)
PI = math.pi


def sgn(x):
    return torch.where(x >= 0, 1.0, -1.0).to(x.dtype)


def fda_grad(x, n=9, omega=0.1):
    total = sum(torch.cos((2 * i + 1) * omega * x) for i in range(n + 1))
    return 4 * omega / PI * total * (x.abs() <= 1).to(x.dtype)


def approx(x):
    return torch.where(x.abs() < 1, 2 - 2 * x.abs(), torch.zeros_like(x))


# activation F and B' at progress 0 (x the raw input; RSign with β = 0.25)
BETA = 0.25
REF_ACT = {
    "bnn-w1a1": (sgn, lambda x: (x.abs() <= 1).to(x.dtype)),
    "xnor": (sgn, lambda x: (x.abs() <= 1).to(x.dtype)),  # K·sign(x) on a batch; a 1-d x has no sample scale
    "dorefa": (sgn, lambda x: (x.abs() <= 1).to(x.dtype)),
    "bireal": (sgn, approx),
    "xnor++": (sgn, lambda x: (x.abs() <= 1).to(x.dtype)),
    "reactnet": (lambda x: sgn(x + BETA), lambda x: approx(x + BETA)),
    "recu": (sgn, approx),
    "fda": (sgn, fda_grad),
}
POINTS = torch.tensor([-2.0, -1.0, -0.999, -0.5, -1e-3, 0.0, 1e-3, 0.25, 0.5, 0.75, 0.999, 1.0, 1.001, 2.0],
                      dtype=torch.float64)


def test_the_eight_bibench_methods_are_registered_apart_from_the_weight_methods():
    assert W1A1 == sorted(["bnn-w1a1", "xnor", "dorefa", "bireal", "xnor++", "reactnet", "recu", "fda"])
    assert not set(W1A1) & set(methods.list_methods())  # list_methods() keeps meaning the weight-only methods
    assert methods.list_methods("bnn*", w1a1=None) == ["bnn", "bnn+", "bnn++", "bnn-w1a1"]


@pytest.mark.parametrize("key", W1A1)
def test_activation_forward_and_gradient_at_chosen_points(key):
    act = methods.create_method(key).act
    f_ref, b_ref = REF_ACT[key]
    x = POINTS.clone().requires_grad_()
    learned = {"beta": torch.tensor(BETA, dtype=torch.float64)} if key == "reactnet" else {}
    out = act.apply(x, training=False, **learned)
    out.backward(torch.ones_like(out))
    torch.testing.assert_close(out.detach(), f_ref(POINTS))
    torch.testing.assert_close(x.grad, b_ref(POINTS))
    torch.testing.assert_close(act.deploy(POINTS, **learned), f_ref(POINTS))  # deployed = forward


def test_edges_spelled_out():
    """sign(0) = +1; clipped STE 1 at |x| = 1 (BNN, BiBench's XNOR) but 0 (XNOR-Net's code); ApproxSign 2 at 0
    and 0 at ±1; DoReFa's own activation rounds 0.5 down (half to even) and passes the gradient on [0, 1];
    FDA at 0 is 4ω(n+1)/π."""
    one, zero, half = (torch.tensor([v], dtype=torch.float64, requires_grad=True) for v in (1.0, 0.0, 0.5))

    def grad(key, x, **params):
        x = x.detach().clone().requires_grad_()
        out = methods.create_method(key, **params).act.apply(x, training=False,
                                                   **({"beta": torch.zeros(1)} if key == "reactnet" else {}))
        out.sum().backward()
        return out.item(), x.grad.item()

    assert grad("bnn-w1a1", one) == (1.0, 1.0) and grad("xnor", one) == (1.0, 1.0)
    assert grad("xnor", one, form="xnor-net") == (1.0, 0.0)
    assert grad("bireal", zero) == (1.0, 2.0) and grad("bireal", one)[1] == 0.0
    assert grad("dorefa", half, form="tensorpack") == (0.0, 1.0)
    assert grad("dorefa", zero, form="tensorpack") == (0.0, 1.0)
    assert grad("dorefa", half) == (1.0, 1.0) and grad("dorefa", -one) == (-1.0, 1.0)
    assert grad("fda", zero)[1] == pytest.approx(4 * 0.1 * 10 / PI)
    assert grad("reactnet", -one) == (-1.0, 0.0)


def test_fda_schedule_and_recu_training_normalisation():
    act = methods.create_method("fda").act
    act.set_progress(1.0)
    assert math.floor(act.n) == 18
    x = POINTS.clone().requires_grad_()
    act.apply(x).sum().backward()
    torch.testing.assert_close(x.grad, fda_grad(POINTS, n=18))
    recu = methods.create_method("recu").act
    x = torch.randn(2, 3, 4, 4)
    assert torch.equal(recu.apply(x, training=True), sgn(x))  # the normalisation never changes the sign


EDGES = [0.0, -0.0, 1e-45, -1e-45, 1e-30, -1e-30, 0.5, 1.0, -1.0, 2.0, -2.0]


def test_sign_is_plus_one_at_both_zeros_and_keeps_the_dtype():
    for dtype in (torch.float32, torch.float64, torch.bfloat16):
        x = torch.tensor(EDGES, dtype=dtype)
        out = methods.functional.sign(x.requires_grad_())
        assert out.dtype == dtype and not out.requires_grad
        assert torch.equal(out, sgn(x.detach())) and out[1].item() == 1.0  # sign(−0.0) = +1 (−0.0 ≥ 0)
    assert torch.equal(methods.functional.sign(torch.tensor([-3, 0, 2])), torch.tensor([-1, 1, 1]))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_fused_backwards_equal_grad_times_the_factor(dtype):
    """The fused grad·B'(x) of every activation quantizer is grad·(the reference factor) at random points, at the
    edges (±0, ±1, subnormals, 0.5) and one float either side of ±1, in float32, float64 and bfloat16."""
    one_up = torch.nextafter(torch.tensor(1.0, dtype=dtype), torch.tensor(2.0, dtype=dtype)).item()
    one_down = torch.nextafter(torch.tensor(1.0, dtype=dtype), torch.tensor(0.0, dtype=dtype)).item()
    points = torch.tensor(EDGES + [one_up, -one_up, one_down, -one_down], dtype=dtype)
    x = torch.cat([torch.randn(4000, dtype=torch.float64).to(dtype) * 1.2, points])
    grad = torch.randn_like(x)
    for key in ("bnn-w1a1", "xnor", "dorefa", "bireal", "fda"):
        f_ref, b_ref = REF_ACT[key]
        xx = x.clone().requires_grad_()
        out = methods.create_method(key).act.apply(xx, training=True)
        out.backward(grad)
        assert torch.equal(out.detach(), f_ref(x)), key
        expected = (grad.double() * b_ref(x.double()))
        atol = {torch.float64: 1e-12, torch.float32: 2e-6, torch.bfloat16: 0.05}[dtype]
        torch.testing.assert_close(xx.grad.double(), expected, rtol=0, atol=atol * (1 + expected.abs().max().item()))
        if key != "fda":  # pure masks and ApproxSign: exact zeros in the same places
            assert torch.equal(xx.grad == 0, expected.to(dtype) == 0), key


@pytest.mark.parametrize("n,omega", [(9, 0.1), (13, 0.1), (18, 0.1), (18, 0.2), (0, 0.1), (9, 1.0), (9, 2.0)])
def test_fda_factor_every_evaluation_path_matches_the_direct_sum(n, omega):
    """float32 uses the power series in x² ((2n+1)ω ≤ 4) or the closed form sin(2Nθ)/(2 sin θ) (ω ≤ π/2) or the
    direct sum; float64 the closed form or the direct sum. All equal the float64 direct sum up to rounding,
    including x = ±0 (limit (4ω/π)(n+1)), subnormal x, and |x| > 1 (0); values far outside stay finite."""
    x = torch.cat([torch.linspace(-1.2, 1.2, 4001, dtype=torch.float64),
                   torch.tensor(EDGES + [1e30, -1e30], dtype=torch.float64)])
    truth = fda_grad(x, n, omega).nan_to_num(0.0)
    for dtype, atol in ((torch.float32, 1e-6), (torch.float64, 1e-13)):
        got = methods.activations.fourier_sign_grad(x.to(dtype), n, omega)
        assert got.dtype == dtype and torch.isfinite(got).all()
        torch.testing.assert_close(got.double(), truth, rtol=0, atol=atol * max(1.0, (4 * omega / PI) * (n + 1)))
        assert got[(x == 0).nonzero()].double().sub(4 * omega * (n + 1) / PI).abs().max() < atol


def test_recu_and_rsign_backwards_match_autograd_of_their_formulas():
    torch.manual_seed(3)
    for shape in [(6, 5, 4, 4), (7, 9)]:
        x = torch.randn(*shape, dtype=torch.float64) * 1.5 + 0.3
        up = torch.randn_like(x)
        a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
        methods.create_method("recu").act.apply(a, training=True).backward(up)
        dims = tuple(range(1, x.dim()))
        xhat = b / torch.sqrt(b.var(dim=dims, keepdim=True) + 1e-5)  # ReCU's code
        ste = sgn(xhat).detach() - approx_b(xhat).detach() + approx_b(xhat)
        ste.backward(up)
        torch.testing.assert_close(a.grad, b.grad)
    x = torch.randn(6, 5, 4, 4, dtype=torch.float64)
    beta = torch.randn(1, 5, 1, 1) * 0.3
    up = torch.randn_like(x)
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    ba, bb = beta.clone().requires_grad_(), beta.clone().requires_grad_()
    out = methods.create_method("reactnet").act.apply(a, beta=ba)
    out.backward(up)
    d = b + bb.to(b.dtype)
    (sgn(d).detach() - approx_b(d).detach() + approx_b(d)).backward(up)
    assert torch.equal(out.detach(), sgn(x + beta.double()))
    torch.testing.assert_close(a.grad, b.grad)
    torch.testing.assert_close(ba.grad, bb.grad)
    assert ba.grad.dtype == torch.float32


def approx_b(x):
    """ApproxSign's B (2x + x² for x < 0, 2x − x² for x ≥ 0, clipped to ±1), whose derivative is ``approx``."""
    c = torch.clamp(x, -1.0, 1.0)
    return 2 * c - c * c.abs()


def ref_weight(key, w, learned, t=0.0):
    """θ written out from each paper/code, as a differentiable expression whose autograd is the backward."""
    alpha = w.detach().abs().mean(dim=(1, 2, 3), keepdim=True)

    def ste(forward, through):  # forward value, gradient of `through`
        return forward.detach() - through.detach() + through

    inside = (w.detach().abs() <= 1).to(w.dtype)  # the papers' 1[|w| ≤ 1] (1 at the edges, as BNN's)
    clipped = w * inside
    if key == "bnn-w1a1":
        return ste(sgn(w), clipped)
    if key in ("xnor", "bireal", "reactnet", "dorefa"):  # BiBench: α outside the estimator
        return ste(alpha * sgn(w), clipped)
    if key == "xnor++":
        return learned["gamma"] * ste(sgn(w), clipped)
    if key == "fda":
        n = 9 + math.floor(9 * t)
        # a function whose derivative is fda_grad: (4/π)Σ sin((2i+1)ωw)/(2i+1) on [−1, 1], constant beyond
        series = 4 / PI * sum(torch.sin((2 * i + 1) * 0.1 * w) / (2 * i + 1) for i in range(n + 1)) * inside
        return alpha * ste(sgn(w), series)
    if key == "recu":
        tau = 0.85 + (0.99 - 0.85) / (math.e - 1) * (math.exp(t) - 1)
        w0 = w - w.mean(dim=(1, 2, 3), keepdim=True)
        w1 = w0 / (torch.sqrt(w0.var(dim=(1, 2, 3), keepdim=True) + 1e-5) / 2 / math.sqrt(2))
        q = (-w1.detach().abs().mean() * math.log(2 - 2 * tau)).item()
        w2 = torch.clamp(w1, -q, q)
        return learned["scale_a"] * ste(sgn(w2), w2)
    raise KeyError(key)


@pytest.mark.parametrize("key", W1A1)
@pytest.mark.parametrize("t", [0.0, 1.0])
def test_weight_forward_and_gradient_match_the_papers(key, t):
    torch.manual_seed(0)
    method = methods.create_method(key, **({"noise": False} if key == "fda" else {}))
    method.set_progress(t)
    w = torch.randn(4, 3, 3, 3, dtype=torch.float64) * 0.8
    w[0, 0, 0, :] = torch.tensor([0.0, 1.0, -1.0], dtype=torch.float64)  # sign(0) and the clipping edges
    learned = {k: v.to(torch.float64) for k, v in method.weight_parameters(w).items()}
    w1 = w.clone().requires_grad_()
    w2 = w.clone().requires_grad_()
    up = torch.randn_like(w)
    theta = method.quantize(w1, **learned)
    (theta * up).sum().backward()
    ref = ref_weight(key, w2, learned, t)
    (ref * up).sum().backward()
    torch.testing.assert_close(theta.detach(), ref.detach())
    torch.testing.assert_close(w1.grad, w2.grad)
    deployed = methods.deploy.deployed_weight(method, w, learned)
    torch.testing.assert_close(deployed, theta.detach())  # forward = deployed weights


def toy():
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.Conv2d(4, 4, 3, padding=1),
                         nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 4 * 4, 3))


@pytest.mark.parametrize("key", W1A1)
def test_learnable_parameters_state_dict_gradients_and_checkpoint(key, tmp_path):
    torch.manual_seed(1)
    model = methods.binarize(toy(), key, policy="w1a1")
    expected = {"xnor++": ["2.parametrizations.weight.0.gamma"], "recu": ["2.parametrizations.weight.0.scale_a"],
                "reactnet": ["2.input_quantizer.beta"]}.get(key, [])
    learned = [k for k in model.state_dict() if k.endswith(("gamma", "scale_a", "beta")) and not k.startswith("1.")
               and not k.startswith("3.")]
    assert learned == expected
    x = torch.randn(5, 1, 4, 4)
    model(x).square().sum().backward()
    params = dict(model.named_parameters())
    for k in expected:
        assert params[k].grad is not None and params[k].grad.abs().sum() > 0
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    methods.optimizer_step(model, opt, progress=0.5)
    torch.save(model.state_dict(), tmp_path / "ckpt.pt")
    fresh = methods.binarize(toy(), key, policy="w1a1")
    fresh.load_state_dict(torch.load(tmp_path / "ckpt.pt"))
    methods.set_progress(fresh, 0.5)
    model.eval(), fresh.eval()
    torch.testing.assert_close(fresh(x), model(x))
    with methods.deployed(model), methods.deployed(fresh):
        torch.testing.assert_close(fresh(x), model(x))


def test_inputs_are_binarized_in_training_f_w_and_deployed():
    model = methods.binarize(toy(), "bireal", policy="w1a1")
    seen = []
    model[2].register_forward_pre_hook(lambda m, a: seen.append(a[0].detach().clone()), prepend=False)
    x = torch.randn(2, 1, 4, 4)
    model(x)
    with methods.deployed(model):
        model(x)
    assert all(set(s.unique().tolist()) <= {-1.0, 1.0} for s in seen)
    assert [(l.name, l.input_binarized) for l in methods.summary(model).layers] == [
        ("0", False), ("2", True), ("5", False)]
    assert "| input" in str(methods.summary(model))
    only = methods.binarize(toy(), "bireal", policy={"preset": "w1a1", "inputs": []})
    assert methods.input_binarized_layers(only) == []


def test_composed_method_by_name_and_weight_only_configs_unchanged():
    m = methods.create_method("bnn+++ste-sign-act", act_schedule="linear")
    assert isinstance(m, methods.get_method_class("bnn++")) and m.act.name == "ste-sign"
    base = methods.create_method("bnn++").config()
    assert m.config() == base  # no act_* key: ste-sign has no parameter
    assert not any(k.startswith("act_") for k in base)
    fda = methods.create_method("bc+fda-sign-act", act_n_end=12)
    assert fda.config()["act_n_end"] == 12 and "act_n_start" in fda.config()
    model = methods.binarize(toy(), "bc+approx-sign-act")
    assert [n for n, _ in methods.input_binarized_layers(model)] == ["2"]
    with pytest.raises(methods.MethodError, match="unknown activation quantizer"):
        methods.create_method("bnn+nothing-act")
    with pytest.raises(methods.MethodError, match="already has"):
        methods.create_method("xnor+ste-sign-act")
    assert "bnn+++ste-sign-act" not in methods.list_methods(w1a1=None)


def test_plugin_declares_an_activation_quantizer():
    @methods.register_activation("test-hardtanh-sign")
    class Scaled(methods.ActivationQuantizer):
        """F = sign(x), B' = κ·1[|x| ≤ 1/κ], κ learnable... here a constant."""

        constants = {"kappa": 2.0}

        def F(self, x):
            return sgn(x)

        def dB(self, x):
            return self.kappa * (x.abs() <= 1 / self.kappa).to(x.dtype)

    @methods.register_method("test-plugin-w1a1")
    class Plugin(methods.get_method_class("bnn")):
        activation = "test-hardtanh-sign"

    try:
        m = methods.create_method("test-plugin-w1a1", act_kappa=4.0)
        assert m.config()["act_kappa"] == 4.0
        x = torch.tensor([0.1, 0.3, -0.2], requires_grad=True)
        m.act.apply(x).sum().backward()
        assert x.grad.tolist() == [4.0, 0.0, 4.0]
        assert "test-plugin-w1a1" in methods.list_methods(w1a1=True)
        model = methods.binarize(toy(), "test-plugin-w1a1")
        assert model[2].input_quantizer.quantizer.kappa == 4.0 or model[2].input_quantizer.quantizer.kappa == 2.0
    finally:
        methods.registry.METHODS.unregister("test-plugin-w1a1")
        methods.registry.ACTIVATIONS.unregister("test-hardtanh-sign")


def test_ops_count_for_a_w1a1_layer():
    # toy at 4×4: conv0 16·4·9 = 576 MACs (fp), conv2 16·4·36 = 2304 (W1A1), linear 64·3 = 192 (fp)
    model = methods.binarize(toy(), "xnor")
    ops = count_ops(model, (1, 1, 4, 4))
    assert ops["macs_binary"] == ops["bops"] == 2304 and ops["macs_fp"] == 768 and ops["flops"] == 2 * 768
    assert ops["macs_w1a1"] == ops["bops_w1a1"] == 2304 and ops["flops_w1a1"] == 2 * 768
    assert ops["ops"] == 2304 / 64 + 2 * 768
    weight_only = count_ops(methods.binarize(toy(), "bnn"), (1, 1, 4, 4))
    assert set(weight_only) == {"flops", "bops", "macs_fp", "macs_binary"}  # unchanged keys
    # a binarized layer whose input is not binarized: its MACs are floating-point work in ops
    partial = count_ops(methods.binarize(toy(), "xnor", policy={"preset": "w1a1", "inputs": ["nothing"]}), (1, 1, 4, 4))
    assert "ops" not in partial


@pytest.mark.parametrize("key", W1A1)
def test_packed_export_reloads_to_the_same_outputs(key, tmp_path):
    torch.manual_seed(2)
    model = methods.binarize(models.create_model("fmnist-cnn", num_classes=10), key)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    x = torch.randn(8, 1, 28, 28)
    for _ in range(2):
        opt.zero_grad()
        model(x).logsumexp(1).mean().backward()
        methods.optimizer_step(model, opt, progress=0.5)
    model.eval()
    with methods.deployed(model), torch.no_grad():
        expect = model(x)
    save_packed(model, tmp_path / "m.pxb")
    plain = methods.binarize_inputs(models.create_model("fmnist-cnn", num_classes=10), key)
    load_packed_into(plain, tmp_path / "m.pxb")
    plain.eval()
    with torch.no_grad():
        torch.testing.assert_close(plain(x), expect)
