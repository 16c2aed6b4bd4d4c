"""proxbench's runner: data, one training run, grids, dispatch, records, aggregation, plots and the CLI."""
