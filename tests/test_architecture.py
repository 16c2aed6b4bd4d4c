"""The shape of the code: every module imports on its own, no import cycles (lazy imports included), arrows
between the layers (ground floor < methods < models < bench.data < bench.run < ... < the commands) only point
down, no private names used across modules, no module over 400 lines.

The import graph is read from the source (``ast``), so an import inside a function counts too, and it follows
Python's own rules: importing ``a.b.c`` (or a name from it) runs the ``__init__`` of ``a`` and of ``a.b``
first, so it is an arrow to each of those packages, and to whatever their ``__init__`` imports. The one arrow
dropped is to a package that contains the importing module: Python has already started that package before
any of its modules runs. The checks run on a ``Project`` read from a folder, so
``test_the_checks_catch_a_planted_cycle_and_an_upward_import`` can run them on a copy with planted faults and
show that they fail.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("bench", "methods", "models")
# One module, one screenful of ideas: a reader (and a reviewer) holds a module in mind at once, and a module
# that grows past this has started to hold two ideas that want their own names and their own tests.
MAX_LINES = 400

# Each layer may import the layers below it, never one above: (layer, exact module names, module-name prefixes).
# The ground floor is the error type, the registry and the plugin loader that every layer shares, and the
# ``bench`` package's ``__init__`` itself (which imports nothing), so ``methods`` and ``models`` stand on it.
LAYERS = (
    ("ground", ("bench", "bench.errors", "bench.atomic", "bench.registry", "bench.plugins", "bench.tomlfile"), ()),
    ("methods", (), ("methods",)),
    ("models", (), ("models",)),
    ("data", (), ("bench.data",)),
    ("run", (), ("bench.run",)),
    ("infer", (), ("bench.infer",)),
    ("dispatch", (), ("bench.dispatch",)),
    ("perf", (), ("bench.perf",)),
    ("report", (), ("bench.report",)),
    ("commands", ("bench.cli", "bench.describe", "bench.__main__", "bench.handlers", "bench.grid_cell"), ()),
)


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> int | None:
    """The rank of ``module``'s layer (an exact name first, else the longest matching prefix), or None."""
    best = None
    for rank, (_, exact, prefixes) in enumerate(LAYERS):
        if module in exact:
            return rank
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and (best is None or len(prefix) > best[1]):
                best = (rank, len(prefix))
    return None if best is None else best[0]


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as [a, b, ..., a], or None (iterative depth-first search with colours)."""
    colour = dict.fromkeys(graph, 0)
    for start in graph:
        if colour[start]:
            continue
        stack = [(start, iter(sorted(graph[start])))]
        path = [start]
        colour[start] = 1
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                colour[node] = 2
                stack.pop()
                path.pop()
            elif colour.get(child) == 1:
                return path[path.index(child):] + [child]
            elif colour.get(child) == 0:
                colour[child] = 1
                path.append(child)
                stack.append((child, iter(sorted(graph[child]))))
    return None


class Project:
    """The modules of ``PACKAGES`` under ``root``, parsed, and their import graph."""

    def __init__(self, root: Path):
        self.root = root
        self.paths = {module_name(root, p): p for package in PACKAGES for p in sorted((root / package).rglob("*.py"))}
        self.trees = {m: ast.parse(p.read_text(), str(p)) for m, p in self.paths.items()}

    def resolve(self, name: str) -> str | None:
        """The project module an import of ``name`` loads (a name inside a module resolves to the module)."""
        while name:
            if name in self.paths:
                return name
            name = name.rpartition(".")[0]
        return None

    def imports_of(self, module: str) -> list[tuple[str, list[str], int]]:
        """(imported module, names taken from it, line) for every import statement, at any depth."""
        package = module if self.paths[module].name == "__init__.py" else module.rpartition(".")[0]
        found = []
        for node in ast.walk(self.trees[module]):
            if isinstance(node, ast.Import):
                found += [(alias.name, [], node.lineno) for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(parent + ([base] if base else []))
                for alias in node.names:
                    submodule = f"{base}.{alias.name}"
                    if submodule in self.paths:
                        found.append((submodule, [], node.lineno))
                    else:
                        found.append((base, [alias.name], node.lineno))
        return found

    def graph(self) -> dict[str, set[str]]:
        """module -> the project modules importing it runs: each target and every package above it, less the
        packages that contain ``module`` itself (already started when it runs)."""
        graph = {}
        for module in self.paths:
            edges = set()
            for target, _, _ in self.imports_of(module):
                target = self.resolve(target)
                while target:
                    if target != module and not module.startswith(target + "."):
                        edges.add(target)
                    target = target.rpartition(".")[0]
            graph[module] = {e for e in edges if e in self.paths}
        return graph

    def cycle(self) -> str | None:
        """'import cycle: a -> b -> a', or None."""
        found = find_cycle(self.graph())
        return None if found is None else "import cycle: " + " -> ".join(found)

    def upward_imports(self) -> list[str]:
        """'a (layer) imports b (higher layer)' for every arrow that points up."""
        wrong = []
        for module, targets in sorted(self.graph().items()):
            here = layer_of(module)
            for target in sorted(targets):
                there = layer_of(target)
                if here is not None and there is not None and there > here:
                    wrong.append(f"{module} ({LAYERS[here][0]}) imports {target} ({LAYERS[there][0]})")
        return wrong

    def too_long(self) -> dict[str, int]:
        sizes = {m: len(p.read_text().splitlines()) for m, p in self.paths.items()}
        return {m: n for m, n in sorted(sizes.items()) if n > MAX_LINES}


PROJECT = Project(ROOT)  # parsed once, when the test module is collected (ast.parse late in a long session
# can trip a CPython 3.11 bug: "AST constructor recursion depth mismatch")


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_an_import_runs_the_packages_above_it(tmp_path):
    """``from methods.a import X`` is an arrow to ``methods.a`` and to ``methods`` (its ``__init__`` runs
    first, and what that imports), never to the importer's own package."""
    files = {"bench/__init__.py": "", "methods/__init__.py": "from . import a\n", "methods/a.py": "X = 1\n",
             "models/__init__.py": "from . import b\n", "models/b.py": "from methods.a import X\n"}
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(text)
    graph = Project(tmp_path).graph()
    assert graph == {"bench": set(), "methods": {"methods.a"}, "methods.a": set(), "models": {"models.b"},
                     "models.b": {"methods", "methods.a"}}
    assert "bench" in PROJECT.graph()["methods.errors"]  # the bench package's __init__ (it imports nothing)


def test_no_import_cycles():
    assert PROJECT.cycle() is None, PROJECT.cycle()


def test_every_module_has_a_layer():
    assert [m for m in PROJECT.paths if layer_of(m) is None] == []


def test_packages_only_import_downwards():
    wrong = PROJECT.upward_imports()
    assert not wrong, "\n".join(wrong)


def test_modules_are_small():
    assert PROJECT.too_long() == {}, f"modules over {MAX_LINES} lines: {PROJECT.too_long()}"


def test_the_checks_catch_a_planted_cycle_and_an_upward_import(tmp_path):
    """The checks above on a copy of the packages with two planted faults: ``import models`` in
    ``methods/binarize.py`` (a cycle through ``models``' ``__init__``, and ``methods`` importing a layer
    above it) and ``import bench.dispatch`` in ``bench/run/optim.py`` (the run layer importing dispatch)."""
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    for path, line in (("methods/binarize.py", "import models"), ("bench/run/optim.py", "import bench.dispatch")):
        text = (tmp_path / path).read_text()
        (tmp_path / path).write_text(text + f"\n\ndef planted():\n    {line}\n")
    planted = Project(tmp_path)
    cycle = planted.cycle()
    assert cycle is not None and "methods.binarize -> models" in cycle, cycle
    wrong = planted.upward_imports()
    assert "methods.binarize (methods) imports models (models)" in wrong, wrong
    assert "bench.run.optim (run) imports bench.dispatch (dispatch)" in wrong, wrong
    assert PROJECT.cycle() is None or "methods.binarize -> models" not in PROJECT.cycle()  # the original is not
    # and the size cap, on a module grown past it
    (tmp_path / "models" / "registry.py").write_text("x = 1\n" * (MAX_LINES + 1))
    assert Project(tmp_path).too_long()["models.registry"] == MAX_LINES + 1


def test_no_private_names_across_modules():
    wrong = []
    for module in PROJECT.paths:
        aliases = {}
        for target, names, line in PROJECT.imports_of(module):
            if PROJECT.resolve(target) is None:
                continue
            wrong += [f"{module}:{line} imports {target}.{n}" for n in names if n.startswith("_")]
        tree = PROJECT.trees[module]
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for alias in node.names:
                    full = alias.name if isinstance(node, ast.Import) else f"{node.module}.{alias.name}"
                    if full in PROJECT.paths and full != module:
                        aliases[alias.asname or alias.name.split(".")[0]] = full
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                    and node.attr.startswith("_") and not node.attr.startswith("__")):
                wrong.append(f"{module}:{node.lineno} uses {aliases[node.value.id]}.{node.attr}")
    assert not wrong, "\n".join(wrong)


def test_every_module_imports_on_its_own():
    """Each module imported first, in a fresh set of project modules (one interpreter, so torch loads once)."""
    script = (
        "import importlib, sys\n"
        f"names = {sorted(m for m in PROJECT.paths if m != 'bench.__main__')!r}\n"
        "failed = []\n"
        "for name in names:\n"
        "    for loaded in [m for m in sys.modules if m.split('.')[0] in ('bench', 'methods', 'models')]:\n"
        "        del sys.modules[loaded]\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception as exc:\n"
        "        failed.append(f'{name}: {type(exc).__name__}: {exc}')\n"
        "print('\\n'.join(failed))\n"
        "sys.exit(1 if failed else 0)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]


@pytest.mark.parametrize("package", PACKAGES + ("tests",))
def test_docstrings_stand_alone(package):
    """No module points at a design document outside the repository."""
    paths = PROJECT.paths.items() if package != "tests" else [(p.name, p) for p in (ROOT / "tests").glob("*.py")]
    wrong = [m for m, p in paths if (m.split(".")[0] == package or package == "tests")
             and "DESIGN" in p.read_text().replace('"DESIGN"', "")]
    assert not wrong, wrong
