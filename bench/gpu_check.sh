#!/usr/bin/env bash
# The GPU check, in one go: the attribution paths' agreement tests on CUDA, the benchmark at
# 224 px (GAD with K = 5 against plain Captum, the fast path's settings on one model, training,
# hull metrics), then two time-boxed experiments: the K+1 models stacked into one pass, and
# torch.compile. Everything is written under $OUT.
#
# On the GPU machine, from the repository root, with the captum and shapely wheels in ./.whl:
#     OUT=/some/folder bash bench/gpu_check.sh
# Dry run on a CPU machine with tiny sizes (same steps, same files):
#     GPU_CHECK_DEVICE=cpu GPU_CHECK_QUICK=1 OUT=/tmp/gpu_check bash bench/gpu_check.sh
#
# Time: about 5 minutes on an H100/H200; every step has a timeout, the stacked-models experiment is
# cut off at 90 s, and the compile experiment only starts while the whole run is under 260 s and is
# cut off at 360 s.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu_check_out}
DEVICE=${GPU_CHECK_DEVICE:-cuda}
QUICK=${GPU_CHECK_QUICK:-0}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
SECONDS=0
summary() { echo "== [${SECONDS}s] $*" | tee -a "$OUT/summary.txt"; }

# captum and shapely are not on the GPU machine: install them from the wheels in ./.whl
if ! $PY -c "import captum, shapely" 2>/dev/null; then
    $PY -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl \
        > "$OUT/pip_install.txt" 2>&1 || summary "pip install from .whl failed (see pip_install.txt)"
    export PYTHONPATH=/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}
else
    export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
fi

{
    date -u
    (command -v nvidia-smi >/dev/null && nvidia-smi) || echo "no nvidia-smi"
    $PY - <<'EOF'
import platform, torch
print("python", platform.python_version(), "torch", torch.__version__, "cuda", torch.version.cuda,
      "cuda available", torch.cuda.is_available())
if torch.cuda.is_available():
    print("device", torch.cuda.get_device_name(0))
import captum, shapely
print("captum", captum.__version__, "shapely", shapely.__version__)
EOF
} > "$OUT/environment.txt" 2>&1
summary "environment: $(tail -n 2 "$OUT/environment.txt" | tr '\n' ' ')"

# 1. agreement tests of the exact path and of the benchmark's accelerations (CPU cases and, with
#    CUDA, the CUDA ones)
timeout 150 $PY -m pytest tests/method/test_batched.py tests/test_bench_accelerated.py -q -p no:cacheprovider -rs \
    --junitxml="$OUT/pytest_batched.xml" > "$OUT/pytest_batched.txt" 2>&1
summary "pytest test_batched.py, test_bench_accelerated.py: exit $? - $(tail -n 1 "$OUT/pytest_batched.txt")"

# 2. the benchmark
if [ "$QUICK" = 1 ]; then
    SIZE_ARGS=(--image-size 32 --quick)
else
    SIZE_ARGS=(--image-size 224 --batch 32 --n-images 128)
fi
timeout 210 $PY bench/bench.py --device "$DEVICE" "${SIZE_ARGS[@]}" --out "$OUT/bench.json" \
    > "$OUT/bench.txt" 2>&1
summary "bench/bench.py: exit $? (table in bench.txt, numbers in bench.json)"
sed -n '/GAD\/Captum/,$p' "$OUT/bench.txt" | head -n 40 | tee -a "$OUT/summary.txt"

# 3. time-boxed experiment: GAD-IG's K+1 models stacked into one vectorised pass (bench/stacked.py)
if [ "$SECONDS" -lt 240 ]; then
    timeout 90 $PY bench/bench.py --device "$DEVICE" "${SIZE_ARGS[@]}" --n-images 32 \
        --sections stacked --out "$OUT/bench_stacked.json" > "$OUT/bench_stacked.txt" 2>&1
    summary "stacked-models experiment (limit 90s): exit $? (bench_stacked.txt, bench_stacked.json)"
    sed -n '/^GAD-IG, K+1/,/^(rel.err/p' "$OUT/bench_stacked.txt" | tee -a "$OUT/summary.txt"
else
    summary "stacked-models experiment skipped: no time left"
fi

# 4. time-boxed experiment: torch.compile of the folded model, IG of one model
if [ "$SECONDS" -lt 260 ]; then
    LIMIT=$((360 - SECONDS))
    timeout "$LIMIT" $PY bench/bench.py --device "$DEVICE" "${SIZE_ARGS[@]}" --n-images 64 \
        --sections one_model --compile --out "$OUT/bench_compile.json" > "$OUT/bench_compile.txt" 2>&1
    summary "compile experiment (limit ${LIMIT}s): exit $? (bench_compile.txt, bench_compile.json)"
    grep -E "compile|Captum fp32" "$OUT/bench_compile.txt" | tail -n 3 | tee -a "$OUT/summary.txt"
else
    summary "compile experiment skipped: no time left"
fi
summary "done"
