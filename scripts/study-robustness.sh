#!/usr/bin/env bash
# Robustness of per-layer vs spline controls (the SpliNet paper's claim): final validation
# accuracy of Adam over a grid of learning rates and depths N, 3 seeds each, on Peaks.
# Spline runs use M = 8 cubic B-splines. Usage: scripts/study-robustness.sh [layerpar] [ranks]
# The grid: DEPTHS="16 64 256" RATES="0.001 0.01 0.1 0.3 1" (environment, space-separated).
set -euo pipefail
BIN=$(realpath "${1:-target/release/layerpar}")
RANKS=${2:-1}
DEPTHS=${DEPTHS:-16 64 256}
RATES=${RATES:-0.001 0.01 0.1 0.3 1}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
printf "%-7s %5s %8s   %s\n" controls N lr "val_acc per seed -> mean"
for kind in layer spline; do
  for n in $DEPTHS; do
    for lr in $RATES; do
      accs=()
      for seed in 1 2 3; do
        mpirun --oversubscribe -n "$RANKS" "$BIN" train --set seed=$seed --set controls.kind=$kind \
          --set controls.count=8 --set controls.degree=3 --set network.layers=$n \
          --set optimizer.kind=adam --set optimizer.learning_rate=$lr --set optimizer.batch_size=100 \
          --set optimizer.max_iter=20 --set network.init_hidden=1.0 --set output.progress=none \
          --set output.checkpoint_dir=c --history h.csv > /dev/null 2>&1 || { accs+=(nan); continue; }
        accs+=("$(awk -F, 'END{printf "%.3f", $6}' h.csv)")
      done
      mean=$(printf "%s\n" "${accs[@]}" | awk '{ if ($1=="nan") bad=1; s+=$1 } END { if (bad) print "diverged"; else printf "%.4f", s/NR }')
      printf "%-7s %5d %8s   %s -> %s\n" "$kind" "$n" "$lr" "${accs[*]}" "$mean"
    done
  done
done
