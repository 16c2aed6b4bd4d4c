"""CUDA paths (skipped without a GPU): bf16 autocast training step, GPU in-memory loader, deployed export."""

from __future__ import annotations

import pytest
import torch

import methods
import models

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


@pytest.mark.parametrize("key", ["fp", "bnn++", "pq"])
def test_binarized_resnet20_step_under_bf16_autocast_channels_last(key):
    torch.manual_seed(0)
    model = methods.binarize(models.create_model("resnet20", num_classes=10), key).cuda()
    model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x = torch.randn(32, 3, 32, 32, device="cuda").contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (32,), device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = torch.nn.functional.cross_entropy(model(x).float(), y)
    loss.backward()
    trained = methods.latent_weights(model) if key != "fp" else [m.weight for m in model.modules()
                                                                  if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    assert len(trained) == (20 if key == "fp" else 18)  # ResNet-20: 19 convs + classifier; first and last stay fp
    before = [w.detach().clone() for w in trained]
    methods.optimizer_step(model, opt, progress=0.5)
    assert torch.isfinite(loss)
    assert all(not torch.equal(a, b) for a, b in zip(before, trained))
    layers = list(methods.binarized_layers(model))
    assert len(layers) == (0 if key == "fp" else 18)
    with methods.deployed(model):
        for _, layer in layers:
            w = layer.weight.abs().flatten(1)
            assert torch.equal(w, w[:, :1].expand_as(w))  # |weight| = α_c across each output channel


def test_memory_loader_on_gpu_gives_the_cpu_batches():
    from bench import data

    options = {"train_size": 512, "test_size": 256}
    cpu = data.build_loader("synthetic", "train", batch_size=128, train=True, device="cpu", seed=3, options=options)
    gpu = data.build_loader("synthetic", "train", batch_size=128, train=True, device="cuda", seed=3, options=options)
    for (xc, yc), (xg, yg) in zip(cpu, gpu):
        assert xg.is_cuda and torch.equal(yc, yg.cpu())
        torch.testing.assert_close(xc, xg.cpu())
