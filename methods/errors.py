"""``MethodError``: the user-facing error of the ``methods`` package (``methods.MethodError``), and the
close-match hint of its messages, in a module of their own so that every module of the package (the kernels'
settings check too) can use them without cycles."""

import difflib


class MethodError(ValueError):
    """A user-facing error about methods: unknown key, unknown parameter, bad value, bad plugin or setting."""


def close_match_hint(name: str, valid: list[str]) -> str:
    """'; did you mean X?' for the closest valid name, or ''."""
    match = difflib.get_close_matches(name, valid, n=1, cutoff=0.5)
    return f"; did you mean {match[0]!r}?" if match else ""
