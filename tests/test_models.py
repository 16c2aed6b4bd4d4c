"""Tests of the model registry, driven by ``models.list_models()``.

Every registered model is built for the dataset inputs (Fashion-MNIST 1×28×28, CIFAR 3×32×32 and its
registered default), run forward and backward, binarized with ``bnn++`` and stepped once. The ViT-S and
DeiT-S/B models are tested at 32 px (patch 4) only, and binarized in their first block only, to keep the
file fast on a 2-core CPU; they share their code path with the tiny ones, which are also tested at 224 px.
"""

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # before timm/huggingface_hub are imported

import copy  # noqa: E402
import functools  # noqa: E402
import time  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

import methods  # noqa: E402
import models  # noqa: E402

ALL = models.list_models()
REQUIRED = [
    "fmnist-cnn", "fmnist-mlp", "resnet20", "resnet32", "resnet44", "resnet56", "vgg-small", "resnet18",
    "vit_tiny_patch16_224", "vit_small_patch16_224", "deit_tiny_patch16_224", "deit_small_patch16_224",
    "deit_base_patch16_224", "vit-mini",
]
FMNIST, CIFAR = (1, 28, 28), (3, 32, 32)
PRETRAINED = [n for n in ALL if models.model_info(n).has_pretrained]


def heavy(name: str) -> bool:
    """Large timm models: tested at 32 px only."""
    return "_small_" in name or "_base_" in name


def inputs(name: str) -> list[tuple[int, int, int]]:
    if heavy(name):
        return [CIFAR]
    return sorted({FMNIST, CIFAR, models.model_info(name).default_input})


def small_input(name: str) -> tuple[int, int, int]:
    """The registered default input, or CIFAR's where the default is ImageNet-sized."""
    default = models.model_info(name).default_input
    return default if default[1] <= 64 else CIFAR


@functools.lru_cache(maxsize=None)
def _prototype(name: str, shape: tuple[int, int, int]) -> nn.Module:
    torch.manual_seed(0)
    if shape == models.model_info(name).default_input:
        return models.create_model(name, num_classes=7)  # in_chans/img_size default to the registered input
    return models.create_model(name, num_classes=7, in_chans=shape[0], img_size=shape[1])


def build(name: str, shape: tuple[int, int, int]) -> nn.Module:
    """A fresh copy of ``name`` for ``shape`` inputs and 7 classes (building a ViT-B once, copying it after)."""
    return copy.deepcopy(_prototype(name, shape))


def weighted_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


# --- the registry -------------------------------------------------------------------------------------


def test_list_models_sorted_filtered_and_complete():
    assert ALL == sorted(ALL)
    assert set(REQUIRED) <= set(ALL)
    assert models.list_models("resnet??") == ["resnet18", "resnet20", "resnet32", "resnet44", "resnet56"]
    assert models.list_models("resnet20-*") == ["resnet20-bibench", "resnet20-bireal", "resnet20-react"]
    assert models.list_models("nothing*") == []


@pytest.mark.parametrize("name", ALL)
def test_model_info(name):
    info = models.model_info(name)
    assert info.family in ("cnn", "vit")
    assert info.description and len(info.default_input) == 3
    assert info.family == ("vit" if "vit" in name or "deit" in name else "cnn")


def test_unknown_model_names_close_match_and_valid_names():
    with pytest.raises(models.ModelError, match=r"unknown model 'resnt20'; did you mean 'resnet20'\?") as err:
        models.create_model("resnt20")
    assert "fmnist-cnn" in str(err.value) and "vit-mini" in str(err.value)
    with pytest.raises(models.ModelError, match="did you mean 'deit_tiny_patch16_224'"):
        models.model_info("deit_tiny_patch16")


def test_unknown_keyword_is_a_model_error():
    with pytest.raises(models.ModelError, match=r"unknown keyword argument 'shortcat'; did you mean 'shortcut'"):
        models.create_model("resnet20", shortcat="B")
    with pytest.raises(models.ModelError, match="valid: none"):
        models.create_model("vgg-small", depth=3)


@pytest.mark.parametrize("kwargs", [dict(num_classes=0), dict(img_size=-1), dict(in_chans=2.0)])
def test_bad_sizes_are_model_errors(kwargs):
    with pytest.raises(models.ModelError, match="positive integer"):
        models.create_model("resnet20", **kwargs)


def test_bad_patch_size_is_a_model_error():
    with pytest.raises(models.ModelError, match="patch_size"):
        models.create_model("vit-mini", img_size=32, patch_size=5)
    assert [models.default_patch_size(s) for s in (28, 32, 224)] == [7, 4, 16]


def test_register_model_decorator():
    with models.registry.MODELS.scoped():
        _register_a_toy_model()
    assert "toy" not in models.list_models()  # forgotten after the scope


def _register_a_toy_model():

    @models.register_model("toy", default_img_size=8, default_in_chans=1, family="cnn")
    def toy(num_classes, in_chans, img_size, pretrained, width=4):
        """A toy model."""
        return nn.Sequential(nn.Flatten(), nn.Linear(in_chans * img_size**2, width), nn.Linear(width, num_classes))

    assert "toy" in models.list_models() and "toy" not in ALL
    info = models.model_info("toy")
    assert info.description == "A toy model." and info.default_input == (1, 8, 8) and info.kwargs == ("width",)
    assert models.create_model("toy", num_classes=3, width=5)(torch.randn(2, 1, 8, 8)).shape == (2, 3)
    with pytest.raises(models.ModelError, match="family"):
        models.register_model("bad", default_img_size=8, family="rnn")


# --- every model: shapes, gradients, binarization ----------------------------------------------------


@pytest.mark.parametrize("name,shape", [(n, s) for n in ALL for s in inputs(n)], ids=lambda v: "x".join(map(str, v)) if isinstance(v, tuple) else v)
def test_forward_backward(name, shape):
    torch.manual_seed(0)
    model, h = build(name, shape), shape[1]
    batch = 1 if h >= 128 and models.model_info(name).family == "vit" else 2
    out = model(torch.randn(batch, *shape))
    assert out.shape == (batch, 7)
    out.square().mean().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{name}: no gradient reaches {pname}"
        assert torch.isfinite(p.grad).all(), pname


@pytest.mark.parametrize("name", ALL)
def test_binarize_and_one_step_changes_latent_weights(name):
    torch.manual_seed(0)
    c, h, _ = shape = small_input(name)
    model = build(name, shape)
    for m in model.modules():  # BiBench's ResNets zero-init each block's last BN γ (zero_init_residual), which
        if isinstance(m, nn.BatchNorm2d) and m.weight is not None and not m.weight.any():  # stops every block
            nn.init.ones_(m.weight)  # conv's gradient in the first step; elsewhere γ = 1 already
    layers = weighted_layers(model)
    # the big ViTs binarize one block only: a bnn++ step over all 86M weights of DeiT-B takes ~15 s on a CPU
    methods.binarize(model, "bnn++", policy={"include": ["blocks.0.*"]} if heavy(name) else None)
    binarized = [n for n, _ in methods.binarized_layers(model)]
    assert binarized
    if models.model_info(name).family == "cnn":
        # the first layer registered sees the input, the last is the classifier: both stay full precision
        (first_name, first), (last_name, last) = layers[0], layers[-1]
        assert (getattr(first, "in_channels", None) or first.in_features // (h * h)) == c
        assert isinstance(last, nn.Linear) and last.out_features == 7
        assert binarized == [n for n, _ in layers[1:-1]]
    latents = methods.latent_weights(model)
    before = [w.detach().clone() for w in latents]
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = nn.functional.cross_entropy(model(torch.randn(2, *shape)), torch.tensor([1, 2]))
    loss.backward()
    methods.optimizer_step(model, opt, progress=0.5)
    changed = [not torch.equal(b, w) for b, w in zip(before, methods.latent_weights(model))]
    assert all(changed), f"{name}: latent weights unchanged in {[n for n, c in zip(binarized, changed) if not c]}"


# --- parameter counts --------------------------------------------------------------------------------


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    "name,kwargs,low,high",
    [
        ("fmnist-cnn", {}, 10_000, 150_000),
        ("resnet20", {}, 265_000, 275_000),  # He et al. Table 6: 0.27M
        ("resnet32", {}, 455_000, 470_000),  # 0.46M
        ("resnet44", {}, 650_000, 670_000),  # 0.66M
        ("resnet56", {}, 845_000, 860_000),  # 0.85M
        ("vgg-small", {}, 4_600_000, 4_700_000),
        ("resnet18", dict(num_classes=1000, img_size=224), 11_650_000, 11_720_000),  # 11.69M
        ("vit-mini", {}, 500_000, 2_000_000),
    ],
)
def test_parameter_counts(name, kwargs, low, high):
    assert low <= n_params(models.create_model(name, **kwargs)) <= high


def test_resnet_shortcut_options():
    a, b = models.create_model("resnet20"), models.create_model("resnet20", shortcut="B")
    assert n_params(b) > n_params(a)
    assert sum(m.kernel_size == (1, 1) for m in b.modules() if isinstance(m, nn.Conv2d)) == 2
    assert not any(m.kernel_size == (1, 1) for m in a.modules() if isinstance(m, nn.Conv2d))
    with pytest.raises(models.ModelError, match="shortcut"):
        models.create_model("resnet20", shortcut="C")


# --- pretrained weights, offline ---------------------------------------------------------------------


@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path


@pytest.mark.parametrize("name", PRETRAINED)
def test_pretrained_missing_offline_fails_at_once(name, empty_cache):
    start = time.monotonic()
    with pytest.raises(models.ModelError, match="not in the local cache") as err:
        models.create_model(name, pretrained=True, img_size=32)
    assert time.monotonic() - start < 5
    message = str(err.value)
    assert str(empty_cache) in message and "HF_HUB_OFFLINE=1" in message
    assert ("timm/" + name) in message or "resnet18-" in message  # the repository or file is named


def test_pretrained_refused_for_models_without_weights():
    with pytest.raises(models.ModelError, match="no pretrained weights"):
        models.create_model("fmnist-cnn", pretrained=True)


def test_pretrained_from_local_cache_is_resampled(empty_cache):
    """Weights in the HF cache layout are loaded, with timm resampling patch and position embeddings."""
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(0)
    source = timm.create_model("deit_tiny_patch16_224")
    repo = empty_cache / "hf" / "hub" / "models--timm--deit_tiny_patch16_224.fb_in1k"
    (repo / "snapshots" / "0123abcd").mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abcd")
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, repo / "snapshots" / "0123abcd" / "model.safetensors")
    model = models.create_model("deit_tiny_patch16_224", num_classes=10, in_chans=1, img_size=32, pretrained=True)
    assert model.pos_embed.shape == (1, 1 + 8 * 8, 192)
    assert model.patch_embed.proj.weight.shape == (192, 1, 4, 4)
    assert torch.equal(model.blocks[5].mlp.fc1.weight, source.blocks[5].mlp.fc1.weight)
    assert model(torch.randn(1, 1, 32, 32)).shape == (1, 10)


# --- loading checkpoints -----------------------------------------------------------------------------


@pytest.mark.parametrize("patch_size", [4, None])  # 4: the grid 7×7 -> 8×8; None: patch 7 -> 4 and grid 4×4 -> 8×8
def test_load_resamples_a_28px_vit_mini_into_a_32px_one(patch_size):
    torch.manual_seed(0)
    small = models.create_model("vit-mini", img_size=28, patch_size=patch_size)
    big = models.create_model("vit-mini", img_size=32)
    resampled = models.load_state_dict_resampled(big, {"state_dict": small.state_dict()})
    assert "pos_embed" in resampled and ("patch_embed.proj.weight" in resampled) == (patch_size is None)
    assert big.pos_embed.shape == (1, 1 + 64, 128)
    assert torch.equal(big.pos_embed[:, 0], small.pos_embed[:, 0])  # the class token's embedding is kept
    assert torch.equal(big.blocks[2].attn.qkv.weight, small.blocks[2].attn.qkv.weight)
    assert big(torch.randn(2, 1, 32, 32)).shape == (2, 10)


def test_load_full_precision_checkpoint_into_a_binarized_model():
    source, target = models.create_model("resnet20"), models.create_model("resnet20")
    methods.binarize(target, "bnn++")
    assert models.load_state_dict_resampled(target, source.state_dict()) == []
    latent = target.layer2[0].conv1.parametrizations.weight.original
    assert torch.equal(latent, source.layer2[0].conv1.weight)


def test_load_checkpoint_of_another_architecture_is_a_model_error():
    target = models.create_model("vit-mini")
    with pytest.raises(models.ModelError, match=r"checkpoint does not match VisionTransformer: key '.+' is missing"):
        models.load_state_dict_resampled(target, models.create_model("resnet20", in_chans=1).state_dict())
    with pytest.raises(models.ModelError, match=r"'cls_token' has shape \(1, 1, 96\) in the checkpoint and \(1, 1, 128\)"):
        models.load_state_dict_resampled(target, models.create_model("vit-mini", embed_dim=96, num_heads=3).state_dict())
    widened = models.create_model("resnet20").state_dict()
    widened["layer1.0.conv1.weight"] = torch.zeros(32, 16, 3, 3)
    with pytest.raises(models.ModelError, match=r"'layer1.0.conv1.weight' has shape \(32, 16, 3, 3\)"):
        models.load_state_dict_resampled(models.create_model("resnet20"), widened)
