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

from conftest import TINY_GRID, wait_until
from methods import kernels

ROOT = Path(__file__).resolve().parents[1]


def cli(*args, cwd=None, env=None, timeout=180):
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


def test_unknown_kernels_setting_is_one_user_error(tmp_path, monkeypatch, capsys):
    from conftest import one_line_error, run_cli

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(kernels.ENV, "garbage")
    rc, _, err = run_cli(capsys, "run", *TINY, "--method", "bnn-w1a1")
    one_line_error(rc, err, "PROXBENCH_KERNELS='garbage' is not a valid value (valid: c, eager")
    assert not (tmp_path / "work").exists()  # refused before anything is written
    monkeypatch.setenv(kernels.ENV, "C")
    kernels.check_environment()  # the valid values, in any case


# ---------------------------------------------------------------- a grid's cells live and die with it

LONG_GRID = TINY_GRID.replace("train_size = 512", "train_size = 8192").replace("epochs = 1", "epochs = 50") \
    + '[axes]\nseed = [0]\n'


def _start_grid(tmp_path: Path) -> tuple[subprocess.Popen, dict[str, int]]:
    """A local grid of one long cell in a subprocess (its own session, as a terminal's foreground job); returns
    it and {run_id: pid} once the cell trains."""
    import json

    (tmp_path / "long.toml").write_text(LONG_GRID)
    proc = subprocess.Popen([sys.executable, "-m", "bench", "grid", "run", "long.toml", "--workdir", "w", "--results",
                             "r", "--parallel", "1"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONPATH": str(ROOT), "PROXBENCH_POLL_S": "0.2"},
                            start_new_session=True)
    cells = tmp_path / "w" / "grids" / "long" / "cells"

    def running():
        found = {}
        for path in cells.glob("*.json"):
            try:
                entry = json.loads(path.read_text())
            except ValueError:
                continue
            found[path.stem] = entry["pid"]
        return found or None

    try:
        pids = wait_until(running, 90, "the cell to start")
    except BaseException:
        proc.kill()
        raise
    return proc, pids


def _gone(pids) -> bool:
    import psutil

    def ended(pid):
        try:
            return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    return all(ended(p) for p in pids)


def _cleanup(proc, pids):
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    for pid in pids:  # the cells this test started, if a failure left them
        if not _gone([pid]):
            os.kill(pid, 9)


def _states(tmp_path) -> list[str]:
    from bench.dispatch.grid import load_grid
    from bench.dispatch.status import grid_status

    rows = grid_status(load_grid(str(tmp_path / "long.toml")), str(tmp_path / "w"), str(tmp_path / "r"))
    return [r["state"] for r in rows]


@pytest.mark.slow
@pytest.mark.parametrize("how", ["SIGTERM", "Ctrl-C"])
def test_a_signalled_grid_run_stops_its_cells_and_says_so_in_one_line(tmp_path, how):
    import signal

    from bench.dispatch.lock import lock_path

    proc, pids = _start_grid(tmp_path)
    try:
        assert _states(tmp_path) == ["running"]  # from the cell's own file, not "pending"
        if how == "SIGTERM":  # to grid run alone
            proc.send_signal(signal.SIGTERM)
        else:  # a terminal's Ctrl-C: SIGINT to every process of the foreground group
            os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, err
        assert err.strip().splitlines()[-1] == ("interrupted: grid long: 1 running cell(s) stopped and recorded as "
                                                "interrupted; run the grid again to resume them from their last "
                                                "epoch checkpoint"), err
        assert "Traceback" not in err
        assert _gone(pids.values())
        assert not lock_path(tmp_path / "w", "long").exists()
        assert _states(tmp_path) == ["interrupted"]
    finally:
        _cleanup(proc, pids.values())


@pytest.mark.slow
def test_cells_of_a_killed_grid_run_stop_and_the_lock_is_free(tmp_path):
    from bench.dispatch.lifeline import live_cells
    from bench.dispatch.lock import grid_lock

    proc, pids = _start_grid(tmp_path)
    try:
        proc.kill()  # kill -9: nothing of grid run's own code runs
        proc.wait()
        wait_until(lambda: _gone(pids.values()), 10, "the orphaned cells to stop")
        assert live_cells(tmp_path / "w", "long") == {}
        assert _states(tmp_path) == ["interrupted"]
        said = []
        with grid_lock(tmp_path / "w", "long", log=said.append):  # the stale lock is taken over
            pass
        assert said and "stale lock" in said[0]
    finally:
        _cleanup(proc, pids.values())


@pytest.mark.slow
def test_grid_cancel_stops_a_local_grid(tmp_path, monkeypatch, capsys):
    from conftest import run_cli

    proc, pids = _start_grid(tmp_path)
    monkeypatch.chdir(tmp_path)
    try:
        rc, _, err = run_cli(capsys, "grid", "cancel", "long.toml", "--workdir", "w", "--results", "r")
        assert rc == 0 and "cancelled 1 job(s) of grid long" in err, err
        proc.wait(timeout=30)
        assert proc.returncode == 130 and _gone(pids.values())
    finally:
        _cleanup(proc, pids.values())


def test_a_lock_is_not_taken_while_a_cell_of_its_grid_runs(tmp_path):
    import json
    import socket
    import time

    from bench.dispatch.lifeline import cells_dir
    from bench.dispatch.lock import grid_lock, lock_path
    from bench.errors import UserError

    cell = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    try:
        folder = cells_dir(tmp_path, "g")
        folder.mkdir(parents=True)
        (folder / "abc123.json").write_text(json.dumps({"pid": cell.pid, "started_at": time.time(),
                                                        "state": "running"}))
        path = lock_path(tmp_path, "g")
        path.write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(), "started_at": time.time() - 5}))
        with pytest.raises(UserError, match=rf"is gone, but 1 of its cells still run: abc123 \(pid {cell.pid}\)"):
            with grid_lock(tmp_path, "g"):
                pass
        assert path.exists()
        path.unlink()  # no lock at all: still refused while the cell runs
        with pytest.raises(UserError, match="it has no lock, but 1 of its cells still run"):
            with grid_lock(tmp_path, "g"):
                pass
        assert not path.exists()
    finally:
        cell.kill()
        cell.wait()
    with grid_lock(tmp_path, "g"):  # the cell is gone: free
        pass


# ---------------------------------------------------------------- plugins

@pytest.mark.parametrize("body, needles", [
    ("import methods\n\n\n@methods.register_method('bnn')\nclass Mine(methods.Method):\n    pass\n",
     ["method 'bnn' is already registered by module 'methods.builtin'", "module '{name}' cannot register it"]),
    ("raise RuntimeError('no licence file')\n",
     ["plugin module '{name}' raised RuntimeError while being imported: no licence file"]),
    ("import sys\nsys.exit(0)\n", ["plugin module '{name}' called sys.exit(0) while being imported"]),
    ("import no_such_dependency_xyz\n", ["cannot import plugin module '{name}'", "no_such_dependency_xyz"]),
], ids=["clash", "raises", "exits", "missing-dependency"])
def test_a_bad_plugin_is_one_user_error(tmp_path, monkeypatch, capsys, body, needles):
    import uuid

    from conftest import one_line_error, run_cli

    name = f"my_plugin_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(body)
    monkeypatch.syspath_prepend(str(tmp_path))
    rc, out, err = run_cli(capsys, "--plugin", name, "methods")
    one_line_error(rc, err, *(needle.format(name=name) for needle in needles))
    assert out == ""
    import methods

    assert methods.get_method_class("bnn").__module__ == "methods.builtin"  # the built-in is still there


def test_a_dataset_plugin_cannot_take_a_registered_name():
    from bench.data import register_dataset
    from bench.data.arrays import ArrayDataset
    from bench.errors import UserError

    with pytest.raises(UserError, match="dataset 'synthetic' is already registered by module "
                                        "'bench.data.datasets.synthetic'.*module 'test_faults' cannot"):
        @register_dataset("synthetic")
        class Mine(ArrayDataset):
            pass


# ---------------------------------------------------------------- numbers, axes, records, messages

TINY = ["--model", "fmnist-mlp", "--dataset", "synthetic", "--epochs", "1", "--batch-size", "32",
        "--set", "data_options={in_chans=1, img_size=8, train_size=128, test_size=64, num_classes=4}",
        "--set", "model_kwargs={hidden=[32, 32]}"]


@pytest.mark.parametrize("argv, message", [
    (["--lr", "1e300"], "lr must be at most 1000, got 1e+300"),
    (["--weight-decay", "1e308"], "weight_decay must be at most 1000, got 1e+308"),
    (["--set", "latent_weight_decay=2e3"], "latent_weight_decay must be at most 1000"),
    (["--set", "epochs=1000000000"], "epochs must be at most 100000"),
    (["--set", "batch_size=100000000"], "batch_size must be at most 1048576"),
    (["--set", "data_options={img_size=100000}"], "img_size=100000 must be in [1, 1024]"),
    (["--set", "data_options={img_size=1024, train_size=10000, in_chans=3}"],
     "a train split of 10000 samples of 3x1024x1024 is 29.3 GiB, over the 8 GiB"),
])
def test_numbers_the_computation_cannot_take_are_one_line(tmp_path, monkeypatch, capsys, argv, message):
    from conftest import one_line_error, run_cli

    monkeypatch.chdir(tmp_path)
    rc, _, err = run_cli(capsys, "run", *TINY, *argv)
    one_line_error(rc, err, message)
    assert not (tmp_path / "work").exists()


def test_export_refuses_an_unfinished_run_unless_asked(tmp_path, monkeypatch, capsys):
    from conftest import one_line_error, run_cli

    monkeypatch.chdir(tmp_path)
    rc, _, err = run_cli(capsys, "run", *TINY, "--method", "bnn", "--epochs", "2")
    assert rc == 0, err
    (ckpt,) = (tmp_path / "work" / "runs").glob("*/checkpoint.pt")
    state = torch.load(ckpt, weights_only=True)
    state.update(status="running", epoch=1)  # as a run killed after its first epoch leaves it
    torch.save(state, ckpt)
    rid = ckpt.parent.name
    rc, out, err = run_cli(capsys, "export", rid, "--out", "m.pbin")
    one_line_error(rc, err, f"run '{rid}' is unfinished", "epoch 1 of 2", "--allow-unfinished")
    assert not (tmp_path / "m.pbin").exists() and out == ""
    rc, out, err = run_cli(capsys, "export", rid, "--out", "m.pbin", "--allow-unfinished")
    assert rc == 0, err
    assert out.splitlines()[0] == "unfinished run (epoch 1 of 2): exporting its model as it stands (--allow-unfinished)"
    from bench.run.export import load_packed

    assert load_packed("m.pbin")[1]["unfinished"] == "epoch 1 of 2"


@pytest.mark.parametrize("axis, message", [
    ('method = ["fp", "bnn", "fp"]', '[axes] method lists "fp" more than once (values 1 and 3'),
    ("lr = [0.001, 1e-3]", "[axes] lr lists 0.001 more than once (values 1 and 2"),
    ("seed = [1, 2, 1]", "[axes] seed lists 1 more than once"),
])
def test_duplicate_axis_values_are_an_error(tmp_path, axis, message):
    from bench.dispatch.grid import load_grid
    from bench.errors import UserError

    path = tmp_path / "dup.toml"
    path.write_text(TINY_GRID + "[axes]\n" + axis + "\n")
    with pytest.raises(UserError) as err:
        load_grid(str(path))
    assert message in str(err.value)


def test_records_out_of_place_are_skipped_with_one_warning(tmp_path):
    import json

    from bench.report.loading import load_grid

    fixture = ROOT / "tests" / "fixtures" / "records" / "fixture"
    folder = tmp_path / "runs" / "g"
    folder.mkdir(parents=True)
    sources = sorted(fixture.glob("[0-9a-f]*.json"))[:3]
    for i, source in enumerate(sources):
        record = json.loads(source.read_text())
        record["grid"] = "g"
        if i == 1:
            record["grid"] = "another"
        if i == 2:
            record["config"]["seed"] = "0"
        (folder / source.name).write_text(json.dumps(record))
    said = []
    kept = load_grid("g", tmp_path, warn=said.append)
    assert [r["run_id"] for r in kept] == [json.loads(sources[0].read_text())["run_id"]]
    assert len(said) == 1 and "skipped 2 record(s)" in said[0], said
    assert "its grid field says 'another'" in said[0] and "seed '0' is not an integer" in said[0]


def test_a_huge_name_is_cut_in_the_one_line_error(tmp_path, capsys):
    from conftest import one_line_error, run_cli

    path = tmp_path / "huge.toml"
    path.write_text(TINY_GRID + "[axes]\nmethod = [\"" + "x" * 5_000_000 + "\"]\n")
    rc, _, err = run_cli(capsys, "grid", "run", str(path), "--dry-run")
    line = one_line_error(rc, err)
    assert len(line) < 500 and "x" * 80 + "…" in line, line[:600]


def test_a_corrupt_job_book_is_warned_about_once_and_rebuilt(tmp_path, capsys):
    import json

    from bench.dispatch.grid import load_grid
    from bench.dispatch.jobs import jobs_path
    from bench.dispatch.status import grid_status

    path = tmp_path / "jb.toml"
    path.write_text(TINY_GRID + "[axes]\nseed = [0, 1]\n")
    grid = load_grid(str(path))
    done = grid.cells[0]
    records = tmp_path / "r" / "runs" / "jb"
    records.mkdir(parents=True)
    record = json.loads((ROOT / "tests" / "fixtures" / "records" / "fixture" / "0bc459a0f2.json").read_text())
    record.update(run_id=done.run_id, grid="jb", config=done.config)
    (records / f"{done.run_id}.json").write_text(json.dumps(record))
    book = jobs_path(tmp_path / "w", "jb")
    book.parent.mkdir(parents=True)
    book.write_text('{"abc": {"job_id": "1"')  # cut short
    rows = grid_status(grid, str(tmp_path / "w"), str(tmp_path / "r"))
    err = capsys.readouterr().err
    assert err.count("warning:") == 1 and "jobs.json is corrupt (not JSON" in err and "rebuilt from 1 record" in err
    assert [r["state"] for r in rows] == ["done", "pending"]
    assert book.with_name("jobs.json.corrupt").read_text() == '{"abc": {"job_id": "1"'
    assert list(json.loads(book.read_text())) == [done.run_id]
    grid_status(grid, str(tmp_path / "w"), str(tmp_path / "r"))
    assert capsys.readouterr().err == ""  # rebuilt: no second warning
