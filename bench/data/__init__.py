"""Datasets and loaders: which datasets exist, where their files are, how a split is decoded and cached, the
per-epoch plan and augmentations, the loaders that serve batches (memory, torch, ffcv), FFCV preparation."""
