"""The local single-node SLURM cluster (slurm/local/start.sh) really schedules jobs.

Skips (with the reason) when no cluster can be had -- no `sbatch` on PATH, not root so
start.sh cannot run, or start.sh fails -- unless the environment variable CI is "true":
in CI every such case is a failure, never a skip.

The `slurm_cluster` fixture lives in tests/conftest.py (shared with test_slurm_dispatch.py).
It starts the cluster when run as root (start.sh is idempotent and returns in well under a
second when the cluster is already up), and stops it at the end of the session only if it
was the one that started it (set PROXBENCH_SLURM_KEEP=1 to keep it).
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
from conftest import SlurmCluster, wait_until  # noqa: F401 - the fixture's type (helpers below)

pytestmark = pytest.mark.slurm


# --------------------------------------------------------------------------- helpers
TERMINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL",
            "PREEMPTED", "BOOT_FAIL", "DEADLINE"}


def run(*cmd: str, timeout: float = 30) -> str:
    proc = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()}"
    return proc.stdout


def sbatch(cluster: SlurmCluster, out: Path, *args: str) -> str:
    """Submit; return the job id."""
    stdout = run("sbatch", "--parsable", f"--partition={cluster.partition}", "--ntasks=1",
                 "--cpus-per-task=1", "--mem=100M", "--time=5", f"--chdir={out}", *args)
    return stdout.strip().split(";")[0]


def sacct_states(job: str) -> dict[str, str]:
    """{job or array-task id: state} as recorded by slurmdbd (what submitit reads)."""
    out = run("sacct", "-n", "-P", "-X", "-j", job, "-o", "JobID,State")
    states = {}
    for line in out.splitlines():
        if "|" in line:
            jid, state = line.split("|", 1)
            states[jid] = state.split()[0]  # "CANCELLED by 0" -> "CANCELLED"
    return states


def wait_sacct(job: str, expect_ids: set[str], timeout: float = 60) -> dict[str, str]:
    """Wait until sacct shows every id in expect_ids in a terminal state."""
    deadline = time.monotonic() + timeout
    states: dict[str, str] = {}
    while time.monotonic() < deadline:
        states = sacct_states(job)
        if expect_ids <= states.keys() and all(states[i] in TERMINAL for i in expect_ids):
            return states
        time.sleep(0.5)
    pytest.fail(f"job {job}: not finished in sacct after {timeout:.0f} s; last states {states}; "
                f"squeue: {run('squeue', '-h', '-j', job, '-o', '%i %T %r').strip() or '-'}")




def squeue_state(job: str) -> str:
    return run("squeue", "-h", "-j", job, "-o", "%T").strip()


# --------------------------------------------------------------------------- tests
def test_node_idle_and_partition(slurm_cluster):
    out = run("sinfo", "-h", "-N", "-p", slurm_cluster.partition, "-o", "%N %t")
    assert out.strip(), "partition has no node"
    node, state = out.split()[:2]
    assert state in {"idle", "mix", "alloc"}, f"node {node} is {state}"


def test_wrap_job_completes(slurm_cluster, tmp_path):
    t0 = time.monotonic()
    job = sbatch(slurm_cluster, tmp_path, "--output=%j.out", "--wrap", "echo hello from $SLURM_JOB_ID")
    states = wait_sacct(job, {job})
    assert states[job] == "COMPLETED", states
    assert (tmp_path / f"{job}.out").read_text().strip() == f"hello from {job}"
    print(f"wrap job {job}: COMPLETED in sacct after {time.monotonic() - t0:.1f} s")


def test_job_array_completes(slurm_cluster, tmp_path):
    t0 = time.monotonic()
    job = sbatch(slurm_cluster, tmp_path, "--array=0-1", "--output=%A_%a.out",
                 "--wrap", "echo task $SLURM_ARRAY_TASK_ID of $SLURM_ARRAY_JOB_ID")
    ids = {f"{job}_0", f"{job}_1"}
    states = wait_sacct(job, ids)
    assert all(states[i] == "COMPLETED" for i in ids), states
    for k in (0, 1):
        assert (tmp_path / f"{job}_{k}.out").read_text().strip() == f"task {k} of {job}"
    print(f"array job {job}: both tasks COMPLETED in sacct after {time.monotonic() - t0:.1f} s")


def test_requeue_restarts_quickly_and_cancel_is_recorded(slurm_cluster, tmp_path):
    """A requeued running job runs again within ~30 s (short cred_expire, fast scheduling),
    and a cancelled job ends up CANCELLED in sacct (needs slurmdbd)."""
    starts = tmp_path / "starts"
    job = sbatch(slurm_cluster, tmp_path, "--requeue", "--output=%j.out",
                 "--wrap", f"echo start${{SLURM_RESTART_COUNT:-0}} >> {starts}; sleep 300")
    try:
        wait_until(lambda: starts.exists() and len(starts.read_text().split()) == 1
                   and squeue_state(job) == "RUNNING", 60, f"job {job} to start")
        t0 = time.monotonic()
        run("scontrol", "requeue", job)
        wait_until(lambda: len(starts.read_text().split()) >= 2 and squeue_state(job) == "RUNNING",
                   30, f"requeued job {job} to run again")
        elapsed = time.monotonic() - t0
        assert starts.read_text().split() == ["start0", "start1"]  # SLURM_RESTART_COUNT (unset at first)
        assert "Restarts=1" in run("scontrol", "show", "job", job)
        print(f"requeued job {job} running again after {elapsed:.1f} s")
    finally:
        subprocess.run(["scancel", job], capture_output=True, timeout=30)
    states = wait_sacct(job, {job}, timeout=60)
    assert states[job] == "CANCELLED", states


def test_submitit_roundtrip(slurm_cluster, tmp_path):
    """submitit submits through sbatch and reads the state back through sacct."""
    import operator  # a stdlib callable: a function of this module would not unpickle in the job

    try:
        import submitit
    except ImportError:
        if os.environ.get("CI", "").lower() == "true":
            raise
        pytest.skip("submitit not installed")
    executor = submitit.AutoExecutor(folder=tmp_path / "submitit", cluster="slurm")
    executor.update_parameters(slurm_partition=slurm_cluster.partition, timeout_min=5, cpus_per_task=1,
                               mem_gb=1, slurm_array_parallelism=2)
    t0 = time.monotonic()
    jobs = executor.map_array(operator.mul, [1, 2], [2, 2])
    assert [j.result() for j in jobs] == [2, 4]
    # submitit caches sacct answers; force a fresh sacct call until it records both tasks
    def completed():
        jobs[0].watcher.update()
        return all(j.state == "COMPLETED" for j in jobs)

    wait_until(completed, 30, f"sacct to report {[j.job_id for j in jobs]} COMPLETED to submitit", step=1)
    print(f"submitit array of 2: results after {time.monotonic() - t0:.1f} s")
