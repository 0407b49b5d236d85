#!/usr/bin/env bash
# Nested iteration vs training from scratch on Peaks (issue: checkpoints and nested iteration).
# Scratch: 64 hidden layers, 130 L-BFGS iterations. Nested: 8 → 16 → 32 → 64 layers with
# 50/40/40/40 iterations. 5 seeds each; prints final validation accuracy and wall time
# (mean, min, max). Usage: scripts/bench-nested.sh [path/to/layerpar] [ranks]
set -euo pipefail
BIN=$(realpath "${1:-target/release/layerpar}")
RANKS=${2:-1}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
for seed in 1 2 3 4 5; do
  common=(--set seed=$seed --set network.layers=64 --set output.progress=none)
  mpirun --oversubscribe -n "$RANKS" "$BIN" train "${common[@]}" --set optimizer.max_iter=130 \
    --set output.checkpoint_dir=s$seed --history scratch$seed.csv > /dev/null
  mpirun --oversubscribe -n "$RANKS" "$BIN" train "${common[@]}" --set nested.levels=4 \
    --set "nested.max_iter=[50,40,40,40]" --set output.checkpoint_dir=n$seed --history nested$seed.csv > /dev/null
done
summary() { # name files...
  local name=$1; shift
  # last row of each run: val_acc (col 6); wall time = sum over levels of each level's last time_s
  for f in "$@"; do
    awk -F, 'NR>1 { last[$11]=$9; acc=$6 } END { t=0; for (l in last) t+=last[l]; print acc, t }' "$f"
  done | awk -v n="$name" '{ a+=$1; t+=$2; if (NR==1||$1<amin) amin=$1; if (NR==1||$1>amax) amax=$1;
      if (NR==1||$2<tmin) tmin=$2; if (NR==1||$2>tmax) tmax=$2 }
    END { printf "%-8s val_acc mean %.4f (min %.4f, max %.4f)   wall s mean %.2f (min %.2f, max %.2f)\n",
          n, a/NR, amin, amax, t/NR, tmin, tmax }'
}
summary scratch scratch*.csv
summary nested nested*.csv
