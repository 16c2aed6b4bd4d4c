"""The README's "Add a method" snippet runs exactly as printed; plugins load by --plugin and entry point."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from conftest import ROOT


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


def test_readme_add_a_method_snippet_runs_as_printed(tmp_path):
    code, command = readme_blocks("Add a method")
    (tmp_path / "my_methods.py").write_text(code)
    assert command.startswith("PYTHONPATH=. python -m bench")
    argv = [sys.executable] + command.split()[2:]  # 'PYTHONPATH=. python' -> this interpreter, same argv
    out = subprocess.run(argv, cwd=tmp_path, env=env_with(tmp_path), capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    (record_file,) = (tmp_path / "work" / "results" / "runs" / "adhoc").glob("*.json")  # ad hoc: under work/
    record = json.loads(record_file.read_text())
    assert record["config"]["method"] == "tanh-ste"
    assert record["config"]["method_params"]["beta_end"] == 20
    assert record["status"] == "done" and record["final"]["acc"] > 30  # learns well above chance (10%)


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
        "    identity_backward = True\n    def F(self, x):\n        return methods.sign(x)\n")
    dist = tmp_path / "ep_methods-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: ep-methods\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[proxbench.methods]\nep = ep_methods\n")
    out = subprocess.run([sys.executable, "-m", "bench", "methods", "ep-*"], cwd=tmp_path, env=env_with(tmp_path),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "ep-sign" in out.stdout
