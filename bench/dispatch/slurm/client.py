"""The SLURM commands proxbench calls: ``scontrol ping`` (is the cluster reachable), ``squeue`` and ``sacct``
(the states of jobs) and ``scancel``. Their output is read by the pure functions of
``bench.dispatch.slurm.parsers``; a command that is missing, fails or hangs (30 s) reads as no output.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from bench.errors import UserError
from bench.dispatch.slurm.parsers import array_base, find_job, parse_sacct, parse_squeue

TIMEOUT_S = 30
SQUEUE = ["squeue", "--me", "-h", "-r", "-o", "%i|%T|%r"]
SACCT = ["sacct", "-n", "-P", "-X", "-o", "JobID,State,Reason", "-j"]


def check_reachable() -> None:
    """Raise a UserError unless sbatch exists and the controller answers (fast: `scontrol ping`)."""
    hint = "(for a local test cluster: make slurm-up)"
    missing = [c for c in ("sbatch", "squeue", "sacct", "scontrol") if shutil.which(c) is None]
    if missing:
        raise UserError(f"SLURM is not reachable: {', '.join(missing)} not found on PATH {hint}")
    conf = os.environ.get("SLURM_CONF")
    if conf and not Path(conf).is_file():  # the clients would retry for a minute before failing
        raise UserError(f"SLURM is not reachable: SLURM_CONF={conf} does not exist")
    try:
        out = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise UserError("SLURM is not reachable: `scontrol ping` timed out") from None
    except OSError as exc:
        raise UserError(f"SLURM is not reachable: {exc}") from None
    if out.returncode != 0 or " is UP" not in out.stdout:
        lines = [ln.strip() for ln in (out.stdout + "\n" + out.stderr).splitlines() if ln.strip() and "*" not in ln]
        reason = lines[0] if lines else "no answer from `scontrol ping`"
        raise UserError(f"SLURM is not reachable: {reason} {hint}")


def run_command(cmd: list[str]) -> str | None:
    """The stdout of ``cmd``, or None when it cannot run, fails or times out."""
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout if out.returncode == 0 else None


def job_table(job_ids: list[str]) -> dict[str, tuple[str, str]]:
    """{job id: (SLURM state, reason)} for ids '123' or '123_4'; ids SLURM does not know (yet) are left out.

    Live jobs come from squeue (up to date, one line per array task with -r); jobs that are over from sacct
    (which needs slurmdbd, lags a few seconds, and shows not-yet-started array tasks as one row '123_[2-5%2]').
    """
    wanted = {str(j) for j in job_ids if j}
    if not wanted or shutil.which("sacct") is None and shutil.which("squeue") is None:
        return {}
    live = parse_squeue((run_command(SQUEUE) if shutil.which("squeue") else None) or "")
    table = {jid: live[jid] for jid in wanted if jid in live}
    rest = wanted - table.keys()
    if rest and shutil.which("sacct"):
        bases = sorted({array_base(j) for j in rest})
        rows = parse_sacct(run_command([*SACCT, ",".join(bases)]) or "")
        for jid in rest:
            found = find_job(rows, jid)
            if found is not None:
                table[jid] = found
    return table


def job_states(job_ids: list[str]) -> dict[str, str]:
    """{job id: SLURM state} (see job_table)."""
    return {jid: state for jid, (state, _) in job_table(job_ids).items()}


def cancel(job_ids: list[str]) -> None:
    """``scancel`` the jobs (a job that ended meanwhile makes scancel complain: harmless, ignored)."""
    if job_ids and shutil.which("scancel"):
        subprocess.run(["scancel", *sorted(set(job_ids))], capture_output=True, text=True, timeout=TIMEOUT_S)
