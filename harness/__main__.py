"""`python -m harness ...`: see harness.cli."""

import os
import sys

# Idle OpenMP threads sleep instead of spinning: with other processes on the cores, spinning threads of a
# 2-thread job measured 20x slower per step (benchmarks/RESULTS.md). Loky workers inherit the setting.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from harness.cli import main  # noqa: E402

sys.exit(main())
