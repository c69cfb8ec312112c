#!/usr/bin/env bash
# The one GPU session that built the model zoo (run from the repository root on a CUDA machine).
# It carries wheels for what the machine lacks (.whl/), runs the GPU checks beside the training,
# builds the zoo (colddiff_lib.zoo.build), and packs weights, cards, tables and logs into $OUT.
set -uo pipefail
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
if [ -z "${NO_WHEELS:-}" ] && ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/machine.txt"
python3 -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__)" | tee -a "$OUT/machine.txt"
[ -n "${SKIP_CHECKS:-}" ] || ( timeout 300 python3 benchmarks/gpu_check.py --compile > "$OUT/gpu_check.log" 2>&1
  timeout 120 python3 benchmarks/degradation_cost.py --device cuda --quick > "$OUT/degradation_cost_cuda.log" 2>&1 ) &
checks=$!  # (the last background job; none when SKIP_CHECKS is set)
eval "set -- ${BUILD_ARGS:-}"  # extra arguments, e.g. for a quick smoke run
# One model at a time (nine sharing one GPU ran at 3 steps/s each, one alone at 17); the time limits
# keep the nine trainings and evaluations inside a 15-minute lease. The build is resumable: a second
# lease continues where the first stopped (carry runs/ over).
python3 -m colddiff_lib.zoo.build --runs runs/zoo --results results --parallel "${PARALLEL:-1}" --device "${DEVICE:-cuda}" \
  --time-limit "${TIME_LIMIT:-60}" --eval-time-limit "${EVAL_TIME_LIMIT:-45}" "$@" 2>&1 | tee "$OUT/build.log"
wait
cp "$OUT"/machine.txt "$OUT"/*.log runs/zoo/ 2>/dev/null
tar cf "$OUT/results.tar" results colddiff_lib/zoo/cards runs/zoo/*.log runs/zoo/*.txt runs/zoo/*/run.json \
  runs/zoo/*/history.json runs/zoo/*/loss.png runs/zoo/*/samples.png 2>/dev/null
rm -f "$OUT"/machine.txt "$OUT"/gpu_check.log "$OUT"/degradation_cost_cuda.log
# Weights in parts of at most 16 MB each.
ls colddiff_lib/zoo/weights/*.safetensors | split -n r/3 - /tmp/wpart.
for part in /tmp/wpart.*; do tar cf "$OUT/weights_${part##*.}.tar" $(cat "$part"); done
ls -la "$OUT"
