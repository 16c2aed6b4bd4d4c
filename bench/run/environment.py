"""What a run ran on, for its record: the git commit of the code, package versions, platform, UTC time."""

from __future__ import annotations

import platform
import subprocess
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

PACKAGES = ("torch", "torchvision", "timm", "numpy", "submitit", "pandas", "ffcv", "proxbench")


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def package_versions() -> dict:
    """Python's and each of ``PACKAGES``' version (None when not installed), and ``kernels``: how the W1A1
    quantizers' elementwise work ran in this process (``methods.kernels.describe``: the C library's name, or
    eager), which W1A1 results depend on in the last bits."""
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    from methods import kernels  # imports torch: only a run, which has it, writes versions

    versions["kernels"] = kernels.describe()
    return versions


def platform_name() -> str:
    """The OS, architecture, CPU model and the vector instruction set torch's CPU kernels use, e.g.
    "Linux x86_64, Intel(R) Xeon(R) Processor, AVX512": CPU runs of the same code and seed agree bit for bit
    only on the same kind of CPU (oneDNN and torch pick their kernels, and so their summation order, by it)."""
    import torch

    parts = [f"{platform.system()} {platform.machine()}", cpu_model(), torch.backends.cpu.get_cpu_capability()]
    return ", ".join(p for p in parts if p)


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux, ``platform.processor()`` elsewhere; "" when unknown)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor()


def utc_now() -> str:
    """The current UTC time, ISO 8601 to the second, e.g. "2026-11-29T10:32:54Z"."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
