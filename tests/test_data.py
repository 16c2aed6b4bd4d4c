"""bench.data: the dataset and loader registries, file lookup, real Fashion-MNIST, the memory and torch loaders
(no mocks)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

import bench.data as D
from bench.data.datasets.fashion_mnist import FMNIST_FILES, debian_fmnist_dir
from bench.data.datasets.synthetic import synthetic_arrays
from bench.errors import UserError

DEBIAN = debian_fmnist_dir()  # $PROXBENCH_DEBIAN_FMNIST or Debian's path
needs_debian = pytest.mark.skipif(not (DEBIAN / "t10k-images-idx3-ubyte.gz").is_file(),
                                  reason="apt-get install dataset-fashion-mnist")


@pytest.fixture(scope="session")
def fmnist_root(tmp_path_factory):
    """A data root holding real Fashion-MNIST, decompressed from Debian's package by bench.data."""
    if not (DEBIAN / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip("apt-get install dataset-fashion-mnist")
    root = tmp_path_factory.mktemp("fmnist-root")
    D.load_split("fashion-mnist", "test", data_root=root)
    return root


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No downloads, no Debian package: what a bare machine looks like."""
    empty = tmp_path / "no-debian"
    empty.mkdir()
    monkeypatch.setenv("PROXBENCH_NO_DOWNLOAD", "1")
    monkeypatch.setenv("PROXBENCH_DEBIAN_FMNIST", str(empty))
    return tmp_path


SMALL = {"train_size": 96, "test_size": 40}


# ------------------------------------------------------------------------------------- registry

def test_registry_lists_every_dataset_with_consistent_info():
    names = D.list_datasets()
    assert names[0] == "fashion-mnist" == D.DEFAULT_DATASET
    assert set(names) == {"fashion-mnist", "cifar10", "cifar100", "imagenet", "synthetic"}
    for name in names:
        info = D.dataset_info(name)
        assert info.name == name and info.num_classes >= 2 and info.train_size > info.test_size > 0
        assert len(info.mean) == len(info.std) == info.in_chans
    fm = D.dataset_info("fashion-mnist")
    assert (fm.in_chans, fm.img_size, fm.num_classes, fm.train_size, fm.test_size) == (1, 28, 10, 60000, 10000)
    assert D.dataset_info("cifar100").shape == (3, 32, 32) and D.dataset_info("cifar100").num_classes == 100
    assert D.dataset_info("imagenet").img_size == 224
    syn = D.dataset_info("synthetic", {"in_chans": 1, "img_size": 28, "num_classes": 4})
    assert syn.shape == (1, 28, 28) and syn.num_classes == 4 and syn.train_size == 2048


@pytest.mark.parametrize("call, match", [
    (lambda: D.dataset_info("fashion-mnst"), "did you mean 'fashion-mnist'"),
    (lambda: D.dataset_info("synthetic", {"img_sz": 8}), "did you mean 'img_size'"),
    (lambda: D.dataset_info("synthetic", {"num_classes": 1}), r"num_classes=1 must be in \[2, 100000\]"),
    (lambda: D.dataset_info("cifar10", {"seed": 1}), "takes no options"),
    (lambda: D.build_loader("synthetic", "train", loader="memroy", batch_size=8, train=True),
     "did you mean 'memory'.*valid: memory, torch, ffcv"),
    (lambda: D.build_loader("synthetic", "tset", batch_size=8, train=False), "did you mean 'test'"),
    (lambda: D.build_loader("synthetic", "train", batch_size=0, train=True), "batch size must be a positive"),
    (lambda: D.build_loader("imagenet", "train", loader="memory", batch_size=8, train=True), "too large"),
])
def test_bad_names_and_values_are_user_errors(call, match):
    with pytest.raises(UserError, match=match):
        call()


def test_data_root_resolution(monkeypatch, tmp_path):
    monkeypatch.setenv("PROXBENCH_DATA", str(tmp_path / "env"))
    assert D.resolve_data_root(tmp_path / "arg") == tmp_path / "arg"
    assert D.resolve_data_root() == tmp_path / "env"
    monkeypatch.delenv("PROXBENCH_DATA")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert D.resolve_data_root() == tmp_path / "home" / ".cache" / "proxbench" / "data"


# ------------------------------------------------------------------------------- Fashion-MNIST

@needs_debian
def test_fashion_mnist_found_in_debian_package_and_decoded(fmnist_root):
    raw = fmnist_root / "FashionMNIST" / "raw"
    assert sorted(p.name for p in raw.iterdir()) == sorted(n for pair in FMNIST_FILES.values() for n in pair)
    assert not list(raw.glob("*.tmp"))  # atomic writes leave no temp files
    for split, n in (("train", 60000), ("test", 10000)):
        x, y = D.load_split("fashion-mnist", split, data_root=fmnist_root)
        assert x.shape == (n, 1, 28, 28) and x.dtype == torch.uint8
        assert y.dtype == torch.int64 and y.shape == (n,)
        assert torch.equal(torch.bincount(y), torch.full((10,), n // 10))  # labels 0..9, balanced
        assert 0.25 < x.float().mean().item() / 255 < 0.32  # the known mean 0.286
    # the torchvision layout is read as is (no second copy from the Debian files)
    mtime = (raw / "t10k-images-idx3-ubyte").stat().st_mtime_ns
    assert D.source_files("fashion-mnist", "test", fmnist_root)[0] == raw / "t10k-images-idx3-ubyte"
    assert (raw / "t10k-images-idx3-ubyte").stat().st_mtime_ns == mtime
    x5, y5 = D.load_split("fashion-mnist", "test", data_root=fmnist_root, subset=5)
    assert x5.shape[0] == 5 and y5.tolist() == [9, 2, 1, 1, 6]  # the first test labels, as published


def test_cifar_file_layout_is_torchvisions(tmp_path):
    """The CIFAR split files are named without importing torchvision; they are torchvision's own."""
    import torchvision

    for name, tv in (("cifar10", torchvision.datasets.CIFAR10), ("cifar100", torchvision.datasets.CIFAR100)):
        for split, listed in (("train", tv.train_list), ("test", tv.test_list)):
            cls = D.get_dataset_class(name)
            expected = [tmp_path / tv.base_folder / f for f, _ in listed]
            assert [tmp_path / cls.folder / f for f in getattr(cls, f"{split}_files")] == expected


def test_missing_datasets_say_how_to_get_them(offline):
    root = offline / "empty-root"
    with pytest.raises(UserError, match="apt-get install dataset-fashion-mnist.*--data-root / PROXBENCH_DATA"):
        D.load_split("fashion-mnist", "train", data_root=root)
    with pytest.raises(UserError, match="cifar-10-batches-py"):
        D.build_loader("cifar10", "train", batch_size=8, train=True, data_root=root)
    with pytest.raises(UserError, match="imagenet.*ImageFolder"):
        D.build_loader("imagenet", "train", loader="torch", batch_size=8, train=True, data_root=root)
    assert not (root / "FashionMNIST").exists() or not any((root / "FashionMNIST").rglob("*ubyte"))


# ------------------------------------------------------------------------------------ synthetic

def test_synthetic_is_deterministic_uint8_and_learnable():
    opts = {"train_size": 400, "test_size": 200, "num_classes": 5, "img_size": 16, "seed": 7}
    x, y = D.load_split("synthetic", "train", options=opts)
    assert x.dtype == torch.uint8 and x.shape == (400, 3, 16, 16) and set(y.tolist()) == set(range(5))
    xa, _ = synthetic_arrays(D.dataset_info("synthetic", opts).options, "train")
    assert np.array_equal(xa, x.numpy())
    xb, _ = D.load_split("synthetic", "train", options={**opts, "seed": 8})
    assert not torch.equal(x, xb)
    # nearest class mean on raw pixels beats chance (20%) by far: the labels carry signal
    xt, yt = D.load_split("synthetic", "test", options=opts)
    means = torch.stack([x[y == k].float().mean(0) for k in range(5)]).flatten(1)
    pred = torch.cdist(xt.float().flatten(1), means).argmin(1)
    assert (pred == yt).float().mean().item() > 0.9


# -------------------------------------------------------------------------------------- loaders

@needs_debian
def test_memory_and_torch_loaders_agree_without_augmentation(fmnist_root):
    x_src, y_src = D.load_split("fashion-mnist", "test", data_root=fmnist_root, subset=300)
    out = {}
    for kind in ("memory", "torch"):
        loader = D.build_loader("fashion-mnist", "test", loader=kind, batch_size=128, train=False,
                                data_root=fmnist_root, subset=300, num_workers=0)
        assert len(loader) == 3 and loader.num_samples == 300
        batches = list(loader)
        assert [len(b[1]) for b in batches] == [128, 128, 44]  # last partial batch kept
        out[kind] = (torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches]))
    assert torch.equal(out["memory"][0], out["torch"][0])  # bit for bit
    assert torch.equal(out["memory"][1], y_src) and torch.equal(out["torch"][1], y_src)
    info = D.dataset_info("fashion-mnist")
    expected = (x_src.float() / 255 - info.mean[0]) / info.std[0]
    assert torch.allclose(out["memory"][0], expected, atol=1e-6)


@pytest.mark.parametrize("kind", ["memory", "torch"])
@pytest.mark.parametrize("opts", [{}, {"in_chans": 1, "img_size": 28}])
def test_augmented_batches_have_the_right_shape_type_and_range(kind, opts):
    opts = {**SMALL, **opts}
    info = D.dataset_info("synthetic", opts)
    loader = D.build_loader("synthetic", "train", loader=kind, batch_size=32, train=True, options=opts,
                            num_workers=0)
    assert len(loader) == 96 // 32 and loader.drop_last
    batches = list(loader)
    assert len(batches) == 3
    lo = min((0 - m) / s for m, s in zip(info.mean, info.std))
    hi = max((1 - m) / s for m, s in zip(info.mean, info.std))
    for x, y in batches:
        assert x.shape == (32, *info.shape) and x.dtype == torch.float32 and x.is_contiguous()
        assert y.dtype == torch.int64 and y.min() >= 0 and y.max() < info.num_classes
        assert x.min() >= lo - 1e-5 and x.max() <= hi + 1e-5
    seen = torch.cat([b[1] for b in batches])
    assert len(seen) == 96  # a permutation: every label count preserved
    _, y_all = D.load_split("synthetic", "train", options=opts)
    assert torch.equal(torch.bincount(seen, minlength=10), torch.bincount(y_all, minlength=10))


def test_memory_augmentation_is_exactly_crop_with_padding_and_flip():
    opts = {**SMALL, "in_chans": 3, "img_size": 32}
    loader = D.build_loader("synthetic", "train", batch_size=16, train=True, options=opts, seed=5)
    loader.set_epoch(2)
    x, y = next(iter(loader))
    src, labels = D.load_split("synthetic", "train", options=opts)
    plan = D.epoch_plan(96, 5, 2, train=True, pad=4)
    info = D.dataset_info("synthetic", opts)
    mean, std = torch.tensor(info.mean).view(3, 1, 1), torch.tensor(info.std).view(3, 1, 1)
    padded = np.pad(src.numpy(), ((0, 0), (0, 0), (4, 4), (4, 4)))
    assert set(plan.dy.tolist()) <= set(range(9)) and plan.flip.any() and not plan.flip.all()
    for k in range(16):
        i = int(plan.order[k])
        ref = padded[i, :, plan.dy[i]:plan.dy[i] + 32, plan.dx[i]:plan.dx[i] + 32]
        if plan.flip[i]:
            ref = ref[:, :, ::-1]
        ref = (torch.from_numpy(ref.copy()).float() / 255 - mean) / std
        assert torch.equal(x[k], ref) and y[k] == labels[i]


@pytest.mark.parametrize("kind", ["memory", "torch"])
def test_augment_false_serves_shuffled_unmodified_images(kind):
    """``augment=False`` (config key ``augment``): still shuffled per (seed, epoch), but every image is the
    stored one, normalised: no crop shift, no flip."""
    opts = {**SMALL, "in_chans": 3, "img_size": 32}
    loader = D.build_loader("synthetic", "train", loader=kind, batch_size=16, train=True, options=opts, seed=5,
                            augment=False, num_workers=0)
    src, labels = D.load_split("synthetic", "train", options=opts)
    info = D.dataset_info("synthetic", opts)
    mean, std = torch.tensor(info.mean).view(3, 1, 1), torch.tensor(info.std).view(3, 1, 1)
    by_label_and_image = {}
    for i in range(len(labels)):
        by_label_and_image.setdefault(int(labels[i]), []).append((src[i].float() / 255 - mean) / std)
    orders = []
    for epoch in (0, 1):
        loader.set_epoch(epoch)
        x, y = next(iter(loader))
        for k in range(16):
            assert any(torch.allclose(x[k], ref, atol=1e-6) for ref in by_label_and_image[int(y[k])])
        orders.append(y)
    if kind == "memory":
        plan = D.epoch_plan(96, 5, 1, train=True, pad=0, flip=False)
        assert plan.dy is None and plan.flip is None
        assert torch.equal(orders[1], labels[plan.order[:16]])


@pytest.mark.parametrize("kind, workers", [("memory", 0), ("torch", 0), ("torch", 2)])
def test_epochs_are_a_pure_function_of_seed_and_epoch(kind, workers):
    opts = {**SMALL, "img_size": 16}

    def epoch(e, seed=1, loader=None):
        loader = loader or D.build_loader("synthetic", "train", loader=kind, batch_size=32, train=True,
                                          options=opts, seed=seed, num_workers=workers)
        loader.set_epoch(e)
        return [b for b in loader]

    torch.manual_seed(123)
    a = epoch(3)
    torch.manual_seed(999)  # the global RNG plays no part
    b = epoch(3)
    assert all(torch.equal(p[0], q[0]) and torch.equal(p[1], q[1]) for p, q in zip(a, b))
    c = epoch(4)
    assert not torch.equal(torch.cat([p[0] for p in a]), torch.cat([p[0] for p in c]))
    d = epoch(3, seed=2)
    assert not torch.equal(torch.cat([p[1] for p in a]), torch.cat([p[1] for p in d]))
    if kind == "memory":  # a resumed run: epochs 0..2 iterated first change nothing for epoch 3
        loader = D.build_loader("synthetic", "train", batch_size=32, train=True, options=opts, seed=1)
        for _ in range(3):
            list(loader)
        assert loader.epoch == 3
        resumed = list(loader)
        assert all(torch.equal(p[0], q[0]) for p, q in zip(a, resumed))


def test_memory_and_torch_loaders_serve_the_same_epoch_contract():
    """Same length, labels drawn from the same split, every sample once per epoch, whichever loader (how fast
    each is belongs to ``python -m bench perf loaders``)."""
    opts = {"train_size": 1024, "test_size": 64, "in_chans": 1, "img_size": 28}
    _, y_all = D.load_split("synthetic", "train", options=opts)
    for kind in D.list_loaders()[:2]:  # memory, torch (ffcv: tests/test_ffcv.py)
        loader = D.build_loader("synthetic", "train", loader=kind, batch_size=256, train=True, options=opts,
                                num_workers=0)
        assert loader.kind == kind and len(loader) == 4
        seen = torch.cat([y for _, y in loader])
        assert torch.equal(torch.bincount(seen, minlength=10), torch.bincount(y_all, minlength=10))


def test_channels_last_and_math_helpers():
    loader = D.build_loader("synthetic", "test", batch_size=16, train=False, options=SMALL, channels_last=True)
    x, _ = next(iter(loader))
    assert x.is_contiguous(memory_format=torch.channels_last)
    assert D.default_padding(32) == 4 and D.default_padding(28) == 2 and D.default_padding(224) == 4
    assert D.epoch_seed(0, 1) != D.epoch_seed(1, 0) and D.epoch_seed(3, 4) == D.epoch_seed(3, 4)
    assert len(D.build_loader("synthetic", "test", batch_size=16, train=False, options=SMALL)) == math.ceil(40 / 16)


def make_image_folder(root: Path, per_class: int = 4, classes=("n01", "n02", "n03")) -> Path:
    """A tiny ImageNet-layout tree (<root>/imagenet/{train,val}/<class>/*.JPEG) of random JPEGs."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for c in classes:
            d = root / "imagenet" / split / c
            d.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                h, w = rng.integers(120, 300, 2)
                Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(d / f"{i}.JPEG")
    return root


def test_imagenet_folder_with_the_torch_loader(tmp_path):
    root = make_image_folder(tmp_path)
    train = D.build_loader("imagenet", "train", loader="torch", batch_size=4, train=True, data_root=root,
                           num_workers=0)
    assert len(train) == 3 and train.num_samples == 12
    x, y = next(iter(train))
    assert x.shape == (4, 3, 224, 224) and x.dtype == torch.float32 and y.max() <= 2
    val = D.build_loader("imagenet", "val", loader="torch", batch_size=5, train=False, data_root=root, num_workers=0)
    ys = torch.cat([b[1] for b in val])
    assert ys.tolist() == [0] * 4 + [1] * 4 + [2] * 4  # sequential, ImageFolder order
    with pytest.raises(UserError, match="use loader 'torch' or 'ffcv'"):
        D.load_split("imagenet", "train", data_root=root)
