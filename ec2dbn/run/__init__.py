"""One run: validate, plan, capacity, the pipeline (its one finally), the instance's files, results,
local runs, signals. Knows nothing of sweeps or bakes (capacity is the seam)."""
