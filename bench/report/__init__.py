"""Reports from run records: leaderboards, figures, quantizer plots, the run browser."""
