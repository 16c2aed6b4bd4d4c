"""Pure parsers of the SLURM clients' output: no process is started here, so each is tested on canned text.

* ``parse_squeue``: ``squeue -h -r -o '%i|%T|%r'`` -> {job id: (state, reason)}. One line per job or array
  task (``123``, ``123_4``); a reason ``None`` or ``(null)`` is empty.
* ``parse_sacct``: ``sacct -n -P -X -o JobID,State,Reason`` -> {job id: (state, reason)}. The state's first
  word (``CANCELLED by 0`` -> ``CANCELLED``); a reason ``None`` is empty. Array tasks that have not started
  yet are one row ``123_[2-5%2]`` (a range of task indices, ``%K`` the most at once).
* ``find_job``: the row of a job id among parsed rows: its own, or for an array task ``123_4`` the pending
  range row ``123_[...]`` that contains index 4.
* ``sbatch_refusal``: the line that says why sbatch refused a submission, from its error output;
  ``array_base``: the array of a task id.

Malformed lines (no separator, no state) are skipped, never an error: the clients' output is read while jobs
change state.
"""

from __future__ import annotations

import re

ARRAY_RANGE = re.compile(r"^(\d+)_\[(.+)\]$")  # sacct's row of the not-yet-started tasks of an array
NO_REASON = ("None", "(null)")


def parse_squeue(text: str) -> dict[str, tuple[str, str]]:
    """{job id: (state, reason)} from ``squeue -h -r -o '%i|%T|%r'`` output (lines without a state skipped)."""
    rows: dict[str, tuple[str, str]] = {}
    for line in text.splitlines():
        jid, _, rest = line.strip().partition("|")
        state, _, reason = rest.partition("|")
        if jid and state.strip():
            rows[jid] = (state.split()[0], "" if reason.strip() in NO_REASON else reason.strip())
    return rows


def parse_sacct(text: str) -> dict[str, tuple[str, str]]:
    """{job id: (state, reason)} from ``sacct -n -P -X -o JobID,State,Reason`` output; a job id shown twice
    (a requeued job with ``--duplicates``) keeps its last row."""
    rows: dict[str, tuple[str, str]] = {}
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) >= 2 and parts[0] and parts[1].strip():
            reason = parts[2].strip() if len(parts) > 2 and parts[2].strip() not in NO_REASON else ""
            rows[parts[0]] = (parts[1].split()[0], reason)  # "CANCELLED by 0" -> CANCELLED
    return rows


def in_array_range(index: int, spec: str) -> bool:
    """Does the task range ``spec`` (``0-3%2``, ``1,3-4``, ``7``) contain ``index``?"""
    for part in spec.split("%")[0].split(","):
        lo, _, hi = part.partition("-")
        try:
            if int(lo) <= index <= int(hi or lo):
                return True
        except ValueError:
            continue
    return False


def find_job(rows: dict[str, tuple[str, str]], job_id: str) -> tuple[str, str] | None:
    """The (state, reason) of ``job_id`` among parsed rows: its own row, or for an array task ``123_4`` the
    range row ``123_[...]`` containing task 4; None when neither is there."""
    if job_id in rows:
        return rows[job_id]
    base, _, index = job_id.partition("_")
    if not index.isdigit():
        return None
    for rid, value in rows.items():
        found = ARRAY_RANGE.match(rid)
        if found and found.group(1) == base and in_array_range(int(index), found.group(2)):
            return value
    return None


def array_base(job_id: str) -> str:
    """The job id of the array a task belongs to (``123_4`` -> ``123``; a plain ``123`` stays)."""
    return str(job_id).split("_")[0]


def sbatch_refusal(text: str) -> str:
    """Why sbatch refused a submission: the last non-blank line of its error output (submitit puts sbatch's
    stderr at the end of its exception's text), stripped; ``""`` when there is none."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""
