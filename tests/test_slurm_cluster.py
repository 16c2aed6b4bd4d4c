"""The local single-node SLURM cluster (slurm/local/start.sh) really schedules jobs.

Skips (with the reason) when no cluster can be had -- no `sbatch` on PATH, not root so
start.sh cannot run, or start.sh fails -- unless the environment variable CI is "true":
in CI every such case is a failure, never a skip.

The `slurm_cluster` fixture is self-contained so that it can move to tests/conftest.py
as is.  It starts the cluster when run as root (start.sh is idempotent and returns in
well under a second when the cluster is already up), and stops it at the end of the
session only if it was the one that started it (set PROXBENCH_SLURM_KEEP=1 to keep it).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slurm


# --------------------------------------------------------------------------- fixture
@dataclasses.dataclass(frozen=True)
class SlurmCluster:
    partition: str  # partition to submit to ("debug")
    state_dir: Path  # PROXBENCH_SLURM_DIR: config, logs, pid files
    conf: Path  # the slurm.conf clients use (also exported as SLURM_CONF when needed)
    started_here: bool  # True when this session started it (and will stop it)


@pytest.fixture(scope="session")
def slurm_cluster():
    repo = Path(__file__).resolve().parents[1]
    start, stop = repo / "slurm/local/start.sh", repo / "slurm/local/stop.sh"
    state = Path(os.environ.get("PROXBENCH_SLURM_DIR", "/var/lib/proxbench-slurm"))
    in_ci = os.environ.get("CI", "").lower() == "true"

    def unavailable(reason: str):
        if in_ci:
            pytest.fail(f"SLURM cluster required in CI (CI=true) but unavailable: {reason}", pytrace=False)
        pytest.skip(f"no SLURM cluster: {reason}")

    conf = state / "etc" / "slurm.conf"

    def use_state_conf():  # clients find start.sh's config via /etc/slurm/slurm.conf or SLURM_CONF
        if "SLURM_CONF" not in os.environ and not Path("/etc/slurm/slurm.conf").exists() and conf.exists():
            os.environ["SLURM_CONF"] = str(conf)

    def sinfo(timeout: float) -> tuple[bool, str]:
        """(a node is up, sinfo's output or error)"""
        try:  # `scontrol ping` fails at once on a dead controller; sinfo would retry for ~10 s
            ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=timeout)
            if ping.returncode != 0:
                return False, (ping.stdout.splitlines() or [ping.stderr])[0].strip()
            out = subprocess.run(["sinfo", "-h", "-o", "%P %a %t"], capture_output=True, text=True,
                                 timeout=timeout)
        except (OSError, subprocess.TimeoutExpired) as e:
            return False, str(e)
        up = out.returncode == 0 and any(s in out.stdout for s in ("idle", "mix", "alloc"))
        return up, (out.stdout if out.returncode == 0 else (out.stderr or out.stdout)).strip()

    use_state_conf()
    was_up, _ = sinfo(timeout=10)
    started_here = False
    if os.geteuid() == 0:
        try:  # generous timeout: a bare machine first apt-get installs the packages
            proc = subprocess.run(["/bin/bash", str(start)], capture_output=True, text=True, timeout=900)
        except subprocess.TimeoutExpired:
            unavailable(f"{start} did not finish within 900 s")
        except OSError as e:
            unavailable(f"cannot run {start}: {e}")
        if proc.returncode != 0:
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-30:])
            unavailable(f"{start} failed (exit {proc.returncode}):\n{tail}")
        started_here = not was_up
    if shutil.which("sbatch") is None:
        unavailable("`sbatch` is not on PATH (install slurm-wlm, or run the tests as root so "
                    "slurm/local/start.sh can install and start a local cluster)")
    if not was_up and os.geteuid() != 0:
        unavailable("no SLURM controller answers `sinfo` and only root can start the local cluster "
                    "(sudo slurm/local/start.sh)")

    use_state_conf()
    up, info = sinfo(timeout=30)
    if not up:
        unavailable(f"`sinfo` shows no usable node: {info[-500:] or 'no output'}")
    partitions = [line.split()[0].rstrip("*") for line in info.splitlines()]
    partition = "debug" if "debug" in partitions else partitions[0]

    yield SlurmCluster(partition=partition, state_dir=state, conf=Path(os.environ.get("SLURM_CONF", conf)),
                       started_here=started_here)

    if started_here and os.environ.get("PROXBENCH_SLURM_KEEP") != "1":
        subprocess.run(["/bin/bash", str(stop)], capture_output=True, text=True, timeout=300)


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


def wait_until(pred, timeout: float, what: str, step: float = 0.25):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(step)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


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
