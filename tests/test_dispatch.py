"""Grid dispatch without SLURM: plugins reach every executor, one `grid run` of a grid at a time, jobs.json merged.

The SLURM side of the same rules (a plugin method in a real SLURM job) is in tests/test_slurm_dispatch.py.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, TESTS, TINY_GRID, wait_until



def cli(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """`python -m bench ARGS` as a user runs it: the plugin module is found in the current folder only."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "bench", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=env)


def plugin_grid(tmp_path: Path) -> Path:
    """A user's folder: their method module (the README's "Add a method" code, tests/plugin_methods.py; not
    importable from the job's default sys.path) and a grid."""
    shutil.copy(TESTS / "plugin_methods.py", tmp_path / "my_methods.py")
    grid = tmp_path / "plug.toml"
    grid.write_text(TINY_GRID + '[axes]\nmethod = ["tanh-ste"]\n')
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
    from bench.dispatch.plugins import import_plugins, plugin_specs

    pkg = tmp_path / "userpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    shutil.copy(TESTS / "plugin_methods.py", pkg / "extra.py")
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import userpkg.extra; "
            "from bench.dispatch.plugins import plugin_specs; print(repr(plugin_specs(['userpkg.extra'])))")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT)
    specs = eval(out.stdout.strip())  # noqa: S307 - our own repr of a tuple of strings
    assert specs == (("userpkg.extra", str(tmp_path.resolve())),)
    code = ("import sys, methods; from bench.dispatch.plugins import import_plugins; import_plugins(eval(sys.argv[1])); "
            "print(methods.create_method('tanh-ste').params())")
    elsewhere = subprocess.run([sys.executable, "-c", code, repr(specs)], capture_output=True, text=True,
                               timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd="/")
    assert elsewhere.returncode == 0, elsewhere.stderr
    assert "beta" in elsewhere.stdout
    assert plugin_specs([]) == () and import_plugins(()) is None


@pytest.mark.slow
# --------------------------------------------------------------------------- one grid run at a time
def test_a_second_grid_run_of_the_same_grid_refuses_and_jobs_json_is_merged(tmp_path):
    grid = tmp_path / "lk.toml"
    slow = TINY_GRID.replace("train_size = 512", "train_size = 8192").replace("epochs = 1", "epochs = 3")
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
    from bench.dispatch.lock import grid_lock, lock_path

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


@pytest.mark.slow
# --------------------------------------------------------------------------- GPU placement in real local jobs
def test_each_local_job_gets_its_own_gpu(tmp_path):
    """Three cells on two GPUs (assumed: ``n_gpus=2``) in the real local executor: each job is handed its
    ``cuda:i`` and passes it to train.execute, which refuses it on this CPU-only machine, so every failed
    record names the device its job got: waves [cuda:0, cuda:1], [cuda:0]."""
    from bench.dispatch.submit import submit_grid
    from bench.dispatch.placement import cuda_devices
    from bench.dispatch.grid import load_grid

    if cuda_devices()[0]:
        pytest.skip("CUDA is available: the jobs would train instead of naming their device")
    path = tmp_path / "gpus.toml"
    path.write_text(TINY_GRID + '[axes]\nseed = [0, 1, 2]\n')
    grid = load_grid(str(path))
    said: list[str] = []
    submitted = submit_grid(grid, "local", workdir=str(tmp_path / "w"), results=str(tmp_path / "r"), device="cuda",
                            n_gpus=2, progress=False, log=said.append)
    assert len(submitted) == 3
    errors = {}
    for cell in grid.cells:
        record = json.loads((tmp_path / "r" / "runs" / "gpus" / f"{cell.run_id}.json").read_text())
        assert record["status"] == "failed"
        errors[cell.run_id] = record["error"]
    devices = [re.search(r"device '(cuda:\d)' asked for", errors[c.run_id]).group(1) for c in grid.cells]
    assert devices == ["cuda:0", "cuda:1", "cuda:0"], errors
    assert sum("failed: " in line for line in said) == 3


@pytest.mark.slow
# --------------------------------------------------------------------------- live progress
def test_local_jobs_of_a_wave_are_polled_together_and_progress_is_shown(tmp_path):
    """A wave of a slow and a fast cell: the fast one is reported as soon as it ends (not after the slow one
    before it), and stderr (not a terminal) gets plain progress lines with images/s and the ETA."""
    grid = tmp_path / "wave.toml"
    grid.write_text(TINY_GRID.replace("train_size = 512", "train_size = 4096") + '[axes]\nepochs = [20, 1]\n')
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PROXBENCH_POLL_S": "0.3", "PROXBENCH_PROGRESS_S": "1000"}
    proc = subprocess.run([sys.executable, "-m", "bench", "grid", "run", grid.name, "--parallel", "2", "--workdir",
                           "w", "--results", "r"], cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "pre-flight: ok: data synthetic (memory); pretrained weights not needed; device cpu, 2 cell(s) at a time" \
        in proc.stdout
    ends = [line for line in proc.stdout.splitlines() if re.fullmatch(r"  [0-9a-f]{10} \(epochs=\d+\): done", line)]
    assert [line.split("(")[1] for line in ends] == ["epochs=1): done", "epochs=20): done"], proc.stdout
    lines = [line for line in proc.stderr.splitlines() if "grid wave:" in line]
    assert "\r" not in proc.stderr
    assert re.fullmatch(r"\[\d+s\] grid wave: 0/2 done, 2 running, 0 failed, 0 pending \| \? images/s \| ETA \?",
                        lines[0]), proc.stderr
    # one line when the fast cell ends (an ETA from the images trained so far), one when the slow one does
    middle = re.fullmatch(r"\[\d+s\] grid wave: 1/2 done, 1 running, 0 failed, 0 pending \| ([\d.]+)(k?) images/s "
                          r"\| ETA (\d+m )?\d+s", lines[1])
    assert middle and float(middle.group(1)) > 0, proc.stderr
    assert re.fullmatch(r"\[.+\] grid wave: 2/2 done, 0 running, 0 failed, 0 pending \| [\d.]+k? images/s \| ETA 0s",
                        lines[-1]), proc.stderr
    assert len(lines) == 3, proc.stderr


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_grid_progress_counts_images_per_second_and_eta(tmp_path):
    """GridProgress on the files a run writes (progress.json per epoch, steps.jsonl per logged step), with a
    clock the test moves: counts, rate, ETA; plain lines at the start, at each cell's end and every interval;
    on a terminal one line rewritten in place."""
    from bench.dispatch.progress import GridProgress, images_per_epoch
    from bench.dispatch.grid import load_grid

    path = tmp_path / "p.toml"
    path.write_text(TINY_GRID.replace("epochs = 1", "epochs = 2") + '[axes]\nseed = [0, 1, 2, 3]\n')
    grid = load_grid(str(path))
    a, b, c, d = (cell.run_id for cell in grid.cells)
    per_epoch = images_per_epoch(grid.cells[0].config)
    assert per_epoch == 512  # 8 full batches of 64
    runs = tmp_path / "w" / "runs"

    def write(rid: str, epochs: int = 0, step: int | None = None) -> None:
        (runs / rid).mkdir(parents=True, exist_ok=True)
        if epochs:
            (runs / rid / "progress.json").write_text(json.dumps({"epoch": epochs, "epochs": 2}))
        if step is not None:
            with open(runs / rid / "steps.jsonl", "a") as fh:
                fh.write(json.dumps({"step": step, "epoch": 1, "loss": 1.0, "lr": 0.1}) + "\n")

    write(d, epochs=1)  # a resumed cell: its first epoch is not this session's work
    now = [100.0]
    out = io.StringIO()
    progress = GridProgress(grid, tmp_path / "w", stream=out, interval=30, clock=lambda: now[0])
    progress.update({a: "running", b: "running", c: "pending", d: "pending"})
    assert progress.counts() == {"done": 0, "running": 2, "failed": 0, "pending": 2}
    assert progress.rate() is None and progress.eta() is None
    assert out.getvalue() == "[0s] grid p: 0/4 done, 2 running, 0 failed, 2 pending | ? images/s | ETA ?\n"
    now[0] += 10
    write(a, step=4)  # 4 steps of 64 images
    with open(runs / a / "steps.jsonl", "a") as fh:
        fh.write('{"step": 7, "epo')  # a line being written: not read
    write(b, epochs=1)
    progress.update({a: "running", b: "running"})
    assert progress.rate() == pytest.approx((256 + 512) / 10)
    left = (1024 - 256) + (1024 - 512) + 1024 + (1024 - 512)
    assert progress.eta() == pytest.approx(left / 76.8)
    assert out.getvalue().count("\n") == 1  # no cell ended, within the interval: nothing printed
    now[0] += 5
    write(b, epochs=2)
    progress.update({b: "done", c: "running"})
    assert out.getvalue().splitlines()[-1] == \
        "[15s] grid p: 1/4 done, 2 running, 0 failed, 1 pending | 85 images/s | ETA 27s"
    now[0] += 40  # past the interval: a line without a cell ending
    progress.update({a: "failed"})
    assert out.getvalue().splitlines()[-1].startswith("[55s] grid p: 1/4 done, 1 running, 1 failed, 1 pending")
    progress.update({c: "running"})
    assert out.getvalue().count("\n") == 3
    now[0] += 5
    write(c, epochs=2)
    write(d, epochs=2)
    progress.update({c: "done", d: "diverged"})
    assert progress.eta() == 0.0 and progress.counts()["done"] == 3
    progress.close()
    last = out.getvalue().splitlines()[-1]
    assert last == "[1m 00s] grid p: 3/4 done, 0 running, 1 failed, 0 pending | 47 images/s | ETA 0s"
    assert out.getvalue().count(last) == 1  # close does not repeat a line just printed

    tty = _Terminal()
    live = GridProgress(grid, tmp_path / "w", stream=tty, interval=30, clock=lambda: now[0])
    live.update({a: "running"})
    live.update({a: "running"})
    live.clear()
    live.update({a: "done"})
    live.close()
    text = tty.getvalue()
    assert text.count("\r") == 5 and text.count("\n") == 1 and text.endswith("ETA 0s\x1b[K\n")
    assert "\r\x1b[K\r" in text  # cleared before other output, then drawn again


# --------------------------------------------------------------------------- the executor registry
def test_executor_registry_names_capabilities_and_close_match_error():
    from bench.dispatch.executors import Executor, create_executor, get_executor, list_executors, register_executor
    from bench.errors import UserError

    assert list_executors() == ["local", "debug", "slurm"]
    assert [n for n in list_executors() if get_executor(n).remote] == ["slurm"]
    assert [n for n in list_executors() if get_executor(n).needs_profile] == ["slurm"]
    assert [n for n in list_executors() if get_executor(n).gpu_placement] == ["local"]
    with pytest.raises(UserError) as err:
        get_executor("slrum")
    assert str(err.value) == "unknown executor 'slrum'; did you mean 'slurm'? (valid: local, debug, slurm)"
    assert create_executor("debug", device="cpu").check_device() == (None, "cpu (one cell at a time, in this process)")
    with pytest.raises(UserError, match="^--cluster is only used with --executor slurm$"):
        get_executor("local").read_profile("slurm/local.toml")

    from bench.dispatch.executors import base

    with base.EXECUTORS.scoped():  # unregistered afterwards
        @register_executor("test-only")
        class Nothing(Executor):
            pass

        assert list_executors()[-1] == "test-only" and get_executor("test-only") is Nothing
        assert Nothing.name == "test-only"
        with pytest.raises(TypeError, match="needs a subclass of Executor"):
            register_executor("not-an-executor")(object)
    assert "test-only" not in list_executors()
