#!/usr/bin/env bash
# Install the system packages layerpar needs to build and test: an MPI (OpenMPI),
# HDF5 (library, headers and tools), pkg-config and libclang (for rsmpi's bindgen).
# Idempotent: packages already present are not touched. Without root it only reports.
set -euo pipefail

# command (or file) that proves the package is present  ->  Debian package
need=()
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
# slurm-wlm and munge: the job scripts' test runs them on a throwaway single-node cluster;
# iproute2: the multi-host test joins network namespaces; python3-h5py: a test reads a
# checkpoint from Python.
for pkg in openmpi-bin libopenmpi-dev libhdf5-dev hdf5-tools pkg-config libclang-dev clang slurm-wlm munge iproute2 python3-h5py; do
  have_pkg "$pkg" || need+=("$pkg")
done

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo is not installed; install Rust (1.85 or newer) with rustup: https://rustup.rs" >&2
  cargo_missing=1
fi

if [ ${#need[@]} -eq 0 ]; then
  [ -z "${cargo_missing:-}" ] || exit 1
  echo "setup: system packages present"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "setup: missing system packages: ${need[*]}" >&2
  echo "setup: not root; install them with: sudo apt-get install -y ${need[*]}" >&2
  exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "setup: missing system packages: ${need[*]}, and apt-get is not available; install them with your package manager" >&2
  exit 1
fi

echo "setup: installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
echo "setup: done"
[ -z "${cargo_missing:-}" ] || exit 1
