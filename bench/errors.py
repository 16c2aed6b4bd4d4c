"""User-facing errors: the CLI prints their message on one line to stderr and exits non-zero.

``bench.cli.main`` reports these and ``OSError`` as ``error: ...`` (exit status 2), and any other exception as
``internal error: ...`` (exit status 1); ``python -m bench --debug`` re-raises instead.
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input from the user (config, file, option): reported without a traceback."""


def user_error_types() -> tuple[type[BaseException], ...]:
    """Every exception type the CLI reports as one clear line (imports the registries lazily)."""
    from methods import MethodError
    from models import ModelError

    return (UserError, MethodError, ModelError)
