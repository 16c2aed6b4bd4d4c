"""One registry for every extension point: methods, activation quantizers, models, datasets, loaders and
executors are each a ``Registry`` of entries by name.

This module is on the ground floor of the import graph (with ``bench.errors`` and ``bench.plugins``; the
``bench`` package's ``__init__`` imports nothing), so ``methods`` and ``models``, which sit below the runner,
use it without importing the runner. It imports nothing else from the project.

Rules, the same for every kind:

- ``register(name)`` is the class decorator (it checks the class subclasses ``base``, then sets
  ``cls.<attribute> = name``); ``add(name, entry, module)`` registers any other entry (a model's
  ``ModelInfo``). A name held by an entry of another module is an ``error`` naming both modules; the same
  module registering it again (a reload) replaces its entry.
- ``names(pattern)`` lists the names matching an fnmatch pattern, in registration order (``sort=True``:
  sorted); ``get(name)`` returns the entry, or raises the one-line ``unknown KIND 'NAME'; did you mean
  'X'? (valid: ...)``. Both first load the installed plugins' entry points (``bench.plugins``), unless
  the registry is made with ``autoload=False``.
- ``is_builtin(name)``: registered by the project's own packages, not by a plugin.
"""

from __future__ import annotations

import contextlib
import difflib
import fnmatch
from typing import Callable, Generic, Iterator, TypeVar

from bench import plugins
from bench.errors import UserError

E = TypeVar("E")
BUILTIN_PACKAGES = ("methods", "models", "bench")  # an entry from any other module is a plugin's


def close_match_hint(name, valid) -> str:
    """``; did you mean 'X'?`` for the valid name closest to ``name`` (difflib ratio ≥ 0.5), or ''."""
    match = difflib.get_close_matches(str(name), [str(v) for v in valid], n=1, cutoff=0.5)
    return f"; did you mean {match[0]!r}?" if match else ""


def unknown_name(kind: str, name, valid, error: type[Exception] = UserError) -> Exception:
    """``unknown KIND 'NAME'; did you mean 'X'? (valid: ...)`` as one line of ``error``."""
    valid = [str(v) for v in valid]
    return error(f"unknown {kind} '{name}'{close_match_hint(name, valid)} (valid: {', '.join(valid)})")


class Registry(Generic[E]):
    """Entries of one ``kind`` by name (see the module docstring for the rules).

    ``base``: the class a registered class must subclass (``label`` names it in the refusal; may be set
    later with ``holds`` by the module defining it); ``error``: the exception type of the user-facing errors;
    ``attribute``: the class attribute ``register`` sets to the name; ``autoload=False``: lookups do not load
    the plugins' entry points first (a registry read before they may load)."""

    def __init__(self, kind: str, base: type | None = None, *, label: str | None = None,
                 error: type[Exception] = UserError, attribute: str = "name", sort: bool = False,
                 decorator: str | None = None, autoload: bool = True):
        self.kind, self.error, self.attribute, self.sort, self.autoload = kind, error, attribute, sort, autoload
        self.decorator = decorator or f"register_{kind}"
        self.base, self.label = None, None
        if base is not None:
            self.holds(base, label)
        self._entries: dict[str, E] = {}
        self._modules: dict[str, str] = {}

    def holds(self, base: type, label: str | None = None) -> None:
        """Every class registered from now on must subclass ``base``."""
        self.base, self.label = base, label or base.__name__

    def add(self, name: str, entry: E, module: str) -> E:
        """Register ``entry`` (defined in ``module``) under ``name``; refuse another module's taken name."""
        held = self._modules.get(name)
        if held is not None and held != module and self._entries[name] is not entry:
            old = self._entries[name]
            what = getattr(old, "__qualname__", None) or getattr(getattr(old, "builder", None), "__qualname__", "?")
            raise self.error(f"{self.kind} {name!r} is already registered by module {held!r} ({what}); "
                             f"module {module!r} cannot register it again: pick another name")
        self._entries[name] = entry
        self._modules[name] = module
        return entry

    def register(self, name: str) -> Callable[[E], E]:
        """Class decorator: ``cls.<attribute> = name`` and register the class under ``name``."""

        def decorator(cls):
            if not isinstance(cls, type) or (self.base is not None and not issubclass(cls, self.base)):
                raise TypeError(f"@{self.decorator}({name!r}) needs a subclass of {self.label}")
            self.add(name, cls, cls.__module__)
            setattr(cls, self.attribute, name)
            return cls

        return decorator

    def names(self, pattern: str = "*") -> list[str]:
        """The registered names matching ``pattern`` (fnmatch), in registration order or sorted."""
        if self.autoload:
            plugins.load_entry_points()
        found = [name for name in self._entries if fnmatch.fnmatchcase(name, pattern)]
        return sorted(found) if self.sort else found

    def get(self, name) -> E:
        """The entry of ``name``; an unknown name is one ``error`` line naming the valid ones."""
        if self.autoload:
            plugins.load_entry_points()
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise unknown_name(self.kind, name, self.names(), self.error) from None

    def __contains__(self, name) -> bool:
        return name in self._entries

    def is_builtin(self, name: str) -> bool:
        """Registered by the project's own packages (``BUILTIN_PACKAGES``), not by a plugin."""
        return self._modules.get(name, "").split(".")[0] in BUILTIN_PACKAGES

    def unregister(self, name: str) -> None:
        """Forget ``name`` (nothing if it is not registered)."""
        self._entries.pop(name, None)
        self._modules.pop(name, None)

    @contextlib.contextmanager
    def scoped(self, keep: Callable[[str], bool] | None = None) -> Iterator["Registry[E]"]:
        """Within the block, register freely (only the names ``keep`` accepts stay visible, when given);
        afterwards the registry is as it was."""
        saved = dict(self._entries), dict(self._modules)
        if keep is not None:
            for name in [n for n in self._entries if not keep(n)]:
                self.unregister(name)
        try:
            yield self
        finally:
            self._entries, self._modules = saved

