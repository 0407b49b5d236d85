#!/usr/bin/env bash
# Prints the `parameters: … fingerprint` line of a few standard runs on 1–4 ranks, for
# before/after comparisons of changes that must not alter results.
# Usage: scripts/fingerprints.sh [path/to/layerpar] [ranks...]   (default ranks: 1 2 3 4)
set -euo pipefail
BIN=$(realpath "${1:-target/release/layerpar}")
shift || true
RANKS=("${@:-1 2 3 4}")
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
ONESHOT=(--set mgrit.max_levels=2 --set mgrit.cfactor=2 --set mgrit.max_iter=2 --set mgrit.adjoint_max_iter=2)
SPLINE=(--set controls.kind=spline --set controls.count=6 --set optimizer.max_iter=40)
ADAM=(--set optimizer.kind=adam --set optimizer.batch_size=500 --set optimizer.learning_rate=0.01
      --set optimizer.max_iter=5)
case_run() { # name ranks args...
  local name=$1 p=$2; shift 2
  local line
  line=$(cd "$work" && mpirun --oversubscribe -n "$p" "$BIN" train --set output.progress=none \
    --set output.checkpoint_dir="$work/$name-$p" --history "$work/$name-$p.csv" "$@" | grep '^parameters:')
  printf "%-16s %s\n" "$name" "$line"
}
for p in ${RANKS[@]}; do
  case_run default "$p"
  case_run oneshot "$p" "${ONESHOT[@]}"
  case_run spline "$p" "${SPLINE[@]}"
  case_run spline-oneshot "$p" "${SPLINE[@]}" "${ONESHOT[@]}"
  case_run adam-batch "$p" "${ADAM[@]}"
  case_run adam-oneshot "$p" "${ADAM[@]}" "${ONESHOT[@]}"
done
