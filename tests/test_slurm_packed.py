"""`grid run --executor slurm` with several cells per job (`cells_per_gpu`) against the real local SLURM
cluster (CPU only: with `gpus_per_node = 0` a packed job's cells share its CPUs).

Packed and unpacked runs of the same cells give the same run ids and metrics; a packed job requeued through
submitit's SIGUSR2 path resumes every one of its cells from its own checkpoint; a cell that fails in a packed
job does not take its partner down. Each test works in a fresh tmp folder (see tests/test_slurm_dispatch.py,
whose helpers are used here).
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from conftest import wait_until
from test_slurm_dispatch import SLOW_DATA, SMALL, bench, ok, profile_path, restarts, sh, squeue, status_rows

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


def packed_profile(cluster, tmp_path: Path, k: int) -> Path:
    """slurm/local.toml (or its copy for the cluster's partition) with cells_per_gpu = k."""
    base = profile_path(cluster, tmp_path)
    path = tmp_path / f"local-k{k}.toml"
    path.write_text(re.sub(r"(?m)^cells_per_gpu = .*$", f"cells_per_gpu = {k}", base.read_text()))
    return path


def run_grid(where: Path, grid: Path, profile: Path, *extra: str):
    where.mkdir(exist_ok=True)
    return bench("grid", "run", str(grid), "--executor", "slurm", "--cluster", str(profile), "--workdir", "w",
                 "--results", "r", *extra, cwd=where)


def jobs(where: Path, grid: Path) -> dict[str, dict]:
    return json.loads((where / "w" / "grids" / grid.stem / "jobs.json").read_text())


def record(where: Path, grid: Path, run_id: str) -> dict:
    return json.loads((where / "r" / "runs" / grid.stem / f"{run_id}.json").read_text())


def sacct_tasks(base: str) -> dict[str, str]:
    out = sh("sacct", "-n", "-P", "-X", "-o", "JobID,State", "-j", base)
    return {jid: state.split()[0] for jid, state in (line.split("|") for line in out.splitlines() if "|" in line)}


def test_four_cells_two_per_job_run_as_two_tasks_with_the_metrics_of_an_unpacked_run(slurm_cluster, tmp_path):
    grid = tmp_path / "pk4.toml"
    grid.write_text(SMALL.replace("epochs = 2", "epochs = 1") + '[axes]\nmethod = ["fp", "bnn"]\nseed = [0, 1]\n')
    packed, plain = tmp_path / "packed", tmp_path / "plain"
    t0 = time.monotonic()
    out = ok(run_grid(packed, grid, packed_profile(slurm_cluster, tmp_path, 2), "--no-wait"))
    ok(run_grid(plain, grid, profile_path(slurm_cluster, tmp_path), "--no-wait"))
    assert "stage 0: job array" in out and "with 2 task(s) of up to 2 packed cells (4 cells)" in out, out
    book = jobs(packed, grid)
    tasks = sorted({j["job_id"] for j in book.values()})
    assert len(book) == 4 and len(tasks) == 2 and len({t.split("_")[0] for t in tasks}) == 1  # one array, 2 tasks
    assert sorted([j["job_id"] for j in book.values()].count(t) for t in tasks) == [2, 2]
    ok(run_grid(packed, grid, packed_profile(slurm_cluster, tmp_path, 2), "--wait"))
    ok(run_grid(plain, grid, profile_path(slurm_cluster, tmp_path), "--wait"))
    wall = time.monotonic() - t0

    base = tasks[0].split("_")[0]
    states = wait_until(lambda: (s := sacct_tasks(base)).keys() >= set(tasks) and s, 30, "sacct's task rows")
    assert {states[t] for t in tasks} == {"COMPLETED"} and len([k for k in states if "_" in k]) == 2, states
    rows = status_rows(packed, grid)
    assert {r["state"] for r in rows.values()} == {"done"} and len(rows) == 4
    assert all(rows[rid]["job"] == job["job_id"] for rid, job in book.items())  # each cell shows its task's id
    assert set(jobs(plain, grid)) == set(book)  # same run ids
    for rid in book:
        mine, theirs = record(packed, grid, rid), record(plain, grid, rid)
        assert mine["status"] == theirs["status"] == "done"
        assert mine["final"]["acc"] == theirs["final"]["acc"], (rid, mine["final"], theirs["final"])
        strip = lambda h: [{k: v for k, v in e.items() if k != "seconds"} for e in h]  # noqa: E731
        assert strip(mine["history"]) == strip(theirs["history"])
    print(f"\n4 cells packed 2 per job + the same 4 unpacked on SLURM: {wall:.1f} s")


def test_a_requeued_packed_job_resumes_both_cells_from_their_checkpoints(slurm_cluster, tmp_path):
    """SIGUSR2 (what SLURM sends signal_delay_s before the time limit) once both cells have checkpointed an
    epoch: PackJob.checkpoint, submitit requeues the job, and the restart resumes each cell from its own
    checkpoint; both records end done with every epoch."""
    grid = tmp_path / "pkrq.toml"
    grid.write_text(f'''[defaults]
model = "fmnist-mlp"
dataset = "synthetic"
data_options = {SLOW_DATA}
epochs = 4
batch_size = 32
method = "bnn"
[axes]
seed = [0, 1]
''')
    timeline: list[tuple[str, float]] = []
    t0 = time.monotonic()
    mark = lambda what: timeline.append((what, time.monotonic() - t0))  # noqa: E731
    try:
        ok(run_grid(tmp_path, grid, profile_path(slurm_cluster, tmp_path), "--no-wait", "--cells-per-gpu", "2"))
        mark("submitted")
        book = jobs(tmp_path, grid)
        (job_id,) = {j["job_id"] for j in book.values()}  # one job for both cells
        folder = Path(next(iter(book.values()))["folder"])
        log = folder / f"{job_id}_0_log.out"
        state = lambda: squeue(job_id).get(job_id, ("",))[0]  # noqa: E731
        epoch = lambda rid: (p := tmp_path / "w" / "runs" / rid / "progress.json").is_file() and \
            json.loads(p.read_text())["epoch"]  # noqa: E731
        resumes = lambda: re.findall(r"\[([0-9a-f]{10})\] resuming at epoch (\d)/4", log.read_text())  # noqa: E731

        wait_until(lambda: state() == "RUNNING", 60, "the job to start")
        mark("running")
        wait_until(lambda: all(epoch(rid) >= 1 for rid in book), 180, "both cells' first epoch")
        mark(f"epochs {[epoch(rid) for rid in book]}")
        sh("scancel", "--signal=USR2", job_id)
        mark("SIGUSR2")
        wait_until(lambda: restarts(job_id) >= 1, 60, "submitit to checkpoint and requeue the job")
        mark("requeued")
        wait_until(lambda: len(resumes()) == 2, 120, "both cells' 'resuming at epoch' lines")
        mark(f"resumed {resumes()}")
        ok(run_grid(tmp_path, grid, profile_path(slurm_cluster, tmp_path), "--wait"))
        mark("done")
    finally:
        print("\npacked requeue timeline (s after submit): " + ", ".join(f"{w} {t:.1f}" for w, t in timeline))
    text = log.read_text()
    assert "Calling checkpoint method." in text and "Requeued job" in text, text
    assert "Exiting gracefully after preemption/timeout." in text
    assert {rid for rid, _ in resumes()} == set(book) and all(int(e) >= 2 for _, e in resumes())
    for rid in book:
        rec = record(tmp_path, grid, rid)
        assert rec["status"] == "done" and [h["epoch"] for h in rec["history"]][-4:] == [1, 2, 3, 4]
    rows = status_rows(tmp_path, grid)
    assert {r["state"] for r in rows.values()} == {"done"} and {r["job"] for r in rows.values()} == {job_id}


def test_a_failing_cell_in_a_packed_job_does_not_take_its_partner_down(slurm_cluster, tmp_path):
    grid = tmp_path / "pkf.toml"
    grid.write_text(SMALL + '[axes]\nbatch_size = [64, 4096]\n')  # 4096 > train_size 512: fails in the job
    proc = run_grid(tmp_path, grid, profile_path(slurm_cluster, tmp_path), "--wait", "--cells-per-gpu", "2")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "(2 cells packed)" in proc.stdout + proc.stderr
    (job_id,) = {j["job_id"] for j in jobs(tmp_path, grid).values()}
    states = {r["cell"]: r for r in status_rows(tmp_path, grid).values()}
    assert states["batch_size=64"]["state"] == "done" and states["batch_size=64"]["job"] == job_id
    bad = states["batch_size=4096"]
    assert bad["state"] == "failed" and bad["job"] == job_id
    assert bad["error"] == "UserError: batch_size 4096 exceeds the 512 training samples", bad
    # the job itself ended FAILED (the packed task fails as its cells fail)
    final = wait_until(lambda: sacct_tasks(job_id).get(job_id) not in (None, "RUNNING", "PENDING")
                       and sacct_tasks(job_id)[job_id], 30, "sacct's final state")
    assert final == "FAILED"
