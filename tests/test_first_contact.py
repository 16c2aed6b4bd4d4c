"""A newcomer's first commands on a fresh clone: they work on what the repository ships.

The quick commands answer without importing torch (checked in a fresh interpreter), from a static
catalogue that must equal the live registries; ``grid status`` and ``grid run --dry-run`` read the committed
records (epochs, wall-time estimate); every committed record names the ``python -m bench run`` command that
gives its run id again, and ``export`` of a record without a checkpoint says that command; ``run --config
<grid file>`` runs the grid's cell; ``spread`` and ``compare`` (``make bench``'s last step) on real records.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench import cli
from bench.run import catalogue
from bench.run import config as configs
from bench.run.commands import config_from_args
from bench.run.reproduce import reproduce_args, reproduce_command
from conftest import ROOT, TINY_GRID, one_line_error, run_cli

RECORDS = sorted((ROOT / "results" / "runs").glob("*/*.json"))
DEFAULT = ROOT / "results" / "runs" / "default"

TORCH_FREE_SCRIPT = """
import contextlib, io, sys
from bench import cli
for argv in {argvs!r}:
    with contextlib.redirect_stdout(io.StringIO()) as out:
        try:
            rc = cli.main(argv)
        except SystemExit as exc:
            rc = exc.code
    assert rc in (0, None), (argv, rc)
    assert out.getvalue().strip(), argv
    assert "torch" not in sys.modules, argv
print("ok")
"""


def test_quick_commands_do_not_import_torch():
    argvs = [["--help"], ["--version"], ["methods"], ["methods", "bnn*"], ["models"], ["models", "resnet*"],
             ["runs", "list"], ["runs", "show", "default/5184"], ["runs", "compare", "default/5184", "default/3ddd"],
             ["datasets"], ["grid", "--help"], ["grid", "status", "--help"], ["grid", "status", "default"],
             ["grid", "status", "default-w1a1"]]
    done = subprocess.run([sys.executable, "-c", TORCH_FREE_SCRIPT.format(argvs=argvs)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


def test_shipped_grid_cells_equal_the_live_expansion(tmp_path):
    """``grid status`` of a shipped grid reads bench/grids/cells.json; it must be what loading the grid gives,
    and an edited grid file is loaded live, not read from the stale entry."""
    from bench.dispatch import shipped_grids
    from bench.dispatch.grid import load_grid

    assert shipped_grids.PATH.read_text(encoding="utf-8") == shipped_grids.text(shipped_grids.build()), \
        "bench/grids/cells.json is stale: regenerate it with python -m bench.dispatch.shipped_grids"
    stored, live = shipped_grids.shipped_grid("default"), load_grid("default")
    assert [(c.run_id, c.label, c.parent, c.stage, c.config["epochs"]) for c in stored.cells] == \
        [(c.run_id, c.label, c.parent, c.stage, c.config["epochs"]) for c in live.cells]
    assert shipped_grids.shipped_grid("no-such-grid") is None
    assert shipped_grids.shipped_grid("default", ["plugin_methods"]) is None
    edited = tmp_path / "grids"
    edited.mkdir()
    shutil.copy(shipped_grids.PATH, edited / "cells.json")
    (edited / "default.toml").write_text(live.path.read_text() + "\n# edited\n")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(shipped_grids, "GRID_DIR", edited)
        patch.setattr(shipped_grids, "PATH", edited / "cells.json")
        assert shipped_grids.shipped_grid("default") is None  # changed file: loaded live
        shutil.copy(live.path, edited / "default.toml")
        assert shipped_grids.shipped_grid("default") is not None


def test_catalogue_equals_the_live_registries():
    built = catalogue.build()
    assert catalogue.PATH.read_text(encoding="utf-8") == catalogue.text(built), \
        "bench/run/catalogue.json is stale: regenerate it with python -m bench.run.catalogue"
    assert json.loads(catalogue.text(built)) == built


def test_catalogue_steps_aside_for_plugins(capsys):
    assert catalogue.usable() is not None
    assert catalogue.usable(["plugin_methods"]) is None
    rc, out, _ = run_cli(capsys, "--plugin", "plugin_methods", "methods")
    assert rc == 0 and "| tanh-ste" in out  # the plugin's method, from the live registry


def test_methods_escapes_pipes_and_models_prints_whole_descriptions(capsys):
    rc, out, _ = run_cli(capsys, "methods")
    assert rc == 0
    table = [line for line in out.splitlines() if line.startswith("|")]
    for line in table:  # 6 columns: 7 unescaped pipes
        assert line.replace("\\|", "").count("|") == 7, line
    assert any("1[\\|x\\| ≤ 1]" in line for line in table)
    rc, out, _ = run_cli(capsys, "models", "fmnist-cnn")
    assert rc == 0 and "about 55k parameters (23k of them in the binarized middle convolutions)." in out


def test_plot_quantizers_takes_patterns_over_every_method(capsys, tmp_path):
    rc, out, _ = run_cli(capsys, "plot-quantizers", "--out", tmp_path, "xnor*")
    assert rc == 0 and sorted(Path(p).name for p in out.split()) == ["overview.png", "xnor.png", "xnorpp.png"]


def test_grid_status_and_dry_run_read_the_committed_records(capsys, tmp_path):
    rc, out, _ = run_cli(capsys, "grid", "status", "default", "--workdir", tmp_path)
    rows = [line for line in out.splitlines() if line.startswith("| ") and "run id" not in line]
    assert rc == 0 and len(rows) == 8 and all("| done " in r and "| 3/3 " in r for r in rows), out
    rc, out, _ = run_cli(capsys, "grid", "run", "default", "--dry-run", "--workdir", tmp_path,
                         "--results", tmp_path / "fresh")
    assert rc == 0
    assert "8 cells, 8 to run; about 0.1 CPU-hours for the whole grid, measured: 8 record(s) in results/runs/default/" \
        in out


@pytest.mark.parametrize("path", RECORDS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_committed_record_names_the_command_that_reproduces_it(path):
    record = json.loads(path.read_text())
    args = cli.build_parser().parse_args(["run", *reproduce_args(record["config"])])
    assert configs.run_id(configs.resolve(config_from_args(args))) == record["run_id"]


def test_runs_show_and_export_of_a_committed_run(capsys, tmp_path):
    rc, out, _ = run_cli(capsys, "runs", "show", "default/5184")
    command = reproduce_command(json.loads((DEFAULT / "5184a42e45.json").read_text())["config"])
    assert rc == 0 and f"reproduce: {command}" in out and "--method bnn++" in command
    rc, _, err = run_cli(capsys, "export", "default/5184a42e45", "--out", tmp_path / "m.packed",
                         "--workdir", tmp_path)
    one_line_error(rc, err, "no checkpoint", command, "then export 5184a42e45")


def test_run_config_grid_file_runs_the_grids_cell(capsys, tmp_path):
    from bench.dispatch.grid import load_grid
    from bench.grid_cell import grid_cell_config

    cells = {c.config["method"]: c.run_id for c in load_grid("default").cells}
    args = cli.build_parser().parse_args(["run", "--config", "bench/grids/default.toml", "--method", "pq"])
    assert configs.run_id(configs.resolve(config_from_args(
        type(args)(**{**vars(args), "config_raw": grid_cell_config(args.config, args)})))) == cells["pq"]
    grid = tmp_path / "tiny.toml"
    grid.write_text('description = "two methods"\ngpu_hours = 0.1\n' + TINY_GRID
                    + '[axes]\nmethod = ["fp", "bnn"]\nseed = [0, 1]\n')
    want = {(c.config["method"], c.config["seed"]): c.run_id for c in load_grid(str(grid)).cells}
    rc, out, err = run_cli(capsys, "run", "--config", grid, "--method", "bnn", "--seed", "1",
                           "--workdir", tmp_path / "w")
    assert rc == 0, err
    assert f"{want[('bnn', 1)]} done" in out
    rc, _, err = run_cli(capsys, "run", "--config", grid, "--method", "bnn", "--workdir", tmp_path / "w")
    one_line_error(rc, err, "2 cells of grid 'tiny' match", "method=bnn, seed=0; method=bnn, seed=1")
    rc, _, err = run_cli(capsys, "run", "--config", grid, "--method", "pq", "--workdir", tmp_path / "w")
    one_line_error(rc, err, "no cell of grid 'tiny' has method = 'pq'")
    # a run of a grid record exports by GRID/RUN_ID once its checkpoint is in the work directory
    rid = want[("bnn", 1)]
    rc, out, err = run_cli(capsys, "export", f"tiny/{rid[:6]}", "--out", tmp_path / "m.packed",
                           "--workdir", tmp_path / "w")
    assert rc == 0 and (tmp_path / "m.packed").is_file(), err


def _fresh(tmp_path: Path, changes: dict[str, float]) -> Path:
    """A copy of the committed default records as a fresh run's, some accuracies moved."""
    root = tmp_path / "fresh"
    (root / "runs").mkdir(parents=True)
    shutil.copytree(DEFAULT, root / "runs" / "default")
    for rid, acc in changes.items():
        path = root / "runs" / "default" / f"{rid}.json"
        record = json.loads(path.read_text())
        record["final"]["acc"] = acc
        path.write_text(json.dumps(record, indent=1))
    return root


def test_spread_and_compare(capsys, tmp_path):
    fp, bnnpp = (json.loads((DEFAULT / f"{rid}.json").read_text())["final"]["acc"]
                 for rid in ("3ddd2be41a", "5184a42e45"))  # the committed fp and bnn++ cells
    fresh = _fresh(tmp_path, {"3ddd2be41a": round(fp + 0.10, 2), "5184a42e45": round(bnnpp - 1.54, 2)})
    out_file = tmp_path / "spread.json"
    rc, out, err = run_cli(capsys, "spread", "default", "--results", "results", "--results", fresh,
                           "--out", out_file)
    assert rc == 0, err
    spread = json.loads(out_file.read_text())
    assert spread["methods"]["fp"] | {"runs": None} == {"n": 2, "min": fp, "max": round(fp + 0.10, 2),
                                                        "range": 0.1, "mean": round(fp + 0.05, 2), "std": 0.071,
                                                        "runs": None}
    assert spread["command"].startswith("python -m bench spread default --results results")
    measured = tmp_path / "measured.json"
    measured.write_text(json.dumps({"methods": {m: {"n": 3, "min": 0, "max": 0.3, "range": 0.3, "std": 0.15}
                                                for m in ("fp", "bnn++")}}))
    rc, out, err = run_cli(capsys, "compare", "default", "--results", fresh, "--spread", measured)
    assert rc == 0, err
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
            for line in out.splitlines() if line.startswith("| ") and "reference" not in line}
    assert rows["fp"] == [f"{fp:.2f}", f"{fp + 0.10:.2f}", "+0.10", "0.00–0.30 (range 0.30, std 0.15, 3 runs)",
                          "yes"]
    assert rows["bnn++"][2:] == ["-1.54", "0.00–0.30 (range 0.30, std 0.15, 3 runs)", "NO"]
    assert rows["bc"][2:] == ["+0.00", "not measured", "—"]
    assert "1 of 2 methods within the measured run-to-run spread" in out


def test_committed_spread_covers_the_default_grid():
    spread = json.loads((ROOT / "results" / "spread" / "default.json").read_text())
    methods = {json.loads(p.read_text())["config"]["method"] for p in DEFAULT.glob("*.json")}
    assert set(spread["methods"]) == methods
    for stats in spread["methods"].values():
        assert stats["n"] >= 3 and stats["min"] <= stats["mean"] <= stats["max"]
