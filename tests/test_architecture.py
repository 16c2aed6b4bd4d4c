"""The shape of the code: every module imports on its own, no import cycles (lazy imports included), arrows
between the packages of ``bench`` only point down, no private names used across modules, no module over 350
lines in ``bench``.

The import graph is read from the source (``ast``), so a cycle hidden in a function-level import counts too.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("bench", "methods", "models")
MAX_LINES = 350

# Each layer may import the layers below it, never one above: (layer, module-name prefixes).
LAYERS = (
    ("leaves", ("bench.errors", "bench.atomic", "bench.registry", "bench.tomlfile")),
    ("data", ("bench.data",)),
    ("run", ("bench.run",)),
    ("infer", ("bench.infer",)),
    ("dispatch", ("bench.dispatch",)),
    ("perf", ("bench.perf",)),
    ("report", ("bench.report",)),
    ("commands", ("bench.cli", "bench.describe", "bench.__main__", "bench")),
)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            found[module_name(path)] = path
    return found


MODULES = project_modules()
# Parsed once, when the test module is collected (ast.parse later in a long session can trip a CPython 3.11
# bug: "AST constructor recursion depth mismatch").
TREES = {module: ast.parse(path.read_text(), str(path)) for module, path in MODULES.items()}


def _resolve(name: str) -> str | None:
    """The project module an import of ``name`` loads (a name inside a module resolves to the module)."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(module: str) -> list[tuple[str, list[str], int]]:
    """(imported module, names taken from it, line) for every import statement, at any depth."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(TREES[module]):
        if isinstance(node, ast.Import):
            found += [(alias.name, [], node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                if submodule in MODULES:
                    found.append((submodule, [], node.lineno))
                else:
                    found.append((base, [alias.name], node.lineno))
    return found


def import_graph() -> dict[str, set[str]]:
    graph = {}
    for module in MODULES:
        edges = {_resolve(target) for target, _, _ in imports_of(module)}
        graph[module] = {e for e in edges if e and e != module and not MODULES[e].name == "__init__.py"}
    return graph


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


def layer_of(module: str) -> int | None:
    best = None
    for rank, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if module == prefix or module.startswith(prefix + "."):
                if best is None or len(prefix) > best[1]:
                    best = (rank, len(prefix))
    return None if best is None else best[0]


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_no_import_cycles():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_bench_packages_only_import_downwards():
    wrong = []
    for module, targets in import_graph().items():
        here = layer_of(module)
        for target in targets:
            there = layer_of(target)
            if here is not None and there is not None and there > here:
                wrong.append(f"{module} ({LAYERS[here][0]}) imports {target} ({LAYERS[there][0]})")
    assert not wrong, "\n".join(wrong)


def test_no_private_names_across_modules():
    wrong = []
    for module in MODULES:
        aliases = {}
        for target, names, line in imports_of(module):
            if _resolve(target) is None:
                continue
            wrong += [f"{module}:{line} imports {target}.{n}" for n in names if n.startswith("_")]
        tree = TREES[module]
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for alias in node.names:
                    full = alias.name if isinstance(node, ast.Import) else f"{node.module}.{alias.name}"
                    if full in MODULES and full != module:
                        aliases[alias.asname or alias.name.split(".")[0]] = full
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                    and node.attr.startswith("_") and not node.attr.startswith("__")):
                wrong.append(f"{module}:{node.lineno} uses {aliases[node.value.id]}.{node.attr}")
    assert not wrong, "\n".join(wrong)


def test_bench_modules_are_small():
    sizes = {m: len(p.read_text().splitlines()) for m, p in MODULES.items() if m.startswith("bench")}
    assert max(sizes.values()) <= MAX_LINES, {m: n for m, n in sizes.items() if n > MAX_LINES}


def test_every_module_imports_on_its_own():
    """Each module imported first, in a fresh set of project modules (one interpreter, so torch loads once)."""
    script = (
        "import importlib, sys\n"
        f"names = {sorted(m for m in MODULES if m != 'bench.__main__')!r}\n"
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
    paths = MODULES.items() if package != "tests" else [(p.name, p) for p in (ROOT / "tests").glob("*.py")]
    wrong = [m for m, p in paths if (m.split(".")[0] == package or package == "tests")
             and "DESIGN" in p.read_text().replace('"DESIGN"', "")]
    assert not wrong, wrong
