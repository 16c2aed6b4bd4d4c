"""``MethodError``: the user-facing error of the ``methods`` package (``methods.MethodError``), in a module of
its own so that every module of the package (the kernels' settings check too) can raise it without cycles."""


class MethodError(ValueError):
    """A user-facing error about methods: unknown key, unknown parameter, bad value, bad plugin or setting."""
