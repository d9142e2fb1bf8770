"""Fashion-MNIST loader for the fashion example (no download).

Reads the gzipped IDX files that Debian's ``dataset-fashion-mnist`` package installs
under /usr/share/datasets/fashion-mnist and returns 784-step sequences: one pixel per
step in row-major order, value / 255.

    from examples.fashion.data import load_fashion   # or: sys.path insert + import data
    x, y = load_fashion("train")   # x float32 (60000, 784, 1), y int64 (60000,)
    x, y = load_fashion("test")    # x float32 (10000, 784, 1), y int64 (10000,)
"""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np

DATA_DIR = Path(os.environ.get("FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist"))
_PREFIX = {"train": "train", "test": "t10k", "t10k": "t10k"}
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
           "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        raw = f.read()
    zero, dtype_code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype_code != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file")
    dims = struct.unpack(">" + "I" * ndim, raw[4:4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise ValueError(f"{path}: expected {dims}, got {data.size} bytes")
    return data.reshape(dims)


def load_fashion(split: str = "train", data_dir: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Return (x float32 (n, 784, 1) in [0, 1], y int64 (n,)) for split 'train' or 'test'."""
    if split not in _PREFIX:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    d = Path(data_dir) if data_dir is not None else DATA_DIR
    p = _PREFIX[split]
    img = _read_idx(d / f"{p}-images-idx3-ubyte.gz")
    lab = _read_idx(d / f"{p}-labels-idx1-ubyte.gz")
    if img.shape[0] != lab.shape[0] or img.shape[1:] != (28, 28):
        raise ValueError(f"unexpected shapes {img.shape} / {lab.shape}")
    x = (img.reshape(len(img), 784, 1).astype(np.float32) / np.float32(255.0))
    return x, lab.astype(np.int64)


if __name__ == "__main__":
    for s in ("train", "test"):
        x, y = load_fashion(s)
        print(s, x.shape, x.dtype, float(x.min()), float(x.max()), y.shape, y.dtype, np.bincount(y))
