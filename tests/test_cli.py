"""The command line for a researcher's day: help texts with defaults and choices on every option, --version,
one-line errors for registry patterns that match nothing and for --by keys no record has, where the
datasets' files are, where ad-hoc run records go, per-step metrics (steps.jsonl, TensorBoard) and the
epoch log line's lr.

The CLI is called in-process (``bench.cli.main``) on real files and tiny real training runs (synthetic
8x8 images, a small MLP, about a second each).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
from pathlib import Path

import pytest

from bench import cli

from bench.run import train
from bench.run import config as configs
from conftest import ROOT, one_line_error, run_cli

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "records"

DATA = "data_options={in_chans=1, img_size=8, train_size=256, test_size=64, num_classes=4}"
TINY = ["--model", "fmnist-mlp", "--dataset", "synthetic", "--batch-size", "32", "--set", DATA,
        "--set", "model_kwargs={hidden=[32, 32]}"]  # 8 steps per epoch
TINY_CFG = {"model": "fmnist-mlp", "dataset": "synthetic", "batch_size": 32,
            "data_options": {"in_chans": 1, "img_size": 8, "train_size": 256, "test_size": 64, "num_classes": 4},
            "model_kwargs": {"hidden": [32, 32]}}






@pytest.fixture
def workspace(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


# -- help: every option of every subcommand has a help text that shows its default and choices --------------
def all_parsers(parser: argparse.ArgumentParser, path=("python -m bench",)):
    yield " ".join(path), parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from all_parsers(sub, (*path, name))


def expanded_help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    return parser._get_formatter()._expand_help(action)


def test_every_action_of_every_subcommand_has_help_with_its_default_and_choices():
    parsers = list(all_parsers(cli.build_parser()))
    names = [name for name, _ in parsers]
    for expected in ("python -m bench run", "python -m bench grid run", "python -m bench runs list",
                     "python -m bench runs compare", "python -m bench data prepare", "python -m bench aggregate"):
        assert expected in names
    problems = []
    for name, parser in parsers:
        text = parser.format_help()
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            label = f"{name} {'/'.join(action.option_strings) or action.dest}"
            if isinstance(action, argparse._SubParsersAction):
                problems += [f"{name} {c.dest}: no help" for c in action._choices_actions if not (c.help or "").strip()]
            if not (action.help or "").strip() or action.help is argparse.SUPPRESS:
                problems.append(f"{label}: no help")
                continue
            if action.option_strings and not action.required and not isinstance(action, argparse._VersionAction):
                if "default" not in expanded_help(parser, action):
                    problems.append(f"{label}: its help does not show the default")
            for choice in action.choices or ():
                if not isinstance(action, argparse._SubParsersAction) and str(choice) not in text:
                    problems.append(f"{label}: choice {choice!r} not shown")
    assert not problems, "\n".join(problems)


def test_run_help_shows_the_config_defaults_and_choices(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["run", "--help"])
    assert exit_.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert f"passes over the training split (default: {configs.DEFAULTS['epochs']})" in text
    assert f"peak learning rate (default: {configs.DEFAULTS['lr']})" in text
    assert "one of: memory, torch, ffcv (default: memory)" in text
    assert "one of: sgd, adam, adamw (default: adam)" in text
    assert "one of: cosine, step, constant (default: cosine)" in text
    assert "train on the first N training samples (default: all)" in text
    assert "{none,tensorboard}" in text and "(default: none)" in text
    assert "(default: WORKDIR/results for an ad-hoc run, results with --grid)" in text
    assert "start over (default: off)" in text


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--version"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out.strip()
    assert out == f"proxbench {cli.package_version()}"
    import tomllib

    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert out.split()[1] == version  # installed or not: the project's version


# -- registry patterns ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("command, kind, registered", [("methods", "method", "bnn++"),
                                                       ("models", "model", "resnet20")])
def test_pattern_matching_nothing_is_one_line(capsys, command, kind, registered):
    rc, out, err = run_cli(capsys, command, "xyz")
    line = one_line_error(rc, err, f"error: no {kind} matches 'xyz' (registered: ")
    assert registered in line and out == ""
    rc, out, err = run_cli(capsys, command, "*" if command == "methods" else "resnet2*")
    assert rc == 0 and registered in out and err == ""


# -- datasets: where the files are -------------------------------------------------------------------------
def _dataset_rows(out: str) -> dict[str, list[str]]:
    rows = {}
    for line in out.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and len(cells) == 7 and cells[0] not in ("dataset",) and not cells[0].startswith("-"):
            rows[cells[0]] = cells
    return rows


def test_datasets_says_where_the_files_are_or_how_to_get_them(workspace, capsys, monkeypatch):
    monkeypatch.setenv("PROXBENCH_DEBIAN_FMNIST", str(workspace / "no-debian-package"))
    monkeypatch.delenv("PROXBENCH_NO_DOWNLOAD", raising=False)
    root = workspace / "data"
    rc, out, err = run_cli(capsys, "datasets", "--data-root", root)
    assert rc == 0, err
    rows = _dataset_rows(out)
    assert set(rows) == {"fashion-mnist", "cifar10", "cifar100", "imagenet", "synthetic"}
    assert rows["synthetic"][5] == "none needed"
    assert all(rows[name][5] == "missing" for name in ("fashion-mnist", "cifar10", "cifar100", "imagenet"))
    assert f"cifar10: dataset 'cifar10' not found under {root / 'cifar-10-batches-py'}" in out
    assert "https://www.cs.toronto.edu/~kriz/" in out and "apt-get install dataset-fashion-mnist" in out
    assert "https://image-net.org" in out
    assert "PROXBENCH_NO_DOWNLOAD" not in out  # the listing's own no-download switch is not the user's
    assert "PROXBENCH_NO_DOWNLOAD" not in os.environ  # and it is restored
    assert not root.exists()  # nothing downloaded, nothing written
    # files in place: the folder that holds them
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):
        (raw / name).write_bytes(b"")
    (root / "imagenet" / "train" / "n01").mkdir(parents=True)
    (root / "imagenet" / "val" / "n01").mkdir(parents=True)
    rc, out, err = run_cli(capsys, "datasets", "--data-root", root)
    rows = _dataset_rows(out)
    assert rc == 0 and rows["fashion-mnist"][5] == str(raw)
    assert rows["imagenet"][5] == f"{root / 'imagenet' / 'train'}, {root / 'imagenet' / 'val'}"
    assert rows["cifar10"][5] == "missing"


def test_datasets_finds_the_debian_package_without_writing(workspace, capsys, monkeypatch):
    debian = workspace / "debian"
    debian.mkdir()
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):
        (debian / f"{name}.gz").write_bytes(b"")
    monkeypatch.setenv("PROXBENCH_DEBIAN_FMNIST", str(debian))
    rc, out, err = run_cli(capsys, "datasets", "--data-root", workspace / "data")
    assert rc == 0, err
    assert _dataset_rows(out)["fashion-mnist"][5].startswith(f"{debian} (Debian package")
    assert not (workspace / "data").exists()


# -- aggregate --by: keys that no record has --------------------------------------------------------------------
def test_aggregate_by_a_key_no_record_has_is_one_line_and_writes_nothing(workspace, capsys):
    results = workspace / "results"
    shutil.copytree(FIXTURES / "fixture", results / "runs" / "fixture")
    for by, needles in [("modle:method", ["no record of grid 'fixture' has a key 'modle'", "did you mean", "'model'"]),
                        ("dataset,model:methd", ["key 'methd'", "did you mean 'method'"]),
                        ("model:method_params.mu_ned", ["key 'method_params.mu_ned'",
                                                        "did you mean 'method_params.mu_end'"]),
                        ("model,model:method", ["row key 'model' given twice"])]:
        for name in (["fixture"], []):  # one grid, and every grid
            rc, out, err = run_cli(capsys, "aggregate", *name, "--results", results, "--by", by, "--no-figures")
            one_line_error(rc, err, *needles)
            assert out == "" and not (results / "fixture").exists()
    # keys that exist: a config key, a method parameter, a dotted path, a final metric
    for by in ("dataset,model,mode:method", "model,scale:method", "model,method_params.scale:method",
               "model,epochs_done:method"):
        rc, out, err = run_cli(capsys, "aggregate", "fixture", "--results", results, "--by", by, "--no-figures")
        assert rc == 0, err
        assert (results / "fixture" / "leaderboard.md").is_file()


# -- run: where the record goes -------------------------------------------------------------------------------
def test_adhoc_run_records_go_under_the_workdir(workspace, capsys):
    rc, out, err = run_cli(capsys, "run", *TINY, "--epochs", "1")
    assert rc == 0, err
    (record,) = (workspace / "work" / "results" / "runs" / "adhoc").glob("*.json")
    assert f"-> {Path('work/results/runs/adhoc') / record.name}" in out
    assert not (workspace / "results").exists()  # the git-tracked results/ is not touched
    # another work directory: its own results
    rc, out, err = run_cli(capsys, "run", *TINY, "--epochs", "1", "--workdir", "w2")
    assert rc == 0 and (workspace / "w2" / "results" / "runs" / "adhoc" / record.name).is_file()
    # an explicit --results wins; --grid G without --results: results/runs/G
    rc, out, err = run_cli(capsys, "run", *TINY, "--epochs", "1", "--results", "mine")
    assert rc == 0 and (workspace / "mine" / "runs" / "adhoc" / record.name).is_file()
    rc, out, err = run_cli(capsys, "run", *TINY, "--epochs", "1", "--grid", "study")
    assert rc == 0 and (workspace / "results" / "runs" / "study" / record.name).is_file()
    assert sorted(p.name for p in (workspace / "results" / "runs").iterdir()) == ["study"]


# -- the epoch log line: the lr the epoch used -------------------------------------------------------------------
def test_epoch_line_shows_the_mean_lr_of_the_epoch(workspace, capsys):
    rc, out, err = run_cli(capsys, "run", *TINY, "--epochs", "2", "--lr", "0.01")
    assert rc == 0, err
    lines = [line for line in out.splitlines() if " epoch " in line]
    assert len(lines) == 2
    # cosine over 16 steps: epoch 1 uses steps 0-7, epoch 2 steps 8-15 (the last epoch is not 0)
    for line, steps in zip(lines, (range(0, 8), range(8, 16))):
        mean = sum(0.01 * 0.5 * (1 + math.cos(math.pi * s / 16)) for s in steps) / 8
        assert f"mean lr {mean:.2e} " in line, line
    assert "lr 0.00e+00" not in out


# -- per-step metrics --------------------------------------------------------------------------------------------
def _steps(workdir: Path) -> list[dict]:
    (path,) = workdir.glob("runs/*/steps.jsonl")
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_steps_jsonl_every_n_steps_and_at_each_epoch_end(workspace, capsys):
    rc, out, err = run_cli(capsys, "run", *TINY, "--epochs", "2", "--method", "bnn++", "--log-every", "3")
    assert rc == 0, err
    lines = _steps(workspace / "work")
    assert [e["step"] for e in lines] == [3, 6, 8, 9, 12, 15, 16]
    assert [e["epoch"] for e in lines] == [1, 1, 1, 2, 2, 2, 2]
    assert list(lines[0]) == ["step", "epoch", "loss", "lr", "method_params"]
    for e in lines:  # the lr and mu that step used: progress (step - 1) / 16, cosine lr, mu linear 5 -> 30
        t = (e["step"] - 1) / 16
        assert e["lr"] == pytest.approx(1e-3 * 0.5 * (1 + math.cos(math.pi * t)))
        assert e["method_params"] == {"mu": pytest.approx(5 + 25 * t)}
        assert 0 < e["loss"] < 10
    record = json.loads(next((workspace / "work" / "results" / "runs" / "adhoc").glob("*.json")).read_text())
    # the mean loss of an epoch's lines, weighted by their steps, is the epoch's training loss
    epoch1 = [(3, lines[0]["loss"]), (3, lines[1]["loss"]), (2, lines[2]["loss"])]
    assert sum(n * loss for n, loss in epoch1) / 8 == pytest.approx(record["history"][0]["train_loss"], rel=1e-5)
    # the default: every 50 steps, so here only the epochs' last steps
    rc, out, err = run_cli(capsys, "run", *TINY, "--epochs", "2", "--workdir", "w50")
    assert rc == 0 and [e["step"] for e in _steps(workspace / "w50")] == [8, 16]
    assert _steps(workspace / "w50")[0]["method_params"] == {}  # fp has no scheduled parameter
    rc, out, err = run_cli(capsys, "run", *TINY, "--log-every", "0")
    one_line_error(rc, err, "--log-every must be a positive integer, got 0")


class _Killed(Exception):
    pass


def test_steps_jsonl_on_resume_drops_the_lines_past_the_checkpoint(workspace):
    """Killed after epoch 2's steps were logged but before its checkpoint: the resumed run trains epoch 2
    again, and its steps.jsonl is the uninterrupted run's, line for line (resume is bit-exact)."""
    cfg = configs.resolve({**TINY_CFG, "method": "bnn++", "epochs": 3})
    ref = train.execute(cfg, workdir=workspace / "ref", log=lambda m: None, log_every=3)
    expected = (workspace / "ref" / "runs" / ref["run_id"] / "steps.jsonl").read_text()

    def kill_at_epoch_2(message: str) -> None:
        if " epoch 2/3" in message:  # logged before epoch 2's checkpoint is written
            raise _Killed

    with pytest.raises(_Killed):
        train.execute(cfg, workdir=workspace / "w", log=kill_at_epoch_2, log_every=3)
    path = workspace / "w" / "runs" / ref["run_id"] / "steps.jsonl"
    partial = path.read_text()
    assert [json.loads(x)["step"] for x in partial.splitlines()][-1] == 16  # epoch 2 logged, not checkpointed
    with path.open("a") as fh:
        fh.write('{"step": 17, "epo')  # and a line cut short by the kill
    messages = []
    record = train.execute(cfg, workdir=workspace / "w", log=messages.append, log_every=3)
    assert any("resuming at epoch 2/3" in m for m in messages)
    assert record["status"] == "done"
    assert path.read_text() == expected
    # a finished run that is run again keeps its file; --fresh starts it over
    train.execute(cfg, workdir=workspace / "w", log=lambda m: None, log_every=3)
    assert path.read_text() == expected
    train.execute(cfg, workdir=workspace / "w", log=lambda m: None, log_every=5, fresh=True)
    assert [json.loads(x)["step"] for x in path.read_text().splitlines()] == [5, 8, 10, 15, 16, 20, 24]


def _tensorboard_installed() -> bool:
    try:
        import torch.utils.tensorboard  # noqa: F401
    except ImportError:
        return False
    return True


def test_tensorboard_logger(workspace, capsys):
    """With the tensorboard package: event files with the step and epoch scalars. Without: one line saying
    how to install it, before anything is written."""
    rc, out, err = run_cli(capsys, "run", *TINY, "--epochs", "2", "--method", "bnn++", "--logger", "tensorboard",
                           "--log-every", "4")
    if not _tensorboard_installed():
        one_line_error(rc, err, "--logger tensorboard needs the tensorboard package: pip install tensorboard")
        assert not (workspace / "work").exists()
        return
    assert rc == 0, err
    (folder,) = (workspace / "work").glob("runs/*/tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/loss", "train/lr", "method/mu", "test/acc", "test/acc_forward", "train/flip_ratio"} <= tags
    assert [e.step for e in events.Scalars("train/loss")] == [4, 8, 12, 16]
    assert [e.step for e in events.Scalars("test/acc")] == [8, 16]
    record = json.loads(next((workspace / "work" / "results" / "runs" / "adhoc").glob("*.json")).read_text())
    assert events.Scalars("test/acc")[-1].value == pytest.approx(record["final"]["acc"])
    # killed after epoch 2 was logged but not checkpointed: the resumed run's events replace epoch 2's
    cfg = configs.resolve({**TINY_CFG, "method": "bnn++", "epochs": 3})

    def kill_at_epoch_2(message: str) -> None:
        if " epoch 2/3" in message:
            raise _Killed

    with pytest.raises(_Killed):
        train.execute(cfg, workdir=workspace / "k", log=kill_at_epoch_2, log_every=3, logger="tensorboard")
    train.execute(cfg, workdir=workspace / "k", log=lambda m: None, log_every=3, logger="tensorboard")
    (folder,) = (workspace / "k").glob("runs/*/tensorboard")
    events = EventAccumulator(str(folder))
    events.Reload()
    assert [e.step for e in events.Scalars("train/loss")] == [3, 6, 8, 9, 12, 15, 16, 18, 21, 24]
    assert [e.step for e in events.Scalars("test/acc")] == [8, 16, 24]


def test_logger_is_not_part_of_the_config(workspace, capsys):
    """--logger and --log-every change no run id: the same run, logged differently, resumes as finished."""
    rc, out, err = run_cli(capsys, "run", *TINY, "--epochs", "1", "--log-every", "2")
    assert rc == 0, err
    rc, out2, err = run_cli(capsys, "run", *TINY, "--epochs", "1", "--log-every", "7")
    assert rc == 0 and "already finished" in out2 and out.split()[-1] == out2.split()[-1]
