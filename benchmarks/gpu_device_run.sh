#!/usr/bin/env bash
# The GPU check in one script: install the harness, run the tests marked gpu, run the GPU benchmark.
#
#   bash benchmarks/gpu_device_run.sh prepare   # HERE, on a machine that reaches PyPI: wheels into .gpu-wheels/
#   bash benchmarks/gpu_device_run.sh           # ON THE GPU MACHINE (no network needed): install, test, bench
#
# The GPU machine's image has python3 with a CUDA torch, numpy, scipy, pandas, matplotlib, statsmodels,
# pytest, cython, ... but not the harness's audio and metric packages (soundfile, sed_eval, sed_scores_eval,
# baycomp, ...) and it reaches no registry. `prepare` downloads those as cp312 manylinux wheels (and
# sed_scores_eval's source, which has no wheel: it is built there with the image's Cython and compiler) into
# .gpu-wheels/ (keep it out of git: `echo /.gpu-wheels/ >> .git/info/exclude`); the device run carries that
# folder (device tool: carry [".gpu-wheels"]) and installs from it with --no-index. codecarbon is left out:
# without it the energy fields say "not measured", as the harness documents.
#
# Time: the whole run is capped at GPU_RUN_LIMIT_S (default 540) by `timeout`; the tests at TEST_LIMIT_S
# (default 240); the benchmark gets BENCH_BUDGET_S (default 300) or what is left minus 20 s, whichever is less,
# so the script ends inside its cap. Outputs under $OUT (default ./gpu-run-out): log.txt (everything),
# pytest.txt, RESULTS-gpu.md (copy it to benchmarks/RESULTS-gpu.md), env.txt.
set -uo pipefail
cd "$(dirname "$0")/.."
WHEELS=${GPU_WHEELS:-.gpu-wheels}  # carried to the GPU machine (device tool: carry [".gpu-wheels"])

if [ "${1:-}" = "prepare" ]; then
    set -e
    mkdir -p "$WHEELS"
    PLATFORMS=(--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)
    # Versions as in this project's own environment (pip show); --no-deps: everything else is on the image.
    # A package with no wheel on PyPI (pure Python: sed_eval, dcase_util, ...) is built into one here.
    for pkg in soundfile==0.14.0 cffi==2.1.1 pycparser==3.12 sed_eval==0.2.1 dcase_util==0.2.20 baycomp==1.0.3 \
               lazy_dataset==0.0.15 dill==0.4.1 future==1.0.0 validators==0.36.0 librosa==0.11.0 \
               platformdirs==4.14.9 setuptools==80.10.2; do
        python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
            "${PLATFORMS[@]}" -d "$WHEELS" "$pkg" 2>/dev/null \
            || python3 -m pip wheel -q --no-deps -w "$WHEELS" "$pkg"
    done
    # sed_scores_eval: Cython extensions and no wheel; its source is built on the GPU machine.
    python3 -m pip download -q --no-deps --no-binary=:all: --no-build-isolation -d "$WHEELS" sed_scores_eval==0.0.4
    ls -la "$WHEELS"
    du -sh "$WHEELS"
    exit 0
fi

LIMIT=${GPU_RUN_LIMIT_S:-540}
if [ -z "${GPU_RUN_INNER:-}" ]; then  # the whole run under one timeout
    GPU_RUN_INNER=1 GPU_RUN_DEADLINE=$(( $(date +%s) + LIMIT )) exec timeout --kill-after=10 "$LIMIT" bash "$0" "$@"
fi
OUT=${OUT:-$PWD/gpu-run-out}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/log.txt") 2>&1
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
SITE=/tmp/gpu-site
START=$(date +%s)
step() { echo; echo "==== $(date -u +%H:%M:%S) [+$(( $(date +%s) - START )) s] $*"; }
left() { echo $(( GPU_RUN_DEADLINE - $(date +%s) )); }

step "machine"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
  "$PY" -c "import sys, torch; print(sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda,
'cudnn', torch.backends.cudnn.version(), 'available', torch.cuda.is_available())"
  nproc; } 2>&1 | tee "$OUT/env.txt"

step "install (offline)"
T0=$(date +%s)
mkdir -p "$SITE"
if compgen -G "$WHEELS/*.whl" >/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --upgrade --target "$SITE" "$WHEELS"/*.whl \
        || for whl in "$WHEELS"/*.whl; do  # one bad wheel fails the whole call: then each on its own
            "$PY" -m pip install -q --no-index --no-deps --no-compile --upgrade --target "$SITE" "$whl" \
                || echo "install: $whl failed"
        done
fi
export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
if compgen -G "$WHEELS/sed_scores_eval-*.tar.gz" >/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-build-isolation --target "$SITE" \
        "$WHEELS"/sed_scores_eval-*.tar.gz || echo "install: sed_scores_eval did not build (no C compiler?)"
fi
# The harness itself: editable, without its dependencies (the image's torch stays); else from the source tree.
"$PY" -m pip install -q --no-index --no-deps --no-build-isolation -e . \
    || { echo "install: pip install -e . failed; using PYTHONPATH"; export PYTHONPATH="$PWD:$PYTHONPATH"; }
"$PY" - <<'EOF' || true
import importlib
for name in ("torch", "harness.study.job", "harness.report.build", "soundfile", "sed_eval", "sed_scores_eval",
             "baycomp.single", "pytest", "pynvml"):
    try:
        importlib.import_module(name)
        print(f"import {name}: ok")
    except Exception as e:  # noqa: BLE001
        print(f"import {name}: FAILED {type(e).__name__}: {e}")
EOF
echo "install: $(( $(date +%s) - T0 )) s"

step "tests marked gpu (limit ${TEST_LIMIT_S:-240} s)"
T0=$(date +%s)
timeout --kill-after=10 "${TEST_LIMIT_S:-240}" "$PY" -m pytest -q -m gpu tests/test_gpu.py -p no:cacheprovider -rA \
    2>&1 | tee "$OUT/pytest.txt"
TESTS_RC=${PIPESTATUS[0]}
echo "tests: exit $TESTS_RC, $(( $(date +%s) - T0 )) s"

BUDGET=$(( $(left) - 20 ))
[ "$BUDGET" -gt "${BENCH_BUDGET_S:-300}" ] && BUDGET=${BENCH_BUDGET_S:-300}
step "benchmark (budget $BUDGET s)"
T0=$(date +%s)
if [ "$BUDGET" -gt 30 ]; then
    "$PY" benchmarks/bench_gpu.py --budget-s "$BUDGET" --out "$OUT/RESULTS-gpu.md"
    BENCH_RC=$?
else
    echo "benchmark: skipped, only $BUDGET s left"; BENCH_RC=1
fi
echo "benchmark: exit $BENCH_RC, $(( $(date +%s) - T0 )) s"

step "done: tests exit $TESTS_RC, benchmark exit $BENCH_RC, $(( $(date +%s) - START )) s in all"
[ "$TESTS_RC" -eq 0 ] && [ "$BENCH_RC" -eq 0 ]
