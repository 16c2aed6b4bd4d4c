"""The job of one grid cell: ``CellJob(cfg, CellArgs)`` trains the cell (resuming from its checkpoint if there
is one) in whichever process an executor starts, and records a failure for ``grid status``. The job of
several cells sharing one SLURM job (``cells_per_gpu``): ``PackJob(cfgs, devices, CellArgs)`` runs each of
them in a process of its own (``python -m bench.dispatch.cell_process``, which runs ``CellJob``) and waits
for them all.

``CellArgs`` is everything a job needs besides the cell's config: the grid's name, the absolute work,
results and data folders, the device, the torch threads, the ``--plugin`` modules and, for a local cell, its
``grid run``'s pid and start time (the cell stops when that process is gone: ``bench.dispatch.lifeline``). It is pickled with the
job, so it holds only plain values; the training state is read from the work directory when the job starts.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import subprocess
import sys
from dataclasses import dataclass, replace
from pathlib import Path

try:  # submitit is needed to submit a job (the executors import it there), not to import this module
    from submitit.helpers import Checkpointable
except ImportError:  # e.g. a GPU image without submitit running ``perf gpu``: nothing is submitted there
    class Checkpointable:  # type: ignore[no-redef]
        """Stand-in for ``submitit.helpers.Checkpointable`` when submitit is not installed."""

from bench.run import config as configs
from bench.run import records
from bench.dispatch.lifeline import CellInterrupted, guard_cell
from bench.dispatch.placement import use_gpu
from bench.dispatch.plugins import import_plugins


@dataclass(frozen=True)
class CellArgs:
    """The arguments of a cell's job besides its config. ``workdir``, ``results`` and ``data_root`` are absolute
    (a job may start in another folder); ``threads``: torch threads (None: torch's default); ``plugins``:
    ``bench.dispatch.plugins.plugin_specs`` of the ``--plugin`` modules; ``guardian``: (pid, start time) of the
    ``grid run`` of a local cell, which lives and dies with it (``lifeline.guard_cell``), else None."""

    grid: str
    workdir: str
    results: str
    data_root: str | None
    device: str
    threads: int | None = None
    plugins: tuple = ()
    guardian: tuple | None = None


class CellJob(Checkpointable):
    """The callable a job runs: train one cell (resuming from its checkpoint if there is one).

    ``checkpoint`` (called by submitit on timeout/preemption, SIGUSR2) resubmits the same call; the arguments
    carry only the config, paths and plugin modules, and the training state is read from the work directory
    at start. The job imports the plugins of ``args.plugins`` before it builds the method, so a method
    registered by ``--plugin`` works in every executor. ``args.device`` goes to ``train.execute``; a ``cuda:i``
    that exists also becomes the process's current CUDA device, so that what CUDA places without a device
    (its context, pinned memory) lands on GPU i too.

    Under SLURM, SIGTERM stops the run at once (submitit itself ignores it): SLURM sends it when it cancels,
    requeues or preempts the job, and would otherwise let the run go on training and writing checkpoints for
    KillWait seconds. Nothing is lost: the next start resumes from the last epoch checkpoint. The exception
    is submitit's own requeue: on SIGUSR2 submitit calls ``checkpoint`` and then ``scontrol requeue``, and
    SLURM's SIGTERM for that requeue may arrive before submitit is done. ``checkpoint`` therefore hands
    SIGTERM back to submitit (which ignores it) before the requeue starts; submitit exits the job itself.
    """

    def __call__(self, cfg: dict, args: CellArgs) -> str:
        import torch

        from bench.run import train

        import_plugins(args.plugins)
        if args.threads:
            torch.set_num_threads(args.threads)
        previous = None
        if os.environ.get("SUBMITIT_EXECUTOR") == "slurm":
            previous = signal.signal(signal.SIGTERM, _stop_on_sigterm)
            _SIGTERM_BEFORE_JOB[:] = [previous]
        guard = (guard_cell(args.workdir, args.grid, configs.run_id(cfg), args.guardian) if args.guardian
                 else contextlib.nullcontext())
        try:
            with guard:
                use_gpu(args.device, torch)
                record = train.execute(cfg, grid=args.grid, workdir=args.workdir, results=args.results,
                                       device=args.device, data_root=args.data_root)
        except CellInterrupted as exc:  # a local cell told to stop: marked interrupted, ends without a traceback
            raise SystemExit(128 + exc.signum) from None
        except BaseException as exc:  # record the failure for `grid status`, then let the job fail
            if isinstance(exc, (KeyboardInterrupt, SystemExit)) or _is_signal_exit(exc):
                raise
            write_failed(cfg, args.grid, args.results, exc)
            raise
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
        return record["status"]

    def checkpoint(self, *args, **kwargs):
        """Called by submitit's SIGUSR2 handler right before it requeues the job: from here on, SIGTERM is
        submitit's again (ignored), so SLURM's SIGTERM for the requeue cannot cut the handler short."""
        if _SIGTERM_BEFORE_JOB:
            signal.signal(signal.SIGTERM, _SIGTERM_BEFORE_JOB[0])
        return super().checkpoint(*args, **kwargs)


class PackJob(Checkpointable):
    """The callable of a job that trains several cells at once (``cells_per_gpu``): each cell of ``cfgs``
    that has no finished record runs ``CellJob`` in its own process (``bench.dispatch.cell_process``) on its
    device of ``devices``, with ``args.threads`` torch threads; the job waits for them all. Returns {run id:
    exit status}; raises when a cell's process failed, after every other cell has ended (a failed cell wrote
    its ``failed`` record itself; its partners go on training).

    Requeue and resume as ``CellJob``: ``checkpoint`` (submitit's SIGUSR2 path) hands SIGTERM back to
    submitit before the requeue and resubmits the same call; the restarted job starts the unfinished cells
    again, each resuming from its own latest checkpoint in the work directory. The cells' processes ignore
    SIGUSR2 (only the job's own process checkpoints and requeues) and stop on SIGTERM, which SLURM sends to
    every process of the job when it cancels, requeues or preempts it. Under SLURM a SIGTERM before
    ``checkpoint`` stops this process too, after the cells' processes have been stopped.
    """

    def __call__(self, cfgs: list[dict], devices: list[str], args: CellArgs) -> dict[str, int]:
        finished = records.finished_ids(args.results, args.grid)
        todo = [(cfg, device) for cfg, device in zip(cfgs, devices) if configs.run_id(cfg) not in finished]
        previous = None
        if os.environ.get("SUBMITIT_EXECUTOR") == "slurm":
            previous = signal.signal(signal.SIGTERM, _stop_on_sigterm)
            _SIGTERM_BEFORE_JOB[:] = [previous]
        procs: dict[str, subprocess.Popen] = {}
        try:
            for cfg, device in todo:
                procs[configs.run_id(cfg)] = start_cell_process(cfg, replace(args, device=device))
            codes = {rid: proc.wait() for rid, proc in procs.items()}
        except BaseException:  # a signal (cancel, requeue) or submitit's requeue exit: stop the cells too
            stop_processes(list(procs.values()))
            raise
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
        failed = {rid: code for rid, code in codes.items() if code != 0}
        if failed:
            raise RuntimeError(f"{len(failed)} of the job's {len(cfgs)} cells failed: "
                               + ", ".join(f"{rid} (exit status {code})" for rid, code in sorted(failed.items())))
        return codes

    def checkpoint(self, *args, **kwargs):
        """As ``CellJob.checkpoint``: SIGTERM is submitit's again (ignored) before it requeues the job."""
        if _SIGTERM_BEFORE_JOB:
            signal.signal(signal.SIGTERM, _SIGTERM_BEFORE_JOB[0])
        return super().checkpoint(*args, **kwargs)


def start_cell_process(cfg: dict, args: CellArgs) -> subprocess.Popen:
    """Start ``python -m bench.dispatch.cell_process`` on one cell (its config and arguments pickled to its
    stdin), with this process's stdout and stderr, ``bench`` importable, and SIGUSR2 ignored."""
    root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
    proc = subprocess.Popen([sys.executable, "-m", "bench.dispatch.cell_process"], stdin=subprocess.PIPE, env=env,
                            preexec_fn=_ignore_sigusr2)
    try:
        proc.stdin.write(pickle.dumps((cfg, args)))
        proc.stdin.close()
    except BrokenPipeError:  # it died at once: its exit status says so
        pass
    return proc


def stop_processes(procs: list[subprocess.Popen], wait_s: float = 20.0) -> None:
    """SIGTERM to each process still running, then SIGKILL to those still running after ``wait_s`` seconds."""
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _ignore_sigusr2() -> None:  # in the child before exec: an ignored signal stays ignored across exec
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)


# the SIGTERM handler a SLURM job had before CellJob replaced it (submitit's "bypass"); kept outside the
# CellJob instance because submitit pickles that instance when it requeues
_SIGTERM_BEFORE_JOB: list = []


def _stop_on_sigterm(signum, frame) -> None:
    print("SIGTERM: SLURM cancels, requeues or preempts this job; stopping (a restart resumes from the last "
          "epoch checkpoint)", file=sys.stderr, flush=True)
    raise SystemExit(128 + signum)


def _is_signal_exit(exc: BaseException) -> bool:
    return type(exc).__name__ in {"JobPreemptedError"}


def write_failed(cfg: dict, grid: str, results: str, exc: BaseException) -> None:
    """Write a ``failed`` record for the cell, its error the exception's type and one-line message."""
    message = " ".join(str(exc).split())
    last = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    record = records.make_record(configs.run_id(cfg), grid, cfg, status="failed", history=[], final={},
                                 device="?", wall_seconds=0.0, error=last)
    records.write_record(record, results)
