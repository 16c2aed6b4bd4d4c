"""The one ``Registry`` (``bench.registry``) and the one plugin loader (``bench.plugins``): registration,
refusal of another module's name, close-match errors, patterns, built-in vs plugin, entry points per kind."""

from __future__ import annotations

import os
import subprocess
import sys
import types

import pytest

from bench import plugins
from bench.errors import UserError
from bench.registry import Registry, close_match_hint, unknown_name
from conftest import ROOT


class Base:
    pass


def make_class(name: str, module: str, base: type = Base) -> type:
    return types.new_class(name, (base,), exec_body=lambda ns: ns.update(__module__=module))


def test_register_get_names_and_the_close_match_error():
    reg = Registry("widget", Base, label="tests.Base")
    first, second = make_class("A", "pkg.a"), make_class("B", "pkg.b")
    assert reg.register("beta")(first) is first and first.name == "beta"
    reg.register("alpha")(second)
    assert reg.names() == ["beta", "alpha"] and reg.names("al*") == ["alpha"]
    assert Registry("widget", sort=True).names() == []
    assert reg.get("alpha") is second
    with pytest.raises(UserError) as err:
        reg.get("alpah")
    assert str(err.value) == "unknown widget 'alpah'; did you mean 'alpha'? (valid: beta, alpha)"
    with pytest.raises(UserError, match="unknown widget '\\['x'\\]'"):
        reg.get(["x"])  # unhashable: still the one-line error
    with pytest.raises(TypeError, match=r"@register_widget\('x'\) needs a subclass of tests.Base"):
        reg.register("x")(object)


def test_another_modules_name_is_refused_naming_both_modules():
    reg = Registry("widget", Base, error=KeyError)
    reg.register("w")(make_class("Mine", "pkg.one"))
    with pytest.raises(KeyError, match="widget 'w' is already registered by module 'pkg.one' \\(Mine\\); "
                                       "module 'plugin.two' cannot register it again: pick another name"):
        reg.register("w")(make_class("Theirs", "plugin.two"))
    again = make_class("Mine", "pkg.one")  # the same module again (a reload): replaces it
    reg.register("w")(again)
    assert reg.get("w") is again


def test_builtin_or_plugin_scoped_and_unregister():
    reg = Registry("widget", sort=True)
    reg.add("mine", object(), "methods.builtin")
    reg.add("theirs", object(), "my_plugin")
    assert reg.is_builtin("mine") and not reg.is_builtin("theirs") and not reg.is_builtin("absent")
    with reg.scoped(keep=reg.is_builtin):
        assert reg.names() == ["mine"]
        reg.add("temporary", object(), "x")
    assert reg.names() == ["mine", "theirs"]
    reg.unregister("theirs")
    reg.unregister("never-there")
    assert reg.names() == ["mine"] and "mine" in reg and "theirs" not in reg


def test_close_match_helpers():
    assert close_match_hint("bnnn", ["bc", "bnn", "pq"]) == "; did you mean 'bnn'?"
    assert close_match_hint("zzz", ["bc", "bnn"]) == ""
    err = unknown_name("format", "jgp", ["raw", "jpg"])
    assert isinstance(err, UserError) and str(err) == "unknown format 'jgp'; did you mean 'jpg'? (valid: raw, jpg)"


def test_every_user_error_is_one_type():
    import methods
    import models

    assert issubclass(methods.MethodError, UserError) and issubclass(methods.MethodError, ValueError)
    assert issubclass(models.ModelError, UserError) and issubclass(models.ModelError, ValueError)
    with pytest.raises(models.ModelError, match="unknown model 'vgg-smal'; did you mean 'vgg-small'"):
        models.model_info("vgg-smal")


def test_a_bad_plugin_module_is_one_user_error(tmp_path, monkeypatch):
    (tmp_path / "h25_broken_plugin.py").write_text("raise RuntimeError('boom')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(UserError, match="^plugin module 'h25_broken_plugin' raised RuntimeError while being "
                                        "imported: boom$"):
        plugins.load_plugins(["h25_broken_plugin"])
    with pytest.raises(UserError, match="^cannot import plugin module 'h25_not_there'"):
        plugins.load_plugins(["h25_not_there"])


@pytest.mark.parametrize("group, module, code, probe", [
    ("proxbench.models", "ep_models",
     "import models\nfrom torch import nn\n\n@models.register_model('ep-net', default_img_size=8)\n"
     "def ep_net(num_classes, in_chans, img_size, pretrained):\n    return nn.Flatten()\n",
     "import models; print(models.list_models('ep-*'), models.registry.MODELS.is_builtin('ep-net'))"),
    ("proxbench.datasets", "ep_datasets",
     "from bench.data import register_dataset\nfrom bench.data.arrays import ArrayDataset\n\n"
     "@register_dataset('ep-data')\nclass EpData(ArrayDataset):\n    pass\n",
     "import bench.data as d; print(d.list_datasets('ep-*'), d.registry.DATASETS.is_builtin('ep-data'))"),
], ids=["models", "datasets"])
def test_an_entry_point_of_each_kind_loads_at_the_first_lookup(tmp_path, group, module, code, probe):
    (tmp_path / f"{module}.py").write_text(code)
    dist = tmp_path / f"{module}-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(f"[{group}]\nep = {module}\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    out = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split("]")[1].strip() == "False" and "'ep-" in out.stdout  # listed, and a plugin's
