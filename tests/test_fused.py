"""The fused quantization (``methods.fuse``, config key ``fuse``): bit for bit the per-layer path.

Two identical binarized models, one per-layer and one fused, see the same batches: outputs, every latent's
gradient, the parameters after optimizer steps with the method's hooks, and the deployed outputs must be
``torch.equal``, for every built-in weight method and every ``scale``, on fmnist-cnn and on a ResNet-20.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

import methods
import models
from methods import fused as fused_module

from bench.run import config as configs

@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread (models on a shared 2-core machine); ``test_flat_tensor_matches_with_scalar_tails``
    tries two as well."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# the built-in weight methods (not a plugin another test module registers)
WEIGHT_METHODS = [k for k in methods.list_methods() if k != "fp"
                  and methods.get_method_class(k).__module__ == "methods.builtin"]
MODELS = {"fmnist-cnn": (1, 28), "resnet20": (3, 8)}  # the ResNet-20's 18 binarized layers, on 8×8 inputs (CPU time)


def _model(name: str, key: str, fused: bool, **params) -> nn.Module:
    torch.manual_seed(0)
    chans, size = MODELS[name]
    model = models.create_model(name, num_classes=10, in_chans=chans, img_size=size)
    return methods.binarize(model, key, fused=fused, **params)


def _batches(name: str, n: int = 3, batch: int = 4):
    chans, size = MODELS[name]
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(batch, chans, size, size, generator=g) * 2, torch.randint(0, 10, (batch,), generator=g))
            for _ in range(n)]


def _same(a, b) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("scale", ["none", "tensor", "channel"])
@pytest.mark.parametrize("key", WEIGHT_METHODS)
@pytest.mark.parametrize("name", list(MODELS))
def test_fused_is_bit_identical_to_per_layer(name, key, scale):
    _check_identical(name, key, scale=scale)


@pytest.mark.parametrize("key", ["bnn-w1a1", "bnn++"])
def test_fused_weights_with_binary_inputs(key):
    """A W1A1 method whose weights are a fusable method's (BNN's), and a composed one: the inputs keep
    their per-layer activation quantizer."""
    if key == "bnn++":
        key = f"bnn+++{methods.list_activations()[0]}-act"
    assert methods.create_method(key).fusable
    _check_identical("fmnist-cnn", key)


def _check_identical(name: str, key: str, **params) -> None:
    plain, fused = _model(name, key, False, **params), _model(name, key, True, **params)
    assert methods.get_method(plain).name == key
    assert (getattr(fused, "_proxbench_fused", None) is not None) == methods.get_method(fused).fusable
    opts = [torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9) for m in (plain, fused)]
    batches = _batches(name)
    for step, (x, y) in enumerate(batches):
        outs = []
        for model, opt in zip((plain, fused), opts):
            out = model(x)
            opt.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(out, y).backward()
            outs.append(out)
        assert torch.equal(outs[0], outs[1]), f"step {step}: outputs differ"
        grads = [[w.grad for w in methods.latent_weights(m)] for m in (plain, fused)]
        assert _same(*grads), f"step {step}: latent gradients differ"
        for model, opt in zip((plain, fused), opts):
            methods.optimizer_step(model, opt, progress=(step + 1) / len(batches))
        assert _same(plain.parameters(), fused.parameters()), f"step {step}: parameters differ"
    x = batches[0][0]
    with torch.no_grad():
        assert torch.equal(plain.eval()(x), fused.eval()(x))  # eval, no grad
        with methods.deployed(plain), methods.deployed(fused):
            assert torch.equal(plain(x), fused(x))


@pytest.mark.parametrize("key, scale", [("bnn++", "channel"), ("bnn+", "tensor"), ("bc", "none")])
def test_channels_last_latents(key, scale, monkeypatch):
    """channels_last latents (the CUDA training loop's layout) enter the flat tensor in memory order: each
    θ has its latent's strides, and everything stays bit for bit."""
    calls = _count_groups(monkeypatch)
    plain, fused = (_model("resnet20", key, f, scale=scale).to(memory_format=torch.channels_last)
                    for f in (False, True))
    x, y = _batches("resnet20", n=1)[0]
    x = x.contiguous(memory_format=torch.channels_last)
    strides = []
    for model in (plain, fused):
        layer = next(m for _, m in methods.binarized_layers(model))
        layer.register_forward_pre_hook(lambda m, args: strides.append(m.weight.stride()))
        nn.functional.cross_entropy(model(x), y).backward()
    assert calls == [18] and strides[0] == strides[1] and strides[0][1] == 1  # channels_last θ
    assert torch.equal(plain(x), fused(x))
    assert _same(*[[w.grad for w in methods.latent_weights(m)] for m in (plain, fused)])


def _count_groups(monkeypatch) -> list[int]:
    calls: list[int] = []
    original = fused_module.FusedWeights.compute_group

    def counting(self, latents, layout):
        calls.append(len(latents))
        return original(self, latents, layout)

    monkeypatch.setattr(fused_module.FusedWeights, "compute_group", counting)
    return calls


def test_one_flat_quantization_per_forward(monkeypatch):
    calls = _count_groups(monkeypatch)
    model = _model("resnet20", "bnn++", True)
    layers = len(list(methods.binarized_layers(model)))
    x, y = _batches("resnet20", n=1)[0]
    nn.functional.cross_entropy(model(x), y).backward()
    assert calls == [layers] and layers == 18
    model(x)
    assert calls == [layers, layers]
    fused = model._proxbench_fused
    assert not fused.active and fused.thetas is None  # nothing kept between forwards
    name, layer = next(iter(methods.binarized_layers(model)))
    assert torch.equal(layer.weight, methods.get_method(model).forward(layer.parametrizations.weight.original))
    assert len(calls) == 2  # a weight read outside a forward takes the per-layer path


class _CountOps(TorchDispatchMode):
    """Counts the aten ops that are not views (each one a kernel launch on a GPU)."""

    def __init__(self):
        super().__init__()
        self.ops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops += not func.is_view
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("key, most", [("bnn++", 90), ("bnn", 30), ("pc", 75)])
def test_fused_step_needs_few_ops(key, most):
    """The point of fusing: the weights' forward and backward of a ResNet-20 in a few dozen ops, not a few
    per layer (bnn++: 504 per layer, 87 fused; the α reductions, 2 per layer, stay)."""
    counts = []
    for fused in (False, True):
        model = _model("resnet20", key, fused)
        ones = [torch.ones(w.shape) for w in methods.latent_weights(model)]
        with _CountOps() as count:
            if fused:
                model._proxbench_fused.active = True  # as inside a forward of the model
            thetas = [layer.weight for _, layer in methods.binarized_layers(model)]
            torch.autograd.backward(thetas, ones)
        counts.append(count.ops)
    assert counts[1] <= most < counts[0] / 2, counts


def test_fuse_api_and_unfuse(monkeypatch):
    model = _model("fmnist-cnn", "bnn", False)
    fused = methods.fuse(model)
    assert fused is not None and methods.fuse(model) is fused
    calls = _count_groups(monkeypatch)
    x = _batches("fmnist-cnn", n=1)[0][0]
    model(x)
    assert calls == [2]
    methods.unfuse(model)
    model(x)
    assert calls == [2] and all(m.parametrizations.weight[0].fused is None for _, m in methods.binarized_layers(model))


def test_methods_that_stay_per_layer():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for key in ("rpc", "pq"):  # θ = w: nothing to fuse, and no warning about it
            assert methods.fuse(_model("fmnist-cnn", key, False)) is None
        assert methods.fuse(_model("fmnist-cnn", "fp", False)) is None
        assert methods.fuse(_model("fmnist-cnn", "bnn-w1a1", False)) is not None  # BNN weights, binary inputs
    with pytest.warns(UserWarning, match="'xnor\\+\\+' is not fusable"):
        assert methods.fuse(_model("fmnist-cnn", "xnor++", False)) is None  # per-layer learnable Γ


def test_layer_with_a_scalar_tail_stays_per_layer_and_identical(monkeypatch):
    """On CPU a layer whose numel is not a multiple of the vector block keeps the per-layer path."""
    calls = _count_groups(monkeypatch)

    def build(fused: bool) -> nn.Module:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(20, 64), nn.Linear(64, 30), nn.Linear(30, 33), nn.Linear(33, 64),
                              nn.Linear(64, 5))
        return methods.binarize(model, "bnn++", policy="all", fused=fused)

    plain, fused = build(False), build(True)
    x = torch.randn(16, 20, generator=torch.Generator().manual_seed(2))
    outs = [m(x) for m in (plain, fused)]
    for out in outs:
        out.square().sum().backward()
    assert calls == [4]  # one flat tensor for the four layers of 64·k weights; 30·33 = 990 stays per layer
    assert torch.equal(*outs)
    assert _same(*[[w.grad for w in methods.latent_weights(m)] for m in (plain, fused)])


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("key, scale", [("bnn++", "tensor"), ("bnn+", "none"), ("bnn++", "channel")])
def test_flat_tensor_matches_with_scalar_tails(key, scale, threads):
    """θ and the latents' gradients, fused against per layer, for layers of every size: on CPU SignSwish's
    sigmoid rounds differently in the scalar tail of an op (a tensor's last elements, the end of each
    thread's chunk when ATen splits ≥ 32768 elements between threads) than in its vector code, which the
    padded layout and ``vector_clean`` keep where they are (without them this test fails)."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    layers = [nn.Linear(37 + i, 29 + 2 * i) for i in range(12)] + [nn.Conv2d(64, 64, 3), nn.Linear(1000, 333),
                                                                    nn.Linear(64, 1000), nn.Linear(640, 300)]
    model = methods.binarize(nn.Sequential(*layers), key, policy="all", scale=scale, fused=True)
    methods.set_progress(model, 0.3)
    fused = model._proxbench_fused
    latents = methods.latent_weights(model)
    per_layer = [methods.get_method(model).forward(w) for w in latents]
    fused.active = True  # as inside a forward of the model
    flat = [layer.weight for layer in fused.layers]
    fused.active, fused.thetas = False, None
    assert _same(per_layer, flat)
    grads = [torch.randn(w.shape, generator=torch.Generator().manual_seed(i)) for i, w in enumerate(latents)]
    expected = torch.autograd.grad(per_layer, latents, grads)
    assert _same(expected, torch.autograd.grad(flat, latents, grads))


def test_padded_layout_keeps_thread_chunks_aligned():
    cpu = torch.device("cpu")
    for n in (64, 4608, 36864, 267264, 300000):
        total = fused_module.padded_total(n, cpu)
        assert total >= n and fused_module.vector_clean(total, cpu)
    assert not fused_module.vector_clean(250, cpu)
    assert fused_module.vector_clean(250, torch.device("meta"))  # not CPU: no scalar tail to avoid


@pytest.mark.usefixtures("fresh_dynamo")
def test_fused_model_compiles_without_a_graph_break():
    """Under ``torch.compile`` the fused model traces the per-layer ``straight_through``: no graph break."""
    model = _model("resnet20", "bnn++", True).train()
    x, y = _batches("resnet20", n=1)[0]

    def step(x, y):
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        return loss.detach()

    with torch._dynamo.config.patch(trace_autograd_ops=True):
        explained = torch._dynamo.explain(step)(x, y)
    reasons = [str(b.reason).splitlines()[0] for b in explained.break_reasons]
    assert explained.graph_break_count == 0 and not reasons, reasons
    assert explained.graph_count == 1
    assert not model._proxbench_fused.active


def test_fuse_key_keeps_old_run_ids_and_trains(tmp_path):
    from bench.run import train

    quick = {"model": "fmnist-cnn", "dataset": "synthetic", "epochs": 1, "batch_size": 16, "subset": 32,
             "test_subset": 16, "method": "bnn++",
             "data_options": {"img_size": 28, "in_chans": 1, "num_classes": 10, "train_size": 32, "test_size": 16}}
    cfg = configs.resolve(dict(quick))
    assert cfg["fuse"] is False
    assert configs.run_id(cfg) == configs.run_id({k: v for k, v in cfg.items() if k != "fuse"})
    records = [train.execute(configs.resolve({**quick, "fuse": fuse}), grid="t", workdir=tmp_path / str(fuse),
                             results=tmp_path / f"{fuse}-r", log=lambda m: None) for fuse in (False, True)]
    assert records[1]["status"] == "done" and records[1]["config"]["fuse"] is True
    assert records[0]["run_id"] != records[1]["run_id"]
    # The same bits: the same accuracies and counts. Peak memory is the process's, measured, not computed.
    measured = {"peak_memory_mb"}
    assert ({k: v for k, v in records[0]["final"].items() if k not in measured}
            == {k: v for k, v in records[1]["final"].items() if k not in measured})


@pytest.mark.usefixtures("fresh_dynamo")
def test_compiled_train_step_with_fuse_follows_the_per_layer_one():
    """``capture = "compile"`` with ``fuse = true``: the compiled step traces the per-layer form, so its losses
    and weights are those of the compiled step without fuse."""
    from bench.run.optim import make_optimizer
    from bench.run.step import TrainStep, tensor_lr

    cfg = {"optimizer": "adam", "lr": 3e-3, "weight_decay": 0.0, "latent_weight_decay": 0.0, "momentum": 0.9}
    results = []
    for fused in (False, True):
        torch._dynamo.reset()
        model = _model("fmnist-cnn", "bnn++", fused)
        opt = make_optimizer(cfg, model)
        tensor_lr(opt, torch.device("cpu"))
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
        step = TrainStep(model, opt, sched, nn.CrossEntropyLoss(), torch.device("cpu"), "compile", backend="aot_eager")
        losses = [step(x, y, (i + 1) / 3)[1].item() for i, (x, y) in enumerate(_batches("fmnist-cnn"))]
        results.append((losses, [p.detach().clone() for p in model.parameters()]))
    assert results[0][0] == results[1][0]
    assert _same(results[0][1], results[1][1])
