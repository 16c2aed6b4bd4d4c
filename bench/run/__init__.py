"""One run: its config, the training loop, checkpoints and the run-directory layout, records, export."""
