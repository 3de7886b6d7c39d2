#!/usr/bin/env bash
# The memory protocols, train step and crossover batches on CPU, for the
# three paper presets (benchmarks/results/protocols/; README "Memory").
#   benchmarks/protocols_cpu.sh [vilt_vqa|vilt_ve|meter_vqa ...]
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
OUT=benchmarks/results/protocols
mkdir -p "$OUT"
presets=("$@")
[ ${#presets[@]} -eq 0 ] && presets=(vilt_vqa vilt_ve meter_vqa)
for preset in "${presets[@]}"; do
  case $preset in
    vilt_vqa) extra=(--batch_start 8 --crossover_batches 1,2,4,8) ;;
    vilt_ve) extra=(--batch_start 8) ;;
    meter_vqa) extra=(--batch_start 4 --crossover_batches 1,2,4) ;;
    *) echo "unknown preset $preset" >&2; exit 2 ;;
  esac
  "$PYTHON" -m pumer_jax.bench --preset "$preset" --train_step \
    --repeats 5 --min_seconds 3 --no_progress --out "$OUT" "${extra[@]}" \
    | tee "$OUT/bench_${preset}_cpu_float32.txt"
done
