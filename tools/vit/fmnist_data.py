"""Fashion-MNIST from Debian's dataset-fashion-mnist, and the image -> device
patch mapping of the fmnist_vit model (docs/datapath.md, "fmnist_vit input").
"""

import gzip
import os

import numpy as np

DATA_DIR = "/usr/share/datasets/fashion-mnist"
LABELS = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
          "Shirt", "Sneaker", "Bag", "Ankle boot"]

IMAGE_SIZE = 28
PATCH_H, PATCH_W = 4, 7             # patch: 4 rows x 7 columns
GRID_H = IMAGE_SIZE // PATCH_H      # 7 rows of patches
GRID_W = IMAGE_SIZE // PATCH_W      # 4 columns of patches
TOKENS = GRID_H * GRID_W            # 28; token 0 is the CLS placeholder
TOKEN_VALUES = PATCH_H * PATCH_W    # 28 (one channel)
INPUT_SCALE = 1.0 / 128.0           # int8 value q stands for q / 128


def _read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic = int.from_bytes(data[0:4], "big")
    ndim = magic & 0xFF
    if (magic >> 8) != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file")
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big")
            for i in range(ndim)]
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    return arr.reshape(dims)


def load(split, data_dir=DATA_DIR):
    """split: 'train' (60,000) or 't10k' (10,000). Returns (images uint8
    [N, 28, 28], labels uint8 [N])."""
    images = _read_idx(os.path.join(data_dir, f"{split}-images-idx3-ubyte.gz"))
    labels = _read_idx(os.path.join(data_dir, f"{split}-labels-idx1-ubyte.gz"))
    return images, labels


def quantize_pixels(images):
    """uint8 pixels -> int8: q = p - 128 (normalize with mean = std = 128/255,
    then quantize with scale 1/128; exact in integers)."""
    return (images.astype(np.int16) - 128).astype(np.int8)


def to_patches(images):
    """uint8 [N, 28, 28] -> int8 flat device input [N, 28, 28]: token
    py * 4 + px holds patch (py, px) (rows 4py..4py+3, columns 7px..7px+6),
    its values in row-major order iy * 7 + ix. Token 0 (the top-left patch)
    is the CLS placeholder: the datapath ignores its values, as HG-PIPE does
    with DeiT's first patch."""
    n = images.shape[0]
    q = quantize_pixels(images).reshape(n, GRID_H, PATCH_H, GRID_W, PATCH_W)
    return np.ascontiguousarray(
        q.transpose(0, 1, 3, 2, 4).reshape(n, TOKENS, TOKEN_VALUES))


def pack_device(flat):
    """Flat [N, T, V] int8 -> device order (accel/device_layout.h)."""
    n, t, v = flat.shape
    return np.ascontiguousarray(
        flat.reshape(n, t // 2, 2, v // 2, 2).transpose(0, 1, 3, 2, 4)
    ).reshape(n, t * v)
