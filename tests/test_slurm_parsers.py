"""The SLURM client's parsers on canned output of the real commands (no cluster needed).

The texts are what ``squeue -h -r -o '%i|%T|%r'``, ``sacct -n -P -X -o JobID,State,Reason -j ...`` and a
refused ``sbatch`` print (slurm-wlm 22.05): plain jobs, array tasks (``123_4``), the one sacct row of an
array's not-yet-started tasks (``123_[2-5%2]``), requeued and pending jobs, empty output and malformed lines.
"""

from __future__ import annotations

import pytest

from bench.dispatch.slurm.parsers import (array_base, find_job, in_array_range, parse_sacct, parse_squeue,
                                          sbatch_refusal)

SQUEUE = """\
215|RUNNING|None
216_0|RUNNING|None
216_1|PENDING|JobArrayTaskLimit
216_2|PENDING|JobArrayTaskLimit
217_0|PENDING|Dependency
218|REQUEUED|BeginTime
219|PENDING|(null)
220|COMPLETING|None
"""

SACCT = """\
200_0|COMPLETED|None
200_1|FAILED|None
206|COMPLETED|None
207_0|CANCELLED by 0|Dependency
209|TIMEOUT|None
212_1|RUNNING|None
212_[2-5%2]|PENDING|JobArrayTaskLimit
213_[0,3-4]|CANCELLED by 0|None
214|REQUEUED|BeginTime
214|PENDING|BeginTime
215|NODE_FAIL|None
"""


def test_squeue_one_row_per_job_and_array_task():
    rows = parse_squeue(SQUEUE)
    assert rows["215"] == ("RUNNING", "")
    assert rows["216_0"] == ("RUNNING", "")
    assert rows["216_1"] == ("PENDING", "JobArrayTaskLimit")
    assert rows["217_0"] == ("PENDING", "Dependency")
    assert rows["218"] == ("REQUEUED", "BeginTime")
    assert rows["219"] == ("PENDING", "")  # (null): no reason
    assert len(rows) == 8


def test_sacct_states_reasons_and_array_ranges():
    rows = parse_sacct(SACCT)
    assert rows["200_1"] == ("FAILED", "")
    assert rows["207_0"] == ("CANCELLED", "Dependency")  # "CANCELLED by 0": its first word
    assert rows["209"] == ("TIMEOUT", "")
    assert rows["212_[2-5%2]"] == ("PENDING", "JobArrayTaskLimit")
    assert rows["214"] == ("PENDING", "BeginTime")  # a requeued job shown twice: its last row


@pytest.mark.parametrize("text", ["", "\n\n", "   \n"])
def test_empty_output_is_no_rows(text):
    assert parse_squeue(text) == {}
    assert parse_sacct(text) == {}


def test_malformed_lines_are_skipped():
    squeue = "slurm_load_jobs error: Unable to contact slurm controller\n301|RUNNING|None\n302|\n|RUNNING|None\n303"
    assert parse_squeue(squeue) == {"301": ("RUNNING", "")}
    sacct = ("sacct: error: Problem talking to the database\n401|COMPLETED|None\n402||None\n403\n|FAILED|None\n"
             "404|FAILED")
    assert parse_sacct(sacct) == {"401": ("COMPLETED", ""), "404": ("FAILED", "")}


def test_find_job_own_row_or_the_pending_range_of_its_array():
    rows = parse_sacct(SACCT)
    assert find_job(rows, "206") == ("COMPLETED", "")
    assert find_job(rows, "212_1") == ("RUNNING", "")  # its own row before the range
    assert find_job(rows, "212_2") == ("PENDING", "JobArrayTaskLimit")
    assert find_job(rows, "212_5") == ("PENDING", "JobArrayTaskLimit")
    assert find_job(rows, "212_6") is None
    assert find_job(rows, "213_0") == ("CANCELLED", "")
    assert find_job(rows, "213_4") == ("CANCELLED", "")
    assert find_job(rows, "213_1") is None
    assert find_job(rows, "999") is None
    assert find_job(rows, "212_x") is None
    assert find_job({}, "1_1") is None


@pytest.mark.parametrize("spec, index, inside", [
    ("0-3%2", 0, True), ("0-3%2", 3, True), ("0-3%2", 4, False), ("1,3-4", 2, False), ("1,3-4", 3, True),
    ("7", 7, True), ("7", 8, False), ("a-b", 1, False), ("", 0, False)])
def test_array_ranges(spec, index, inside):
    assert in_array_range(index, spec) is inside


def test_array_base():
    assert array_base("123_4") == "123"
    assert array_base("123") == "123"


def test_sbatch_refusal_is_its_last_line():
    refused = """\
Command '['sbatch', '/tmp/w/submitit/g/x/submission_file_0f3c.sh']' returned non-zero exit status 1.
sbatch: error: invalid partition specified: nowhere
sbatch: error: Batch job submission failed: Invalid partition name specified
"""
    assert sbatch_refusal(refused) == "sbatch: error: Batch job submission failed: Invalid partition name specified"
    assert sbatch_refusal("  sbatch: error: Memory specification can not be satisfied  \n\n") == \
        "sbatch: error: Memory specification can not be satisfied"
    assert sbatch_refusal("") == ""


def test_job_table_takes_squeue_first_then_sacct(monkeypatch):
    """The client on canned output: live jobs from squeue, the others from sacct (array ranges included),
    unknown ids left out; sacct is asked only for the arrays squeue did not show."""
    from bench.dispatch.slurm import client

    asked = []

    def run(cmd):
        asked.append(cmd)
        return SQUEUE if cmd[0] == "squeue" else SACCT

    monkeypatch.setattr(client.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(client, "run_command", run)
    table = client.job_table(["215", "216_1", "212_3", "209", "999"])
    assert table == {"215": ("RUNNING", ""), "216_1": ("PENDING", "JobArrayTaskLimit"),
                     "212_3": ("PENDING", "JobArrayTaskLimit"), "209": ("TIMEOUT", "")}
    assert asked[1][-1] == "209,212,999"
    assert client.job_states(["218"]) == {"218": "REQUEUED"}
    assert client.job_table([]) == {}
