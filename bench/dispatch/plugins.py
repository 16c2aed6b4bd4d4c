"""Plugin modules (``--plugin``) in job processes: a job may start in another folder or on another node, so
each imported plugin module travels as ``(module, import root)`` (``plugin_specs``) and the job puts the root
on ``sys.path`` before importing it (``import_plugins``); a method registered by a plugin then works in every
executor.
"""

from __future__ import annotations

import sys
from pathlib import Path


def plugin_specs(modules) -> tuple[tuple[str, str | None], ...]:
    """``(module, import root)`` for each imported plugin module: the folder a job process must put on
    ``sys.path`` to import it (None for an installed module), since a job may start elsewhere."""
    specs = []
    for name in modules:
        module = sys.modules.get(name)
        origin = getattr(module, "__file__", None)
        root = None
        if origin:
            path = Path(origin).resolve()
            depth = name.count(".") + (1 if path.name == "__init__.py" else 0)
            root = str(path.parents[depth])
        specs.append((name, root))
    return tuple(specs)


def import_plugins(specs) -> None:
    """Import the plugin modules of ``plugin_specs`` in a job process (their roots go on sys.path)."""
    import methods

    for _, root in specs:
        if root and root not in sys.path:
            sys.path.append(root)
    methods.load_plugins([name for name, _ in specs])
