"""Shared test set-up: offline hub, the tests folder importable (plugin modules), a CI flag."""

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")
TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
sys.path.insert(0, str(TESTS))
IN_CI = os.environ.get("CI") == "true"


def wait_until(pred, timeout: float, what: str, step: float = 0.2):
    """Poll ``pred()`` until it returns something truthy (returned), or fail the test after ``timeout`` s."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(step)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


# a grid's [defaults] for cells that train in about a second: an MLP on 8x8 synthetic images
TINY_GRID = '''
[defaults]
model = "fmnist-mlp"
dataset = "synthetic"
data_options = {img_size = 8, in_chans = 1, num_classes = 4, train_size = 512, test_size = 256}
epochs = 1
batch_size = 64
'''


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    """``python -m bench ARGV`` in this process (no interpreter start-up): (exit status, stdout, stderr)."""
    from bench import cli

    rc = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def one_line_error(rc: int, err: str, *needles: str) -> str:
    """Assert a user error: exit status 2, exactly one stderr line ``error: ...`` holding every needle, no
    traceback; returns that line."""
    lines = err.strip().splitlines()
    assert rc == 2, err
    assert "Traceback" not in err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


SLURM_TEST_FILES = ("tests/test_slurm_",)  # the modules of the tests marked ``slurm`` (checked below)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """Under pytest-xdist (``make test`` runs ``-n auto``) the SLURM tests form one unit of work that a single
    worker runs one after the other: they share the one node and queue of the local cluster (a requeue test
    that fills the node must not wait behind another test's jobs). Every other test is a unit of its own.
    (xdist's ``--dist loadgroup`` marks do not take with pytest 9, whose node ids xdist can no longer
    rename, so the grouping is this scheduler's.)"""
    from xdist.scheduler import LoadScopeScheduling

    class SlurmTestsTogether(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return "slurm" if nodeid.startswith(SLURM_TEST_FILES) else nodeid

    return SlurmTestsTogether(config, log)


def pytest_collection_modifyitems(config, items):
    """The SLURM tests first: under xdist they are the longest unit of work (about a third of the suite),
    handed out first rather than last. Also checks that every test marked ``slurm`` is in one of
    ``SLURM_TEST_FILES``, which is how the scheduler above finds them."""
    slurm = [item for item in items if item.get_closest_marker("slurm")]
    stray = [item.nodeid for item in slurm if not item.nodeid.startswith(SLURM_TEST_FILES)]
    if stray:
        raise pytest.UsageError(f"tests marked slurm outside {SLURM_TEST_FILES}: {stray}")
    items[:] = slurm + [item for item in items if not item.get_closest_marker("slurm")]


# --------------------------------------------------------------------------- SLURM
# The `slurm_cluster` session fixture: the local single-node cluster of slurm/local/ (tests marked `slurm`).
# Skips (with the reason) when no cluster can be had -- no `sbatch` on PATH, not root so start.sh cannot run,
# or start.sh fails -- unless CI is "true": in CI every such case is a failure, never a skip. It starts the
# cluster when run as root (start.sh is idempotent and returns in well under a second when the cluster is
# already up), and stops it at the end of the session only if it started it (PROXBENCH_SLURM_KEEP=1 keeps it).
import dataclasses  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402



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


@pytest.fixture
def fresh_dynamo():
    """torch._dynamo's compile caches and counters reset before and after the test."""
    import torch

    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    yield
    torch._dynamo.reset()
