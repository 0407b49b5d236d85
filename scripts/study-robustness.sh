#!/usr/bin/env bash
# Robustness of per-layer vs spline controls (the SpliNet paper's claim) on Peaks: now the
# study examples/study-splinet.toml (a Latin hypercube over Adam learning rate, Tikhonov
# weight, depth and initialization amplitude, 3 seeds, ResNet vs SpliNet), run by
# `layerpar study`; this wrapper only launches it. The summary table is printed; runs.csv,
# summary.csv and the box plots go to OUT (default study-splinet). Rerun to continue an
# interrupted study. Usage: scripts/study-robustness.sh [layerpar] [ranks]
set -euo pipefail
BIN=$(realpath "${1:-target/release/layerpar}")
RANKS=${2:-1}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
exec mpirun --oversubscribe -n "$RANKS" "$BIN" study "$(dirname "$0")/../examples/study-splinet.toml" --out "${OUT:-study-splinet}"
