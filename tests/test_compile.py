"""``torch.compile`` of a binarized model: no graph break at a binarized layer, no recompile when the schedule
moves (μ/ρ live in 0-d tensors written in place, ``methods.schedule.ScheduleTensors``), the README's plugin
included. CPU only, dynamo's
"eager" backend (tracing is what is tested, not code generation)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import methods
import models
import plugin_methods  # noqa: F401  (the README's "Add a method" plugin, tanh-ste)

pytestmark = pytest.mark.usefixtures("fresh_dynamo")  # dynamo caches and counters reset around each test

BATCH = 8


def _model(key: str) -> nn.Module:
    torch.manual_seed(0)
    return methods.binarize(models.create_model("resnet20", num_classes=10), key)


def _batch():
    g = torch.Generator().manual_seed(1)
    return torch.randn(BATCH, 3, 32, 32, generator=g), torch.randint(0, 10, (BATCH,), generator=g)


def _train_step(model: nn.Module):
    def step(x, y):
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        return loss.detach()

    return step


@pytest.mark.parametrize("key", methods.list_methods())
def test_training_step_has_no_graph_break(key):
    model = _model(key)
    model.train()
    x, y = _batch()
    with torch._dynamo.config.patch(trace_autograd_ops=True):  # trace loss.backward() too
        explained = torch._dynamo.explain(_train_step(model))(x, y)
    reasons = [str(b.reason).splitlines()[0] for b in explained.break_reasons]
    assert explained.graph_break_count == 0 and not reasons, reasons
    assert explained.graph_count == 1


class _CountingBackend:
    """A dynamo backend that counts the graphs it compiles and runs them as they are."""

    def __init__(self):
        self.graphs = 0

    def __call__(self, gm, example_inputs):
        self.graphs += 1
        return gm.forward


@pytest.mark.parametrize("key", ["bnn++", "pc", "tanh-ste"])  # the methods whose F reads a scheduled parameter
def test_set_progress_does_not_recompile(key):
    model = _model(key)
    x, _ = _batch()
    backend = _CountingBackend()
    compiled = torch.compile(model, backend=backend, fullgraph=True)
    with torch.no_grad():
        first = compiled(x)
        assert torch.equal(first, model(x))
        for t in (0.25, 1.0):
            methods.set_progress(model, t)
            out = compiled(x)
            assert torch.equal(out, model(x))  # the compiled graph sees the new μ/ρ
            assert not torch.equal(out, first)
    assert backend.graphs == 1
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 1


def test_compiled_training_matches_eager():
    """Forward and latent gradients of a compiled step equal the eager ones, before and after a progress
    change (the backward is traced too: no Python autograd.Function at a binarized layer)."""
    eager, compiled_model = _model("bnn++"), _model("bnn++")
    x, y = _batch()
    backend = _CountingBackend()
    with torch._dynamo.config.patch(trace_autograd_ops=True):
        step = torch.compile(_train_step(compiled_model), backend=backend, fullgraph=True)
        for t in (0.0, 0.6):
            methods.set_progress(eager, t)
            methods.set_progress(compiled_model, t)
            for m in (eager, compiled_model):
                m.zero_grad(set_to_none=True)
            assert torch.equal(step(x, y), _train_step(eager)(x, y))
            for a, b in zip(methods.latent_weights(eager), methods.latent_weights(compiled_model)):
                assert torch.equal(a.grad, b.grad)
    assert backend.graphs == 1


def test_schedule_tensors_follow_the_floats():
    method = methods.create_method("bnn++", mu_start=2.0, mu_end=4.0)
    method.set_progress(0.5)
    assert method.mu == 3.0 and isinstance(method.mu, float)
    assert method.tensors.mu.item() == 3.0 and method.tensors.progress.item() == 0.5
    before = method.tensors.mu
    method.set_progress(1.0)
    assert method.tensors.mu is before and before.item() == 4.0  # written in place
    method.mu = 2.5  # a subclass assigning a scheduled attribute (ReCU's τ) updates its tensor
    assert method.tensors.mu.item() == 2.5
    assert repr(method).startswith("BNNPlusPlus('bnn++'") and method.params()["mu"] == 2.5


def test_schedule_tensors_move_with_the_model_not_into_its_state():
    model = _model("bnn++")
    method = methods.get_method(model)
    keys = set(model.state_dict())
    model.to(torch.float16)
    assert method.tensors.mu.dtype == torch.float64  # the arithmetic on μ stays the float's
    assert set(model.state_dict()) == keys and not any("schedule" in k for k in keys)
    layers = [m.parametrizations.weight[0] for _, m in methods.binarized_layers(model)]
    assert all(p.schedule is method.tensors for p in layers)


@pytest.mark.parametrize("key", methods.list_methods())
@pytest.mark.parametrize("scale", ["none", "tensor", "channel"])
def test_traced_quantizer_is_the_eager_one_bit_for_bit(key, scale):
    """``straight_through`` (what ``torch.compile`` traces) and the eager autograd.Function give the same θ
    and the same latent gradient, at every progress, zeros included."""
    method = methods.create_method(key, scale=scale)
    g = torch.Generator().manual_seed(2)
    for t in (0.0, 0.4, 1.0):
        method.set_progress(t)
        for shape in [(16, 8, 3, 3), (10, 7)]:
            w = torch.randn(shape, generator=g) * 0.3
            w[0, 0], w[1, 0] = 0.0, 1.0  # sign(0) = +1, |x| = 1 at the edge of the clipped STE
            grad = torch.randn(shape, generator=g)
            w1, w2 = w.clone().requires_grad_(), w.clone().requires_grad_()
            # the eager autograd.Function itself (fp, rPC, PQ declare θ = w, compiled or not)
            alpha = methods.autograd.eager_alpha(w1, method)
            eager = methods.autograd.scaled_quantize(w1, alpha, method)
            traced = methods.autograd.straight_through(w2, method)
            eager.backward(grad)
            traced.backward(grad)
            assert torch.equal(eager, traced) and torch.equal(w1.grad, w2.grad), (t, shape)
            with torch.no_grad():
                assert torch.equal(methods.autograd.straight_through(w, method), eager)
