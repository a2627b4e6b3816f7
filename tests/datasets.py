"""Generated files in the exact formats torchvision's dataset classes read.

The images carry their label in where they are bright, so that a small model can learn
them in a few steps and tests can tell learning from chance.
"""

from __future__ import annotations

import hashlib
import pickle
import struct
from pathlib import Path

import numpy as np


def labelled_images(
    count: int, size: int, channels: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images [count, size, size, channels] whose bright band is set by the label."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, count)
    images = rng.integers(0, 40, (count, size, size, channels), dtype=np.uint8)
    band = size // 10
    for image, label in zip(images, labels, strict=True):
        image[label * band : (label + 1) * band] = 255
    return images, labels


def write_mnist(root: Path, train: int = 200, test: int = 100) -> Path:
    """root/MNIST/raw/*-ubyte as IDX files (big-endian header, then raw bytes)."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, count, seed in (("train", train, 0), ("t10k", test, 1)):
        images, labels = labelled_images(count, 28, 1, seed)
        with open(raw / f"{prefix}-images-idx3-ubyte", "wb") as f:
            f.write(struct.pack(">IIII", 0x803, count, 28, 28))
            f.write(images[..., 0].tobytes())
        with open(raw / f"{prefix}-labels-idx1-ubyte", "wb") as f:
            f.write(struct.pack(">II", 0x801, count))
            f.write(labels.astype(np.uint8).tobytes())
    return root


def write_broken_mnist(root: Path) -> Path:
    """root/MNIST/raw holding every file MNIST needs, none of them a valid IDX file."""
    from arnn.tasks.images import MNIST_FILES

    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for name in MNIST_FILES:
        (raw / name).write_bytes(b"not an IDX file")
    return raw


def write_cifar10(root: Path, per_batch: int = 40, test: int = 40) -> dict[str, str]:
    """root/cifar-10-batches-py as CIFAR's pickles; returns each file's md5, which the
    caller patches into torchvision's checksum lists (real files, real class)."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for seed, name in enumerate(names):
        images, labels = labelled_images(test if name == "test_batch" else per_batch, 32, 3, seed)
        # CIFAR rows are 3072 bytes: the red plane, then green, then blue.
        data = images.transpose(0, 3, 1, 2).reshape(len(images), 3072)
        with open(folder / name, "wb") as f:
            pickle.dump({"data": data, "labels": labels.tolist()}, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"class{i}" for i in range(10)]}, f)
    return {path.name: hashlib.md5(path.read_bytes()).hexdigest() for path in folder.iterdir()}
