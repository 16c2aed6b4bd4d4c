"""FFCV: real .beton files written and read back, the manifest's rebuild rules, the ffcv loader, bad input."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import bench.data as D
from bench.data import prepare as P
from bench.errors import UserError

pytest.importorskip("ffcv", reason="pip install ffcv==1.0.2")
from bench.data.beton import FFCV_MISSING, beton_info, read_beton  # noqa: E402
from bench.data.datasets.fashion_mnist import FMNIST_FILES, debian_fmnist_dir  # noqa: E402

DEBIAN = debian_fmnist_dir()  # $PROXBENCH_DEBIAN_FMNIST or Debian's path
SYN = {"train_size": 300, "test_size": 100}  # CIFAR-shaped (3x32x32, 10 classes) by default


@pytest.fixture(scope="session")
def fmnist_beton(tmp_path_factory):
    """Real Fashion-MNIST (from Debian's package) and its test split written as a .beton by bench."""
    if not (DEBIAN / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip("apt-get install dataset-fashion-mnist")
    root = tmp_path_factory.mktemp("fmnist-ffcv")
    (res,) = P.prepare_dataset("fashion-mnist", "test", data_root=root)
    return root, res


def write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    path.write_bytes(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


@pytest.fixture
def mini_root(tmp_path):
    """A torchvision-layout Fashion-MNIST root with 200 real-looking test samples (fast to write)."""
    rng = np.random.default_rng(0)
    raw = tmp_path / "root" / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for split, n in (("train", 64), ("test", 200)):
        images, labels = FMNIST_FILES[split]
        write_idx(raw / images, rng.integers(0, 256, (n, 28, 28)))
        write_idx(raw / labels, np.arange(n) % 10)
    return tmp_path / "root"


def snapshot(out: Path) -> dict:
    return {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(out.iterdir()) if p.is_file()}


# --------------------------------------------------------------------------- real files round trip

def test_fashion_mnist_beton_round_trip_and_manifest(fmnist_beton):
    root, res = fmnist_beton
    assert res.status == "built" and res.path == root / "ffcv" / "fashion-mnist" / "test.beton"
    images, labels = read_beton(res.path)
    x, y = D.load_split("fashion-mnist", "test", data_root=root)
    assert images.shape == (10000, 28, 28, 3) and beton_info(res.path)["num_samples"] == 10000
    assert np.array_equal(labels, y.numpy())
    for c in range(3):  # grayscale stored replicated, losslessly
        assert np.array_equal(images[..., c], x[:, 0].numpy())
    m = json.loads(res.manifest_path.read_text())
    assert m["num_samples"] == 10000 and m["label_histogram"] == [1000] * 10
    assert m["beton"]["sha256"] == P.sha256_file(res.path) and m["beton"]["size"] == res.path.stat().st_size
    src = m["source"]["files"]
    assert [Path(f["path"]).name for f in src] == ["t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
    assert all(f["sha256"] == P.sha256_file(Path(f["path"])) for f in src)
    assert m["options"] == {"format": "raw", "max_res": None, "quality": None}
    assert m["ffcv_version"] == "1.0.2" and m["storage"]["source_channels"] == 1


def test_three_loaders_agree_on_fashion_mnist_without_augmentation(fmnist_beton):
    root, _ = fmnist_beton
    out = {}
    for kind in ("memory", "torch", "ffcv"):
        loader = D.build_loader("fashion-mnist", "test", loader=kind, batch_size=200, train=False,
                                data_root=root, subset=512, num_workers=1)
        batches = list(loader)
        assert len(batches) == len(loader) == 3 and len(batches[-1][1]) == 112
        out[kind] = (torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches]))
    assert out["ffcv"][0].shape == (512, 1, 28, 28) and out["ffcv"][0].dtype == torch.float32
    for kind in ("torch", "ffcv"):
        assert torch.equal(out[kind][0], out["memory"][0]), kind
        assert torch.equal(out[kind][1], out["memory"][1]), kind
    assert torch.equal(out["memory"][1], D.load_split("fashion-mnist", "test", root, subset=512)[1])


def test_ffcv_training_epochs_are_deterministic_and_match_the_memory_loader(fmnist_beton):
    root, _ = fmnist_beton
    kw = dict(batch_size=250, train=True, data_root=root, subset=1000, seed=4)
    ffcv = D.build_loader("fashion-mnist", "test", loader="ffcv", num_workers=2, **kw)
    mem = D.build_loader("fashion-mnist", "test", loader="memory", **kw)
    assert len(ffcv) == len(mem) == 4

    def epoch(loader, e):
        loader.set_epoch(e)
        b = list(loader)
        return torch.cat([x for x, _ in b]), torch.cat([y for _, y in b])

    a, again, other = epoch(ffcv, 1), epoch(ffcv, 1), epoch(ffcv, 2)
    assert torch.equal(a[0], again[0]) and torch.equal(a[1], again[1])
    assert not torch.equal(a[1], other[1]) and not torch.equal(a[0], other[0])
    m = epoch(mem, 1)  # same plan: identical batches, augmentation included
    assert torch.equal(a[0], m[0]) and torch.equal(a[1], m[1])
    plain = epoch(D.build_loader("fashion-mnist", "test", loader="memory", batch_size=1000, train=False,
                                 data_root=root, subset=1000), 0)
    order = D.epoch_plan(1000, 4, 1, train=True, pad=2).order
    assert torch.equal(plain[1][order], a[1])  # the plan's order...
    changed = (plain[0][order] != a[0]).flatten(1).any(1).float().mean().item()
    assert changed > 0.8  # ...and most samples shifted or flipped


def test_synthetic_cifar_shaped_beton_and_loaders(tmp_path):
    root = tmp_path / "data"
    results = P.prepare_dataset("synthetic", "train,test", data_root=root, options=SYN)
    assert [r.status for r in results] == ["built", "built"]
    assert results[0].path.parent.name.startswith("synthetic-")  # non-default options: own folder
    for r, split, n in zip(results, ("train", "test"), (300, 100)):
        images, labels = read_beton(r.path)
        x, y = D.load_split("synthetic", split, options=SYN)
        assert images.shape == (n, 32, 32, 3)
        assert np.array_equal(images, x.numpy().transpose(0, 2, 3, 1)) and np.array_equal(labels, y.numpy())
    kw = dict(batch_size=64, train=True, data_root=root, options=SYN, seed=9)
    f = list(D.build_loader("synthetic", "train", loader="ffcv", **kw))
    m = list(D.build_loader("synthetic", "train", loader="memory", **kw))
    assert len(f) == 300 // 64
    assert all(torch.equal(p[0], q[0]) and torch.equal(p[1], q[1]) for p, q in zip(f, m))
    assert f[0][0].shape == (64, 3, 32, 32)
    kw["augment"] = False  # no crop or flip: the same shuffled, unmodified batches from both
    f = list(D.build_loader("synthetic", "train", loader="ffcv", **kw))
    m = list(D.build_loader("synthetic", "train", loader="memory", **kw))
    assert all(torch.equal(p[0], q[0]) and torch.equal(p[1], q[1]) for p, q in zip(f, m))


# ------------------------------------------------------------------------------ rebuild rules

def test_prepare_is_idempotent_and_rebuilds_on_option_or_source_change(mini_root):
    (r1,) = P.prepare_dataset("fashion-mnist", "test", data_root=mini_root)
    out = r1.path.parent
    before = snapshot(out)
    (r2,) = P.prepare_dataset("fashion-mnist", "test", data_root=mini_root)
    assert r2.status == "up to date" and snapshot(out) == before
    (r3,) = P.prepare_dataset("fashion-mnist", "test", data_root=mini_root, fmt="jpg", quality=95)
    assert r3.status == "rebuilt" and "options changed" in r3.reason and "format 'raw' -> 'jpg'" in r3.reason
    assert json.loads(r3.manifest_path.read_text())["options"] == {"format": "jpg", "max_res": None, "quality": 95}
    # a loader accepts a valid beton whatever options it was written with
    path, manifest = P.ensure_beton("fashion-mnist", "test", data_root=mini_root)
    assert manifest["options"]["format"] == "jpg"
    (r4,) = P.prepare_dataset("fashion-mnist", "test", data_root=mini_root)
    assert r4.status == "rebuilt" and "options changed" in r4.reason
    # the source changes (same size, new labels): rebuilt, and the new labels are what is read
    labels = mini_root / "FashionMNIST" / "raw" / "t10k-labels-idx1-ubyte"
    write_idx(labels, (np.arange(200) + 3) % 10)
    (r5,) = P.prepare_dataset("fashion-mnist", "test", data_root=mini_root)
    assert r5.status == "rebuilt" and r5.reason == "the source changed"
    assert read_beton(r5.path)[1].tolist()[:3] == [3, 4, 5]
    assert not list(out.glob("*.tmp"))


def test_damaged_or_orphaned_beton_is_detected_and_rebuilt_never_read(mini_root):
    (r,) = P.prepare_dataset("fashion-mnist", "test", data_root=mini_root)
    good = r.path.read_bytes()
    # truncated (an interrupted copy): caught by size, rebuilt by a loader before anything is read
    with open(r.path, "r+b") as f:
        f.truncate(len(good) // 2)
    loader = D.build_loader("fashion-mnist", "test", loader="ffcv", batch_size=50, train=False,
                            data_root=mini_root, num_workers=1)
    assert r.path.read_bytes() == good and sum(len(y) for _, y in loader) == 200
    # same size, one byte changed: caught by sha256
    data = bytearray(good)
    data[len(data) // 2] ^= 0xFF
    r.path.write_bytes(bytes(data))
    (r2,) = P.prepare_dataset("fashion-mnist", "test", data_root=mini_root)
    assert r2.status == "rebuilt" and "sha256" in r2.reason and r.path.read_bytes() == good
    # a .beton without its manifest (crash between the rename and the manifest) is rebuilt
    r.manifest_path.unlink()
    (r3,) = P.prepare_dataset("fashion-mnist", "test", data_root=mini_root)
    assert r3.status == "rebuilt" and "no valid manifest" in r3.reason
    # a stray temp file from a killed writer never looks complete and is ignored
    (r.path.parent / ".test.beton.abc.tmp").write_bytes(good[:100])
    (r4,) = P.prepare_dataset("fashion-mnist", "test", data_root=mini_root)
    assert r4.status == "up to date"


# ----------------------------------------------------------------------------------- bad input

def test_bad_input_is_a_user_error_and_overwrites_nothing(mini_root, monkeypatch, tmp_path):
    (r,) = P.prepare_dataset("fashion-mnist", "test", data_root=mini_root)
    out = r.path.parent
    before = snapshot(out)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    empty_root = tmp_path / "empty"
    monkeypatch.setenv("PROXBENCH_NO_DOWNLOAD", "1")
    monkeypatch.setenv("PROXBENCH_DEBIAN_FMNIST", str(tmp_path / "no-debian"))
    cases = [
        (dict(dataset="fashion-mnst"), "unknown dataset 'fashion-mnst'; did you mean 'fashion-mnist'"),
        (dict(dataset="fashion-mnist", data_root=empty_root, out=out), "apt-get install dataset-fashion-mnist"),
        (dict(dataset="fashion-mnist", out=blocker / "sub"), "cannot write to output folder"),
        (dict(dataset="fashion-mnist", out=out, max_res=0), "--max-res must be a positive"),
        (dict(dataset="fashion-mnist", out=out, max_res=-3), "--max-res must be a positive"),
        (dict(dataset="fashion-mnist", out=out, fmt="jpg", quality=0), "--quality must be in 1..100"),
        (dict(dataset="fashion-mnist", out=out, fmt="jpg", quality=101), "--quality must be in 1..100"),
        (dict(dataset="fashion-mnist", out=out, fmt="png"), "unknown format 'png'"),
        (dict(dataset="fashion-mnist", out=out, splits="train,tset"), "unknown split 'tset'"),
    ]
    for kw, match in cases:
        kw.setdefault("data_root", mini_root)
        with pytest.raises(UserError, match=match):
            P.prepare_dataset(kw.pop("dataset"), kw.pop("splits", "test"), **kw)
        assert snapshot(out) == before, kw
    assert not empty_root.exists() or not any(empty_root.rglob("*.beton"))


def test_cli_prepare(mini_root, capsys):
    from bench.cli import build_parser

    argv = ["data", "prepare", "fashion-mnist", "--split", "test", "--data-root", str(mini_root)]
    args = build_parser().parse_args(argv)
    assert P.cli_prepare(args) == 0
    assert "fashion-mnist/test: built (no manifest)" in capsys.readouterr().out
    assert P.cli_prepare(build_parser().parse_args(argv)) == 0
    assert "fashion-mnist/test: up to date" in capsys.readouterr().out
    bad = build_parser().parse_args(argv + ["--max-res", "0"])
    with pytest.raises(UserError, match="--max-res"):
        P.cli_prepare(bad)


def test_missing_ffcv_is_a_user_error_and_bench_runs_without_it(monkeypatch, tmp_path):
    for name in [m for m in sys.modules if m == "ffcv" or m.startswith("ffcv.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "ffcv", None)  # `import ffcv` now fails as if not installed
    with pytest.raises(UserError) as err:
        D.build_loader("synthetic", "test", loader="ffcv", batch_size=8, train=False, options=SYN)
    assert str(err.value) == FFCV_MISSING == (
        "loader 'ffcv' needs FFCV: pip install ffcv==1.0.2 "
        "(after apt-get install pkg-config libturbojpeg0-dev libopencv-dev)")
    with pytest.raises(UserError, match="pip install ffcv==1.0.2"):
        P.prepare_dataset("synthetic", "test", options=SYN, out=tmp_path / "out")
    assert not (tmp_path / "out").exists()
    x, y = next(iter(D.build_loader("synthetic", "test", batch_size=8, train=False, options=SYN)))
    assert x.shape == (8, 3, 32, 32)


def test_imagenet_folder_beton_jpg_and_loader(tmp_path):
    from test_data import make_image_folder

    root = make_image_folder(tmp_path / "data", per_class=3)
    results = P.prepare_dataset("imagenet", "train,val", data_root=root)
    assert [r.split for r in results] == ["train", "test"] and all(r.num_samples == 9 for r in results)
    m = json.loads(results[1].manifest_path.read_text())
    assert m["options"] == {"format": "jpg", "max_res": 512, "quality": 90}
    assert m["source"]["kind"] == "image-folder" and m["source"]["files"] == 9
    assert m["label_histogram"][:4] == [3, 3, 3, 0]
    val = D.build_loader("imagenet", "val", loader="ffcv", batch_size=4, train=False, data_root=root, num_workers=1)
    batches = list(val)
    assert [tuple(b[0].shape) for b in batches] == [(4, 3, 224, 224)] * 2 + [(1, 3, 224, 224)]
    assert torch.cat([b[1] for b in batches]).tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    # an unreadable image is refused (FFCV's writer would otherwise wait forever on its dead worker)
    bad = root / "imagenet" / "train" / "n02" / "broken.JPEG"
    bad.write_bytes(b"not a jpeg")
    before = results[0].path.read_bytes()
    with pytest.raises(UserError, match="could not be read.*broken.JPEG"):
        P.prepare_dataset("imagenet", "train", data_root=root)
    assert results[0].path.read_bytes() == before and not list(results[0].path.parent.glob("*.tmp"))


def test_abandoned_ffcv_epochs_stop_their_thread(mini_root):
    """FFCV's epoch thread left running (a `break`, an exception) made the interpreter abort at exit
    (status 134, "terminate called without an active exception"): abandoned epochs are stopped, and
    whatever is still live is stopped at exit."""
    import threading

    from bench.data import ffcv_loader as ffcv_data

    def live():
        return [t for t in threading.enumerate() if type(t).__name__ == "EpochIterator" and t.is_alive()]

    loader = D.build_loader("fashion-mnist", "test", loader="ffcv", batch_size=16, train=True,
                            data_root=mini_root, num_workers=1)
    for i, _ in enumerate(loader):
        if i == 1:
            break
    assert not live()
    it = iter(loader)
    next(it)
    assert live()
    ffcv_data.stop_all_iterators()  # what atexit runs
    assert not live()
    assert sum(len(y) for _, y in loader) == 192  # the loader still works
