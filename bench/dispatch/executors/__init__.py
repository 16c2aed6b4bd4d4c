"""The executors of ``grid run``: the interface and registry (``base``) and the built-in ones, each in its own
module: ``local`` (subprocesses on this machine), ``debug`` (in this process), ``slurm`` (job arrays on a
SLURM cluster). Importing this package registers them."""

from bench.dispatch.executors.base import (
    Batch,
    Executor,
    create_executor,
    get_executor,
    list_executors,
    register_executor,
)
# registers the built-in executors, in this order
from bench.dispatch.executors import local as local  # noqa: E402
from bench.dispatch.executors import debug as debug  # noqa: E402
from bench.dispatch.executors import slurm as slurm  # noqa: E402

__all__ = ["Batch", "Executor", "create_executor", "get_executor", "list_executors", "register_executor"]
