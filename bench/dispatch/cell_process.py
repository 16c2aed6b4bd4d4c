"""One cell of a packed job in a process of its own: ``python -m bench.dispatch.cell_process`` reads the pickled
``(cfg, CellArgs)`` that ``bench.dispatch.cell_job.PackJob`` writes to its stdin and runs ``CellJob`` on them,
the same code as a job of one cell (resume from the checkpoint, a ``failed`` record on an error, SIGTERM stops
it under SLURM). Exit status 0 when the cell ended (done or diverged), else non-zero.
"""

from __future__ import annotations

import pickle
import sys

from bench.dispatch.cell_job import CellJob


def main() -> int:
    """Run the cell whose ``(cfg, CellArgs)`` is pickled on stdin; 0 when it ended."""
    cfg, args = pickle.loads(sys.stdin.buffer.read())
    CellJob()(cfg, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
