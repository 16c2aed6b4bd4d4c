"""Registries of the runner's extension points (datasets, loaders, executors), shaped like the method and
model registries: a class is registered under a name by a decorator, names are listed in registration order,
and an unknown name is one ``UserError`` line that lists the valid names and suggests the closest one."""

from __future__ import annotations

import difflib
from typing import Callable, Generic, TypeVar

from bench.errors import UserError

T = TypeVar("T", bound=type)


def unknown_name(kind: str, name, valid) -> UserError:
    """``unknown KIND 'NAME'; did you mean 'X'? (valid: ...)`` as a one-line ``UserError``."""
    valid = [str(v) for v in valid]
    close = difflib.get_close_matches(str(name), valid, n=1, cutoff=0.5)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return UserError(f"unknown {kind} '{name}'{hint} (valid: {', '.join(valid)})")


class Registry(Generic[T]):
    """Classes of one kind by name. ``register(name)`` is the class decorator (it sets ``cls.<attribute> =
    name``; a name taken by a class of another module is a ``UserError`` naming both modules, the same module
    registering it again replaces its class), ``names()`` lists them in registration order and
    ``get(name)`` returns the class or raises ``unknown_name``."""

    def __init__(self, kind: str, base: T, attribute: str = "name", base_label: str | None = None):
        self.kind, self.base, self.attribute = kind, base, attribute
        self.base_label = base_label or base.__name__
        self._classes: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(cls: T) -> T:
            if not (isinstance(cls, type) and issubclass(cls, self.base)):
                raise TypeError(f"@register_{self.kind}({name!r}) needs a subclass of {self.base_label}")
            existing = self._classes.get(name)
            if existing is not None and existing is not cls and existing.__module__ != cls.__module__:
                raise UserError(f"{self.kind} {name!r} is already registered by module {existing.__module__!r} "
                                f"({existing.__qualname__}); module {cls.__module__!r} cannot register it "
                                "again: pick another name")
            setattr(cls, self.attribute, name)
            self._classes[name] = cls
            return cls

        return decorator

    def names(self) -> list[str]:
        return list(self._classes)

    def get(self, name: str) -> T:
        try:
            return self._classes[name]
        except (KeyError, TypeError):
            raise unknown_name(self.kind, name, self.names()) from None
