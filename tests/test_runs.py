"""One run end to end on real Fashion-MNIST, kill/resume bit-exactness and summed wall time, local grids, and
CLI bad input (more in test_bad_input.py)."""

from __future__ import annotations

import copy
import json
import os
import platform
import re
import signal
import subprocess
import sys
import time
import tomllib
from importlib import metadata

import pytest
import torch

from bench.run import config as configs
from bench.run import environment, layout, records
from bench.run import train
from conftest import ROOT, one_line_error, run_cli
from methods import kernels

QUICK = {"model": "fmnist-cnn", "dataset": "fashion-mnist", "subset": 4096, "test_subset": 2000, "epochs": 2,
         "batch_size": 128}


def installed_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def cli(*args, cwd, timeout=600, env=None):
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-m", "bench", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=full_env)


def test_two_epoch_run_on_fashion_mnist_learns_and_writes_a_valid_record(tmp_path):
    cfg = configs.resolve({**QUICK, "method": "bnn++"})
    record = train.execute(cfg, grid="t", workdir=tmp_path / "work", results=tmp_path / "results", log=lambda m: None)
    assert records.validate(record) is None
    on_disk, problem = records.read_record(records.record_path(tmp_path / "results", "t", record["run_id"]))
    assert problem is None and on_disk["run_id"] == configs.run_id(cfg)
    assert record["status"] == "done" and len(record["history"]) == 2
    final = record["final"]
    assert final["acc"] > 60 and final["acc_forward"] > 60  # chance is 10%
    assert 0 < final["binarized_params"] < final["params"] and final["compression"] > 1
    epoch = record["history"][-1]
    assert epoch["method_params"]["mu"] == pytest.approx(30.0)
    assert 0 <= epoch["flip_ratio"] < 0.5 and epoch["seconds"] > 0 and epoch["lr"] >= 0
    # the installed versions, not any value: torch's without its local build tag, proxbench's from pyproject.toml
    assert record["versions"] == {"python": platform.python_version(), **{
        name: installed_version(name) for name in environment.PACKAGES}, "kernels": kernels.describe()}
    assert record["versions"]["torch"] == torch.__version__.split("+")[0]
    assert record["versions"]["proxbench"] == tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def test_nan_loss_stops_the_run_as_diverged(tmp_path):
    cfg = configs.resolve({**QUICK, "model": "fmnist-mlp", "method": "fp", "optimizer": "sgd", "lr": 1e3,
                           "weight_decay": 1e3, "momentum": 0.0, "epochs": 1})  # (1 − 1e6)·w per step: overflow
    record = train.execute(cfg, grid="t", workdir=tmp_path / "w", results=tmp_path / "r", log=lambda m: None)
    assert record["status"] == "diverged"


@pytest.mark.slow
def test_killed_run_resumes_bit_identical(tmp_path):
    args = ["run", "--method", "bnn+", "--subset", "3072", "--test-subset", "1000", "--epochs", "3", "--grid", "k"]
    # uninterrupted reference
    ref = cli(*args, "--workdir", "w_ref", "--results", "r_ref", cwd=tmp_path)
    assert ref.returncode == 0, ref.stderr
    # interrupted: SIGKILL once the first epoch's checkpoint exists, then resume
    proc = subprocess.Popen([sys.executable, "-m", "bench", *args, "--workdir", "w", "--results", "r"], cwd=tmp_path,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 300
    progress = None
    while time.time() < deadline and proc.poll() is None:
        found = list((tmp_path / "w" / "runs").glob("*/progress.json"))
        if found and json.loads(found[0].read_text())["epoch"] >= 1:
            progress = found[0]
            break
        time.sleep(0.05)
    assert progress is not None, "the run never checkpointed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert json.loads(progress.read_text())["epoch"] < 3, "killed too late to test resume"
    killed = torch.load(progress.with_name("checkpoint.pt"), weights_only=True)
    first_share = killed["wall_seconds"]  # the first process's time up to its last checkpoint
    assert first_share >= sum(e["seconds"] for e in killed["history"]) > 0
    resumed = cli(*args, "--workdir", "w", "--results", "r", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming at epoch {killed['epoch'] + 1}/3" in resumed.stdout
    (a,) = (tmp_path / "r_ref" / "runs" / "k").glob("*.json")
    (b,) = (tmp_path / "r" / "runs" / "k").glob("*.json")
    ra, rb = json.loads(a.read_text()), json.loads(b.read_text())
    strip = lambda h: [{k: v for k, v in e.items() if k != "seconds"} for e in h]  # noqa: E731
    assert strip(ra["history"]) == strip(rb["history"])
    assert ra["final"]["acc"] == rb["final"]["acc"]
    wa = torch.load(next((tmp_path / "w_ref" / "runs").glob("*/checkpoint.pt")), weights_only=True)["model"]
    wb = torch.load(next((tmp_path / "w" / "runs").glob("*/checkpoint.pt")), weights_only=True)["model"]
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    # wall_seconds sums the processes: the first one's share plus the epochs the second one trained
    second_share = sum(e["seconds"] for e in rb["history"] if e["epoch"] > killed["epoch"])
    assert rb["wall_seconds"] >= first_share + second_share
    # once finished, a rerun says so and only rewrites the record (same history, same summed time)
    again = cli(*args, "--workdir", "w", "--results", "r", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert f"[{rb['run_id']}] already finished (3/3 epochs); rewriting its record" in again.stdout
    assert "resuming" not in again.stdout
    rc = json.loads(b.read_text())
    assert rc["history"] == rb["history"] and rc["final"]["acc"] == rb["final"]["acc"]
    assert rc["wall_seconds"] >= first_share + second_share


@pytest.mark.slow
def test_local_executor_runs_a_two_cell_grid_and_skips_it_on_rerun(tmp_path):
    grid = tmp_path / "two.toml"
    grid.write_text('description = "two cells"\n[defaults]\nmodel = "fmnist-mlp"\nsubset = 2048\ntest_subset = 1000\n'
                    'epochs = 1\n[axes]\nmethod = ["fp", "bnn"]\n')
    out = cli("grid", "run", str(grid), "--executor", "local", "--parallel", "2", cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    recs = sorted((tmp_path / "results" / "runs" / "two").glob("*.json"))
    assert len(recs) == 2
    assert {json.loads(p.read_text())["status"] for p in recs} == {"done"}
    again = cli("grid", "run", str(grid), "--executor", "local", cwd=tmp_path)
    assert again.returncode == 0 and "0 to submit" in again.stdout
    status = cli("grid", "status", str(grid), cwd=tmp_path)
    assert status.returncode == 0 and status.stdout.count("| done") == 2


def test_debug_executor_and_finetune_from_parent(tmp_path):
    grid = tmp_path / "ft.toml"
    grid.write_text('description = "fine-tune"\n[defaults]\nmodel = "fmnist-mlp"\nsubset = 2048\ntest_subset = 1000\n'
                    'epochs = 1\n[axes]\nmethod = ["fp", "bc"]\nmode = ["e2e", "finetune"]\n'
                    '[mode.finetune]\ninit = "parent"\n[[exclude]]\nmethod = "bc"\nmode = "e2e"\n')
    out = cli("grid", "run", str(grid), "--executor", "debug", cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    recs = {json.loads(p.read_text())["config"]["method"] + "/" + json.loads(p.read_text())["config"]["mode"]:
            json.loads(p.read_text()) for p in (tmp_path / "results" / "runs" / "ft").glob("*.json")}
    assert set(recs) == {"fp/e2e", "fp/finetune", "bc/finetune"}
    parent = recs["fp/e2e"]
    assert recs["fp/finetune"]["config"]["init"] == f"run:{parent['run_id']}"
    # the fp fine-tune's first evaluation is the parent's final accuracy
    assert recs["fp/finetune"]["history"][0]["epoch"] == 0
    assert recs["fp/finetune"]["history"][0]["test_acc"] == parent["final"]["acc"]


@pytest.mark.parametrize("argv, message", [
    (["run", "--model", "resnet2"], "unknown model 'resnet2'"),
    (["run", "--dataset", "fashionmnist"], "fashion-mnist"),
    (["run", "--loader", "turbo"], "loader must be one of"),
    (["run", "--method", "bnn+++"], "did you mean 'bnn++'"),
    (["run", "--epochs", "0"], "epochs must be a positive integer"),
    (["run", "--set", "augment=1"], "augment must be true or false"),
    (["run", "--batch-size", "-1"], "batch_size must be a positive integer"),
    (["run", "--param", "mu_ned=3", "--method", "bnn++"], "no parameter 'mu_ned'"),
    (["run", "--mode", "finetune", "--init", "missing.pt", "--epochs", "1"], "fine-tune checkpoint not found: missing.pt"),
    (["grid", "run", "nosuchgrid"], "unknown grid 'nosuchgrid'"),
    (["grid", "run", "default", "--executor", "slurm", "--cluster", "slurm/nope.toml"], "cluster profile not found"),
    (["run", "--config", "broken.toml"], "broken.toml: line 1: malformed TOML"),
])
def test_cli_bad_input_is_one_clear_line(tmp_path, monkeypatch, capsys, argv, message):
    (tmp_path / "broken.toml").write_text("model = \n")
    (tmp_path / "results" / "runs" / "adhoc").mkdir(parents=True)
    keep = tmp_path / "results" / "runs" / "adhoc" / "keep.json"
    keep.write_text("{}")
    monkeypatch.chdir(tmp_path)
    one_line_error(*run_cli(capsys, *argv)[::2], message)
    assert keep.read_text() == "{}"


def test_finetune_from_a_checkpoint_of_another_model_is_a_clear_error(tmp_path, monkeypatch, capsys):
    cfg = configs.resolve({**QUICK, "model": "fmnist-mlp", "epochs": 1, "subset": 1024, "test_subset": 500})
    train.execute(cfg, grid="t", workdir=tmp_path / "work", results=tmp_path / "results", log=lambda m: None)
    ckpt = layout.checkpoint_path(tmp_path / "work", configs.run_id(cfg))
    monkeypatch.chdir(tmp_path)
    one_line_error(*run_cli(capsys, "run", "--model", "fmnist-cnn", "--mode", "finetune", "--init", ckpt,
                            "--epochs", "1")[::2], "checkpoint")


def test_checkpoint_that_no_longer_fits_the_model_is_a_clear_error(tmp_path):
    """Same config, changed model code (here: a layer's shape edited in the checkpoint): one line, exit 2,
    the existing record untouched."""
    args = ["run", "--model", "fmnist-mlp", "--subset", "1024", "--test-subset", "500", "--epochs", "1",
            "--workdir", "w", "--results", "r", "--grid", "g"]
    assert cli(*args, cwd=tmp_path, timeout=120).returncode == 0
    (ckpt,) = (tmp_path / "w").glob("runs/*/checkpoint.pt")
    (rec,) = (tmp_path / "r" / "runs" / "g").glob("*.json")
    before = rec.read_bytes()
    state = torch.load(ckpt, weights_only=True)
    state["model"]["classifier.weight"] = torch.zeros(10, 7)
    torch.save(state, ckpt)
    out = cli(*args, cwd=tmp_path, timeout=120)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and "does not fit model 'fmnist-mlp'" in out.stderr
    assert rec.read_bytes() == before


def test_missing_dataset_says_how_to_get_it(tmp_path):
    out = cli("run", "--dataset", "cifar10", "--data-root", str(tmp_path / "empty"), cwd=tmp_path, timeout=120,
              env={"PROXBENCH_NO_DOWNLOAD": "1"})
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "cifar" in out.stderr.lower()


# ---------------------------------------------------------------------------------------------------------
# typed records: the round trip keeps every byte, and the nested parts are checked

FIXTURES = ROOT / "tests" / "fixtures" / "records" / "fixture"


def _valid_fixtures() -> list:
    paths = [p for p in sorted(FIXTURES.glob("*.json")) + sorted((ROOT / "results" / "runs").glob("*/*.json"))
             if records.read_record(p)[0] is not None]
    assert len(paths) > 10
    return paths


def test_typed_record_round_trip_is_byte_identical(tmp_path):
    for path in _valid_fixtures():
        data = json.loads(path.read_text())
        record = records.RunRecord.from_dict(data)
        assert isinstance(record.final, records.FinalMetrics)
        assert all(isinstance(h, records.EpochMetrics) for h in record.history)
        assert record.to_dict() == data
        out = records.write_record(record, tmp_path)
        assert out == layout.record_path(tmp_path, record.grid, record.run_id)
        if path.is_relative_to(ROOT / "results"):  # written by proxbench: byte for byte
            assert out.read_bytes() == path.read_bytes(), path


def test_keys_the_schema_does_not_name_survive_the_round_trip():
    data = json.loads(_valid_fixtures()[0].read_text())
    data["final"].update(acc_bn=88.5, bops_w1a1=123, flops_w1a1=4, ops=5.5, plugin_metric={"a": [1, 2]})
    data["history"][0]["plugin_stat"] = "x"
    data["plugin_section"] = {"b": 1}
    record = records.RunRecord.from_dict(copy.deepcopy(data))
    assert record.final.acc_bn == 88.5 and record.final.extra == {"plugin_metric": {"a": [1, 2]}}
    assert record.history[0].extra == {"plugin_stat": "x"} and record.extra == {"plugin_section": {"b": 1}}
    assert record.to_dict() == data


@pytest.mark.parametrize("edit, why", [
    (lambda r: r["history"].__setitem__(0, "epoch 1"), "history[0] must be an object, got str"),
    (lambda r: r["history"][0].pop("epoch"), "history[0] lacks its epoch"),
    (lambda r: r["history"][0].update(epoch=1.0), "history[0].epoch must be an integer, got 1.0"),
    (lambda r: r["history"][1].update(test_acc="88.1"), "history[1].test_acc must be a number or null, got '88.1'"),
    (lambda r: r["history"][0].update(flip_ratio=True), "history[0].flip_ratio must be a number or null, got True"),
    (lambda r: r["history"][0].update(method_params=[1.0]), "history[0].method_params must be an object, got [1.0]"),
    (lambda r: r["history"][0].update(method_params={"mu": "5"}),
     "history[0].method_params.mu must be a number or null, got '5'"),
    (lambda r: r["final"].update(acc="90.2"), "final.acc must be a number or null, got '90.2'"),
    (lambda r: r["final"].update(compression=[1.6]), "final.compression must be a number or null, got [1.6]"),
    (lambda r: r.update(run_id=7), "run_id must be a string, got 7"),
    (lambda r: r.update(error=["x"]), "error must be a string or null, got ['x']"),
    (lambda r: r.update(wall_seconds="12s"), "wall_seconds must be a number or null, got '12s'"),
    (lambda r: r.update(versions=["torch"]), "versions must be an object, got ['torch']"),
    (lambda r: r.update(history={}), "final must be an object and history a list"),
    (lambda r: r.update(status="paused"), "unknown status 'paused'"),
])
def test_nested_parts_of_a_record_are_validated(tmp_path, edit, why):
    data = json.loads(_valid_fixtures()[0].read_text())
    assert len(data["history"]) >= 2
    edit(data)
    assert records.validate(data) == why
    with pytest.raises(records.RecordError, match="^" + re.escape(why) + "$"):
        records.RunRecord.from_dict(data)
    folder = layout.records_dir(tmp_path, "g")
    folder.mkdir(parents=True)
    (folder / "bad.json").write_text(json.dumps(data))
    warnings = []
    assert records.load_records(tmp_path, "g", warn=warnings.append) == []
    assert warnings == [f"warning: skipped 1 record(s) of grid 'g': {folder / 'bad.json'} ({why})"]
    assert records.read_run_record(folder / "bad.json") == (None, why)


def test_a_failed_record_has_empty_parts_and_round_trips(tmp_path):
    cfg = configs.resolve({**QUICK, "method": "fp"})
    record = records.make_record("abc", "g", cfg, status="failed", history=[], final={}, device="?",
                                 wall_seconds=0.0, error="RuntimeError: boom")
    path = records.write_record(record, tmp_path)
    on_disk, why = records.read_record(path)
    assert why is None and on_disk == record.to_dict()
    assert on_disk["final"] == {} and on_disk["history"] == [] and on_disk["error"] == "RuntimeError: boom"
    assert set(on_disk) == {"schema", "run_id", "grid", "status", "error", "config", "history", "final",
                            "git_commit", "versions", "device", "platform", "wall_seconds", "finished_at"}
