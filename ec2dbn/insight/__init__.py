"""Reading results, never the cloud: bench tables, plots, the side-by-side report."""
