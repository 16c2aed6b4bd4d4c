"""Grid files: expansion, overrides, excludes, parents, stable run ids, shipped grids, bad input."""

from __future__ import annotations

import hashlib
import json
import textwrap

import pytest

import models

from bench.run import config as configs
from bench.errors import UserError
from bench.dispatch.grid import list_grids, load_grid


def write(tmp_path, text: str, name: str = "g.toml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


GRID = """
    description = "test"
    [defaults]
    model = "fmnist-mlp"
    epochs = 2
    [axes]
    method = ["fp", "bc", "bnn++"]
    seed = [0, 1]
    mode = ["e2e", "finetune"]
    [method."bnn++"]
    mu_end = 40
    lr = 0.01
    [mode.finetune]
    init = "parent"
    epochs = 1
    [[exclude]]
    method = ["bc", "bnn++"]
    mode = "e2e"
"""


def test_expansion_overrides_excludes_and_parents(tmp_path):
    grid = load_grid(write(tmp_path, GRID))
    assert grid.name == "g"
    # 3 methods x 2 seeds x 2 modes, minus 2 methods x 2 seeds in e2e
    assert len(grid.cells) == 8
    stages = grid.stages()
    assert [len(s) for s in stages] == [2, 6]
    fp_e2e = {c.config["seed"]: c.run_id for c in stages[0]}
    for cell in stages[1]:
        assert cell.config["mode"] == "finetune" and cell.config["epochs"] == 1
        assert cell.parent == fp_e2e[cell.config["seed"]]
        assert cell.config["init"] == f"run:{cell.parent}"
        if cell.config["method"] == "bnn++":
            assert cell.config["method_params"]["mu_end"] == 40 and cell.config["lr"] == 0.01
        else:
            assert cell.config["lr"] == 0.001


def test_run_ids_are_stable_and_distinct(tmp_path):
    a = load_grid(write(tmp_path, GRID))
    b = load_grid(write(tmp_path, GRID, "other.toml"))
    assert [c.run_id for c in a.cells] == [c.run_id for c in b.cells]
    assert len({c.run_id for c in a.cells}) == len(a.cells)
    assert all(c.run_id == configs.run_id(c.config) for c in a.cells)
    cfg = configs.resolve({"method": "bnn++"})
    assert configs.run_id(cfg) == configs.run_id(configs.resolve({"method": "bnn++", "method_params": {"mu_start": 5}}))
    assert configs.run_id(cfg) != configs.run_id(configs.resolve({"method": "bnn++", "seed": 1}))
    # a key added later (augment) is hashed only away from the value every earlier run used
    legacy = {k: v for k, v in cfg.items() if k not in configs.LATER_KEYS}
    text = json.dumps(legacy, sort_keys=True, separators=(",", ":"), default=str)
    assert configs.run_id(cfg) == hashlib.sha1(text.encode()).hexdigest()[:10]
    assert configs.run_id(configs.resolve({"method": "bnn++", "augment": False})) != configs.run_id(cfg)


@pytest.mark.parametrize("name", list_grids())
def test_every_shipped_grid_expands_and_validates(name):
    from bench import data

    grid = load_grid(name)
    assert grid.cells and grid.description
    for cell in grid.cells:
        assert configs.resolve({k: v for k, v in cell.config.items()}) == cell.config
        info = data.dataset_info(cell.config["dataset"], cell.config["data_options"])  # options valid
        assert cell.config["model"] in models.list_models()
        assert info.num_classes > 1


@pytest.mark.parametrize("text, message", [
    ("[axes]\nmethod = ['fp'\n", "g.toml: line 2: malformed TOML"),
    ("[axes]\nmethd = ['fp']\n", r"\[axes\]: unknown key 'methd'.*did you mean 'method'"),
    ("[defaults]\nepochs = 0\n[axes]\nmethod = ['fp']\n", "epochs must be a positive integer"),
    ("[axes]\nmethod = ['fp', 'bnn+++']\n", "unknown method 'bnn\\+\\+\\+'"),
    ("[axes]\nmethod = []\n", "non-empty list"),
    ("[axes]\nmethod = ['fp']\n[method.bc]\nlr = 1\n", "not on the method axis"),
    ("[axes]\nmethod = ['bc']\n[method.bc]\nrho = 1\n", "unknown key 'rho'"),
    ("[axes]\nmethod = ['bc']\nmode = ['finetune']\n[defaults]\ninit = 'parent'\n", "no fp e2e cell"),
    ("[axes]\nmethod = ['fp']\n[[exclude]]\nmethod = 'fp'\n", "no cells"),
    ("[axes]\nloader = ['magic']\n", "loader must be one of"),
    ("bogus = 1\n[axes]\nmethod = ['fp']\n", "unknown top-level key 'bogus'"),
])
def test_bad_grid_files_are_clear_errors(tmp_path, text, message):
    with pytest.raises(UserError, match=message) as err:
        load_grid(write(tmp_path, text))
    assert "g.toml" in str(err.value) or "no such" in str(err.value)


def test_unknown_grid_name_suggests_a_shipped_one():
    with pytest.raises(UserError, match="did you mean 'default'"):
        load_grid("defualt")


# --------------------------------------------------------------------------- bad input through the CLI
# Every bad grid gives exit status 2 and exactly one line on stderr, ``error: ...`` naming the file, both
# for `grid run --dry-run` and `grid status` (in-process: an uncaught exception fails the test).

def cli(capsys, tmp_path, *argv) -> tuple[int, str, str]:
    from bench.cli import main

    rc = main([*argv, "--workdir", str(tmp_path / "work"), "--results", str(tmp_path / "results")])
    out, err = capsys.readouterr()
    return rc, out, err


def assert_one_line_error(rc: int, err: str, filename: str, match: str = "") -> str:
    import re

    lines = err.splitlines()
    assert rc == 2, err
    assert "Traceback" not in err
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    assert filename in lines[0], err
    assert re.search(match, lines[0]), lines[0]
    return lines[0]


def assert_grid_commands_fail(capsys, tmp_path, path: str, filename: str, match: str = "") -> str:
    rc, _, err = cli(capsys, tmp_path, "grid", "run", path, "--dry-run")
    line = assert_one_line_error(rc, err, filename, match)
    rc, _, err = cli(capsys, tmp_path, "grid", "status", path)
    assert_one_line_error(rc, err, filename, match)
    return line


BNN = "[axes]\nmethod = ['bnn++']\n"


@pytest.mark.parametrize("text, message", [
    # axis values of the wrong shape
    ("[axes]\nmethod = [1, 2]\n", r"\[axes\]: method values must be strings \(a method name\), got 1"),
    ("[axes]\nmodel = [true]\n", r"\[axes\]: model values must be strings.*got true"),
    ("[axes]\ndataset = [{a = 1}]\n", r"\[axes\]: dataset values must be strings.*got \{a = 1\}"),
    ("[axes]\nmethod = [['fp']]\n", r"\[axes\]: method values must be strings.*got \[\"fp\"\]"),
    ("[axes]\nseed = [{a = 1}]\n", r"\[axes\]: seed values must be integers, got \{a = 1\}"),
    ("[axes]\nseed = [true]\n", r"\[axes\]: seed values must be integers, got true"),
    ("[axes]\nlr = [[0.1]]\n", r"\[axes\]: lr values must be numbers, got \[0.1\]"),
    ("[axes]\naugment = [1]\n", r"\[axes\]: augment values must be true or false, got 1"),
    ("[axes]\ndata_options = [3]\n", r"\[axes\]: data_options values must be tables, got 3"),
    ("[axes]\npolicy = [[1]]\n", r"\[axes\]: policy values must be strings \(a preset name\) or tables"),
    ("[axes]\nmethod = 'fp'\n", r"\[axes\] method must be a non-empty list"),
    ("[defaults]\nmodel = 3\n[axes]\nseed = [0]\n", r"\[defaults\]: model must be a string.*got 3"),
    ("[defaults]\nstep_milestones = 0.5\n[axes]\nseed = [0]\n", r"step_milestones must be an array of numbers"),
    # method parameters of the wrong type, per value and in method_params tables
    (BNN + "[method.\"bnn++\"]\nmu_end = \"abc\"\n", r"\[method\.\"bnn\+\+\"\]: mu_end must be a number, got \"abc\""),
    (BNN + "[method.\"bnn++\"]\nmu_end = true\n", r"\[method\.\"bnn\+\+\"\]: mu_end must be a number, got true"),
    (BNN + "[method.\"bnn++\"]\nmu_end = [1]\n", r"\[method\.\"bnn\+\+\"\]: mu_end must be a number, got \[1\]"),
    (BNN + "[method.\"bnn++\"]\nscale = 1\n", r"\[method\.\"bnn\+\+\"\]: scale must be a string, got 1"),
    (BNN + "[method.\"bnn++\"]\nmethod_params = [1]\n", r"\[method\.\"bnn\+\+\"\]: method_params must be a table"),
    (BNN + "[method.\"bnn++\"]\nmethod_params = {mu_end = \"x\"}\n",
     r"\[method\.\"bnn\+\+\"\]: method_params\.mu_end must be a number, got \"x\""),
    (BNN + "[defaults]\nmethod_params = {mu_end = \"abc\"}\n",
     r"\[defaults\]: method_params\.mu_end must be a number, got \"abc\""),
    ("[defaults]\nmethod = 'bnn++'\n[axes]\nmethod_params = [{mu_end = true}]\n",
     r"\[axes\]: method_params\.mu_end must be a number, got true"),
    (BNN + "[method]\n\"bnn++\" = 3\n", r"\[method\]: \"bnn\+\+\" must be a table of overrides"),
    ("[axes]\nseed = [0]\n[seed]\n0 = 1\n", r"\[seed\]: \"0\" must be a table of overrides"),
    ("[axes]\nmethod = ['bnnpp']\n[method.bnnpp]\nmu = 1\n", r"\[method\.bnnpp\]: unknown method 'bnnpp'"),
    # top-level keys
    ("max_cells = 'x'\n[axes]\nseed = [0]\n", r"max_cells must be a positive integer, got \"x\""),
    ("max_cells = -1\n[axes]\nseed = [0]\n", r"max_cells must be a positive integer, got -1"),
    ("max_cells = 0\n[axes]\nseed = [0]\n", r"max_cells must be a positive integer, got 0"),
    ("max_cells = true\n[axes]\nseed = [0]\n", r"max_cells must be a positive integer, got true"),
    ("max_cells = 1.5\n[axes]\nseed = [0]\n", r"max_cells must be a positive integer, got 1.5"),
    ("description = 3\n[axes]\nseed = [0]\n", r"description must be a string, got 3"),
    ("gpu_hours = 'many'\n[axes]\nseed = [0]\n", r"gpu_hours must be a number ≥ 0, got \"many\""),
    ("name = ['x']\n[axes]\nseed = [0]\n", r"name must be a string"),
    ("axes = [1]\n", r"\[axes\] must be a table"),
    ("defaults = 1\n", r"\[defaults\] must be a table"),
    # exclude rules
    ("exclude = 3\n[axes]\nmethod = ['fp']\n", r"exclude must be an array of tables"),
    ("exclude = [1]\n[axes]\nmethod = ['fp']\n", r"exclude must be an array of tables"),
    ("[axes]\nmethod = ['fp']\n[[exclude]]\nmethod = {a = 1}\n", r"\[\[exclude\]\]: method values must be strings"),
    ("[axes]\nmethod = ['fp']\n[[exclude]]\nmethod = [1]\n", r"\[\[exclude\]\]: method values must be strings"),
    # already one line before: syntax error, every cell excluded, unknown method parameter
    ("[axes\n", r"line 1: malformed TOML"),
    ("[axes]\nmethod = ['fp']\n[[exclude]]\nmethod = 'fp'\n", r"no cells"),
    (BNN + "[defaults]\nmethod_params = {rho = 1}\n", r"has no parameter 'rho'"),
])
def test_bad_grid_inputs_are_one_line_errors(capsys, tmp_path, text, message):
    path = write(tmp_path, text)
    assert_grid_commands_fail(capsys, tmp_path, path, "g.toml", message)


def test_method_parameter_shapes_follow_the_method_declaration(capsys, tmp_path):
    import uuid

    import methods

    name = f"flagged-{uuid.uuid4().hex[:6]}"

    @methods.register_method(name)
    class Flagged(methods.Method):
        schedules = {"beta": (1.0, 2.0)}
        constants = {"flag": True, "lq": "linear", "k": 2.0}

    for table, message in [("flag = 1", "flag must be true or false, got 1"), ("lq = 1", "lq must be a string, got 1"),
                           ("k = 'x'", 'k must be a number, got "x"'), ("beta_end = false", "beta_end must be a number")]:
        path = write(tmp_path, f"[axes]\nmethod = ['{name}']\n[method.{name}]\n{table}\n")
        line = assert_grid_commands_fail(capsys, tmp_path, path, "g.toml")
        assert f"[method.{name}]: {message}" in line


@pytest.mark.parametrize("filename", ["..toml", ".toml", ".hidden.toml", "a b.toml", "g@1.toml", "é.toml"])
def test_grid_names_that_are_not_safe_folder_names_are_refused(capsys, tmp_path, filename):
    path = write(tmp_path, "[axes]\nmethod = ['fp']\n", filename)
    line = assert_grid_commands_fail(capsys, tmp_path, path, filename, r"grid name .* folder name")
    assert "A-Za-z0-9._+-" in line
    assert not (tmp_path / "results").exists() and not (tmp_path / "work").exists()


@pytest.mark.parametrize("filename", ["ok.toml", "paper-cifar_2.toml", "v1.2+x.toml"])
def test_safe_grid_names_are_accepted(tmp_path, filename):
    assert load_grid(write(tmp_path, "[axes]\nmethod = ['fp']\n", filename)).name == filename[:-5]


def test_unreadable_and_missing_grid_files_are_one_line_errors(capsys, tmp_path, monkeypatch):
    import pathlib

    (tmp_path / "dir.toml").mkdir()
    assert_grid_commands_fail(capsys, tmp_path, str(tmp_path / "dir.toml"), "dir.toml", "no such file")
    path = write(tmp_path, "[axes]\nmethod = ['fp']\n")

    def denied(self):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(pathlib.Path, "read_bytes", denied)  # chmod 000 does not stop root
    assert_grid_commands_fail(capsys, tmp_path, path, "g.toml", r"cannot read.*Permission denied")


def test_boolean_axis_values_take_their_toml_spelling_in_overrides(tmp_path):
    grid = load_grid(write(tmp_path, "[axes]\naugment = [true, false]\n[augment.true]\nepochs = 1\n"))
    assert {c.config["augment"]: c.config["epochs"] for c in grid.cells} == {True: 1, False: 4}


# --------------------------------------------------------------------------- size limit
HUGE = "[axes]\nseed = [{seeds}]\nlr = [{lrs}]\n"


def test_a_huge_grid_is_refused_before_expansion(capsys, tmp_path, monkeypatch):
    import tracemalloc

    monkeypatch.delenv("PROXBENCH_MAX_CELLS", raising=False)
    seeds = ", ".join(str(i) for i in range(10_000))
    lrs = ", ".join(f"{(i + 1) * 1e-6:g}" for i in range(10_000))
    path = write(tmp_path, HUGE.format(seeds=seeds, lrs=lrs))
    tracemalloc.start()
    try:
        rc, _, err = cli(capsys, tmp_path, "grid", "run", path, "--dry-run")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    line = assert_one_line_error(rc, err, "g.toml", r"100,000,000 cells")
    assert peak < 50 * 2**20, f"peak {peak / 2**20:.0f} MB: the grid was expanded before the size check"
    assert "seed 10000 × lr 10000" in line and "limit of 10,000" in line
    assert "max_cells" in line and "PROXBENCH_MAX_CELLS" in line


SMALL = "[axes]\nmethod = ['fp', 'bc', 'bnn']\nseed = [0, 1]\n"  # 6 cells


def test_max_cells_in_the_grid_file_and_the_environment(capsys, tmp_path, monkeypatch):
    monkeypatch.delenv("PROXBENCH_MAX_CELLS", raising=False)
    assert len(load_grid(write(tmp_path, SMALL)).cells) == 6
    assert len(load_grid(write(tmp_path, "max_cells = 6\n" + SMALL)).cells) == 6
    with pytest.raises(UserError, match=r"has 6 cells \(axes: method 3 × seed 2\), over the limit of 5 "
                                        r"\(max_cells in the grid file\)"):
        load_grid(write(tmp_path, "max_cells = 5\n" + SMALL))
    monkeypatch.setenv("PROXBENCH_MAX_CELLS", "5")
    with pytest.raises(UserError, match=r"over the limit of 5 \(PROXBENCH_MAX_CELLS\)"):
        load_grid(write(tmp_path, SMALL))
    # the grid file's max_cells wins over the environment (a grid known to be big says so itself)
    assert len(load_grid(write(tmp_path, "max_cells = 100\n" + SMALL)).cells) == 6
    monkeypatch.setenv("PROXBENCH_MAX_CELLS", "100")
    assert len(load_grid(write(tmp_path, SMALL)).cells) == 6
    monkeypatch.setenv("PROXBENCH_MAX_CELLS", "")  # empty: unset, the default applies
    assert len(load_grid(write(tmp_path, SMALL)).cells) == 6
    # the limit applies to the product of the axis lengths, an upper bound of the cells left after excludes
    excluded = "max_cells = 5\n" + SMALL + "[[exclude]]\nmethod = 'bc'\n"
    with pytest.raises(UserError, match=r"up to 6 cells"):
        load_grid(write(tmp_path, excluded))
    for bad in ("abc", "0", "-3", "1.5", "1e3"):
        monkeypatch.setenv("PROXBENCH_MAX_CELLS", bad)
        rc, _, err = cli(capsys, tmp_path, "grid", "run", write(tmp_path, SMALL), "--dry-run")
        assert_one_line_error(rc, err, "g.toml", r"PROXBENCH_MAX_CELLS must be a positive integer")


def test_grid_cells_are_listed_once_each_in_axis_order(tmp_path):
    with pytest.raises(UserError, match=r"\[axes\] method lists \"fp\" more than once \(values 1 and 3"):
        load_grid(write(tmp_path, "[axes]\nmethod = ['fp', 'bc', 'fp']\nseed = [1, 0, 1]\n"))  # duplicates: refused
    grid = load_grid(write(tmp_path, "[axes]\nmethod = ['fp', 'bc']\nseed = [1, 0]\n"))
    assert [c.label for c in grid.cells] == ["method=fp, seed=1", "method=fp, seed=0", "method=bc, seed=1",
                                             "method=bc, seed=0"]
