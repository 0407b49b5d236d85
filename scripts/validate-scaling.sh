#!/bin/bash
# Validation of the scaling model on this machine: calibrate `layerpar scaling` on one rank,
# then measure real training iterations at every (D, L) with D × L = P for P in $RANKS and
# print measured against predicted time per iteration, with the model's error (min/median/max
# of $REPEATS runs per point). The model is told the cores are shared (--cores $CORES).
#
#   scripts/validate-scaling.sh [--set section.key=value]...
#
# Environment: LAYERPAR (binary), RANKS ("1 2 4"), CORES (nproc), REPEATS (3), ITERATIONS
# (3), DATA_GROUPS ("1": the data-group counts D to try; D > 1 runs pass
# --set parallel.data_groups=D and --set parallel.chunks=$CHUNKS), CHUNKS (the largest D).
set -euo pipefail
LAYERPAR=${LAYERPAR:-target/release/layerpar}
RANKS=${RANKS:-"1 2 4"}
CORES=${CORES:-$(nproc)}
REPEATS=${REPEATS:-3}
ITERATIONS=${ITERATIONS:-3}
DATA_GROUPS=${DATA_GROUPS:-1}
CHUNKS=${CHUNKS:-$(printf "%s\n" $DATA_GROUPS | sort -n | tail -1)}
SETS=("$@")
export OMPI_MCA_mpi_yield_when_idle=1
DIR=$(mktemp -d)
trap 'rm -rf "$DIR"' EXIT
"$LAYERPAR" scaling "${SETS[@]}" --iterations "$ITERATIONS" --cores "$CORES" \
  --save "$DIR/model.toml" --max-ranks 1 > "$DIR/cal.txt"
grep -E "^(layerpar scaling|model calibrated|serial reference)" "$DIR/cal.txt"
stats() { sort -g | awk '{ v[NR] = $1 } END { printf "%.4f/%.4f/%.4f", v[1], v[int((NR + 1) / 2)], v[NR] }'; }
printf "%4s %7s %26s %10s %24s\n" P "D × L" "measured s/it (min/med/max)" "model s/it" "error % (min/med/max)"
for p in $RANKS; do
  for d in $DATA_GROUPS; do
    [ $((p % d)) -eq 0 ] || continue
    extra=()
    [ "$d" -gt 1 ] && extra=(--set "parallel.data_groups=$d" --set "parallel.chunks=$CHUNKS")
    : > "$DIR/m.txt"
    : > "$DIR/e.txt"
    if [ "$d" -eq 1 ]; then
      for _ in $(seq "$REPEATS"); do
        mpirun --oversubscribe -n "$p" "$LAYERPAR" scaling "${SETS[@]}" \
          --iterations "$ITERATIONS" --cores "$CORES" --model "$DIR/model.toml" \
          --data-groups "$d" --max-ranks 1 > "$DIR/run.txt"
        line=$(grep "^time per iteration" "$DIR/run.txt")
        echo "$line" | sed -E 's/.*measured ([0-9.]+) s.*/\1/' >> "$DIR/m.txt"
        echo "$line" | sed -E 's/.*model ([0-9.]+) s.*/\1/' > "$DIR/model.txt"
        echo "$line" | sed -E 's/.*\(([-+0-9.]+) %\).*/\1/' >> "$DIR/e.txt"
      done
    else
      # `layerpar scaling` measures one row of ranks; a grid is measured by training on it
      # (time per iteration after the first, from the history's time_s) against the
      # model's prediction for D × (P/D) from its table.
      "$LAYERPAR" scaling "${SETS[@]}" --iterations 1 --cores "$CORES" --model "$DIR/model.toml" \
        --data-groups "$d" --max-ranks "$p" > "$DIR/pred.txt"
      awk -v p="$p" '$1 == p { print $3 }' "$DIR/pred.txt" > "$DIR/model.txt"
      model=$(cat "$DIR/model.txt")
      for r in $(seq "$REPEATS"); do
        mpirun --oversubscribe -n "$p" "$LAYERPAR" train "${SETS[@]}" \
          --set "parallel.data_groups=$d" --set "parallel.chunks=$CHUNKS" \
          --set "optimizer.max_iter=$((ITERATIONS + 1))" --set output.progress=none \
          --set "output.checkpoint_dir=$DIR/ckpt-$p-$d-$r" --history "$DIR/h.csv" > "$DIR/run.txt"
        awk -F, -v n="$ITERATIONS" 'NR == 3 { t1 = $9 } END { printf "%.4f\n", ($9 - t1) / n }' \
          "$DIR/h.csv" >> "$DIR/m.txt"
        awk -v m="$model" 'END { printf "%.1f\n", 100 * (m - $1) / $1 }' "$DIR/m.txt" >> "$DIR/e.txt"
      done
    fi
    printf "%4d %7s %26s %10s %24s\n" "$p" "$d×$((p / d))" "$(stats < "$DIR/m.txt")" \
      "$(cat "$DIR/model.txt")" "$(stats < "$DIR/e.txt")"
  done
done
