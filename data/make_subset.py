#!/usr/bin/env python3
"""Write the bundled Fashion-MNIST subset: a deterministic, class-balanced
sample of the official IDX files, in the same IDX gz format.

    python3 data/make_subset.py /usr/share/datasets/fashion-mnist data/fashion-mnist-subset

(`apt-get install dataset-fashion-mnist` puts the official files in
/usr/share/datasets/fashion-mnist.) Standard library only.

Selection: for each class, the source indices of that class are shuffled
with `random.Random(SEED)` (one generator for the whole run, classes in
order 0..9, train split first), the first PER_CLASS are kept, and the kept
indices are written in ascending source order, so the subset keeps the
original interleaving of classes. gzip mtime is 0 and no file name is
stored, so the bytes depend only on the input and on zlib's deflate.
"""

import gzip
import hashlib
import os
import random
import struct
import sys

SEED = 2019
CLASSES = 10
SPLITS = [("train", 1000), ("t10k", 200)]  # (prefix, images per class)


def read_idx(path, magic, ndim):
    with open(path, "rb") as f:
        raw = f.read()
    data = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
    head = 4 + 4 * ndim
    got_magic, *dims = struct.unpack(">I" + "I" * ndim, data[:head])
    if got_magic != magic:
        raise SystemExit(f"{path}: magic {got_magic:#010x}, expected {magic:#010x}")
    size = 1
    for d in dims:
        size *= d
    if len(data) - head != size:
        raise SystemExit(f"{path}: header says {dims} ({size} bytes), file holds {len(data) - head}")
    return dims, data[head:]


def find(src, name):
    for candidate in (name + ".gz", name):
        path = os.path.join(src, candidate)
        if os.path.exists(path):
            return path
    raise SystemExit(f"{src}: neither {name}.gz nor {name} exists")


def write_gz(path, payload):
    with open(path, "wb") as f:
        f.write(gzip.compress(payload, compresslevel=9, mtime=0))


def main():
    if len(sys.argv) != 3:
        raise SystemExit("usage: make_subset.py SOURCE_DIR OUT_DIR")
    src, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    rng = random.Random(SEED)
    for prefix, per_class in SPLITS:
        (n, rows, cols), pixels = read_idx(find(src, f"{prefix}-images-idx3-ubyte"), 0x00000803, 3)
        (n_labels,), labels = read_idx(find(src, f"{prefix}-labels-idx1-ubyte"), 0x00000801, 1)
        if n != n_labels:
            raise SystemExit(f"{prefix}: {n} images but {n_labels} labels")
        by_class = [[] for _ in range(CLASSES)]
        for i, label in enumerate(labels):
            if label >= CLASSES:
                raise SystemExit(f"{prefix}: label {label} at {i} is out of range")
            by_class[label].append(i)
        keep = []
        for c in range(CLASSES):
            idx = by_class[c]
            if len(idx) < per_class:
                raise SystemExit(f"{prefix}: class {c} has only {len(idx)} images")
            rng.shuffle(idx)
            keep.extend(idx[:per_class])
        keep.sort()
        size = rows * cols
        img = b"".join(pixels[i * size : (i + 1) * size] for i in keep)
        lab = bytes(labels[i] for i in keep)
        m = len(keep)
        images_path = os.path.join(out, f"{prefix}-images-idx3-ubyte.gz")
        labels_path = os.path.join(out, f"{prefix}-labels-idx1-ubyte.gz")
        write_gz(images_path, struct.pack(">IIII", 0x00000803, m, rows, cols) + img)
        write_gz(labels_path, struct.pack(">II", 0x00000801, m) + lab)
        for path in (images_path, labels_path):
            with open(path, "rb") as f:
                print(hashlib.sha256(f.read()).hexdigest(), os.path.basename(path))


if __name__ == "__main__":
    main()
