"""The README's "Add a method" and "Add a dataset" snippets run exactly as printed; plugins load by --plugin
and entry point."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import torch
from conftest import ROOT, TESTS


def readme_blocks(section: str) -> tuple[str, str]:
    """(python code, shell command) of a README section."""
    text = (ROOT / "README.md").read_text()
    body = text.split(f"## {section}", 1)[1].split("\n## ", 1)[0]
    python = re.findall(r"```python\n(.*?)```", body, re.S)[0]
    shell = re.findall(r"```bash\n(.*?)```", body, re.S)[0].strip()
    return python, shell


def env_with(path: Path) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(path), str(ROOT), env.get("PYTHONPATH", "")])
    return env


def run_readme_snippet(tmp_path: Path, section: str, module: str) -> tuple[str, dict]:
    """The README section's code written to ``MODULE.py``, its command run as printed in ``tmp_path`` (with
    this interpreter): (the command, the ad-hoc run record it wrote)."""
    code, command = readme_blocks(section)
    (tmp_path / f"{module}.py").write_text(code)
    argv = [sys.executable] + command.split()[2:]  # 'PYTHONPATH=. python' -> this interpreter, same argv
    out = subprocess.run(argv, cwd=tmp_path, env=env_with(tmp_path), capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    (record_file,) = (tmp_path / "work" / "results" / "runs" / "adhoc").glob("*.json")  # ad hoc: under work/
    return command, json.loads(record_file.read_text())


def test_readme_add_a_method_snippet_runs_as_printed(tmp_path):
    command, record = run_readme_snippet(tmp_path, "Add a method", "my_methods")
    assert command.startswith("PYTHONPATH=. python -m bench")
    assert record["config"]["method"] == "tanh-ste"
    assert record["config"]["method_params"]["beta_end"] == 20
    assert record["status"] == "done" and record["final"]["acc"] > 30  # learns well above chance (10%)


def test_the_readme_plugin_is_the_one_every_executor_runs():
    """tests/plugin_methods.py is the README's "Add a method" code, character for character: the grid tests run it
    under every executor (tests/test_dispatch.py: local and debug; tests/test_slurm_dispatch.py: slurm)."""
    code, _ = readme_blocks("Add a method")
    assert code == (TESTS / "plugin_methods.py").read_text()
    import methods
    import plugin_methods  # noqa: F401  (registers the README's tanh-ste)

    method = methods.create_method("tanh-ste")
    assert method.fusable and not method.uses_lr  # fusable by default: no flag to remember
    assert "import methods\n" in code and "from methods" not in code  # imports only from methods
    method.set_progress(0.5)
    assert method.tensors.beta.item() == 5.5  # F and B' read the schedule as a tensor, not a float


def test_plugin_listed_by_cli(tmp_path):
    code, _ = readme_blocks("Add a method")
    (tmp_path / "my_methods.py").write_text(code)
    out = subprocess.run([sys.executable, "-m", "bench", "--plugin", "my_methods", "methods"], cwd=tmp_path,
                         env=env_with(tmp_path), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "tanh-ste" in out.stdout and "tanh(βx)" in out.stdout


def test_missing_plugin_is_one_clear_error(tmp_path):
    out = subprocess.run([sys.executable, "-m", "bench", "--plugin", "no_such_module", "methods"], cwd=tmp_path,
                         env=env_with(tmp_path), capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and out.stderr.startswith("error: cannot import plugin module 'no_such_module'")
    assert "Traceback" not in out.stderr


def test_entry_point_plugin(tmp_path):
    """A distribution that declares a proxbench.methods entry point is loaded without --plugin."""
    (tmp_path / "ep_methods.py").write_text(
        "import methods\n\n@methods.register_method('ep-sign')\nclass EpSign(methods.Method):\n"
        "    traits = methods.Traits(identity_backward=True)\n    def F(self, x):\n        return methods.sign(x)\n")
    dist = tmp_path / "ep_methods-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: ep-methods\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[proxbench.methods]\nep = ep_methods\n")
    out = subprocess.run([sys.executable, "-m", "bench", "methods", "ep-*"], cwd=tmp_path, env=env_with(tmp_path),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "ep-sign" in out.stdout


def test_readme_add_a_dataset_snippet_runs_as_printed(tmp_path):
    """The "Add a dataset" class registers, is listed, and trains by name through --plugin."""
    command, record = run_readme_snippet(tmp_path, "Add a dataset", "my_datasets")
    assert command.startswith("PYTHONPATH=. python -m bench --plugin my_datasets run --dataset stripes")
    assert record["config"]["dataset"] == "stripes" and record["config"]["subset"] == 1024
    assert record["status"] == "done" and record["final"]["acc"] > 75  # learns well above chance (50%)
    listed = subprocess.run([sys.executable, "-m", "bench", "--plugin", "my_datasets", "datasets"], cwd=tmp_path,
                            env=env_with(tmp_path), capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0 and "| stripes " in listed.stdout and "1×28×28" in listed.stdout


def test_plugin_dataset_is_a_registry_entry(tmp_path, monkeypatch):
    """In process: the README's class is listed after the built-ins, served by every array loader, and an
    unknown name still gets the close-match error."""
    import bench.data as data
    from bench.data import registry
    from bench.errors import UserError

    code, _ = readme_blocks("Add a dataset")
    (tmp_path / "my_datasets_inproc.py").write_text(code)
    monkeypatch.syspath_prepend(str(tmp_path))
    with registry.DATASETS.scoped():  # unregistered afterwards
        import importlib

        importlib.import_module("my_datasets_inproc")
        assert data.list_datasets()[-1] == "stripes" and data.list_datasets()[0] == data.DEFAULT_DATASET
        info = data.dataset_info("stripes")
        assert info.shape == (1, 28, 28) and info.num_classes == 2
        batches = {}
        for kind in ("memory", "torch"):
            loader = data.build_loader("stripes", "test", loader=kind, batch_size=64, train=False, subset=128,
                                       num_workers=0)
            batches[kind] = torch.cat([x for x, _ in loader])
        assert torch.equal(batches["memory"], batches["torch"])
        try:
            data.dataset_info("stripe")
        except UserError as exc:
            assert "did you mean 'stripes'" in str(exc)
        else:
            raise AssertionError("unknown dataset accepted")
