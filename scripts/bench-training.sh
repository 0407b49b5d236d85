#!/usr/bin/env bash
# Training benchmarks for the layer-parallel solver (issue: layer-parallel training).
# First the performance table (layerpar bench --case all on 1 and 2 ranks: wide-serial,
# wide-mgrit3 and peaks-adam, min/median/max ms, GFLOP/s and the ratio to a dgemm measured in
# the same run; REPEAT=R sets the repetitions, default 5; --table-only stops there). Then,
# as before, wall times of the Peaks default (serial sweep and one-shot MGRIT) on 1 and 2
# ranks, and time per training iteration for a wide, deep network (width 64, 1024 layers,
# batch 1024) with the serial sweep and 3-level MGRIT (cf 4), with each rank's peak memory.
# Usage: scripts/bench-training.sh [path/to/layerpar] [--table-only]   (build with cargo build --release)
set -euo pipefail
BIN=$(realpath "${1:-target/release/layerpar}")
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for p in 1 2; do
  ( cd "$work" && mpirun --oversubscribe -n "$p" "$BIN" bench --case all --repeat "${REPEAT:-5}" )
done
[[ "${2:-}" == "--table-only" ]] && exit 0
run() { # name ranks args...
  local name=$1 ranks=$2; shift 2
  ( cd "$work" && mpirun --oversubscribe -n "$ranks" /usr/bin/time -f "maxrss_kb %M" "$BIN" train \
      --set output.progress=none --history "$name.csv" "$@" > "$name.out" 2> "$name.err" )
  local t rows last mem
  t=$(awk -F, 'END{print $9}' "$work/$name.csv")
  rows=$(($(wc -l < "$work/$name.csv") - 2))
  last=$(awk -F, 'END{printf "val %.4f", $6}' "$work/$name.csv")
  mem=$(grep -o 'maxrss_kb [0-9]*' "$work/$name.err" | awk '{printf "%s%.0f", sep, $2/1024; sep="/"}')
  printf "%-34s ranks %d  %3d iterations  %8.2f s  (%.3f s/iter)  %s  peak MiB per rank %s\n" \
    "$name" "$ranks" "$rows" "$t" "$(echo "$t / $rows" | bc -l)" "$last" "$mem"
}
ONESHOT=(--set mgrit.max_levels=2 --set mgrit.cfactor=2 --set mgrit.max_iter=2 --set mgrit.adjoint_max_iter=2)
for p in 1 2; do run "peaks-serial" $p; done
for p in 1 2; do run "peaks-oneshot" $p "${ONESHOT[@]}"; done
WIDE=(--set network.width=64 --set network.layers=1024 --set network.final_time=4 --set data.train_size=1024
      --set data.val_size=200 --set optimizer.max_iter=3 --set network.init_hidden=0.5)
for p in 1 2; do run "w64-N1024-serial" $p "${WIDE[@]}"; done
for p in 1 2; do run "w64-N1024-mgrit3-cf4" $p "${WIDE[@]}" --set mgrit.max_levels=3 --set mgrit.cfactor=4 \
  --set mgrit.max_iter=2 --set mgrit.adjoint_max_iter=2; done
