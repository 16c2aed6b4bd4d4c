"""Grids of runs: grid files, executors (local, debug, slurm), placement, pre-flight, cell status, locks."""
