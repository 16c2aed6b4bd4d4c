"""The one plugin loader: third-party modules that register methods, activation quantizers, models, datasets,
loaders or executors.

A plugin is an ordinary module whose import registers its classes (``@methods.register_method``,
``@models.register_model``, ``@bench.data.register_dataset``, ...). It is loaded either by name
(``python -m bench --plugin my_module``, ``load_plugins(["my_module"])``) or, once per process, through an
installed distribution's entry point in the group of its kind: ``proxbench.methods``, ``proxbench.models``,
``proxbench.datasets``, ``proxbench.loaders``, ``proxbench.executors`` (``GROUPS``). Every registry's
lookups load the entry points first (``load_entry_points``), so an installed plugin needs no option.

A module that cannot be found, raises while it is imported, or calls ``sys.exit`` is one ``UserError`` line
naming it and what it raised (the CLI exits with status 2); a user error it raises itself (a registration
clash) passes through as it is. Ground floor: imports nothing else from the project but ``bench.errors``.
"""

from __future__ import annotations

import importlib
from importlib import metadata

from bench.errors import UserError

KINDS = ("methods", "models", "datasets", "loaders", "executors")
GROUPS = tuple(f"proxbench.{kind}" for kind in KINDS)
_loaded = False


def load_plugins(modules: list[str] | tuple[str, ...] = ()) -> None:
    """Import the plugin modules named (``--plugin``), then the entry points of every group (once)."""
    for module in modules:
        _import_plugin(module, lambda: importlib.import_module(module))
    load_entry_points()


def load_entry_points() -> None:
    """Load the installed entry points of every group in ``GROUPS``, the first time only."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for ep in installed_entry_points():
        _import_plugin(f"{ep.value} (entry point {ep.name!r})", ep.load)


def installed_entry_points(groups: tuple[str, ...] = GROUPS) -> list[metadata.EntryPoint]:
    """The installed distributions' entry points in ``groups`` (read from their metadata, nothing imported)."""
    return [ep for group in groups for ep in metadata.entry_points(group=group)]


def _import_plugin(label: str, load) -> None:
    try:
        load()
    except UserError:
        raise
    except ImportError as exc:
        raise UserError(f"cannot import plugin module {label!r}: {exc}") from None
    except SystemExit as exc:
        raise UserError(f"plugin module {label!r} called sys.exit({exc.code!r}) while being imported") from exc
    except Exception as exc:  # noqa: BLE001 - the plugin's bug, reported as such
        text = " ".join(str(exc).split())
        raise UserError(f"plugin module {label!r} raised {type(exc).__name__} while being imported"
                        + (f": {text}" if text else "")) from exc
