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


def one_line(text: str) -> str:
    """``text`` with its lines joined by single spaces (a message fit for one line of stderr)."""
    return " ".join(line.strip() for line in str(text).splitlines() if line.strip())


def describe_os_error(exc: OSError) -> str:
    """'PATH: reason' (or 'PATH -> PATH2: reason' for a rename) from an OSError."""
    reason = exc.strerror or one_line(str(exc)) or type(exc).__name__
    if exc.filename is not None and exc.filename2 is not None:
        return f"{exc.filename} -> {exc.filename2}: {reason}"
    if exc.filename is not None:
        return f"{exc.filename}: {reason}"
    return reason
