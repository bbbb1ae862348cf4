"""Benchmark 7: the cost of trusting the cache (issue 10): checksums and data digests before a run uses them.

Times, on the quick corpus's bundle (built into the benchmark cache on first use; that time is in no figure):
- `read_data`: reading every TSV and re-using each audio file's recorded digest ((size, mtime) unchanged),
  which every `harness run` does once to know its job ids;
- `Bundle.open(verify=True)`: the CRC-32 of every file of the bundle and of the student features it uses,
  which the driver does once per run and every job once before training.
The figure is the share of the quick profile's main command (`harness run ablations/table2.toml --profile
quick`: 15 jobs) that these checks add: (read_data + 16 verifications) / the command's wall time. The wall
time is given on the command line (`--main-seconds`, measured separately: docs/benchmarks.md, "Studies"); the checks
are measured here, each the median of 5 runs, page cache warm (as in a run, where the driver's check warms it
for the jobs).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.bench_training import DEFAULT_CACHE as CACHE
from benchmarks.bench_training import build_bundle, write_study
from harness.bundle import Bundle
from harness.study.plan import resolve
from harness.study.spec import load_study
from harness.study.stages import read_data


QUICK_JOBS = 15  # the main command: Table 2, 5 variants x 3 seeds
# The quick profile's main command from an empty cache, measured on this project's 2-core CPU (docs/benchmarks.md, "Studies").
MAIN_SECONDS = 1854.0


def _median_seconds(fn, repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run(quick: bool, cache: Path = CACHE, main_seconds: float = MAIN_SECONDS) -> list[dict]:
    profile = "tiny" if quick else "quick"
    root = build_bundle(cache, profile)
    with tempfile.TemporaryDirectory() as tmp:
        study = resolve(load_study(write_study(Path(tmp))), profile, Path(cache))
    size = sum((root / e.path).stat().st_size for e in
               [*Bundle.open(root, verify=False).manifest.arrays.values(),
                *Bundle.open(root, verify=False).manifest.features.values()])
    verify = _median_seconds(lambda: Bundle.open(root, verify=True))
    data = _median_seconds(lambda: read_data(study.data, cache, 2))
    total = data + (1 + QUICK_JOBS) * verify
    share = total / main_seconds
    return [
        {"figure": f"trust: verify a {profile} bundle ({size / 1e6:.0f} MB, CRC-32)", "measured": f"{verify:.3f} s",
         "baseline": f"{size / verify / 1e9:.2f} GB/s", "ratio": None, "target": "", "met": None},
        {"figure": f"trust: read the {profile} data and its recorded digests", "measured": f"{data:.3f} s",
         "baseline": "", "ratio": None, "target": "", "met": None},
        {"figure": f"trust: checks of one main command (data + {1 + QUICK_JOBS} verifications) / its wall time",
         "measured": f"{total:.2f} s", "baseline": f"{main_seconds:.0f} s (given, not measured here)", "ratio": share,
         "target": "<= 0.02", "met": share <= 0.02},
    ]


if __name__ == "__main__":
    from benchmarks.run import standalone

    standalone(run, __doc__, "the tiny corpus instead of the quick one", CACHE)
