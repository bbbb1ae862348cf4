"""Benchmark 10: what one job worker pays before its first training step, part by part (issue 25).

Run from the repository root: /work/venv/bin/python -m benchmarks.bench_startup [--quick]

Every figure but (f) is taken in fresh Python processes (`sys.executable -c ...`, cwd the repository root, 1
thread per pool as `harness.study.workers.pool` sets it, OMP_WAIT_POLICY=PASSIVE as `python -m harness` sets
it), the median of N of them (N = 5; --quick: N = 2, on the tiny corpus's bundle instead of the quick one).
Times inside a process are `time.perf_counter()` differences; times across processes `time.monotonic()`
(one system-wide clock on Linux), so they include starting the interpreter.

(a) bare interpreter: the wall time of `python -c pass`, read by this process around `subprocess.run`.
(b) driver: `import harness.cli, harness.study.runner, harness.study.executors.local` (what `python -m
    harness run` imports before its first job; harness.study.workers starts the workers), and whether
    that imported torch (it must not: tests/test_startup.py).
Then one process per repeat pays the worker's parts in the worker's order, each timed alone, so that they
add up without counting anything twice:
(c) `import torch`, then the job code beyond it: `harness.study.task_entry` (what loky unpickles),
    `harness.method.train` and `harness.study.job` (the pool initializer, workers._worker_signals);
(e) `CurveWriter` (run_job's TensorBoard writer: `torch.utils.tensorboard` and a SummaryWriter), `import
    codecarbon`, `EnergyMeter.start()` (codecarbon's tracker and its hardware probe) and `stop()` around an
    empty stage (paid after training, not before the first step: not in the sum);
(g) "setup": `benchmarks.bench_step.StepTimer(...)` (open the bundle unverified, the training Pool, the
    Student, Adam: what train_student builds), then the first step (`_run_epoch` over 1 step) and a later
    step (`_run_epoch` over 20 more steps, 5 with --quick, per step), quick-profile config (h = 32) on the
    benchmark bundle.
(d) `import torch._dynamo` after torch and the job code, in a process of its own, when the worker imports it
    before its first step (in which part, the row says; its time is in that part already, not added again).
(f) `Bundle.open(verify=True)` (every job verifies its bundle once before training), timed in this process as
    benchmarks/bench_verify.py times it (median of N, page cache warm).
"whole worker path": a process that unpickles a job of the benchmark study (as loky does), imports what the
pool initializer imports and calls `task_entry.execute` on it, to the end of its first optimiser step (a
global step hook of torch.optim, which then ends the process), from the moment this process starts it. It
also covers what no part times (plugins, the job's lock and log, train_student beyond the StepTimer). Its
`-X importtime` runs (min(N, 3); the median per package) give the modules of torch, torch._dynamo,
torch.utils.tensorboard, codecarbon, sed_scores_eval, sed_eval, dcase_util, pandas, matplotlib, scipy and numpy
imported before the first step, each with its cumulative import time (the outermost imports of that package,
wherever they happen; packages that import one another count in both).

The target row: the sum of the parts the worker pays before its first step, (a) + (c) + CurveWriter + import
codecarbon + start + (f) + setup + (first step - later step), against a quick job's training time, taken as
1,800 (harness.study.plan.QUICK_STEPS) x the later step measured here: <= 5 %. The bound is for a worker's
first job, the worst case: the loky workers are kept from job to job, so the imports (most of the sum) are
paid once per worker, not per job (a 15-job study on 2 workers pays them twice), and
harness.study.workers.warm_up starts them while the driver plans, so they overlap the driver's own work; a
later job in the same worker pays (f), CurveWriter without its import, setup and the first step only, and a
start without the probe: codecarbon keeps its hardware probe per process (codecarbon.core.hardware_cache),
so the eval stage's meter and a later job's meters skip it. The target is kept although the imports are
mostly torch's own (torch, and torch._dynamo, which torch.optim imports when Adam is built): a worker's first
job is what `harness run` waits for at the start of every study, and what is over 5 % can be moved into the
workers' warm-up, which overlaps the driver's planning (harness.study.workers.warm_up), changing no number.
Moving torch._dynamo and codecarbon's probe into the warm-up was tried and taken back: in a study whose
workers do not all run a job (the test suite's tiny studies), each worker paid ~2 s of CPU for nothing (the clean-clone
test suite took 702 s instead of 676 s with it, most end-to-end tests 1-4 s longer).
The loky bootstrap of a worker (its own imports before the task) is in no figure.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The packages the importtime probe reports (module doc), in the order of the table.
PACKAGES = ("torch", "torch._dynamo", "torch.utils.tensorboard", "codecarbon", "sed_scores_eval", "sed_eval",
            "dcase_util", "pandas", "matplotlib", "scipy", "numpy")
MARK = "HARNESS_BENCH_FIRST_STEP_DONE"

DRIVER = """
import json, sys, time
t = time.perf_counter()
import harness.cli, harness.study.runner, harness.study.executors.local
print(json.dumps({"seconds": time.perf_counter() - t, "torch": "torch" in sys.modules}))
"""

# One worker's parts in its order, each timed alone (module doc, (c), (e), (g)).
PARTS = """
import json, pickle, sys, tempfile, time
from pathlib import Path
args = json.loads(sys.argv[1])
clock, t, where = time.perf_counter, {}, {}
s = clock(); import torch; t["torch"] = clock() - s
s = clock()
from harness.study import task_entry
from harness.method import train
from harness.study import job
t["job code"] = clock() - s
where["job code"] = "torch._dynamo" in sys.modules
torch.set_num_threads(1)
from harness.study.curves import CurveWriter
from harness.evaluation.energy import EnergyMeter
with tempfile.TemporaryDirectory() as tmp:
    s = clock(); curves = CurveWriter(Path(tmp), "bench", 0); t["curves"] = clock() - s
    curves.close()
where["curves"] = "torch._dynamo" in sys.modules
s = clock()
try:
    import codecarbon
except ImportError:
    pass
t["codecarbon import"] = clock() - s
meter = EnergyMeter(args["country"], None)
s = clock(); meter.start(); t["energy start"] = clock() - s
s = clock(); reading = meter.stop(); t["energy stop"] = clock() - s
where["energy"] = "torch._dynamo" in sys.modules
from benchmarks.bench_step import StepTimer
config = pickle.loads(Path(args["config"]).read_bytes())
s = clock(); timer = StepTimer(config, Path(args["bundle"]), "cpu"); t["setup"] = clock() - s
where["setup"] = "torch._dynamo" in sys.modules
t["first step"] = timer.real_steps(config.train.precision, 1)
where["first step"] = "torch._dynamo" in sys.modules
t["later step"] = timer.real_steps(config.train.precision, args["later"])
print(json.dumps({"t": t, "dynamo": where, "energy": reading.estimate if reading.kwh is None else "measured"}))
"""

DYNAMO = """
import json, time
import torch
from harness.study import task_entry, job
from harness.method import train
t = time.perf_counter(); import torch._dynamo
print(json.dumps({"seconds": time.perf_counter() - t}))
"""

# The whole worker path, to the end of the first optimiser step (module doc).
WORKER = """
import json, os, pickle, sys, time
from pathlib import Path
args = json.loads(sys.argv[1])
from harness.study import task_entry
from harness.method import train
from harness.study import job
from torch.optim.optimizer import register_optimizer_step_post_hook

def first_step(optimizer, a, kw):
    done = time.monotonic()
    sys.stderr.write("\\n%s\\n" % args["mark"]); sys.stderr.flush()
    Path(args["out"]).write_text(json.dumps({"t": done, "modules": sorted(sys.modules)}))
    os._exit(0)

register_optimizer_step_post_hook(first_step)
spec = pickle.loads(Path(args["job"]).read_bytes())
summary = task_entry.execute(spec, args["bundle"], args["job_dir"], 1)
print("no training step:", summary, file=sys.stderr)
sys.exit(1)
"""


def _env() -> dict[str, str]:
    from harness.study.workers import THREAD_VARIABLES

    env = {**os.environ, **{name: "1" for name in THREAD_VARIABLES}}
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return env


def _python(code: str, *args: str, flags: tuple[str, ...] = (), check: bool = True
            ) -> subprocess.CompletedProcess:
    out = subprocess.run([sys.executable, *flags, "-c", code, *args], cwd=ROOT, env=_env(), capture_output=True,
                         text=True, timeout=900)
    if check and out.returncode != 0:
        raise RuntimeError(f"benchmark process exited {out.returncode}: {out.stderr[-2000:]}")
    return out


def _json(out: subprocess.CompletedProcess) -> dict:
    return json.loads(out.stdout.strip().splitlines()[-1])


def bare_seconds() -> float:
    start = time.monotonic()
    _python("pass")
    return time.monotonic() - start


def worker_path(job_file: Path, bundle: Path, importtime: bool = False) -> tuple[float, list[str], str]:
    """(seconds from the start of the process to the end of its first step, its modules then, its stderr)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "first-step.json"
        args = {"job": str(job_file), "bundle": str(bundle), "job_dir": str(Path(tmp) / "job"), "out": str(out),
                "mark": MARK}
        start = time.monotonic()
        proc = _python(WORKER, json.dumps(args), flags=("-X", "importtime") if importtime else ())
        if not out.exists():
            raise RuntimeError(f"the worker path reached no training step: {proc.stderr[-2000:]}")
        record = json.loads(out.read_text())
    return record["t"] - start, record["modules"], proc.stderr


def import_tree(stderr: str) -> list[tuple[str, int, list]]:
    """`-X importtime` lines (before MARK) as a forest of (module, cumulative us, children)."""
    stack: list[tuple[int, tuple[str, int, list]]] = []
    for line in stderr.split(MARK)[0].splitlines():
        m = re.match(r"import time:\s+\d+ \|\s+(\d+) \|( +)(\S+)", line)
        if m is None:
            continue
        depth = len(m.group(2)) // 2
        children = []
        while stack and stack[-1][0] > depth:
            children.append(stack.pop()[1])
        stack.append((depth, (m.group(3), int(m.group(1)), children[::-1])))
    return [node for _, node in stack]


def package_seconds(forest: list, packages: tuple[str, ...] = PACKAGES) -> dict[str, float]:
    """Cumulative import seconds of each package: its outermost imports, wherever they happen."""
    totals = dict.fromkeys(packages, 0.0)

    def visit(node, inside: frozenset) -> None:
        name, cumulative, children = node
        hits = {p for p in packages if p not in inside and (name == p or name.startswith(p + "."))}
        for p in hits:
            totals[p] += cumulative / 1e6
        for child in children:
            visit(child, inside | hits)

    for root in forest:
        visit(root, frozenset())
    return totals


def _median(values) -> float:
    return statistics.median(values)


def _job_file(cache: Path, profile: str, tmp: Path, root: Path) -> Path:
    """A job of the benchmark study, with its bundle key, pickled as loky hands it to a worker."""
    from benchmarks.bench_training import write_study
    from harness.bundle import Bundle
    from harness.study.plan import expand, resolve
    from harness.study.spec import load_study
    from harness.study.stages import StageKeys, read_data

    study = resolve(load_study(write_study(tmp)), profile, cache)
    job = expand(study, keys=StageKeys(read_data(study.data, cache, 1), 0))[0]
    if job.bundle_key != Bundle.open(root, verify=False).key:
        raise RuntimeError(f"the benchmark job's bundle key {job.bundle_key} is not its bundle's ({root})")
    path = tmp / "job.pickle"
    path.write_bytes(pickle.dumps(job))
    return path


def measure(quick: bool, cache: Path) -> dict:
    from benchmarks.bench_step import quick_job
    from benchmarks.bench_verify import _median_seconds
    from harness.bundle import Bundle
    from harness.evaluation.energy import DEFAULT_COUNTRY

    repeats, corpus = (2, "tiny") if quick else (5, "quick")
    config, root = quick_job(cache, 32, corpus)  # builds the bundle on first use (in no figure)
    m: dict = {"repeats": repeats, "profile": corpus, "later_steps": 5 if quick else 20}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        job_file = _job_file(cache, corpus, tmp, root)
        (tmp / "config.pickle").write_bytes(pickle.dumps(config))
        parts_args = json.dumps({"config": str(tmp / "config.pickle"), "bundle": str(root),
                                 "country": DEFAULT_COUNTRY, "later": m["later_steps"]})
        m["bare"] = _median(bare_seconds() for _ in range(repeats))
        drivers = [_json(_python(DRIVER)) for _ in range(repeats)]
        m["driver"] = _median(d["seconds"] for d in drivers)
        m["driver_torch"] = any(d["torch"] for d in drivers)
        runs = [_json(_python(PARTS, parts_args)) for _ in range(repeats)]
        m["parts"] = {k: _median(r["t"][k] for r in runs) for k in runs[0]["t"]}
        m["dynamo_where"] = runs[0]["dynamo"]
        m["energy"] = runs[0]["energy"]
        m["verify"] = _median_seconds(lambda: Bundle.open(root, verify=True), repeats)
        paths = [worker_path(job_file, root) for _ in range(repeats)]
        m["whole"] = _median(p[0] for p in paths)
        modules = set(paths[0][1])
        traced = [package_seconds(import_tree(worker_path(job_file, root, importtime=True)[2]))
                  for _ in range(min(repeats, 3))]
    m["imports"] = {p: _median(t[p] for t in traced) for p in PACKAGES
                    if p in modules or any(x.startswith(p + ".") for x in modules)}
    m["not_imported"] = [p for p in PACKAGES if p not in m["imports"]]
    if "torch._dynamo" in modules:
        m["dynamo"] = _median(_json(_python(DYNAMO))["seconds"] for _ in range(repeats))
    return m


def startup_sum(m: dict) -> float:
    """The parts a worker pays before its first step (module doc)."""
    p = m["parts"]
    return (m["bare"] + p["torch"] + p["job code"] + p["curves"] + p["codecarbon import"] + p["energy start"]
            + m["verify"] + p["setup"] + max(0.0, p["first step"] - p["later step"]))


def rows_from(m: dict) -> list[dict]:
    from harness.study.plan import QUICK_STEPS

    p, prof, n = m["parts"], m["profile"], m["repeats"]

    def info(figure: str, seconds: float | None, baseline: str = "", ratio: float | None = None) -> dict:
        return {"figure": f"start-up: {figure}", "measured": "" if seconds is None else f"{seconds:.3f} s",
                "baseline": baseline, "ratio": ratio, "target": "(info)", "met": None}

    where = [k for k, v in m["dynamo_where"].items() if v]
    rows = [
        info("(a) bare interpreter, python -c pass", m["bare"], f"median of {n} processes"),
        info("(b) driver: import harness.cli, study.runner, executors.local", m["driver"],
             "torch imported: " + ("YES" if m["driver_torch"] else "no")),
        info("(c) worker: import torch", p["torch"]),
        info("(c) worker: import job code beyond torch (task_entry, method.train, study.job)", p["job code"]),
        info("(d) worker: import torch._dynamo beyond torch and the job code", m.get("dynamo"),
             "not imported before the first step" if "dynamo" not in m else
             f"already in the worker's {where[0]} part" if where else "in no part (whole path only)"),
        info("(e) worker: CurveWriter (torch.utils.tensorboard + SummaryWriter)", p["curves"]),
        info("(e) worker: import codecarbon", p["codecarbon import"]),
        info("(e) worker: EnergyMeter.start() (tracker, hardware probe)", p["energy start"],
             "" if m["energy"] == "measured" else m["energy"][:60]),
        info("(e) worker: EnergyMeter.stop(), empty stage (after training: not in the sum)", p["energy stop"]),
        info(f"(f) worker: Bundle.open(verify=True), {prof} bundle, page cache warm", m["verify"]),
        info("(g) worker: build pool, student, Adam (bench_step.StepTimer)", p["setup"]),
        info("(g) worker: first training step vs a later one (_run_epoch)", p["first step"],
             f"{p['later step']:.3f} s", p["first step"] / p["later step"]),
    ]
    total = startup_sum(m)
    rows.append(info(f"whole worker path, process start to end of first step (execute, {prof} job)", m["whole"],
                     f"{total:.3f} s (sum of the parts)"))
    for package, seconds in m["imports"].items():
        rows.append({"figure": f"  imported before the first step (-X importtime, cumulative): {package}",
                     "measured": f"{1000 * seconds:.0f} ms", "baseline": "", "ratio": None, "target": "(info)",
                     "met": None})
    if m["not_imported"]:
        rows.append({"figure": "  not imported before the first step: " + ", ".join(m["not_imported"]),
                     "measured": "", "baseline": "", "ratio": None, "target": "(info)", "met": None})
    train = QUICK_STEPS * p["later step"]
    share = total / train
    rows.append({"figure": f"start-up: worker's parts before its first step / quick job's training "
                           f"({QUICK_STEPS:,} x later step, measured here)",
                 "measured": f"{total:.2f} s", "baseline": f"{train:.1f} s", "ratio": share, "target": "<= 0.05",
                 "met": share <= 0.05})
    return rows


def run(quick: bool = False, cache: Path | None = None) -> list[dict]:
    """Benchmark 10 as benchmarks.run table rows. quick: N = 2 on the tiny corpus's bundle (a smoke run)."""
    from benchmarks.bench_training import DEFAULT_CACHE

    return rows_from(measure(quick, Path(cache or DEFAULT_CACHE)))


if __name__ == "__main__":
    from benchmarks.bench_training import DEFAULT_CACHE
    from benchmarks.run import standalone

    standalone(run, __doc__, "N = 2 repeats on the tiny corpus's bundle (a smoke run)", DEFAULT_CACHE)
