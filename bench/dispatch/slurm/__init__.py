"""The SLURM client: cluster profiles (``profile``), pure parsers of the clients' output (``parsers``) and the
calls to ``squeue``, ``sacct``, ``scancel`` and ``scontrol`` (``client``)."""
