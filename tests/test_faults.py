"""Faults and bad input (issue 24): a grid's cells live and die with it, the kernel cache is verified before
it is loaded, plugins cannot replace a registered name or end the CLI, and numeric options, grid axes and run
records that the computation cannot use are refused in one line. Real processes, signals and files."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from methods import kernels

ROOT = Path(__file__).resolve().parents[1]


def cli(*args, cwd=None, env=None, timeout=120):
    return subprocess.run([sys.executable, "-m", "bench", *args], cwd=cwd or ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


# ---------------------------------------------------------------- kernel cache


@pytest.fixture
def fresh_kernels(monkeypatch, tmp_path):
    monkeypatch.setenv(kernels.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setitem(kernels._state, "lib", None)
    monkeypatch.setitem(kernels._state, "failed", False)
    monkeypatch.setitem(kernels._state, "enabled", True)
    return tmp_path / "cache"


def _sign_with_warnings():
    x = torch.randn(4, 64, 32, 32)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = kernels.sign(x)
    assert out is not None and torch.equal(out, torch.where(x >= 0, 1.0, -1.0))
    return [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]


@pytest.mark.parametrize("damage", ["truncated", "foreign"])
def test_a_damaged_cached_library_is_rebuilt_with_one_warning(fresh_kernels, tmp_path, damage):
    built = kernels.build()
    good = built.read_bytes()
    if damage == "truncated":
        built.write_bytes(good[: len(good) // 3])
    else:  # another shared library under the right name
        foreign = tmp_path / "foreign.c"
        foreign.write_text("int pb_sign(void) { return 42; }\n")
        subprocess.run(["cc", "-shared", "-fPIC", str(foreign), "-o", str(built)], check=True)
    found = _sign_with_warnings()
    assert len(found) == 1 and "truncated, foreign or not loadable: deleted and rebuilt" in found[0], found
    assert built.name in found[0]
    [library] = fresh_kernels.glob("*.so")
    assert library.read_bytes() == good or kernels.build() == library
    assert not kernels._state["failed"]


def test_a_library_without_a_checksum_name_is_not_trusted(fresh_kernels):
    built = kernels.build()
    unchecked = built.with_name(built.name.rsplit("-", 1)[0] + ".so")  # the old name: no checksum
    built.rename(unchecked)
    assert kernels.build() != unchecked and not unchecked.exists()


def test_damaged_library_and_no_compiler_fall_back_to_eager_with_one_warning(fresh_kernels, monkeypatch, tmp_path):
    built = kernels.build()
    built.write_bytes(built.read_bytes()[:100])
    monkeypatch.setenv("CC", str(tmp_path / "no-such-compiler"))
    x = torch.randn(4, 64, 32, 32)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert kernels.sign(x) is None  # the caller's eager form runs
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1 and "no C compiler" in messages[0]


def test_unknown_kernels_setting_is_one_user_error():
    out = cli("run", "--model", "fmnist-cnn-bireal", "--dataset", "synthetic", "--method", "bnn-w1a1",
              "--epochs", "1", "--subset", "256", "--workdir", "/tmp/i24a-unused",
              env={"PROXBENCH_KERNELS": "garbage"})
    assert out.returncode == 2, out.stderr
    assert out.stderr.count("\n") == 1 and "PROXBENCH_KERNELS='garbage'" in out.stderr and "c, eager" in out.stderr
