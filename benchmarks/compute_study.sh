#!/usr/bin/env bash
# The compute study of benchmarks/README.md, two one-thread runs at a time on the 2-core machine.
# Each line of a queue file is the arguments of one `compute_study.py run`; finished runs are skipped,
# killed ones resume.  Usage: bash benchmarks/compute_study.sh QUEUE_FILE [LOG_DIR]
set -u
queue=${1:?queue file}; logs=${2:-runs/study/logs}; mkdir -p "$logs"
grep -v -e '^#' -e '^$' "$queue" | while read -r line; do
  name=${line%% *}
  echo "OMP_NUM_THREADS=1 .venv/bin/python benchmarks/compute_study.py run $line >> $logs/$name.log 2>&1"
done | xargs -P 2 -I{} bash -c {}
