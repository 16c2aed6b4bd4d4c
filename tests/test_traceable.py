"""``methods.traceable``: each traceable form equals the eager autograd Function it stands in for under
``torch.compile``, forward and gradients (float64, within 1e-12), for every wrapper and every W1A1 form;
and the W1A1 schedules have their tensor forms (ReCU's τ, FDA's λ), so the captured step updates them in its
graph. The traceable functions are called directly here (the wrappers call them only while compiling);
``tests/test_capture_schedule.py`` checks that the captured step traces them in one graph.
"""

from __future__ import annotations

import pytest
import torch

import methods
from methods import activation_functions, activation_grads, activations, autograd, traceable, w1a1_functions

TOL = 1e-12


def compare(eager, traced, *inputs):
    """eager(*inputs) and traced(*inputs): the same values and the same gradients to every input."""
    gen = torch.Generator().manual_seed(7)
    out_e, out_t = eager(*inputs), traced(*inputs)
    assert out_e.shape == out_t.shape and out_e.dtype == out_t.dtype
    assert (out_e - out_t).abs().max().item() <= TOL
    g = torch.randn(out_e.shape, dtype=out_e.dtype, generator=gen)
    grads_e = torch.autograd.grad((out_e * g).sum(), inputs)
    grads_t = torch.autograd.grad((out_t * g).sum(), inputs)
    for a, b in zip(grads_e, grads_t):
        assert a.shape == b.shape and a.dtype == b.dtype
        assert (a - b).abs().max().item() <= TOL, (a - b).abs().max().item()
        assert a.abs().max().item() > 0  # a gradient that can differ


def leaf(*shape, scale=1.3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(*shape, dtype=torch.float64, generator=g) * scale).requires_grad_()


def method(key, progress=0.37, **params):
    m = methods.create_method(key, **params)
    m.set_progress(progress)  # FDA's n = 12.33 (⌊n⌋ = 12), λ = 0.0685; ReCU's τ between its ends
    return m


def ids(cases):
    return [k + "".join(f"-{v}" for v in p.values()) for k, p in cases]


WEIGHT_SIGN = [("xnor++", {}), ("fda", {}), ("recu", {}), ("dorefa", {"form": "tensorpack"})]


@pytest.mark.parametrize("key,params", WEIGHT_SIGN, ids=ids(WEIGHT_SIGN))
def test_sign_grad(key, params):
    m = method(key, **params)
    compare(lambda w: w1a1_functions._SignGrad.apply(w, m), lambda w: traceable.sign_grad(w, m), leaf(8, 20))


SCALED = [("xnor", {}), ("bireal", {}), ("reactnet", {}), ("dorefa", {}), ("dorefa", {"form": "tensorpack"}),
          ("fda", {"noise": False}), ("fda", {"noise": False, "scale": "none"})]


@pytest.mark.parametrize("key,params", SCALED, ids=ids(SCALED))
def test_scaled_sign_grad(key, params):
    m = method(key, **params)
    compare(lambda w: w1a1_functions._ScaledSignGrad.apply(w, m), lambda w: traceable.scaled_sign_grad(w, m),
            leaf(6, 3, 3, 3))


@pytest.mark.parametrize("progress", [0.0, 0.6, 1.0])
def test_recu_weight(progress):
    m = method("recu", progress)
    a = (torch.rand(6, 1, 1, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) + 0.1).requires_grad_()
    compare(lambda w, a: w1a1_functions._ReCUWeight.apply(w, a, m), lambda w, a: traceable.recu_weight(w, a, m),
            leaf(6, 4, 3, 3), a)


ACTS = [("ste-sign", {}), ("approx-sign", {}), ("xnor", {"form": "xnor-net"}), ("dorefa", {}),
        ("dorefa", {"form": "tensorpack"}), ("fda", {"noise": False})]


@pytest.mark.parametrize("key,params", ACTS, ids=ids(ACTS))
def test_quantize_eagerly(key, params):
    named = key in methods.list_activations() and not params
    act = activations.create_activation(key) if named else method(key, **params).act
    scale = 0.8 if act.levels == "unipolar" else 1.3  # the unipolar estimator's window is [0, 1]
    compare(lambda x: autograd.scaled_quantize(x, None, act), lambda x: traceable.quantize(x, None, act),
            leaf(4, 3, 5, 5, scale=scale))


def test_scaled_sign():
    act = method("xnor").act
    assert act.scaled
    compare(lambda x: activation_functions._ScaledSignFunction.apply(x, act), lambda x: traceable.scaled_sign(x, act),
            leaf(4, 3, 5, 5))


def test_rsign():
    compare(activation_functions._RSignFunction.apply, traceable.rsign, leaf(2, 3, 4, 4),
            leaf(1, 3, 1, 1, scale=0.3, seed=2))


def test_recu_sign():
    compare(activation_functions._ReCUSignFunction.apply, traceable.recu_sign, leaf(3, 4, 5, 5))


@pytest.mark.parametrize("progress", [0.0, 0.37, 1.0])
def test_fda_noisy_sign(progress):
    act = method("fda", progress).act
    coefficients = activation_grads.fourier_series_coefficients(int(act.n), act.omega)
    compare(lambda x: activations._FDANoisySignFunction.apply(x, act, coefficients),
            lambda x: traceable.fda_noisy_sign(x, act), leaf(2, 3, 4, 4))


@pytest.mark.parametrize("channels", [8, 128])
def test_fda_sign_with_noise_layers(channels):
    """``FDASign.apply`` (eager: the Function and the noise residual) against ``traceable.fda_sign``, with
    FDA's hidden noise layers (128 channels) and without (8)."""
    act = method("fda").act
    layer = torch.nn.Conv2d(channels, 4, 3)
    noise = {k: v.to(torch.float64).requires_grad_() for k, v in act.layer_parameters(layer).items()}
    assert bool(noise) == (channels >= 64)
    x = leaf(2, channels, 3, 3)
    compare(lambda x, *p: act.apply(x, **dict(zip(noise, p))),
            lambda x, *p: traceable.fda_sign(x, act, **dict(zip(noise, p))), x, *noise.values())


def test_fda_weight_noise_strength_from_the_progress_tensor():
    m = method("fda")
    assert abs(traceable.noise_strength(m).item() - m.noise_alpha) <= TOL
    assert traceable.noise_strength(method("fda", noise=False)).item() == 0.0


@pytest.mark.parametrize("key", methods.list_methods(w1a1=True))
def test_every_w1a1_schedule_has_its_tensor_form(key):
    """``set_progress_tensors`` writes what ``set_progress`` does (ReCU's exponential τ included), so the
    captured step runs the whole update in one graph (``schedule_traceable``)."""
    m = methods.create_method(key)
    assert m.schedule_traceable
    for t in (0.0, 0.3, 1.0):
        m.set_progress_tensors(torch.tensor(t, dtype=torch.float64))
        m.set_progress_floats(t)
        for owner in (m, m.act):
            for name in owner._ranges:
                assert abs(getattr(owner.tensors, name).item() - getattr(owner, name)) <= TOL, (key, name, t)


@pytest.mark.usefixtures("fresh_dynamo")
@pytest.mark.parametrize("key", methods.list_methods(w1a1=True))
def test_compiled_w1a1_model_matches_eager(key):
    """A W1A1 model (float64, so the eager side runs the Functions' own torch code, no kernel) compiled with
    ``fullgraph=True`` runs the traceable forms: the same loss and the same gradients of every parameter
    (latents, learned scales, RSign's β, XNOR-Net++'s h ⊗ w, FDA's noise layers) as eagerly, within 1e-10,
    at a progress where FDA's ⌊n⌋, λ and ReCU's τ are away from their starts."""
    import models

    torch.manual_seed(0)
    model = methods.binarize(models.create_model("fmnist-mlp", num_classes=10, in_chans=1, img_size=8), key)
    model.double().train()
    methods.get_method(model).set_progress(0.37)
    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(4, 1, 8, 8, dtype=torch.float64, generator=g), torch.randint(0, 10, (4,), generator=g)

    def loss_and_grads(fn):
        loss = torch.nn.functional.cross_entropy(fn(x), y)
        return [loss] + list(torch.autograd.grad(loss, [p for p in model.parameters() if p.requires_grad]))

    eager = loss_and_grads(model)
    compiled = loss_and_grads(torch.compile(model, backend="aot_eager", fullgraph=True))
    assert len(eager) == len(compiled)
    for a, b in zip(eager, compiled):
        assert (a - b).abs().max().item() <= 1e-10


def test_a_declared_exponential_schedule_has_its_tensor_form():
    """``schedules = {"beta": (start, end, "exponential")}``: β(t) = A·e^t + B, A = (end − start)/(e − 1),
    start at t = 0 and end at t = 1, whatever ``schedule`` says; ``set_progress_tensors`` writes the same
    value (so a plugin gets ReCU's τ shape in the captured step's graph without a ``set_progress`` of its own)."""

    class ExpBeta(methods.Method):
        schedules = {"beta": (1.0, 3.0, "exponential")}
        formulas = ("sign(x)", "1", "—")

        def F(self, x):
            return torch.sign(x)

    for schedule in ("linear", "geometric"):
        m = ExpBeta(schedule=schedule)
        assert m.schedule_traceable and m.beta == 1.0
        for t, want in ((0.5, 1.0 + 2.0 / (torch.e - 1.0) * (torch.e ** 0.5 - 1.0)), (1.0, 3.0)):
            m.set_progress(t)
            assert abs(m.beta - want) <= 1e-12
            m.set_progress_tensors(torch.tensor(0.0, dtype=torch.float64))
            assert m.tensors.beta.item() == 1.0
            m.set_progress_tensors(torch.tensor(t, dtype=torch.float64))
            assert abs(m.tensors.beta.item() - want) <= 1e-12
