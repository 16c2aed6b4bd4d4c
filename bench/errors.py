"""User-facing errors: the CLI prints their message on one line to stderr and exits non-zero.

``bench.cli.main`` reports these and ``OSError`` as ``error: ...`` (exit status 2), and any other exception as
``internal error: ...`` (exit status 1); ``python -m bench --debug`` re-raises instead.
"""

from __future__ import annotations

import re


class UserError(Exception):
    """Bad input from the user (config, file, option): reported without a traceback. The one user-error type:
    ``methods.MethodError`` and ``models.ModelError`` subclass it (and ``ValueError``)."""


VALUE_CHARS = 80  # a quoted value in a message is cut to this many characters, with an ellipsis
TOKEN_CHARS = 200  # an unquoted run of non-blank characters longer than this is cut to VALUE_CHARS too
LINE_CHARS = 2000  # and the whole line to this many


def one_line(text: str) -> str:
    """``text`` with its lines joined by single spaces (a message fit for one line of stderr), and every
    long user value in it cut (the one place the CLI's message lines are built): a quoted word (no blanks)
    over ``VALUE_CHARS`` characters and any word over ``TOKEN_CHARS`` keep their first ``VALUE_CHARS``
    and an ellipsis, and the line keeps its first ``LINE_CHARS``, so a 5 MB name is never echoed."""
    line = " ".join(part.strip() for part in str(text).splitlines() if part.strip())
    line = re.sub(r"(['\"])([^'\"\s]{%d,})\1" % (VALUE_CHARS + 1),
                  lambda m: f"{m[1]}{m[2][:VALUE_CHARS]}…{m[1]}", line)
    line = re.sub(r"\S{%d,}" % (TOKEN_CHARS + 1), lambda m: m[0][:VALUE_CHARS] + "…", line)
    return line if len(line) <= LINE_CHARS else line[:LINE_CHARS] + f"… ({len(line) - LINE_CHARS} more characters)"


def describe_os_error(exc: OSError) -> str:
    """'PATH: reason' (or 'PATH -> PATH2: reason' for a rename) from an OSError."""
    reason = exc.strerror or one_line(str(exc)) or type(exc).__name__
    if exc.filename is not None and exc.filename2 is not None:
        return f"{exc.filename} -> {exc.filename2}: {reason}"
    if exc.filename is not None:
        return f"{exc.filename}: {reason}"
    return reason
