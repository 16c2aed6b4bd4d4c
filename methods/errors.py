"""``MethodError``: the user-facing error of the ``methods`` package (``methods.MethodError``), in a module of
its own so that every module of the package (the kernels' settings check too) can raise it without cycles.
It is a ``bench.errors.UserError`` (the one user-error type, on the ground floor below ``methods``)."""

from bench.errors import UserError


class MethodError(UserError, ValueError):
    """A user-facing error about methods: unknown key, unknown parameter, bad value, bad plugin or setting."""
