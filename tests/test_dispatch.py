"""Grid dispatch without SLURM: plugins reach every executor, one `grid run` of a grid at a time, jobs.json merged.

The SLURM side of the same rules (a plugin method in a real SLURM job) is in tests/test_slurm_dispatch.py.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, TESTS, wait_until

# one quick, learnable cell per method on synthetic data
GRID = '''
[defaults]
model = "fmnist-mlp"
dataset = "synthetic"
data_options = {img_size = 8, in_chans = 1, num_classes = 4, train_size = 512, test_size = 256}
epochs = 1
batch_size = 64
'''


def cli(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """`python -m bench ARGS` as a user runs it: the plugin module is found in the current folder only."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "bench", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=env)


def plugin_grid(tmp_path: Path) -> Path:
    """A user's folder: their method module (not importable from the job's default sys.path) and a grid."""
    shutil.copy(TESTS / "plugin_methods.py", tmp_path / "my_methods.py")
    grid = tmp_path / "plug.toml"
    grid.write_text(GRID + '[axes]\nmethod = ["tanh-ste"]\n')
    return grid


@pytest.mark.parametrize("executor", ["local", "debug"])
def test_a_plugin_method_runs_in_a_grid(executor, tmp_path):
    grid = plugin_grid(tmp_path)
    proc = cli("--plugin", "my_methods", "grid", "run", grid.name, "--executor", executor, "--workdir", "w",
               "--results", "r", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (path,) = (tmp_path / "r" / "runs" / "plug").glob("*.json")
    record = json.loads(path.read_text())
    assert record["status"] == "done" and record["config"]["method"] == "tanh-ste", record.get("error")


def test_the_job_imports_the_plugin_from_its_own_folder(tmp_path):
    """The import root travels with the job: a job started in another folder still finds the module."""
    from bench.dispatch import import_plugins, plugin_specs

    pkg = tmp_path / "userpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    shutil.copy(TESTS / "plugin_methods.py", pkg / "extra.py")
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import userpkg.extra; "
            "from bench.dispatch import plugin_specs; print(repr(plugin_specs(['userpkg.extra'])))")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT)
    specs = eval(out.stdout.strip())  # noqa: S307 - our own repr of a tuple of strings
    assert specs == (("userpkg.extra", str(tmp_path.resolve())),)
    code = ("import sys, methods; from bench.dispatch import import_plugins; import_plugins(eval(sys.argv[1])); "
            "print(methods.create_method('tanh-ste').params())")
    elsewhere = subprocess.run([sys.executable, "-c", code, repr(specs)], capture_output=True, text=True,
                               timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd="/")
    assert elsewhere.returncode == 0, elsewhere.stderr
    assert "beta" in elsewhere.stdout
    assert plugin_specs([]) == () and import_plugins(()) is None


# --------------------------------------------------------------------------- one grid run at a time
def test_a_second_grid_run_of_the_same_grid_refuses_and_jobs_json_is_merged(tmp_path):
    grid = tmp_path / "lk.toml"
    slow = GRID.replace("train_size = 512", "train_size = 8192").replace("epochs = 1", "epochs = 3")
    grid.write_text(slow + '[axes]\nseed = [0]\n')
    jobs_file = tmp_path / "w" / "grids" / "lk" / "jobs.json"
    jobs_file.parent.mkdir(parents=True)
    # a job of an earlier submission that this grid file no longer has: kept, not overwritten
    jobs_file.write_text(json.dumps({"0123456789": {"job_id": "77", "executor": "slurm", "folder": "/x",
                                                    "label": "old", "submitted_at": 1.0}}))
    first = subprocess.Popen([sys.executable, "-m", "bench", "grid", "run", grid.name, "--workdir", "w",
                              "--results", "r"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    lock = tmp_path / "w" / "grids" / "lk" / "lock"
    try:
        holder = wait_until(lambda: lock.is_file() and lock.read_text() and json.loads(lock.read_text()), 60,
                            "the first grid run to take the lock")
        assert holder["pid"] == first.pid and holder["host"] == socket.gethostname()
        second = cli("grid", "run", grid.name, "--workdir", "w", "--results", "r", cwd=tmp_path, timeout=120)
        assert second.returncode == 2, second.stdout + second.stderr
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: grid 'lk' is already being run by "
                                                       f"pid {first.pid} on {socket.gethostname()}"), second.stderr
        assert first.poll() is None  # the first run goes on
        out, _ = first.communicate(timeout=300)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, out
    assert not lock.exists()  # released at the end
    jobs = json.loads(jobs_file.read_text())
    assert "0123456789" in jobs and len(jobs) == 2


def test_a_stale_lock_is_taken_over_and_a_foreign_host_lock_is_named(tmp_path):
    from bench.errors import UserError
    from bench.lock import grid_lock, lock_path

    path = lock_path(tmp_path, "g")
    path.parent.mkdir(parents=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    path.write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(), "started_at": time.time() - 5,
                                "command": "python -m bench grid run g"}))
    said = []
    with grid_lock(tmp_path, "g", log=said.append):
        assert json.loads(path.read_text())["pid"] == os.getpid()
        with pytest.raises(UserError, match=r"already being run by pid \d+ on "):  # our own live lock
            with grid_lock(tmp_path, "g"):
                pass
    assert said and "stale lock" in said[0] and not path.exists()
    path.write_text(json.dumps({"pid": 1, "host": "node-that-is-not-here", "started_at": time.time()}))
    with pytest.raises(UserError, match="on node-that-is-not-here .*delete .*lock"):
        with grid_lock(tmp_path, "g"):
            pass
    assert path.exists()  # never removed by a refused run
