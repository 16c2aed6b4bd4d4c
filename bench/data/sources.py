"""Where dataset files live and how they are fetched and fingerprinted.

``resolve_data_root(data_root)``: the explicit argument, then ``$PROXBENCH_DATA``, then
``~/.cache/proxbench/data``. Downloads are allowed unless ``PROXBENCH_NO_DOWNLOAD`` is set (to anything but
``0``/``false``/``no``); they run under a socket timeout. Source files are fingerprinted by sha256 (the
``.beton`` manifests record them); a file whose size and mtime match the previous record is not re-hashed.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
from pathlib import Path

from bench.atomic import atomic_write


def resolve_data_root(data_root: str | os.PathLike | None = None) -> Path:
    """``data_root``, else ``$PROXBENCH_DATA``, else ``~/.cache/proxbench/data`` (not created here)."""
    if data_root:
        return Path(data_root).expanduser()
    env = os.environ.get("PROXBENCH_DATA")
    if env:
        return Path(env).expanduser()
    return Path("~/.cache/proxbench/data").expanduser()


def download_allowed() -> bool:
    return os.environ.get("PROXBENCH_NO_DOWNLOAD", "").strip().lower() in ("", "0", "false", "no")


class socket_timeout:  # noqa: N801 - used like a function: ``with socket_timeout(20):``
    """Set the default socket timeout (seconds) for the duration of a download."""

    def __init__(self, seconds: float):
        self.seconds = seconds

    def __enter__(self):
        self.old = socket.getdefaulttimeout()
        socket.setdefaulttimeout(self.seconds)

    def __exit__(self, *exc):
        socket.setdefaulttimeout(self.old)


def atomic_copy_stream(src_open, dst: Path) -> None:
    """Write what ``src_open()`` yields to ``dst`` atomically (bench.atomic)."""

    def copy(out):
        with src_open() as src:
            shutil.copyfileobj(src, out, 1 << 20)

    atomic_write(dst, copy)


def file_key(paths: list[Path]) -> tuple:
    """(path, size, mtime_ns) of each file: a cache key that changes when a file does."""
    out = []
    for p in paths:
        st = p.stat()
        out.append((str(p), st.st_size, st.st_mtime_ns))
    return tuple(out)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def files_fingerprint(files: list[Path], old: dict | None) -> dict:
    """``{"kind": "files", "files": [{path, size, mtime_ns, sha256}...], "sha256": of the digests}``;
    a file whose size and mtime match ``old`` keeps its recorded digest."""
    old_files = {f["path"]: f for f in (old or {}).get("files", [])}
    entries = []
    for p in files:
        st = p.stat()
        prev = old_files.get(str(p))
        if prev and prev.get("size") == st.st_size and prev.get("mtime_ns") == st.st_mtime_ns:
            digest = prev["sha256"]
        else:
            digest = sha256_file(p)
        entries.append({"path": str(p), "size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": digest})
    combined = hashlib.sha256("".join(e["sha256"] for e in entries).encode()).hexdigest()
    return {"kind": "files", "files": entries, "sha256": combined}
