"""Grid files: expansion, overrides, excludes, parents, stable run ids, shipped grids, bad input."""

from __future__ import annotations

import hashlib
import json
import textwrap

import pytest

import models

from bench import config as configs
from bench.errors import UserError
from bench.grid import list_grids, load_grid


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
