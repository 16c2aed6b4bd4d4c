"""`grid run --executor slurm` against the real local SLURM cluster.

Every test drives the CLI as a user would (`python -m bench grid run/status/cancel`) in a fresh tmp
folder (work dir, results and submitit folder: job ids restart when the cluster is purged, and a reused
submitit folder would return stale results). The cluster tests use the `slurm_cluster` fixture
(tests/conftest.py), which skips outside CI when no cluster can be had; the bad-input tests need none.
Timings and the requeue timeline are printed (pytest -s shows them).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, TINY_GRID, wait_until

# small, quick, learnable cells: ~1 s of training each; a job's start (python + torch import) dominates
SMALL = TINY_GRID.replace("epochs = 1", "epochs = 2")
# ~2-4 s per epoch on one thread: long enough to requeue a job in the middle of its run
SLOW_DATA = "{img_size = 8, in_chans = 1, num_classes = 4, train_size = 12288, test_size = 512}"


def cli(*args, cwd: Path, timeout: float = 240, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-m", "bench", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=full_env)


def bench(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """`python -m bench ARGS` in this process (no python + torch start-up: ~5 s per call on a busy 2-core VM)."""
    from bench.cli import main

    out, err = io.StringIO(), io.StringIO()
    old = Path.cwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(list(args))
    finally:
        os.chdir(old)
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


def ok(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc.stdout + proc.stderr


def sh(*cmd: str) -> str:
    out = subprocess.run(list(cmd), capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, f"{' '.join(cmd)}: {out.stderr}"
    return out.stdout


def profile_path(cluster, tmp_path: Path) -> Path:
    """slurm/local.toml, or a copy naming the cluster's partition if it is not 'debug'."""
    shipped = ROOT / "slurm" / "local.toml"
    if cluster.partition == "debug":
        return shipped
    copy = tmp_path / "local.toml"
    copy.write_text(re.sub(r'(?m)^partition = .*$', f'partition = "{cluster.partition}"', shipped.read_text()))
    return copy


def grid_run(tmp_path: Path, grid: Path, cluster, *extra: str, timeout: float = 240,
             here: bool = False) -> subprocess.CompletedProcess:
    if here:  # in this process
        return bench("grid", "run", str(grid), "--executor", "slurm", "--cluster", str(profile_path(cluster, tmp_path)),
                     "--workdir", "w", "--results", "r", *extra, cwd=tmp_path)
    return cli("grid", "run", str(grid), "--executor", "slurm", "--cluster", str(profile_path(cluster, tmp_path)),
               "--workdir", "w", "--results", "r", *extra, cwd=tmp_path, timeout=timeout)


def status_rows(tmp_path: Path, grid: Path) -> dict[str, dict]:
    """`grid status` parsed: {run id: {state, job, epochs, acc, error}}."""
    out = ok(bench("grid", "status", str(grid), "--workdir", "w", "--results", "r", cwd=tmp_path))
    rows = {}
    for line in out.splitlines():
        cols = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cols) == 7 and re.fullmatch(r"[0-9a-f]{10}", cols[0]):
            rows[cols[0]] = dict(zip(("cell", "state", "job", "epochs", "acc", "error"), cols[1:]))
    return rows


def jobs_of(tmp_path: Path, grid: Path) -> dict[str, dict]:
    return json.loads((tmp_path / "w" / "grids" / grid.stem / "jobs.json").read_text())


def record(tmp_path: Path, grid: Path, run_id: str) -> dict:
    return json.loads((tmp_path / "r" / "runs" / grid.stem / f"{run_id}.json").read_text())


def scripts(tmp_path: Path, grid: Path) -> list[str]:
    """The sbatch scripts submitit wrote, in job-id order."""
    paths = sorted((tmp_path / "w" / "submitit" / grid.stem).glob("*/*_submission.sh"),
                   key=lambda p: int(p.name.split("_")[0]))
    return [p.read_text() for p in paths]


def restarts(job_id: str) -> int:
    """SLURM's restart count of a job (``scontrol show job``: Restarts=N), 0 when it is not shown."""
    out = subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True, timeout=30)
    found = re.search(r"\bRestarts=(\d+)", out.stdout)
    return int(found.group(1)) if found else 0


def squeue(*ids: str) -> dict[str, tuple[str, str]]:
    """{task id: (state, reason)} of the given job ids that squeue still shows."""
    bases = {i.split("_")[0] for i in ids}
    out = sh("squeue", "-h", "-r", "-o", "%i|%T|%r")
    rows = {}
    for line in out.splitlines():
        jid, state, reason = line.strip().split("|")
        if jid in ids or jid.split("_")[0] in bases:
            rows[jid] = (state, reason)
    return rows




# --------------------------------------------------------------------------- a grid end to end
@pytest.mark.slurm
@pytest.mark.slow
def test_grid_runs_as_job_arrays_and_a_rerun_submits_nothing(slurm_cluster, tmp_path):
    grid = tmp_path / "sgrid.toml"
    grid.write_text(SMALL + '[axes]\nmethod = ["fp", "bnn"]\nseed = [0, 1]\n')
    t0 = time.monotonic()
    out = ok(grid_run(tmp_path, grid, slurm_cluster, "--wait"))
    wall = time.monotonic() - t0
    assert "4 to submit" in out and "stage 0: job array" in out

    jobs = jobs_of(tmp_path, grid)
    assert len(jobs) == 4 and len({j["job_id"].split("_")[0] for j in jobs.values()}) == 1  # one array
    for rid, job in jobs.items():
        rec = record(tmp_path, grid, rid)
        assert rec["status"] == "done" and len(rec["history"]) == 2 and rec["final"]["acc"] > 50
        assert rec["device"] == "cpu (1 threads)"  # torch threads = the profile's cpus_per_task

    # what was sent to sbatch
    (script,) = scripts(tmp_path, grid)
    for line in ("#SBATCH --array=0-3%2", "#SBATCH --cpus-per-task=1", "#SBATCH --time=10",
                 f"#SBATCH --partition={slurm_cluster.partition}", "#SBATCH --mem=1024MB",
                 "#SBATCH --signal=USR2@30", "#SBATCH --job-name=proxbench-sgrid"):
        assert line in script.splitlines(), f"{line!r} not in\n{script}"
    assert "--dependency" not in script and "--gpus" not in script and "--constraint" not in script

    rows = status_rows(tmp_path, grid)
    assert {r["state"] for r in rows.values()} == {"done"} and len(rows) == 4
    assert all(rows[rid]["job"] == job["job_id"] and rows[rid]["epochs"] == "2/2" for rid, job in jobs.items())

    board = bench("aggregate", "sgrid", "--results", "r", "--no-figures", cwd=tmp_path)
    ok(board)
    assert (tmp_path / "r" / "sgrid" / "leaderboard.md").is_file() and "BNN" in board.stdout

    folders = set((tmp_path / "w" / "submitit" / "sgrid").iterdir())
    again = ok(grid_run(tmp_path, grid, slurm_cluster, "--wait", here=True))
    assert "0 to submit" in again and "job array" not in again
    assert set((tmp_path / "w" / "submitit" / "sgrid").iterdir()) == folders  # nothing new was submitted
    print(f"\n4-cell grid on SLURM: grid run -> all done in {wall:.1f} s")


# --------------------------------------------------------------------------- fine-tune after its parent
@pytest.mark.slurm
@pytest.mark.slow
def test_finetune_cells_wait_for_their_fp_parent_and_start_from_it(slurm_cluster, tmp_path):
    grid = tmp_path / "ftgrid.toml"
    grid.write_text(SMALL + '''[axes]
method = ["fp", "bnn"]
mode = ["e2e", "finetune"]
[mode."finetune"]
init = "parent"
epochs = 1
[[exclude]]
method = "bnn"
mode = "e2e"
''')
    out = ok(grid_run(tmp_path, grid, slurm_cluster, "--no-wait"))
    assert "3 to submit" in out
    jobs = jobs_of(tmp_path, grid)
    parent_rid = next(r for r, j in jobs.items() if "mode=e2e" in j["label"])
    parent = jobs[parent_rid]["job_id"]
    children = {r: j["job_id"] for r, j in jobs.items() if r != parent_rid}
    assert len({j.split("_")[0] for j in children.values()}) == 1  # one array for the parent's children

    parent_script, child_script = scripts(tmp_path, grid)
    assert "--dependency" not in parent_script and "--array" not in parent_script  # one cell: a plain job
    assert f"#SBATCH --dependency=afterok:{parent}" in child_script.splitlines(), child_script
    assert "#SBATCH --kill-on-invalid-dep=yes" in child_script and "#SBATCH --array=0-1%2" in child_script

    # while the parent runs, the children are held by SLURM with reason Dependency
    queue = wait_until(lambda: (q := squeue(parent, *children.values())).get(parent, ("",))[0] == "RUNNING" and q,
                       180, f"parent job {parent} to run")  # a loaded 2-core machine can take a minute
    for job in children.values():
        assert queue.get(job) == ("PENDING", "Dependency"), queue
    rows = status_rows(tmp_path, grid)
    if rows[parent_rid]["state"] == "running":  # (it may have finished meanwhile)
        assert all(rows[r]["state"] == "queued" and rows[r]["error"] == "waiting: Dependency" for r in children)

    again = ok(grid_run(tmp_path, grid, slurm_cluster, "--wait"))  # waits for what is queued
    assert "3 finished or queued, 0 to submit" in again

    par = record(tmp_path, grid, parent_rid)
    assert par["status"] == "done"
    times = {}
    for line in sh("sacct", "-n", "-P", "-X", "-o", "JobID,Start,End", "-j",
                   f"{parent.split('_')[0]},{next(iter(children.values())).split('_')[0]}").splitlines():
        jid, start, end = line.split("|")
        times[jid] = (start, end)
    for rid, job in children.items():
        rec = record(tmp_path, grid, rid)
        assert rec["status"] == "done" and rec["config"]["init"] == f"run:{parent_rid}"
        assert rec["history"][0]["epoch"] == 0 and rec["history"][0]["train_loss"] is None  # epoch-0 evaluation
        if rec["config"]["method"] == "fp":  # starts from exactly the parent's weights
            assert rec["history"][0]["test_acc"] == par["final"]["acc"]
        if job in times and parent in times:  # ISO timestamps compare as strings
            assert times[job][0] >= times[parent][1], times


# --------------------------------------------------------------------------- requeue resumes
@pytest.mark.slurm
@pytest.mark.slow
def test_requeued_and_preempted_job_resumes_from_its_checkpoint_with_the_same_metrics(slurm_cluster, tmp_path):
    """`scontrol requeue` after epoch 1 (SLURM kills and requeues the job), then SIGUSR2 after epoch 2
    (submitit's timeout/preemption path: CellJob.checkpoint, then submitit requeues the job itself): each
    restart resumes from the last epoch checkpoint, and the record equals an uninterrupted run's."""
    cell = f'''model = "fmnist-mlp"
method = "bnn"
dataset = "synthetic"
data_options = {SLOW_DATA}
epochs = 3
batch_size = 32
'''
    grid = tmp_path / "rq.toml"
    grid.write_text("[defaults]\n" + cell + '[axes]\nseed = [0]\n')
    (tmp_path / "cell.toml").write_text(cell + "seed = 0\n")
    # the uninterrupted reference, one thread like the job, while the SLURM job runs
    reference = subprocess.Popen(
        [sys.executable, "-m", "bench", "run", "--config", "cell.toml", "--workdir", "wref", "--results", "rref",
         "--grid", "ref"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"})
    timeline: list[tuple[str, float]] = []
    try:
        t0 = time.monotonic()
        mark = lambda what: timeline.append((what, time.monotonic() - t0))  # noqa: E731
        ok(grid_run(tmp_path, grid, slurm_cluster, "--no-wait", here=True))
        mark("submitted")
        ((rid, job),) = jobs_of(tmp_path, grid).items()
        job_id = job["job_id"]
        progress = tmp_path / "w" / "runs" / rid / "progress.json"
        log = Path(job["folder"]) / f"{job_id}_0_log.out"
        state = lambda: squeue(job_id).get(job_id, ("",))[0]  # noqa: E731
        epoch = lambda: progress.is_file() and json.loads(progress.read_text())["epoch"]  # noqa: E731
        resumes = lambda: re.findall(r"resuming at epoch (\d)/3", log.read_text())  # noqa: E731

        wait_until(lambda: state() == "RUNNING", 60, "the job to start")
        mark("running")
        wait_until(lambda: epoch() >= 1, 120, "the job's first epoch")
        mark("epoch 1 checkpoint")
        sh("scontrol", "requeue", job_id)
        mark("scontrol requeue")
        wait_until(lambda: state() != "RUNNING", 30, "the requeue to stop the job")
        mark(f"stopped ({state() or 'gone'})")
        wait_until(lambda: state() == "RUNNING", 60, "the requeued job to run again")
        mark("running again")
        wait_until(lambda: len(resumes()) == 1, 120, "the 'resuming at epoch' line")
        mark(f"resuming at epoch {resumes()[0]}/3")
        wait_until(lambda: epoch() >= 2, 120, "the job's second epoch")
        mark("epoch 2 checkpoint")
        sh("scancel", "--signal=USR2", job_id)  # what SLURM sends signal_delay_s before the time limit
        mark("SIGUSR2")
        # SLURM's own evidence: submitit's `scontrol requeue` is the job's second restart
        wait_until(lambda: restarts(job_id) >= 2, 60, "submitit to checkpoint and requeue the job")
        mark(f"submitit requeued it (restarts {restarts(job_id)})")
        wait_until(lambda: len(resumes()) == 2, 120, "the second 'resuming at epoch' line")
        mark(f"resuming at epoch {resumes()[1]}/3")
        ok(grid_run(tmp_path, grid, slurm_cluster, "--wait", here=True))
        mark("done")
        ref_out, _ = reference.communicate(timeout=180)
        assert reference.returncode == 0, ref_out
    finally:
        if reference.poll() is None:
            reference.kill()
        print("\nrequeue timeline (s after submit): " + ", ".join(f"{what} {t:.1f}" for what, t in timeline))

    first, second = (int(e) for e in resumes())
    assert first >= 2 and second >= 3  # resumed from the checkpoints, not from scratch
    text = log.read_text()
    assert "Calling checkpoint method." in text  # CellJob.checkpoint (submitit.helpers.Checkpointable)
    # submitit's USR2 handler ran to its end: SLURM's SIGTERM for the requeue did not cut it short
    assert "Requeued job" in text and "Exiting gracefully after preemption/timeout." in text, text
    rec = record(tmp_path, grid, rid)
    (ref,) = [json.loads(p.read_text()) for p in (tmp_path / "rref" / "runs" / "ref").glob("*.json")]
    assert ref["run_id"] == rid and rec["status"] == ref["status"] == "done"
    strip = lambda history: [{k: v for k, v in h.items() if k != "seconds"} for h in history]  # noqa: E731
    assert strip(rec["history"]) == strip(ref["history"])
    assert rec["final"]["acc"] == ref["final"]["acc"] and rec["final"]["acc_forward"] == ref["final"]["acc_forward"]


# --------------------------------------------------------------------------- failure and cancel
@pytest.mark.slurm
@pytest.mark.slow
def test_a_failing_cell_is_reported_and_the_others_finish(slurm_cluster, tmp_path):
    grid = tmp_path / "fgrid.toml"
    grid.write_text(SMALL + '[axes]\nbatch_size = [64, 4096]\n')  # 4096 > train_size 512: fails in the job
    proc = grid_run(tmp_path, grid, slurm_cluster, "--wait")
    assert proc.returncode == 1, proc.stdout + proc.stderr  # not every cell is done
    assert "Traceback" not in proc.stderr
    rows = status_rows(tmp_path, grid)
    states = {r["cell"]: r for r in rows.values()}
    assert states["batch_size=64"]["state"] == "done"
    bad = states["batch_size=4096"]
    assert bad["state"] == "failed"
    assert bad["error"] == "UserError: batch_size 4096 exceeds the 512 training samples", bad
    # a rerun resubmits the failed cell only (and it fails again)
    plan = ok(grid_run(tmp_path, grid, slurm_cluster, "--dry-run", here=True))
    assert "2 cells, 1 to submit" in plan


@pytest.mark.slurm
@pytest.mark.slow
def test_grid_cancel_leaves_nothing_running(slurm_cluster, tmp_path):
    grid = tmp_path / "cgrid.toml"
    grid.write_text(SMALL.replace("epochs = 2", "epochs = 500") + '[axes]\nseed = [0, 1, 2]\n')
    ok(grid_run(tmp_path, grid, slurm_cluster, "--no-wait"))
    ids = [j["job_id"] for j in jobs_of(tmp_path, grid).values()]
    # two tasks run (array parallelism 2), the third waits
    wait_until(lambda: sorted(s for s, _ in squeue(*ids).values()) == ["PENDING", "RUNNING", "RUNNING"], 60,
               "two of the three tasks to run")
    t0 = time.monotonic()
    out = ok(bench("grid", "cancel", str(grid), "--workdir", "w", "--results", "r", cwd=tmp_path))
    assert "cancelled 3 job(s)" in out
    assert squeue(*ids) == {}, "jobs left in squeue after grid cancel"
    rows = status_rows(tmp_path, grid)
    assert {r["state"] for r in rows.values()} == {"cancelled"}, rows
    assert not (tmp_path / "r" / "runs" / "cgrid").exists()  # no record for a cancelled cell
    print(f"\ngrid cancel of 2 running + 1 pending tasks: {time.monotonic() - t0:.1f} s")


# --------------------------------------------------------------------------- bad input
def _bogus_conf(tmp_path: Path) -> Path:
    """A slurm.conf whose controller does not exist (a dead port on localhost)."""
    conf = tmp_path / "bogus.conf"
    conf.write_text("ClusterName=bogus\nSlurmctldHost=nohost(127.0.0.1)\nSlurmctldPort=6999\n"
                    "NodeName=nohost CPUs=1 State=UNKNOWN\nPartitionName=debug Nodes=nohost Default=YES\n")
    return conf


@pytest.mark.parametrize("case", ["unknown-key", "missing-profile", "no-sbatch", "missing-slurm-conf", "dead-controller"])
def test_bad_slurm_input_is_one_line_exit_2_and_submits_nothing(case, tmp_path, monkeypatch):
    """In this process (fast), except one case through `python -m bench` (the real exit status, no traceback)."""
    grid = tmp_path / f"bad{case.replace('-', '')}.toml"
    grid.write_text(SMALL + '[axes]\nseed = [0]\n')
    profile, env = str(ROOT / "slurm" / "local.toml"), {}
    if case == "unknown-key":
        profile = str(tmp_path / "p.toml")
        Path(profile).write_text('partition = "debug"\ngpus = 1\n')
        expect = "unknown profile key 'gpus'"
    elif case == "missing-profile":
        profile, expect = "slurm/nope.toml", "cluster profile not found: slurm/nope.toml"
    elif case == "no-sbatch":
        (tmp_path / "bin").mkdir()
        env, expect = {"PATH": str(tmp_path / "bin")}, "SLURM is not reachable: sbatch, squeue, sacct, scontrol not found"
    elif shutil.which("sbatch") is None or shutil.which("scontrol") is None:
        pytest.skip("no SLURM client tools (sbatch, scontrol) to point at a missing config or a dead controller")
    elif case == "missing-slurm-conf":
        env, expect = {"SLURM_CONF": str(tmp_path / "nope.conf")}, "does not exist"
    else:
        env, expect = {"SLURM_CONF": str(_bogus_conf(tmp_path))}, "SLURM is not reachable: Slurmctld(primary) at nohost is DOWN"
    t0 = time.monotonic()
    args = ("grid", "run", str(grid), "--executor", "slurm", "--cluster", profile, "--workdir", "w", "--results", "r")
    if case == "dead-controller":
        proc = cli(*args, cwd=tmp_path, env=env, timeout=60)
    else:
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        proc = bench(*args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expect in lines[0], proc.stderr
    assert time.monotonic() - t0 < 30
    assert not (tmp_path / "w").exists()  # no jobs.json, no submitit folder
    monkeypatch.undo()  # the real PATH / SLURM_CONF again
    if shutil.which("squeue") and case != "no-sbatch":
        names = subprocess.run(["squeue", "-h", "-o", "%j"], capture_output=True, text=True, timeout=30).stdout
        assert f"proxbench-{grid.stem}" not in names.split()


# --------------------------------------------------------------------------- plugins
@pytest.mark.slurm
@pytest.mark.slow
def test_a_plugin_method_runs_in_a_slurm_job(slurm_cluster, tmp_path):
    """`--plugin` reaches the job: the module is imported by the job process, not only by the submitter."""
    shutil.copy(ROOT / "tests" / "plugin_methods.py", tmp_path / "my_methods.py")
    grid = tmp_path / "pgrid.toml"
    grid.write_text(SMALL + '[axes]\nmethod = ["tanh-ste"]\n')
    proc = cli("--plugin", "my_methods", "grid", "run", str(grid), "--executor", "slurm", "--cluster",
               str(profile_path(slurm_cluster, tmp_path)), "--workdir", "w", "--results", "r", "--wait", cwd=tmp_path)
    ok(proc)
    ((rid, _),) = jobs_of(tmp_path, grid).items()
    rec = record(tmp_path, grid, rid)
    assert rec["status"] == "done" and rec["config"]["method"] == "tanh-ste" and rec["final"]["acc"] > 40
