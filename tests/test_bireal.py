"""Networks built for binary activations (``models.bireal``) and the check that refuses a network whose
binarized layers would binarize a constant (a ReLU in front of a sign)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import methods
import models
from bench.run import config as configs
from bench.run import train
from bench.run.model import constant_binary_inputs
from conftest import one_line_error, run_cli
from models.bireal import BinaryBlock

CIFAR_SIZES = {"resnet20-bireal": 18, "resnet32-react": 30, "resnet56-bireal": 54, "resnet18-bireal": 16,
               "resnet18-react": 16}


@pytest.mark.parametrize("name, binary_convs", CIFAR_SIZES.items())
def test_every_3x3_conv_is_a_binary_block_and_w1a1_keeps_stem_shortcuts_and_classifier(name, binary_convs):
    torch.manual_seed(0)
    model = models.create_model(name, num_classes=10, img_size=32)
    blocks = [n for n, m in model.named_modules() if isinstance(m, BinaryBlock)]
    assert len(blocks) == binary_convs
    convs = [n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert convs[0] == "conv1" and convs[-1] == "fc"
    # Bi-Real's downsampling shortcut: one 1x1 conv in the first block of every stage after the first
    shortcuts = [n for n in convs if ".downsample." in n]
    stages = 4 if name.startswith("resnet18") else 3
    assert shortcuts == [f"stages.{i}.0.downsample.1" for i in range(1, stages)]
    assert [n for n in convs[1:-1] if n not in shortcuts] == [f"{b}.conv" for b in blocks]
    methods.binarize(model, "reactnet" if name.endswith("react") else "bnn-w1a1", policy="w1a1")
    assert [n for n, _ in methods.binarized_layers(model)] == [f"{b}.conv" for b in blocks]
    assert [n for n, _ in methods.input_binarized_layers(model)] == [f"{b}.conv" for b in blocks]
    assert constant_binary_inputs(model, (3, 32, 32)) == []
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("name", ["resnet20-bireal", "resnet18-react"])
def test_bireal_downsampling_shortcut_is_avgpool_fp_1x1_conv_and_bn(name):
    torch.manual_seed(0)
    model = models.create_model(name, num_classes=10, img_size=32)
    block = model.stages[1][0]
    pool, conv, bn = block.downsample
    assert isinstance(pool, nn.AvgPool2d) and pool.kernel_size == 2 and pool.stride == 2
    assert conv.kernel_size == (1, 1) and conv.stride == (1, 1) and conv.in_channels * 2 == conv.out_channels
    assert isinstance(bn, nn.BatchNorm2d) and bn.num_features == conv.out_channels
    x = torch.randn(2, conv.in_channels, 8, 8)
    block.eval()
    torch.testing.assert_close(block(x), block.act(block.bn(block.conv(x)) + bn(conv(pool(x)))))
    methods.binarize(model, "bireal", policy="w1a1")
    binarized = {n for n, _ in methods.binarized_layers(model)}
    assert "stages.1.0.downsample.1" not in binarized and "stages.1.0.conv" in binarized
    assert not hasattr(block.downsample[1], "parametrizations") and not hasattr(block.downsample[1], "input_quantizer")
    # the parameter-free form stays available: no 1x1 conv at all
    old = models.create_model(name, num_classes=10, img_size=32, shortcut="repeat")
    assert not any(m.kernel_size == (1, 1) for m in old.modules() if isinstance(m, nn.Conv2d))
    assert sum(p.numel() for p in old.parameters()) < sum(p.numel() for p in model.parameters())
    with pytest.raises(models.ModelError, match="shortcut must be one of"):
        models.create_model(name, shortcut="pad")


def test_fmnist_cnn_bireal_keeps_its_parameter_free_shortcuts():
    # default-w1a1's records were measured on this network: its blocks widen without a 1x1 conv
    for name in ("fmnist-cnn-bireal", "fmnist-cnn-react"):
        model = models.create_model(name)
        blocks = [m for m in model.modules() if isinstance(m, BinaryBlock)]
        assert [b.repeat for b in blocks] == [2, 2] and all(b.downsample is None for b in blocks)
        assert sum(isinstance(m, nn.Conv2d) for m in model.modules()) == 3


def test_binary_block_shortcut_pools_and_repeats_channels():
    block = BinaryBlock(2, 4, react=False, stride=2, shortcut="repeat").eval()
    nn.init.zeros_(block.conv.weight)  # BN(0) = 0 in eval with fresh statistics: only the shortcut is left
    x = torch.arange(2 * 5 * 5, dtype=torch.float32).reshape(1, 2, 5, 5)
    pooled = torch.stack([x[0, c, :4, :4].reshape(2, 2, 2, 2).mean((1, 3)) for c in range(2)])  # 2x2 means
    out = block(x)
    assert out.shape == (1, 4, 3, 3)  # ceil(5/2), as the strided conv
    torch.testing.assert_close(out[0, :2, :2, :2], pooled)
    torch.testing.assert_close(out[0, 2:], out[0, :2])  # the channels repeated
    torch.testing.assert_close(out[0, 0, 2, 2], x[0, 0, 4, 4])  # the edge window holds one pixel: no padding
    with pytest.raises(models.ModelError, match="multiple of the input width"):
        BinaryBlock(4, 6, react=False, shortcut="repeat")
    assert BinaryBlock(4, 6, react=False).downsample is not None  # the 1x1 conv shortcut takes any width


def test_resnet18_bireal_stems():
    cifar = models.create_model("resnet18-bireal", num_classes=10, img_size=32)
    imagenet = models.create_model("resnet18-bireal", num_classes=10, img_size=224)
    assert cifar.conv1.kernel_size == (3, 3) and isinstance(cifar.maxpool, nn.Identity)
    assert imagenet.conv1.kernel_size == (7, 7) and isinstance(imagenet.maxpool, nn.MaxPool2d)
    with pytest.raises(models.ModelError, match="stem must be one of"):
        models.create_model("resnet18-react", stem="tiny")


@pytest.mark.parametrize("model, method, dead", [
    ("resnet20", "bnn-w1a1", 18),       # every binarized conv follows a ReLU
    ("resnet18", "xnor", 16),           # (w1a1 keeps the three 1x1 downsample convs full precision)
    ("fmnist-cnn", "reactnet", 2),      # RSign's β starts at 0: sign(relu(x) − 0) = +1
    ("resnet20", "dorefa", 18),         # BiBench's DoReFa binarizes inputs with sign
    ("resnet20", "dorefa-tensorpack", 0),  # round(clip(x, 0, 1)) of a ReLU output is 0 or 1: not constant
    ("resnet20", "bnn++", 0),           # weights only
    ("fmnist-cnn-bireal", "recu", 0),
])
def test_constant_binary_inputs_finds_a_relu_in_front_of_a_sign(model, method, dead):
    info = models.model_info(model)
    params = {"form": "tensorpack"} if method == "dorefa-tensorpack" else {}
    net = methods.binarize(models.create_model(model, num_classes=10, img_size=32 if model.startswith("resnet") else 28),
                           method.removesuffix("-tensorpack"), policy="w1a1", **params)
    shape = (3, 32, 32) if model.startswith("resnet") else info.default_input
    rng_before = torch.get_rng_state()
    assert len(constant_binary_inputs(net, shape)) == dead
    assert torch.equal(torch.get_rng_state(), rng_before)  # the probe draws from its own generator
    assert net.training


def test_a_run_of_a_sign_activation_after_a_relu_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rc, _, err = run_cli(capsys, "run", "--model", "resnet20", "--method", "xnor", "--dataset", "synthetic",
                         "--epochs", "1", "--batch-size", "16", "--set",
                         "data_options={img_size=16, in_chans=3, num_classes=4, train_size=32, test_size=16}")
    one_line_error(rc, err, "model 'resnet20' with method 'xnor'", "resnet20-bireal, resnet20-react", "dorefa")
    assert not list(tmp_path.rglob("*.json")) and not list(tmp_path.rglob("*.pt"))


def test_preflight_lists_each_network_that_binarizes_a_constant(tmp_path, capsys):
    grid = tmp_path / "w.toml"
    grid.write_text('[defaults]\ndataset = "synthetic"\npolicy = "w1a1"\n'
                    'data_options = {img_size = 16, in_chans = 3, num_classes = 4, train_size = 32, test_size = 16}\n'
                    '[axes]\nmodel = ["resnet20", "resnet20-bireal"]\nmethod = ["bnn-w1a1", "bc"]\n'
                    'seed = [0, 1]\n')
    rc, _, err = run_cli(capsys, "grid", "run", grid, "--dry-run", "--workdir", tmp_path / "work",
                         "--results", tmp_path / "results")
    assert rc == 2 and "Traceback" not in err
    problems = [line for line in err.splitlines() if "pre-flight" in line]
    assert len(problems) == 1, err  # one network (resnet20 × bnn-w1a1, its two seeds) is refused
    assert "2 cell(s): model 'resnet20' with method 'bnn-w1a1'" in problems[0]


def test_a_w1a1_resnet_trains_and_deploys(tmp_path):
    cfg = configs.resolve({"model": "resnet20-react", "method": "reactnet", "policy": "w1a1", "dataset": "synthetic",
                           "epochs": 1, "batch_size": 16,
                           "data_options": {"img_size": 16, "in_chans": 3, "num_classes": 4, "train_size": 64,
                                            "test_size": 32}})
    record = train.execute(cfg, grid="t", workdir=tmp_path / "w", results=tmp_path / "r", log=lambda m: None)
    assert record["status"] == "done"
    assert record["final"]["bops_w1a1"] > 0 and record["final"]["acc"] == record["final"]["acc_forward"]
