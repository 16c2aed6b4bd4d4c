"""``python -m bench runs list | show | compare`` over real record files: the fixture grid of
tests/fixtures/records/ (see test_aggregate.py) copied under results/, and a tiny real ad-hoc run whose
record lies under work/results/. The CLI is called in-process (``bench.cli.main``)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bench import cli
from bench.report.keys import flatten
from conftest import one_line_error, run_cli

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "records"
TINY = ["--model", "fmnist-mlp", "--dataset", "synthetic", "--epochs", "2", "--batch-size", "32", "--method", "bnn++",
        "--set", "data_options={in_chans=1, img_size=8, train_size=128, test_size=64, num_classes=4}",
        "--set", "model_kwargs={hidden=[32, 32]}"]
HEADERS = ["run id", "grid", "status", "model", "method", "dataset", "seed", "epochs", "acc", "acc_forward"]






def table(out: str) -> list[dict]:
    """The rows of the first GitHub table in ``out`` as dicts keyed by its header."""
    lines = [line for line in out.splitlines() if line.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = []
    for line in lines[2:]:
        rows.append(dict(zip(header, (c.strip() for c in line.strip("|").split("|")))))
    return rows


@pytest.fixture(scope="module")
def adhoc_record(tmp_path_factory) -> dict:
    """A real 2-epoch ad-hoc run (bnn++, about a second), trained once for the module."""
    where = tmp_path_factory.mktemp("adhoc")
    import os

    cwd = os.getcwd()
    os.chdir(where)
    try:
        assert cli.main(["run", *TINY]) == 0
    finally:
        os.chdir(cwd)
    (path,) = (where / "work" / "results" / "runs" / "adhoc").glob("*.json")
    return {"dir": where / "work", "record": json.loads(path.read_text())}


@pytest.fixture
def workspace(tmp_path, monkeypatch, adhoc_record):
    """cwd with results/runs/fixture/ (15 valid records, 2 unreadable files) and work/ holding the ad-hoc run."""
    monkeypatch.chdir(tmp_path)
    shutil.copytree(FIXTURES / "fixture", tmp_path / "results" / "runs" / "fixture")
    shutil.copytree(adhoc_record["dir"] / "results", tmp_path / "work" / "results")
    return tmp_path


def test_list_every_record_of_both_places(workspace, capsys, adhoc_record):
    rc, out, err = run_cli(capsys, "runs", "list")
    assert rc == 0, err
    assert "skipped 2 record(s) of grid 'fixture'" in err  # the 2 unreadable files, named once
    rows = table(out)
    assert list(rows[0]) == HEADERS
    assert len(rows) == 15 + 1  # partial001.json (config without a model) is a valid record
    assert [(r["grid"], r["run id"]) for r in rows] == sorted((r["grid"], r["run id"]) for r in rows)
    adhoc = next(r for r in rows if r["grid"] == "adhoc")
    rid = adhoc_record["record"]["run_id"]
    assert adhoc == {"run id": rid, "grid": "adhoc", "status": "done", "model": "fmnist-mlp", "method": "bnn++",
                     "dataset": "synthetic", "seed": "0", "epochs": "2",
                     "acc": f"{adhoc_record['record']['final']['acc']:.2f}",
                     "acc_forward": f"{adhoc_record['record']['final']['acc_forward']:.2f}"}
    by_id = {r["run id"]: r for r in rows}
    assert by_id["adaa2dc655"] == {"run id": "adaa2dc655", "grid": "fixture", "status": "done", "model": "fmnist-cnn",
                                   "method": "fp", "dataset": "fashion-mnist", "seed": "0", "epochs": "3",
                                   "acc": "91.00", "acc_forward": by_id["adaa2dc655"]["acc_forward"]}
    failed = by_id["0d4de5da67"]  # a failed seed after one epoch
    assert failed["status"] == "failed" and failed["acc"] == "-" and failed["epochs"] == "1/3"
    # another results folder and work directory
    rc, out, err = run_cli(capsys, "runs", "list", "--results", "elsewhere", "--workdir", "work")
    assert rc == 0 and [r["grid"] for r in table(out)] == ["adhoc"]


def test_list_grid_and_filters(workspace, capsys):
    def ids(*argv) -> list[str]:
        rc, out, err = run_cli(capsys, "runs", "list", *argv)
        assert rc == 0, err
        return [r["run id"] for r in table(out)]

    assert len(ids("--grid", "fixture")) == 15
    assert len(ids("--grid", "adhoc")) == 1
    assert ids("--filter", "method=bnn++", "--filter", "seed=1") == ["3d7e7d87b3"]
    assert ids("--grid", "fixture", "--filter", "method=bnn*") == ["0d4de5da67", "2c34c82062", "3d7e7d87b3",
                                                                   "a7904ddf83", "f88d484ddd", "fee9d48cf0"]
    assert ids("--filter", "model=fmnist-mlp", "--filter", "method=bc") == ["0bc459a0f2"]
    assert ids("--filter", "status=failed") == ["0d4de5da67"]
    assert ids("--filter", "status=diverged") == ["c8fa91d899"]
    # numbers compare as numbers; a final metric and a dotted path are keys too
    assert ids("--grid", "fixture", "--filter", "lr=1e-3") == ids("--grid", "fixture")
    assert ids("--filter", "acc=91") == ["adaa2dc655"]
    assert ids("--filter", "mu_end=30", "--grid", "adhoc") == ids("--grid", "adhoc")
    assert ids("--filter", "method_params.mu_end=30.0") == ids("--filter", "mu_end=30")
    assert ids("--filter", "dataset=synthetic") == ids("--grid", "adhoc")


@pytest.mark.parametrize("argv, needles", [
    (["--filter", "methd=bc"], ["--filter methd=...: no record has a key 'methd'", "did you mean 'method'"]),
    (["--filter", "method=nope"], ["no run matches --filter method=nope (16 records searched)"]),
    (["--filter", "method"], ["--filter: expected KEY=VALUE, got 'method'"]),
    (["--grid", "nope"], ["no run records of grid 'nope' under results/runs/*/, work/results/runs/*/",
                          "(grids with records: adhoc, fixture)"]),
])
def test_list_errors_are_one_line(workspace, capsys, argv, needles):
    rc, out, err = run_cli(capsys, "runs", "list", *argv)
    one_line_error(rc, err.split("\n", 1)[1] if err.startswith("warning") else err, *needles)
    assert out == ""


def test_list_without_records(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rc, out, err = run_cli(capsys, "runs", "list")
    one_line_error(rc, err, "no run records under results/runs/*/, work/results/runs/*/")


def test_show_a_run(workspace, capsys, adhoc_record):
    record = adhoc_record["record"]
    rid = record["run_id"]
    rc, out, err = run_cli(capsys, "runs", "show", rid)
    assert rc == 0, err
    assert out.startswith(f"run {rid} (grid adhoc): done\nrecord: {Path('work/results/runs/adhoc') / f'{rid}.json'}\n")
    config_part, rest = out.split("\nfinal:\n")
    final_part, history_part = rest.split("\nhistory:\n")
    config = {r["key"]: r["value"] for r in table(config_part)}
    assert config["model"] == "fmnist-mlp" and config["method"] == "bnn++" and config["epochs"] == "2"
    assert config["method_params.mu_end"] == "30" and config["method_params.schedule"] == "linear"
    assert config["model_kwargs.hidden"] == "[32, 32]" and config["init"] == "null"
    final = {r["metric"]: r["value"] for r in table(final_part)}
    # the robustness track's per-corruption table is flattened: one line per corruption.acc.<kind>
    assert float(final["acc"]) == record["final"]["acc"] and set(final) == set(flatten(record["final"]))
    assert "corruption.acc.contrast" in final
    history = table(history_part)
    assert [h["epoch"] for h in history] == ["1", "2"]
    assert list(history[0])[:5] == ["epoch", "train_loss", "train_acc", "test_acc", "test_acc_forward"]
    assert float(history[1]["mu"]) == pytest.approx(30.0)
    assert float(history[1]["test_acc"]) == pytest.approx(record["history"][1]["test_acc"])
    # a prefix, GRID/RUN_ID and the record's file name the same run
    for spec in (rid[:4], f"adhoc/{rid}", f"work/results/runs/adhoc/{rid}.json"):
        rc, again, err = run_cli(capsys, "runs", "show", spec)
        assert rc == 0 and again.split("\n", 2)[2] == out.split("\n", 2)[2], spec


@pytest.mark.parametrize("spec, needles", [
    ("adaa2dc656", ["no run record with id 'adaa2dc656' (searched results/runs/*/, work/results/runs/*/, 16 runs; "
                    "2 invalid record file(s) skipped, named by runs list)",
                    "did you mean 'adaa2dc655'?"]),
    ("7c", ["run id prefix '7c' matches 2 runs: 7c0ba8226e, 7c419c840b; give more characters"]),
    ("nogrid/adaa2dc655", ["no grid 'nogrid' with run records", "grids: adhoc, fixture"]),
    ("adhoc/adaa2dc655", ["no run record with id 'adhoc/adaa2dc655'"]),
])
def test_unknown_or_ambiguous_run_is_one_line(workspace, capsys, spec, needles):
    rc, out, err = run_cli(capsys, "runs", "show", spec)
    one_line_error(rc, err, *needles)  # the skipped bad files are not reported here: runs list names them
    assert out == ""
    rc, out, err = run_cli(capsys, "runs", "compare", "adaa2dc655", spec)
    one_line_error(rc, err, *needles)


def test_compare_two_runs(workspace, capsys):
    rc, out, err = run_cli(capsys, "runs", "compare", "adaa2dc655", "fee9d")  # cnn fp seed 0, cnn bnn++ seed 0
    assert rc == 0, err
    config_part, final_part = out.split("\nfinal metrics:\n")
    diff = {r["key"]: (r["A: fixture/adaa2dc655"], r["B: fixture/fee9d48cf0"]) for r in table(config_part)}
    a = json.loads((FIXTURES / "fixture" / "adaa2dc655.json").read_text())
    b = json.loads((FIXTURES / "fixture" / "fee9d48cf0.json").read_text())
    # only what differs (model, seed, epochs, lr ... are the same); fp has no method parameter
    assert diff == {"method": ("fp", "bnn++"), "method_params.mu_end": ("(absent)", "30"),
                    "method_params.mu_start": ("(absent)", "5"), "method_params.scale": ("(absent)", "channel"),
                    "method_params.schedule": ("(absent)", "linear")}
    final = {r["metric"]: r for r in table(final_part)}
    assert final["acc"]["A: fixture/adaa2dc655"] == "91" and final["acc"]["B: fixture/fee9d48cf0"] == "89"
    assert final["acc"]["B − A"] == "-2"
    assert final["status"]["B − A"] == "" and set(final) == {"status"} | set(a["final"]) | set(b["final"])


def test_compare_the_same_run_recorded_twice(workspace, capsys):
    """One run id in two grids: the same config; naming it alone is ambiguous."""
    src = workspace / "results" / "runs" / "fixture" / "adaa2dc655.json"
    copy = json.loads(src.read_text())
    copy["grid"] = "again"
    copy["final"]["acc"] = 90.5
    (workspace / "results" / "runs" / "again").mkdir()
    (workspace / "results" / "runs" / "again" / "adaa2dc655.json").write_text(json.dumps(copy))
    rc, out, err = run_cli(capsys, "runs", "compare", "fixture/adaa2dc655", "again/adaa2dc655")
    assert rc == 0, err
    assert "(identical configs)" in out
    final = {r["metric"]: r for r in table(out.split("\nfinal metrics:\n")[1])}
    assert final["acc"]["B − A"] == "-0.5"
    rc, out, err = run_cli(capsys, "runs", "show", "adaa2dc655")
    one_line_error(rc, err, "run adaa2dc655 is recorded in 2 places: again/adaa2dc655", "fixture/adaa2dc655",
                   "name one as GRID/RUN_ID or by its file")
