"""Benchmarks that print measured ratios: the training step and the data loaders."""
