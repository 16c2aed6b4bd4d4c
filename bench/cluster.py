"""SLURM cluster profiles (``slurm/*.toml``): the sbatch resources of every job of a grid (DESIGN.md §7).

Fields (all optional; see slurm/README.md): partition, gpus_per_node, cpus_per_task, mem_gb, time_min,
constraint, array_parallelism, account, qos, signal_delay_s, max_num_timeout, setup (shell lines run before the job),
additional_parameters (extra ``#SBATCH --key=value`` flags). Unknown keys are an error.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from . import config as configs
from .errors import UserError

PROFILE_DIR = Path(__file__).resolve().parent.parent / "slurm"
FIELDS: dict[str, type | tuple[type, ...]] = {
    "partition": str,
    "gpus_per_node": int,
    "cpus_per_task": int,
    "mem_gb": (int, float),
    "time_min": int,
    "constraint": str,
    "array_parallelism": int,
    "account": str,
    "qos": str,
    "signal_delay_s": int,
    "max_num_timeout": int,
    "setup": list,
    "additional_parameters": dict,
    "description": str,
}
DEFAULT_PROFILE = {"cpus_per_task": 1, "gpus_per_node": 0, "mem_gb": 4, "time_min": 60, "array_parallelism": 32,
                   "signal_delay_s": 60, "max_num_timeout": 3}


def load_profile(path: str | Path) -> dict:
    """Parse and check a profile; returns the profile with defaults filled in."""
    path = Path(path)
    if not path.is_file() and (PROFILE_DIR / f"{path}.toml").is_file():
        path = PROFILE_DIR / f"{path}.toml"
    if not path.is_file():
        shipped = sorted(p.stem for p in PROFILE_DIR.glob("*.toml"))
        raise UserError(f"cluster profile not found: {path} (shipped: {', '.join(f'slurm/{s}.toml' for s in shipped)})")
    spec = configs.load_toml(path)
    for key, value in spec.items():
        if key not in FIELDS:
            raise UserError(f"{path}: unknown profile key {key!r} (valid: {', '.join(FIELDS)})")
        if isinstance(value, bool) or not isinstance(value, FIELDS[key]):
            raise UserError(f"{path}: {key} has the wrong type ({type(value).__name__})")
    for key in ("cpus_per_task", "time_min", "array_parallelism"):
        if key in spec and spec[key] <= 0:
            raise UserError(f"{path}: {key} must be positive")
    return {**DEFAULT_PROFILE, **spec, "path": str(path)}


def executor_parameters(profile: dict, job_name: str) -> dict:
    """submitit.SlurmExecutor parameters for a profile."""
    params = {
        "job_name": job_name,
        "time": profile["time_min"],
        "cpus_per_task": profile["cpus_per_task"],
        "mem": f"{int(profile['mem_gb'] * 1024)}MB",
        "array_parallelism": profile["array_parallelism"],
        "signal_delay_s": profile["signal_delay_s"],
    }
    if profile.get("gpus_per_node"):
        params["gpus_per_node"] = profile["gpus_per_node"]
    for key in ("partition", "constraint", "account", "qos"):
        if profile.get(key):
            params[key] = profile[key]
    if profile.get("setup"):
        params["setup"] = list(profile["setup"])
    if profile.get("additional_parameters"):
        params["additional_parameters"] = dict(profile["additional_parameters"])
    return params


def check_reachable() -> None:
    """Raise a UserError unless sbatch exists and the controller answers."""
    if shutil.which("sbatch") is None or shutil.which("squeue") is None:
        raise UserError("SLURM is not reachable: sbatch/squeue not found on PATH "
                        "(for a local test cluster: make slurm-up)")
    try:
        out = subprocess.run(["squeue", "--noheader", "--me"], capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        raise UserError("SLURM is not reachable: squeue timed out") from None
    if out.returncode != 0:
        reason = (out.stderr.strip().splitlines() or ["no answer"])[-1]
        raise UserError(f"SLURM is not reachable: {reason} (for a local test cluster: make slurm-up)")


def job_states(job_ids: list[str]) -> dict[str, str]:
    """SLURM state of each job id ('123' or '123_4'), from sacct (needs slurmdbd) then squeue."""
    if not job_ids or shutil.which("sacct") is None:
        return {}
    states: dict[str, str] = {}
    try:
        out = subprocess.run(["sacct", "-n", "-P", "-X", "-o", "JobID,State", "-j", ",".join(sorted(set(job_ids)))],
                             capture_output=True, text=True, timeout=30)
        for line in out.stdout.splitlines():
            jid, _, state = line.partition("|")
            states[jid.strip()] = state.split()[0] if state.strip() else "UNKNOWN"
    except (OSError, subprocess.SubprocessError):
        pass
    return states


def cancel(job_ids: list[str]) -> None:
    if job_ids and shutil.which("scancel"):
        subprocess.run(["scancel", *sorted(set(job_ids))], capture_output=True, timeout=30)
