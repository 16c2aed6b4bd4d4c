"""The run configuration's one schema (``bench.run.settings``): defaults, kinds, checks, flags and the kinds of a
method's parameters all come from it; a resolved config builds its method once."""

from __future__ import annotations

import re
import textwrap
import uuid

import pytest

import methods

from bench.cli import build_parser, main
from bench.dispatch.grid import load_grid
from bench.errors import UserError
from bench.run import config as configs
from bench.run import settings
from bench.run.model import build_model
from bench.run.reproduce import toml_value


def write_grid(tmp_path, text: str) -> str:
    path = tmp_path / "g.toml"
    path.write_text(textwrap.dedent(text))
    return str(path)


def test_every_default_passes_its_own_check_and_kind():
    for setting in settings.SETTINGS:
        assert setting.accepts(setting.default), setting.name
        assert setting.default is None or setting.kind.test(setting.default), setting.name
    assert list(configs.DEFAULTS) == [s.name for s in settings.SETTINGS]  # the record's key order
    assert configs.LATER_KEYS == {"augment": True, "latent_weight_decay": 0.0, "bn_reestimate": 0,
                                  "capture": "none", "fuse": False, "robustness": True}


def test_run_flags_take_their_type_and_help_from_the_settings():
    run = next(a for a in build_parser()._subparsers._group_actions[0].choices.items() if a[0] == "run")[1]
    flags = {a.dest: a for a in run._actions if getattr(a, "config_setting", None) is not None}
    assert tuple(flags) == settings.FLAG_KEYS
    for key, action in flags.items():
        setting = settings.BY_NAME[key]
        assert action.help == setting.help and action.type is setting.kind.type and action.default is None
    assert flags["epochs"].type is int and flags["lr"].type is float and flags["model"].type is None


def test_a_value_refused_by_the_settings_is_refused_by_resolve_with_its_description():
    for key, bad in [("epochs", 0), ("momentum", 1.0), ("seed", -1), ("optimizer", "sgdd"), ("augment", 1)]:
        setting = settings.BY_NAME[key]
        assert not setting.accepts(bad)
        with pytest.raises(UserError, match=f"^cfg: {key} must be {re.escape(setting.describe())}"):
            configs.resolve({key: bad}, "cfg")
    with pytest.raises(UserError, match="optimizer must be one of sgd, adam, adamw, got 'sgdd'; did you mean"):
        configs.resolve({"optimizer": "sgdd"}, "cfg")
    with pytest.raises(UserError, match="epochs must be at most 100000, got 100001"):
        configs.resolve({"epochs": 100_001}, "cfg")


def test_method_parameters_read_kinds_and_bounds_from_the_class():
    bnn = settings.method_parameters(methods.get_method_class("bnn++"))
    assert set(bnn) == set(methods.get_method_class("bnn++").valid_parameters())
    assert bnn["mu_end"].kind is settings.NUMBER and bnn["mu_end"].bound.describe() == "> 0"
    assert bnn["scale"].kind is settings.STRING and bnn["scale"].bound.choices == methods.bounds.SCALES
    fda = settings.method_parameters(methods.get_method_class("fda"))
    assert fda["act_schedule"].kind is settings.STRING  # the activation quantizer's own parameter


def test_grids_check_a_w1a1_methods_act_parameters_and_robustness_tables_by_their_kinds(tmp_path):
    grid = load_grid(write_grid(tmp_path, """
        [defaults]
        model = "resnet20-bireal"
        policy = "w1a1"
        dataset = "synthetic"
        robustness = {corruptions = ["contrast"], subset = 10}
        [axes]
        method = ["fda"]
        [method.fda]
        act_schedule = "geometric"
    """))
    (cell,) = grid.cells
    assert cell.config["method_params"]["act_schedule"] == "geometric"
    assert cell.config["robustness"]["subset"] == 10
    with pytest.raises(UserError, match=r"\[method\.fda\]: act_schedule must be a string, got 1"):
        load_grid(write_grid(tmp_path, "[axes]\nmethod = ['fda']\n[method.fda]\nact_schedule = 1\n"))


def test_the_method_is_built_once_per_run_and_never_shared_by_two_models(tmp_path, capsys):
    name = f"counted-{uuid.uuid4().hex[:6]}"
    built = []

    @methods.register_method(name)
    class Counted(methods.Method):
        schedules = {"beta": (1.0, 2.0)}  # elementwise (fusable) by default

        def __init__(self, **overrides):
            super().__init__(**overrides)
            built.append(self)

        def F(self, x):  # noqa: N802
            return methods.sign(x)

        def dB(self, x):  # noqa: N802
            return (x.abs() <= 1).to(x.dtype)

    tiny = {"model": "fmnist-mlp", "method": name, "dataset": "synthetic", "epochs": 1, "batch_size": 32,
            "data_options": {"in_chans": 1, "img_size": 8, "train_size": 64, "test_size": 32, "num_classes": 4},
            "model_kwargs": {"hidden": [16, 16]}, "robustness": False, "method_params": {"beta_end": 3.0}}
    try:
        cfg, method = configs.resolve_run(tiny)
        assert built == [method] and cfg["method_params"] == method.config()
        model = build_model(cfg, method=method, load_init=False)
        assert built == [method] and methods.get_method(model) is method
        again = build_model(cfg, load_init=False)  # no method given: one of its own, never the first model's
        assert len(built) == 2 and methods.get_method(again) is built[1]
        assert built[1].config() == method.config() == cfg["method_params"]
        assert type(cfg) is dict and configs.resolve(tiny) == cfg  # a plain dict: torch.save, json, run ids as before
        built.clear()
        settings_args = ["--set", f"data_options={toml_value(tiny['data_options'])}", "--set", "robustness=false",
                         "--set", "model_kwargs={hidden = [16, 16]}", "--param", "beta_end=3.0"]
        assert main(["run", "--model", "fmnist-mlp", "--method", name, "--dataset", "synthetic", "--epochs", "1",
                     "--batch-size", "32", "--workdir", str(tmp_path / "work"), *settings_args]) == 0
        assert len(built) == 1  # the run command: resolved, trained and recorded with one method
        assert configs.run_id(cfg) in capsys.readouterr().out
    finally:
        methods.registry.METHODS.unregister(name)
