"""BiBench's CIFAR backbones (``models.bibench``) and the ``bibench-cifar`` grid that follows its configs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import methods
import models
from bench.dispatch.grid import load_grid
from bench.dispatch.preflight import _binary_input_problems
from bench.run import config as configs
from bench.run import train
from bench.run.model import constant_binary_inputs

# (blocks per stage, stage widths, stem width) as BiBench builds them: resnet.py arch_settings, the model configs'
# base_channels, resnet.py's default stem_channels = 64 (no config sets it)
ARCH = {"resnet20-bibench": ((3, 3, 3), (16, 32, 64), 64), "resnet18-bibench": ((2, 2, 2, 2), (64, 128, 256, 512), 64)}


def bibench_layers(name: str) -> tuple[list[str], list[str]]:
    """(binarized, full precision) layer names derived from BiBench's code: every BasicBlock's conv1/conv2 is
    built from conv_cfg (the binarized conv); the stem (first_conv_cfg None), ResLayer's downsample conv1x1
    (downsample_conv_cfg None, wherever the stride or the width changes) and the head's Linear are plain."""
    blocks, widths, stem = ARCH[name]
    binarized, full = [], ["conv1"]
    cin = stem
    for i, (n, w) in enumerate(zip(blocks, widths)):
        for j in range(n):
            binarized += [f"layer{i + 1}.{j}.conv1", f"layer{i + 1}.{j}.conv2"]
            if j == 0 and (i > 0 or cin != w):
                full.append(f"layer{i + 1}.0.downsample.0")
        cin = w
    return binarized, full + ["fc"]


@pytest.mark.parametrize("name", ARCH)
@pytest.mark.parametrize("method", ["bnn-w1a1", "reactnet"])
def test_w1a1_binarizes_exactly_the_convs_bibench_binarizes(name, method):
    torch.manual_seed(0)
    model = models.create_model(name, num_classes=10)
    binarized, full = bibench_layers(name)
    assert len(binarized) == (18 if name == "resnet20-bibench" else 16) and len(full) == 5
    methods.binarize(model, method, policy="w1a1")
    assert [n for n, _ in methods.binarized_layers(model)] == binarized
    assert [n for n, _ in methods.input_binarized_layers(model)] == binarized
    table = methods.summary(model)
    assert [layer.name for layer in table.layers if not layer.binarized] == full
    assert all(not layer.input_binarized for layer in table.layers if not layer.binarized)
    assert constant_binary_inputs(model, (3, 32, 32)) == []  # Hardtanh outputs are signed: the guard passes


def test_structure_follows_bibench():
    r20 = models.create_model("resnet20-bibench")
    assert r20.conv1.out_channels == 64 and r20.conv1.kernel_size == (3, 3) and r20.conv1.stride == (1, 1)
    down = r20.layer1[0].downsample[0]  # the 64-wide stem meets the 16-wide first stage: a stride-1 1x1 conv
    assert (down.in_channels, down.out_channels, down.stride) == (64, 16, (1, 1))
    assert r20.layer2[0].conv1.stride == (2, 2) and r20.layer2[0].downsample[0].stride == (2, 2)
    assert r20.layer1[1].downsample is None and r20.fc.in_features == 64
    r18 = models.create_model("resnet18-bibench")
    assert r18.layer1[0].downsample is None and r18.fc.in_features == 512
    assert not any(isinstance(m, nn.MaxPool2d) for m in r18.modules())
    for model in (r20, r18):
        acts = [type(m) for m in model.modules() if isinstance(m, (nn.ReLU, nn.Hardtanh))]
        assert acts and set(acts) == {nn.Hardtanh}
        zero_init = [not b.bn2.weight.detach().any() for b in model.modules() if hasattr(b, "bn2")]
        assert zero_init and all(zero_init)  # zero_init_residual
    relu = models.create_model("resnet20-bibench", act="relu")  # the fp32 configs' activation, the same weights
    assert {type(m) for m in relu.modules() if isinstance(m, (nn.ReLU, nn.Hardtanh))} == {nn.ReLU}
    assert {k: v.shape for k, v in relu.state_dict().items()} == {k: v.shape for k, v in r20.state_dict().items()}
    assert models.model_info("resnet20-bibench").same_weights_kwargs == ("act",)
    assert 280_000 <= sum(p.numel() for p in r20.parameters()) <= 285_000
    with pytest.raises(models.ModelError, match="act must be one of"):
        models.create_model("resnet18-bibench", act="gelu")


@pytest.mark.parametrize("name", ARCH)
def test_forward_backward_at_32px(name):
    torch.manual_seed(0)
    model = methods.binarize(models.create_model(name, num_classes=10), "bireal", policy="w1a1")
    out = model(torch.randn(4, 3, 32, 32))
    assert out.shape == (4, 10)
    out.logsumexp(1).mean().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname


def test_bibench_cifar_grid_cells_parents_and_values():
    grid = load_grid("bibench-cifar")
    w1a1 = methods.list_methods(w1a1=True)
    fps = [c for c in grid.cells if c.config["method"] == "fp"]
    tunes = [c for c in grid.cells if c.config["method"] != "fp"]
    assert len(grid.cells) == 102 and len(fps) == 6 and len(tunes) == 96 and grid.gpu_hours == 210
    for c in fps:  # acc_cifar10/resnet{20,18}_fp32.py: ReLU, sgd_1e-1_cosinelr_200e.py
        cfg = c.config
        assert c.stage == 0 and cfg["mode"] == "e2e" and cfg["model_kwargs"] == {"act": "relu"}
        values = (cfg["optimizer"], cfg["lr"], cfg["momentum"], cfg["weight_decay"], cfg["epochs"])
        assert values == ("sgd", 0.1, 0.9, 1e-4, 200)
    parents = {(c.config["model"], c.config["seed"]): c.run_id for c in fps}
    combos = set()
    for c in tunes:  # acc_cifar10/*_{sgd_1e-1,adam_1e-3}_cosinelr.py: Hardtanh, 400 epochs, from the fp checkpoint
        cfg = c.config
        assert c.stage == 1 and c.parent == parents[(cfg["model"], cfg["seed"])]
        assert cfg["mode"] == "finetune" and cfg["init"] == f"run:{c.parent}" and cfg["model_kwargs"] == {}
        assert (cfg["epochs"], cfg["batch_size"], cfg["lr_schedule"], cfg["policy"]) == (400, 128, "cosine", "w1a1")
        wd = 1e-4 if cfg["optimizer"] == "sgd" else 0.0
        assert cfg["lr"] == (0.1 if cfg["optimizer"] == "sgd" else 1e-3)
        assert cfg["weight_decay"] == cfg["latent_weight_decay"] == wd
        combos.add((cfg["model"], cfg["method"], cfg["optimizer"], cfg["seed"]))
    assert combos == {(m, k, o, s) for m in ARCH for k in w1a1 for o in ("sgd", "adam") for s in (0, 1, 2)}
    assert _binary_input_problems(grid.cells) == []


def test_a_parent_differing_in_a_weight_changing_kwarg_is_not_found(tmp_path):
    from bench.errors import UserError

    grid = tmp_path / "g.toml"
    grid.write_text('[defaults]\nmodel = "resnet18-bireal"\n'
                    '[axes]\nmethod = ["fp", "bireal"]\nmode = ["e2e", "finetune"]\n'
                    '[method.fp]\nmodel_kwargs = {shortcut = "repeat"}\n[mode.finetune]\ninit = "parent"\n'
                    '[[exclude]]\nmethod = "fp"\nmode = "finetune"\n[[exclude]]\nmethod = "bireal"\nmode = "e2e"\n')
    with pytest.raises(UserError, match="no fp e2e cell"):
        load_grid(str(grid))


@pytest.mark.slow
@pytest.mark.parametrize("name", ARCH)
def test_one_epoch_of_the_grid_fp_cell_and_a_fine_tune_on_cifar_shaped_data(name, tmp_path):
    """The grid's own configs, on synthetic 3x32x32 data of 10 classes and a few batches: the ReLU fp parent
    trains, then a W1A1 fine-tune starts from it with Hardtanh."""
    grid = load_grid("bibench-cifar")
    fp = next(c for c in grid.cells if c.config["model"] == name and c.config["method"] == "fp")
    tune = next(c for c in grid.cells if c.config["model"] == name and c.config["method"] == "bireal"
                and c.config["optimizer"] == "sgd" and c.parent == fp.run_id)
    small = {"dataset": "synthetic", "epochs": 1, "batch_size": 16, "bn_reestimate": 1,
             "data_options": {"img_size": 32, "in_chans": 3, "num_classes": 10, "train_size": 32, "test_size": 16}}
    parent = configs.resolve({**fp.config, **small})
    done = train.execute(parent, grid="t", workdir=tmp_path / "w", results=tmp_path / "r", log=lambda m: None)
    assert done["status"] == "done"
    child = configs.resolve({**tune.config, **small, "init": f"run:{done['run_id']}"})
    record = train.execute(child, grid="t", workdir=tmp_path / "w", results=tmp_path / "r", log=lambda m: None)
    assert record["status"] == "done" and record["final"]["bops_w1a1"] > 0
    assert record["history"][0]["epoch"] == 0  # the fine-tune's first evaluation: the parent's weights, binarized
