"""Several cells in one SLURM job (``cells_per_gpu``) without a cluster: how a submission's cells are cut into
jobs (one stage, and one fp parent, per job), the devices and threads of a job's cells, the profile key and
the ``--cells-per-gpu`` option, and what the slurm executor hands to submitit (a fake ``SlurmExecutor``
records the calls). The live cluster tests are in tests/test_slurm_packed.py.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path

import pytest

from conftest import TINY_GRID, one_line_error, run_cli

FT_GRID = TINY_GRID + '''[axes]
method = ["fp", "bnn", "pc"]
mode = ["e2e", "finetune"]
seed = [0, 1, 2]
[mode."finetune"]
init = "parent"
[[exclude]]
method = "fp"
mode = "finetune"
'''


def grid_of(tmp_path: Path, text: str = FT_GRID, name: str = "pk"):
    from bench.dispatch.grid import load_grid

    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    return load_grid(str(path))


# --------------------------------------------------------------------------- grouping
def test_cells_are_packed_per_stage_and_per_parent_in_grid_order(tmp_path):
    from bench.dispatch.packing import pack, stage_arrays

    grid = grid_of(tmp_path)
    stage0 = [c for c in grid.cells if c.stage == 0]
    assert len(stage0) == 9 and len(grid.cells) == 9 + 2 * 3  # 3 methods e2e x 3 seeds + 2 fine-tunes x 3 seeds
    arrays = stage_arrays(grid.cells)
    assert arrays[0] == (None, stage0)
    parents = [p for p, _ in arrays[1:]]
    assert parents == sorted({c.parent for c in grid.cells if c.stage == 1}) and len(parents) == 3
    for parent, cells in arrays[1:]:
        assert [c.stage for c in cells] == [1, 1] and {c.parent for c in cells} == {parent}
        assert all(c.config["seed"] == next(p for p in stage0 if p.run_id == parent).config["seed"] for c in cells)

    jobs = pack(stage0, 2)
    assert [len(j) for j in jobs] == [2, 2, 2, 2, 1] and [c for j in jobs for c in j] == stage0  # order kept
    assert pack(stage0, 1) == [[c] for c in stage0] and pack(stage0, 20) == [stage0]
    for parent, cells in arrays[1:]:  # a job never mixes stages or parents: packing works inside one array
        assert all({c.parent for c in job} == {parent} for job in pack(cells, 4))
    assert stage_arrays([]) == [] and pack([], 3) == []
    with pytest.raises(ValueError):
        pack(stage0, 0)


def test_cells_per_job_devices_and_threads():
    from bench.dispatch.packing import cells_per_job, job_devices, job_threads

    assert cells_per_job(1, 0) == 1 and cells_per_job(2, 0) == 2  # CPU: K cells share the job's CPUs
    assert cells_per_job(2, 1) == 2 and cells_per_job(3, 4) == 12  # K on each of the job's GPUs
    with pytest.raises(ValueError):
        cells_per_job(0, 1)
    assert job_devices(3, 0) == ["cpu"] * 3
    assert job_devices(2, 1) == ["cuda", "cuda"]  # the job's one GPU, as an unpacked cell sees it
    assert job_devices(5, 2) == ["cuda:0", "cuda:1", "cuda:0", "cuda:1", "cuda:0"]
    assert job_threads(10, 4) == 2 and job_threads(1, 2) == 1 and job_threads(8, 1) == 8


# --------------------------------------------------------------------------- the profile key and the option
def test_profile_key_cells_per_gpu_default_and_validation(tmp_path):
    from bench.errors import UserError
    from bench.dispatch.slurm.profile import load_profile

    assert load_profile("slurm/local.toml")["cells_per_gpu"] == 1
    path = tmp_path / "p.toml"
    path.write_text('partition = "gpu"\ngpus_per_node = 1\ncells_per_gpu = 4\n')
    assert load_profile(path)["cells_per_gpu"] == 4
    for value, message in (("0", "cells_per_gpu must be positive, got 0"), ("-2", "cells_per_gpu must be positive"),
                           ('"2"', "cells_per_gpu has the wrong type (str)"),
                           ("2.5", "cells_per_gpu has the wrong type (float)"),
                           ("true", "cells_per_gpu has the wrong type (bool)")):
        path.write_text(f'partition = "gpu"\ncells_per_gpu = {value}\n')
        with pytest.raises(UserError) as err:
            load_profile(path)
        assert str(err.value) == f"{path}: {message}" or str(err.value).startswith(f"{path}: {message}"), err.value
        assert "\n" not in str(err.value)


def test_the_v100_profile_documents_cells_per_gpu():
    from conftest import ROOT

    text = (ROOT / "slurm" / "v100.toml").read_text()
    assert any(line.startswith("# cells_per_gpu = ") for line in text.splitlines()), text
    assert "| `cells_per_gpu` |" in (ROOT / "slurm" / "README.md").read_text()


def test_cells_per_gpu_option_applies_to_slurm_and_overrides_the_profile(capsys, tmp_path):
    grid = tmp_path / "g.toml"
    grid.write_text(TINY_GRID + "[axes]\nseed = [0, 1, 2]\n")
    common = ("grid", "run", grid, "--executor", "slurm", "--workdir", tmp_path / "w", "--results", tmp_path / "r",
              "--dry-run")
    rc, out, err = run_cli(capsys, *common, "--cluster", "slurm/local.toml", "--cells-per-gpu", "2")
    assert rc == 0 and "device cpu, 2 cells per job (profile " in out, err
    gpu = tmp_path / "gpu.toml"
    gpu.write_text('partition = "gpu"\ngpus_per_node = 2\ncells_per_gpu = 3\n')
    rc, out, err = run_cli(capsys, *common, "--cluster", gpu)
    assert rc == 0 and f"device cuda, 2 GPU(s) per job, 6 cells per job (3 per GPU) (profile {gpu})" in out, err
    rc, out, err = run_cli(capsys, *common, "--cluster", gpu, "--cells-per-gpu", "1")  # the option wins
    assert rc == 0 and f"device cuda, 2 GPU(s) per job (profile {gpu})" in out, err
    rc, _, err = run_cli(capsys, *common, "--cluster", "slurm/local.toml", "--cells-per-gpu", "0")
    one_line_error(rc, err, "--cells-per-gpu must be at least 1, got 0")
    rc, _, err = run_cli(capsys, *common[:3], "--executor", "debug", "--cells-per-gpu", "2", "--dry-run")
    one_line_error(rc, err, "--cells-per-gpu is for --executor local with --device cuda or cuda:N, or --executor slurm")
    assert not (tmp_path / "w").exists()


# --------------------------------------------------------------------------- what goes to submitit
class FakeSlurm:
    """Stands in for submitit.SlurmExecutor: records each array (its parameters and calls), numbers jobs."""

    arrays: list = []

    def __init__(self, folder, max_num_timeout):
        self.params: dict = {}

    def update_parameters(self, **params):
        self.params = params

    @contextmanager
    def batch(self):
        calls: list = []
        self.calls = calls
        yield
        base = 100 + len(FakeSlurm.arrays)
        FakeSlurm.arrays.append((dict(self.params), calls))
        for i, handle in enumerate(calls):
            handle.job_id = f"{base}_{i}" if len(calls) > 1 else str(base)

    def submit(self, fn, *args):
        handle = type("Handle", (), {})()
        handle.fn, handle.args = fn, args
        self.calls.append(handle)
        return handle


def test_slurm_submit_packs_cells_into_tasks_and_books_each_cell_with_its_task(tmp_path, monkeypatch):
    import submitit

    from bench.dispatch.cell_job import CellJob, PackJob
    from bench.dispatch.jobs import load_jobs
    from bench.dispatch.slurm.profile import load_profile
    from bench.dispatch.submit import submit_grid

    monkeypatch.setattr(submitit, "SlurmExecutor", FakeSlurm)
    FakeSlurm.arrays = []
    profile = {**load_profile("slurm/local.toml"), "cpus_per_task": 4, "cells_per_gpu": 2}
    grid = grid_of(tmp_path)
    monkeypatch.setattr("bench.dispatch.executors.slurm.client.check_reachable", lambda: None)
    lines: list[str] = []
    submitted = submit_grid(grid, "slurm", workdir=str(tmp_path / "w"), results=str(tmp_path / "r"),
                            profile=profile, log=lines.append)
    assert len(submitted) == len(grid.cells) == 15
    (params0, tasks0), *children = FakeSlurm.arrays
    assert "dependency" not in params0 and len(tasks0) == 5 and len(children) == 3
    for task in tasks0[:4]:  # two cells, one process each: devices and the job's 4 cores shared
        assert isinstance(task.fn, PackJob)
        cfgs, devices, args = task.args
        assert len(cfgs) == 2 and devices == ["cpu", "cpu"] and args.threads == 2
    assert isinstance(tasks0[4].fn, CellJob) and tasks0[4].args[1].threads == 2  # a lone cell: a packed cell's share
    jobs = load_jobs(tmp_path / "w", grid.name)
    stage0 = [c for c in grid.cells if c.stage == 0]
    for i, cell in enumerate(stage0):
        assert jobs[cell.run_id]["job_id"] == submitted[cell.run_id] == f"100_{i // 2}"
    for (params, tasks) in children:  # one fine-tune array per parent, after the parent's packed task
        (task,) = tasks
        cfgs, _, _ = task.args
        parent = {c.parent for c in grid.cells if c.config in cfgs}
        assert len(parent) == 1 and params["dependency"] == f"afterok:{submitted[parent.pop()]}"
        assert params["additional_parameters"]["kill_on_invalid_dep"] == "yes"
    assert lines[-4].startswith("stage 0: job array 100 with 5 task(s) of up to 2 packed cells (9 cells)"), lines
    assert lines[-1].startswith("stage 1: job 103 (2 fine-tune cells packed) after 100_"), lines
    assert json.loads((tmp_path / "w" / "grids" / "pk" / "jobs.json").read_text()) == jobs


# --------------------------------------------------------------------------- a packed job, here
@pytest.mark.slow
def test_a_packed_job_runs_each_cell_in_its_own_process_and_a_failure_spares_its_partner(tmp_path):
    """PackJob called directly (as a SLURM task would): two cells at once, one of which fails."""
    from bench.dispatch.cell_job import CellArgs, PackJob
    from bench.run import records

    grid = grid_of(tmp_path, TINY_GRID + "[axes]\nbatch_size = [64, 4096]\n", name="pf")
    args = CellArgs(grid="pf", workdir=str(tmp_path / "w"), results=str(tmp_path / "r"), data_root=None,
                    device="cpu", threads=1)
    good, bad = grid.cells
    with pytest.raises(RuntimeError, match=rf"1 of the job's 2 cells failed: {bad.run_id} \(exit status 1\)"):
        PackJob()([good.config, bad.config], ["cpu", "cpu"], args)
    ok_record, _ = records.read_record(tmp_path / "r" / "runs" / "pf" / f"{good.run_id}.json")
    bad_record, _ = records.read_record(tmp_path / "r" / "runs" / "pf" / f"{bad.run_id}.json")
    assert ok_record["status"] == "done" and bad_record["status"] == "failed"
    assert bad_record["error"] == "UserError: batch_size 4096 exceeds the 512 training samples"
    # run again: the finished cell is not started again, the failed one is (and fails again)
    with pytest.raises(RuntimeError, match="1 of the job's 2 cells failed"):
        PackJob()([good.config, bad.config], ["cpu", "cpu"], args)
    assert PackJob()([good.config], ["cpu"], args) == {}
