"""Every bad input is one line ``error: ...`` on stderr with exit status 2, never a traceback, and nothing
already written is lost: bad method parameters and their declared ranges, every config key, devices,
``--set`` values, unreadable or incomplete checkpoints, a full disk. Unexpected exceptions (bugs) are one
line ``internal error: ...`` with exit status 1, and ``--debug`` re-raises so the traceback shows.

The CLI is called in-process (``bench.cli.main``) on real files and real (tiny, synthetic) training runs.
"""

from __future__ import annotations

import errno
import json
import math
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import torch

import methods
from bench import cli
from bench.run import config as configs
from bench.errors import UserError
from conftest import one_line_error, run_cli

# A run that trains in about a second: a small MLP on 8x8 synthetic images.
TINY = ["--model", "fmnist-mlp", "--dataset", "synthetic", "--epochs", "1", "--batch-size", "32",
        "--set", "data_options={in_chans=1, img_size=8, train_size=128, test_size=64, num_classes=4}",
        "--set", "model_kwargs={hidden=[32, 32]}"]
TINY_CFG = {"model": "fmnist-mlp", "dataset": "synthetic", "epochs": 1, "batch_size": 32,
            "data_options": {"in_chans": 1, "img_size": 8, "train_size": 128, "test_size": 64, "num_classes": 4},
            "model_kwargs": {"hidden": [32, 32]}}






@pytest.fixture
def workspace(tmp_path, monkeypatch):
    """cwd = tmp_path, with a record already under results/ that no failed run may touch."""
    monkeypatch.chdir(tmp_path)
    keep = tmp_path / "results" / "runs" / "adhoc" / "keep.json"
    keep.parent.mkdir(parents=True)
    keep.write_text('{"kept": true}')
    yield tmp_path
    assert keep.read_text() == '{"kept": true}'


# -- bad values on the command line: one line naming the key and what it must be ------------------------------
BAD_RUNS = [
    # method parameters: type (numbers only, not strings or booleans), finiteness, declared ranges and choices
    (["--method", "bnn++", "--param", "mu_end=abc"], "parameter mu_end must be a number, got 'abc'"),
    (["--method", "bnn++", "--param", "mu_end=true"], "parameter mu_end must be a number, got true"),
    (["--method", "bnn++", "--param", "mu_end=nan"], "parameter mu_end must be a finite number, got nan"),
    (["--method", "bnn++", "--param", "mu_end=-3"], "parameter mu_end must be > 0, got -3"),
    (["--method", "bnn++", "--param", "mu=0"], "parameter mu must be > 0, got 0"),
    (["--method", "bnn+", "--param", "mu=-1"], "parameter mu must be > 0, got -1"),
    (["--method", "bnn+", "--param", "mu=fast"], "parameter mu must be a number, got 'fast'"),
    (["--method", "pc", "--param", "rho_start=-0.5"], "parameter rho_start must be ≥ 0, got -0.5"),
    (["--method", "pq", "--param", "lq=cubic"], "parameter lq must be one of linear, clamp, got 'cubic'"),
    (["--method", "rpc", "--param", "lq=2"], "parameter lq must be one of linear, clamp, got 2"),
    (["--method", "bc", "--param", "scale=row"], "parameter scale must be one of channel, tensor, none, got 'row'"),
    (["--method", "bnn++", "--param", "schedule=true"], "parameter schedule must be one of linear, geometric"),
    (["--method", "bnn++", "--param", "mu_end="], "--param: mu_end: missing value"),
    (["--method", "bnn++", "--set", "method_params={mu_end='abc'}"], "parameter mu_end must be a number, got 'abc'"),
    # config keys
    (["--seed", "-1"], "seed must be an integer in [0, 4294967295], got -1"),
    (["--seed", str(2**32)], "seed must be an integer in [0, 4294967295], got 4294967296"),
    (["--set", "seed=1.5"], "seed must be an integer in [0, 4294967295], got 1.5"),
    (["--set", "seed=true"], "seed must be an integer in [0, 4294967295], got true"),
    (["--set", "label_smoothing=1.5"], "label_smoothing must be a number in [0, 1], got 1.5"),
    (["--set", "label_smoothing=-0.1"], "label_smoothing must be a number in [0, 1], got -0.1"),
    (["--set", "epochs=true"], "epochs must be a positive integer, got true"),
    (["--epochs", "-2"], "epochs must be a positive integer, got -2"),
    (["--batch-size", "0"], "batch_size must be a positive integer, got 0"),
    (["--set", "lr=false"], "lr must be a finite number > 0, got false"),
    (["--lr", "0"], "lr must be a finite number > 0, got 0"),
    (["--lr", "-0.1"], "lr must be a finite number > 0, got -0.1"),
    (["--set", "lr=inf"], "lr must be a finite number > 0, got inf"),
    (["--set", "lr='1e-3'"], "lr must be a finite number > 0, got '1e-3'"),
    (["--set", "momentum=1.5"], "momentum must be a number in [0, 1), got 1.5"),
    (["--weight-decay", "-1"], "weight_decay must be a finite number ≥ 0, got -1"),
    (["--warmup-epochs", "2"], "warmup_epochs must be ≤ epochs (1), got 2.0"),
    (["--set", "step_milestones=0.5"], "step_milestones must be a list of numbers in [0, 1], got 0.5"),
    (["--set", "step_milestones=[0.5, 2]"], "step_milestones must be a list of numbers in [0, 1], got [0.5, 2]"),
    (["--set", "subset=true"], "subset must be a positive integer, got true"),
    (["--subset", "0"], "subset must be a positive integer, got 0"),
    (["--subset", "129"], "subset 129 exceeds the 128 training samples of dataset 'synthetic'"),
    (["--test-subset", "65"], "test_subset 65 exceeds the 64 test samples of dataset 'synthetic'"),
    (["--set", "model=3"], "model must be a registry name (a string), got 3"),
    (["--set", "augment='yes'"], "augment must be true or false, got 'yes'"),
    (["--set", "optimizer=3"], "optimizer must be one of sgd, adam, adamw, got 3"),
    (["--set", "init=3", "--mode", "finetune"],
     "init must be a checkpoint path, 'run:<id>', 'parent' or 'timm', got 3"),
    (["--set", "policy={inclde=['3']}"], "unknown policy key 'inclde'"),
    (["--set", "policy={include='features.*'}"], "policy include must be a list of strings, got 'features.*'"),
    (["--set", "policy={types=['conv3d']}"], "policy types must be a list of conv, conv2d, linear, conv1d"),
    (["--set", "model_kwargs={widht=3}"], "model_kwargs: unknown keyword argument 'widht' of model 'fmnist-mlp'"),
    (["--set", "model_kwargs={hidden='abc'}"], "model_kwargs"),
    # --set itself: unknown keys, malformed TOML
    (["--set", "bogus=1"], "unknown key 'bogus'"),
    (["--set", "model_kwargs={hidden=[32"], "--set: model_kwargs: malformed TOML value"),
    (["--set", "lr"], "--set: expected KEY=VALUE, got 'lr'"),
    (["--set", "=3"], "--set: expected KEY=VALUE, got '=3'"),
    # devices
    (["--device", "tpu"], "unknown device 'tpu' (valid: cpu, cuda, cuda:<index>)"),
    (["--device", "cuda:abc"], "unknown device 'cuda:abc' (valid: cpu, cuda, cuda:<index>)"),
    (["--device", "mps"], "device 'mps' is not supported (valid: cpu, cuda, cuda:<index>)"),
    (["--device", "cuda:99"], "device 'cuda:99'"),
]


@pytest.mark.parametrize("argv, message", BAD_RUNS, ids=[" ".join(a) for a, _ in BAD_RUNS])
def test_bad_run_input_is_one_line_and_writes_nothing(workspace, capsys, argv, message):
    rc, out, err = run_cli(capsys, "run", *TINY, *argv)
    one_line_error(rc, err, message)
    assert [p.name for p in (workspace / "results").rglob("*.json")] == ["keep.json"], "a record was written"
    assert not (workspace / "work" / "runs").exists() or not list((workspace / "work" / "runs").rglob("*.pt"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
def test_cuda_without_a_gpu_is_one_line(workspace, capsys):
    rc, _, err = run_cli(capsys, "run", *TINY, "--device", "cuda")
    one_line_error(rc, err, "device 'cuda' asked for but no CUDA device is available")


def test_bad_values_from_a_config_file_and_a_grid(workspace, capsys):
    (workspace / "run.toml").write_text('method = "bnn++"\nmethod_params = { mu_end = "abc" }\n')
    rc, _, err = run_cli(capsys, "run", "--config", "run.toml")
    one_line_error(rc, err, "method 'bnn++': parameter mu_end must be a number, got 'abc'")
    (workspace / "p.toml").write_text('method = "bnn++"\nmethod_params = 3\n')
    rc, _, err = run_cli(capsys, "run", "--config", "p.toml", "--param", "mu_end=4")
    one_line_error(rc, err, "method_params must be a table, got 3")
    (workspace / "g.toml").write_text('description = "bad mu"\n[defaults]\nepochs = 1\n[axes]\nmethod = ["bnn++"]\n'
                                      '[method."bnn++"]\nmu_start = -1.0\n')
    rc, _, err = run_cli(capsys, "grid", "run", "g.toml", "--dry-run")
    one_line_error(rc, err, "cell (method=bnn++)", "parameter mu_start must be > 0, got -1")
    (workspace / "s.toml").write_text('description = "bad seed"\n[defaults]\nepochs = 1\n[axes]\nseed = [0, -3]\n')
    rc, _, err = run_cli(capsys, "grid", "run", "s.toml", "--dry-run")
    one_line_error(rc, err, "seed must be an integer in [0, 4294967295], got -3")
    (workspace / "ok.toml").write_text('[defaults]\nepochs = 1\n[axes]\nmethod = ["bc"]\n')
    rc, _, err = run_cli(capsys, "grid", "run", "ok.toml", "--no-wait")
    one_line_error(rc, err, "--no-wait: the local executor runs the cells as children", "--executor slurm")


# -- every config key has a type and range check -------------------------------------------------------------
BAD_CONFIG = {
    "model": [3, "resnet2", ""],
    "method": [3, "bnn+++"],
    "method_params": [3, {"mu_end": "abc"}],
    "policy": [3, "everything", {"inclde": ["x"]}, {"keep_first": "no"}, {"preset": "x"}],
    "dataset": [3, "fashionmnist"],
    "data_options": [3, {"img_size": 0}],
    "loader": ["turbo", 1],
    "augment": [1, "yes", None],
    "subset": [0, -5, True, 1.5, "10", 60001],
    "test_subset": [0, True, 10001],
    "mode": ["scratch", None],
    "init": [3, ["a"]],
    "model_kwargs": [3, {"widht": 3}],
    "epochs": [0, -1, True, 1.5, "4", None],
    "batch_size": [0, False, 2.0],
    "optimizer": ["sgdd", None],
    "lr": [0, -1e-3, False, float("nan"), float("inf"), "1e-3", None],
    "momentum": [-0.1, 1.0, True, "0.9"],
    "weight_decay": [-1e-4, True, float("inf")],
    "latent_weight_decay": [-1e-4, True, "0.1"],
    "bn_reestimate": [-1, 2.5, True],
    "lr_schedule": ["linear", 0],
    "warmup_epochs": [-1, True, 5.0],
    "step_milestones": [0.5, [0.5, 1.5], ["a"], [True], None],
    "label_smoothing": [1.01, -0.1, True, float("nan")],
    "seed": [-1, 2**32, 1.5, True, "0", None],
    "capture": ["graphs", 1, True, None],
    "fuse": [1, "yes", None],
    "robustness": [1, "yes", None, {"corruptions": ["fog"]}, {"severities": [6]}, {"subset": 0}, {"kind": 1}],
}
CASES = [(key, value) for key, values in BAD_CONFIG.items() for value in values]


def test_every_config_key_has_bad_values_listed():
    assert set(BAD_CONFIG) == set(configs.DEFAULTS)


@pytest.mark.parametrize("key, value", CASES, ids=[f"{k}={v!r}" for k, v in CASES])
def test_every_config_key_refuses_bad_values(key, value):
    raw = {key: value}
    if key == "method_params":
        raw["method"] = "bnn++"
    if key in ("init",):
        raw["mode"] = "finetune"
    if key == "data_options":
        raw["dataset"] = "synthetic"
    with pytest.raises(UserError) as err:
        configs.resolve(raw, "cfg")
    message = str(err.value)
    assert message.startswith("cfg: ") and "\n" not in message
    shown = {"policy": "polic", "data_options": "option", "method_params": "param"}.get(key, key)
    assert shown in message or key in message, message


def test_valid_configs_keep_their_run_ids():
    """The checks normalise nothing new: a config that resolved before resolves to the same dict and id."""
    cfg = configs.resolve({"method": "bnn++", "method_params": {"mu_end": 40}, "seed": 2**32 - 1, "lr": 1,
                           "momentum": 0, "label_smoothing": 1, "warmup_epochs": 4, "step_milestones": [0, 1]})
    assert cfg["method_params"]["mu_end"] == 40.0 and isinstance(cfg["method_params"]["mu_end"], float)
    assert cfg["lr"] == 1.0 and cfg["step_milestones"] == [0, 1] and cfg["seed"] == 2**32 - 1
    assert configs.resolve(cfg) == cfg
    default = configs.resolve({})
    assert configs.run_id(default) == configs.run_id(configs.resolve(dict(default)))


# -- method parameters: declared bounds, checked by create_method, plugins included --------------------------
def test_create_method_checks_types_and_declared_bounds():
    with pytest.raises(methods.MethodError, match=r"method 'bnn\+\+': parameter mu_end must be a number, got true"):
        methods.create_method("bnn++", mu_end=True)
    with pytest.raises(methods.MethodError, match="parameter mu_start must be > 0, got -1"):
        methods.create_method("bnn++", mu_start=-1)
    with pytest.raises(methods.MethodError, match="parameter rho must be ≥ 0, got -0.01"):
        methods.create_method("pc", rho=-0.01)
    with pytest.raises(methods.MethodError, match="parameter lq must be one of linear, clamp, got 3"):
        methods.create_method("pq", lq=3)
    assert methods.create_method("pc", rho=0).rho == 0.0  # the bound is inclusive
    assert methods.get_method_class("bnn++").parameter_bounds()["mu"].describe() == "> 0"


def test_a_plugin_declares_bounds_and_gets_the_checks():
    from methods.bounds import Bound, positive

    name = f"bounded-{uuid.uuid4().hex[:6]}"

    class Bounded(methods.Method):
        schedules = {"beta": (1.0, 10.0)}
        constants = {"gamma": 0.5, "shape": "round"}
        bounds = {"beta": positive(), "gamma": Bound(low=0.0, high=1.0, high_inclusive=False),
                  "shape": Bound(choices=("round", "square"))}

        def F(self, x):
            return x

    methods.register_method(name)(Bounded)
    try:
        assert methods.create_method(name, beta_end=20, gamma=0).gamma == 0.0
        with pytest.raises(methods.MethodError, match="parameter beta_end must be > 0, got 0"):
            methods.create_method(name, beta_end=0)
        with pytest.raises(methods.MethodError, match=r"parameter gamma must be in \[0, 1\), got 1"):
            methods.create_method(name, gamma=1)
        with pytest.raises(methods.MethodError, match="parameter shape must be one of round, square, got 'oval'"):
            methods.create_method(name, shape="oval")
        with pytest.raises(methods.MethodError, match="parameter scale must be one of"):  # inherited from Method
            methods.create_method(name, scale="row")
        with pytest.raises(UserError, match="parameter gamma must be a number, got 'half'"):
            configs.resolve({"method": name, "method_params": {"gamma": "half"}})
    finally:
        methods.registry.METHODS.unregister(name)


def test_a_default_outside_its_own_bounds_is_refused():
    from methods.bounds import positive

    class Broken(methods.Method):
        name = "broken"
        constants = {"mu": -1.0}
        bounds = {"mu": positive()}

    with pytest.raises(methods.MethodError, match="parameter mu must be > 0, got -1"):
        Broken()


# -- checkpoints: unreadable or incomplete -> one line naming the file and --fresh ---------------------------
def _finished_run(workspace, capsys) -> tuple[Path, Path, bytes]:
    rc, out, err = run_cli(capsys, "run", *TINY, "--method", "bnn")
    assert rc == 0, err
    (ckpt,) = (workspace / "work" / "runs").glob("*/checkpoint.pt")
    (record,) = (workspace / "work" / "results" / "runs" / "adhoc").glob("*.json")  # ad-hoc records: under work/
    return ckpt, record, record.read_bytes()


def _truncate(ckpt: Path) -> str:
    ckpt.write_bytes(ckpt.read_bytes()[:100])
    return "unreadable or incomplete"


def _drop_optimizer(ckpt: Path) -> str:
    state = torch.load(ckpt, weights_only=True)
    del state["optimizer"]
    torch.save(state, ckpt)
    return "unreadable or incomplete (missing optimizer)"


def _not_a_dict(ckpt: Path) -> str:
    torch.save([1, 2, 3], ckpt)
    return "unreadable or incomplete (a list, not a checkpoint)"


def _bad_optimizer_state(ckpt: Path) -> str:
    state = torch.load(ckpt, weights_only=True)
    state["optimizer"] = {"param_groups": []}
    torch.save(state, ckpt)
    return "unreadable or incomplete"


def _bad_epoch(ckpt: Path) -> str:
    state = torch.load(ckpt, weights_only=True)
    state["epoch"] = 7
    torch.save(state, ckpt)
    return "unreadable or incomplete (epoch 7 of 1)"


@pytest.mark.parametrize("damage", [_truncate, _drop_optimizer, _not_a_dict, _bad_optimizer_state, _bad_epoch])
def test_damaged_checkpoint_is_one_line_and_the_record_is_untouched(workspace, capsys, damage):
    ckpt, record, before = _finished_run(workspace, capsys)
    needle = damage(ckpt)
    rel = Path("work") / ckpt.relative_to(workspace / "work")
    rc, _, err = run_cli(capsys, "run", *TINY, "--method", "bnn")
    line = one_line_error(rc, err, f"checkpoint {rel} ", needle, "delete it or run with --fresh")
    assert line.startswith(f"error: checkpoint {rel} is unreadable or incomplete (")
    assert record.read_bytes() == before
    rc, out, err = run_cli(capsys, "run", *TINY, "--method", "bnn", "--fresh")
    assert rc == 0, err
    assert torch.load(ckpt, weights_only=True)["status"] == "done"


def test_export_of_a_truncated_checkpoint_is_one_line(workspace, capsys):
    ckpt, _, _ = _finished_run(workspace, capsys)
    _truncate(ckpt)
    rc, _, err = run_cli(capsys, "export", str(ckpt), "--out", "packed.bin")
    one_line_error(rc, err, f"checkpoint {ckpt} is unreadable or incomplete")
    assert not Path("packed.bin").exists()


# -- a full disk: one line naming the file; what was written before stays --------------------------------------
@pytest.fixture
def small_tmpfs(tmp_path):
    """mount(size) -> a fresh tmpfs of ``size`` bytes under tmp_path; unmounted at teardown."""
    mounted = []

    def mount(size: int) -> Path:
        where = tmp_path / f"tmpfs{len(mounted)}"
        where.mkdir()
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs to fill up (needs root): {proc.stderr.strip() or proc.returncode}")
        mounted.append(where)
        return where

    yield mount
    for where in mounted:
        subprocess.run(["umount", str(where)], capture_output=True)


def _fill(folder: Path) -> None:
    """Write a filler file until the file system is full."""
    with open(folder / "filler", "wb", buffering=0) as fh:
        try:
            while fh.write(b"\0" * 4096):
                pass
        except OSError as exc:
            assert exc.errno == errno.ENOSPC


def test_full_disk_while_writing_a_checkpoint_keeps_the_previous_one(workspace, capsys, small_tmpfs):
    args = ["run", *TINY, "--method", "bnn++", "--epochs", "2"]
    rc, _, err = run_cli(capsys, *args, "--workdir", "measure", "--results", "measure_results")
    assert rc == 0, err
    (measured,) = Path("measure").glob("runs/*/checkpoint.pt")
    pages = math.ceil(measured.stat().st_size / 4096)
    disk = small_tmpfs(4096 * (pages + pages // 2 + 2))  # one checkpoint fits, not a second beside it
    rc, out, err = run_cli(capsys, *args, "--workdir", disk)
    (ckpt,) = disk.glob("runs/*/checkpoint.pt")
    one_line_error(rc, err, f"error: cannot write {ckpt}: No space left on device")
    state = torch.load(ckpt, weights_only=True)  # the epoch-1 checkpoint, whole
    assert state["epoch"] == 1 and state["status"] == "running"
    assert sorted(p.name for p in ckpt.parent.iterdir()) == ["checkpoint.pt", "progress.json", "steps.jsonl"]  # no temp
    assert json.loads((ckpt.parent / "progress.json").read_text())["epoch"] == 1
    rid = ckpt.parent.name
    assert not (disk / "results" / "runs" / "adhoc" / f"{rid}.json").exists()
    # the kept checkpoint resumes elsewhere, and the run's time includes the first process's epoch
    shutil.copytree(disk, workspace / "moved")
    rc, out, err = run_cli(capsys, *args, "--workdir", "moved")
    assert rc == 0, err
    assert f"[{rid}] resuming at epoch 2/2" in out
    record = json.loads((workspace / "moved" / "results" / "runs" / "adhoc" / f"{rid}.json").read_text())
    assert record["wall_seconds"] >= state["wall_seconds"] + record["history"][1]["seconds"]


def test_full_disk_while_writing_the_record(workspace, capsys, small_tmpfs):
    disk = small_tmpfs(64 * 1024)
    keep = disk / "runs" / "adhoc" / "other.json"
    keep.parent.mkdir(parents=True)
    keep.write_text('{"other": 1}')
    _fill(disk)
    rc, out, err = run_cli(capsys, "run", *TINY, "--results", disk)
    (ckpt,) = (workspace / "work").glob("runs/*/checkpoint.pt")
    rid = ckpt.parent.name
    one_line_error(rc, err, f"error: cannot write {disk}/runs/adhoc/{rid}.json: No space left on device")
    assert keep.read_text() == '{"other": 1}'
    assert sorted(p.name for p in keep.parent.iterdir()) == ["other.json"]  # no temp file
    # with room again, the finished checkpoint only rewrites the record
    (disk / "filler").unlink()
    rc, out, err = run_cli(capsys, "run", *TINY, "--results", disk)
    assert rc == 0, err
    assert f"[{rid}] already finished (1/1 epochs); rewriting its record" in out and "resuming" not in out
    record = json.loads((disk / "runs" / "adhoc" / f"{rid}.json").read_text())
    assert record["status"] == "done"
    assert record["wall_seconds"] == pytest.approx(torch.load(ckpt, weights_only=True)["wall_seconds"], abs=0.01)


def test_os_errors_become_one_line_naming_the_path(workspace, capsys):
    (workspace / "afile").write_text("not a folder")
    rc, _, err = run_cli(capsys, "run", *TINY, "--workdir", "afile/work")
    one_line_error(rc, err, "error: cannot write afile/work/runs/", "Not a directory")
    # an OSError from any command (here: plot-quantizers writing under a file) is one line with the path
    rc, _, err = run_cli(capsys, "plot-quantizers", "--out", "afile/plots", "bc")
    one_line_error(rc, err, "afile", "Not a directory")


# -- bugs: one line "internal error" (exit 1) without --debug, the traceback with it --------------------------
def _crashing_plugin(tmp_path, monkeypatch) -> str:
    name = f"crashing_plugin_{uuid.uuid4().hex[:8]}"
    # a bug that shows when the command runs (a plugin failing on import is the user's error: test_faults.py)
    (tmp_path / f"{name}.py").write_text("import bench.describe\n\n\ndef boom(*args):\n    return 1 / 0\n\n\n"
                                         "bench.describe.method_rows = boom\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    from bench import describe

    monkeypatch.setattr(describe, "method_rows", describe.method_rows)  # put back after the test
    return name


def test_an_unexpected_exception_is_one_line_internal_error(tmp_path, monkeypatch, capsys):
    rc, out, err = run_cli(capsys, "--plugin", _crashing_plugin(tmp_path, monkeypatch), "methods")
    assert rc == 1 and "Traceback" not in err
    (line,) = err.strip().splitlines()
    assert line == ("internal error: ZeroDivisionError: division by zero "
                    "(a bug; run with --debug for the traceback)")


def test_debug_reraises(tmp_path, monkeypatch, capsys):
    with pytest.raises(ZeroDivisionError):
        cli.main(["--debug", "--plugin", _crashing_plugin(tmp_path, monkeypatch), "methods"])
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match="seed must be"):
        cli.main(["--debug", "run", *TINY, "--seed", "-1"])
    help_text = cli.build_parser().format_help()
    assert "--debug" in help_text and "traceback" in help_text


def test_debug_through_python_dash_m_shows_the_traceback(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    plain = subprocess.run([sys.executable, "-m", "bench", "run", "--seed", "-1"], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=120)
    assert plain.returncode == 2 and plain.stderr.startswith("error: run: seed must be")
    debug = subprocess.run([sys.executable, "-m", "bench", "--debug", "run", "--seed", "-1"], cwd=tmp_path,
                           env=env, capture_output=True, text=True, timeout=120)
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "UserError" in debug.stderr
