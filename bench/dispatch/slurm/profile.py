"""SLURM cluster profiles (``slurm/*.toml``): the sbatch resources of every job of a grid (``load_profile``), and
the submitit parameters they become (``executor_parameters``).

Fields (all optional but ``partition``; see slurm/README.md): partition, gpus_per_node, cells_per_gpu (cells
trained at once in one job, on each of its GPUs: ``bench.dispatch.packing``), cpus_per_task, mem_gb, time_min, constraint, array_parallelism, account, qos, signal_delay_s, max_num_timeout, setup (shell lines run
before the job), additional_parameters (extra ``#SBATCH --key=value`` flags). Unknown keys are an error.

Placeholders: a string value written in angle brackets, ``"<your-gpu-partition>"``, stands for a site-specific
value the user must fill in. ``load_profile`` refuses a profile that still has one, naming the key and the file.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from bench.errors import UserError
from bench.tomlfile import load_toml

PROFILE_DIR = Path(__file__).resolve().parents[3] / "slurm"
FIELDS: dict[str, type | tuple[type, ...]] = {
    "partition": str,
    "gpus_per_node": int,
    "cells_per_gpu": int,
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
DEFAULT_PROFILE = {"cpus_per_task": 1, "gpus_per_node": 0, "cells_per_gpu": 1, "mem_gb": 4, "time_min": 60, "array_parallelism": 32,
                   "signal_delay_s": 90, "max_num_timeout": 3}
PLACEHOLDER = re.compile(r"<[^<>]*>")  # a whole string value in angle brackets: "<your-gpu-partition>"
PLACEHOLDER_HINTS = {"partition": "sinfo -s lists the partitions", "account": "sacctmgr show assoc user=$USER",
                     "qos": "sacctmgr show qos", "constraint": "sinfo -o '%f' lists the node features"}


def shipped_profiles() -> list[str]:
    """The shipped profiles as ``slurm/NAME.toml``, sorted."""
    return [f"slurm/{p.name}" for p in sorted(PROFILE_DIR.glob("*.toml"))]


def placeholders(spec: dict) -> list[tuple[str, str]]:
    """(key, value) of every placeholder in a profile: top-level strings, ``setup`` lines and
    ``additional_parameters`` values (``additional_parameters.KEY``)."""
    found = []
    for key, value in spec.items():
        values = [(key, value)]
        if key == "setup" and isinstance(value, list):
            values = [(f"setup[{i}]", v) for i, v in enumerate(value)]
        elif key == "additional_parameters" and isinstance(value, dict):
            values = [(f"additional_parameters.{k}", v) for k, v in value.items()]
        found += [(k, v) for k, v in values if isinstance(v, str) and PLACEHOLDER.fullmatch(v.strip())]
    return found


def load_profile(path: str | Path) -> dict:
    """Parse and check a profile; returns the profile with defaults filled in.

    ``path``: a file, or a shipped profile's name (``v100``) or repository path (``slurm/v100.toml``) from any
    folder. Refused with a one-line UserError naming the file: a missing file (the shipped profiles are
    listed), an unknown key, a value of the wrong type or range, no ``partition``, and a placeholder value
    still in place (``partition = "<your-gpu-partition>"``: the key is named, to be edited first).
    """
    path = Path(path)
    if not path.is_file():  # a shipped name ('local'), or 'slurm/local.toml' from outside the repository
        for candidate in (PROFILE_DIR / f"{path}.toml", PROFILE_DIR.parent / path):
            if not path.is_absolute() and candidate.is_file():
                path = candidate
                break
    if not path.is_file():
        raise UserError(f"cluster profile not found: {path} (shipped: {', '.join(shipped_profiles())})")
    spec = load_toml(path)
    for key, value in spec.items():
        if key not in FIELDS:
            raise UserError(f"{path}: unknown profile key {key!r} (valid: {', '.join(FIELDS)})")
        if isinstance(value, bool) or not isinstance(value, FIELDS[key]):
            raise UserError(f"{path}: {key} has the wrong type ({type(value).__name__})")
    for key in ("cpus_per_task", "time_min", "array_parallelism", "mem_gb", "cells_per_gpu"):
        if key in spec and spec[key] <= 0:
            raise UserError(f"{path}: {key} must be positive, got {spec[key]}")
    for key in ("gpus_per_node", "signal_delay_s", "max_num_timeout"):
        if key in spec and spec[key] < 0:
            raise UserError(f"{path}: {key} must be ≥ 0, got {spec[key]}")
    for key, value in placeholders(spec)[:1]:
        hint = PLACEHOLDER_HINTS.get(key.split(".")[0].split("[")[0])
        raise UserError(f"{path}: {key} = {json.dumps(value)} is a placeholder: edit the file and put your site's value there"
                        + (f" ({hint})" if hint else ""))
    if not spec.get("partition"):
        raise UserError(f"{path}: partition is required (sinfo -s lists the partitions)")
    if not all(isinstance(line, str) for line in spec.get("setup", [])):
        raise UserError(f"{path}: setup must be a list of strings (shell lines)")
    for key, value in spec.get("additional_parameters", {}).items():
        if not re.fullmatch(r"[a-z][a-z0-9_]*", key) or isinstance(value, (dict, list)):
            raise UserError(f"{path}: additional_parameters.{key}: expected key = value with a lower-case sbatch "
                            f"flag name using underscores and a string, number or boolean value")
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
