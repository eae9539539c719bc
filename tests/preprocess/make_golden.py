#!/usr/bin/python3
"""Golden outputs for tests/preprocess/golden_test.cc, computed with Pillow and
NumPy (Debian's python3-pil, python3-numpy): the torchvision-style pipeline
(PIL resize, center crop, ToTensor, Normalize) followed by int8 quantization
and patchify, written independently of the C++ code.

Writes into tests/preprocess/data/ (a few KB, committed; tests never run
Python):
  photo_64x48.png            deterministic photo-like RGB test image
  fmnist_t10k_0.png          Fashion-MNIST test image 0 (Debian's
                             dataset-fashion-mnist), as a gray PNG
  <case>.int8                expected flat [tokens][token_values] int8 output

Run from the repository root:
  /usr/bin/python3 tests/preprocess/make_golden.py
"""

import os
import sys

import numpy as np
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "data")
sys.path.insert(0, os.path.join(HERE, "..", "..", "tools", "vit"))

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def photo():
    """64 x 48 RGB: smooth waves plus seeded noise (edges and texture)."""
    h, w = 48, 64
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    rgb = np.stack([
        128 + 90 * np.sin(x / 7.0 + y / 11.0),
        128 + 90 * np.cos(x / 5.0 - y / 9.0),
        40 + 3.2 * x + (y > 24) * 60,
    ], axis=-1)
    rng = np.random.default_rng(7)
    rgb += rng.normal(0, 12, rgb.shape)
    return Image.fromarray(np.clip(np.rint(rgb), 0, 255).astype(np.uint8), "RGB")


def resize_shorter_then_crop(img, shorter, crop_h, crop_w, resample):
    """torchvision Resize(shorter) + CenterCrop((crop_h, crop_w)) on PIL."""
    w, h = img.size
    if w <= h:
        new_w, new_h = shorter, int(shorter * h / w)
    else:
        new_h, new_w = shorter, int(shorter * w / h)
    if (new_w, new_h) != (w, h):
        img = img.resize((new_w, new_h), resample)
    top = int(round((new_h - crop_h) / 2.0))
    left = int(round((new_w - crop_w) / 2.0))
    return img.crop((left, top, left + crop_w, top + crop_h))


def quantize(img, mean, std, scale, zero_point):
    """ToTensor + Normalize in float32, then round half to even and clamp."""
    a = np.asarray(img, dtype=np.uint8)
    if a.ndim == 2:
        a = a[:, :, None]
    x = a.astype(np.float32) / np.float32(255)
    x = (x - np.array(mean, np.float32)) / np.array(std, np.float32)
    q = np.round(x / np.float32(scale)) + zero_point
    return np.clip(q, -128, 127).astype(np.int8)  # [H, W, C]


def patchify(q, ph, pw, replace_first_patch):
    """[H, W, C] -> [tokens, ph * pw * C], patches in row-major grid order,
    values (py, px, c) row-major; token 0 (the CLS placeholder) all zeros."""
    h, w, c = q.shape
    gh, gw = h // ph, w // pw
    p = q.reshape(gh, ph, gw, pw, c).transpose(0, 2, 1, 3, 4)
    p = p.reshape(gh * gw, ph * pw * c)
    if replace_first_patch:
        out = p.copy()
        out[0] = 0
    else:
        out = np.concatenate([np.zeros((1, p.shape[1]), np.int8), p])
    return out


def write(name, patches):
    path = os.path.join(DATA, name + ".int8")
    patches.astype(np.int8).tofile(path)
    print(f"{path}: {patches.shape}")


def main():
    os.makedirs(DATA, exist_ok=True)
    img = photo()
    img.save(os.path.join(DATA, "photo_64x48.png"), optimize=True)
    img = Image.open(os.path.join(DATA, "photo_64x48.png"))
    img.load()

    # RGB, shorter side 20 (downscale 2.4x), crop 16, 4x4 patches, ImageNet
    # normalization, scale 1/32: 16 tokens x 48 (patch 0 replaced).
    for name, resample in (("photo_bilinear", Image.BILINEAR),
                           ("photo_bicubic", Image.BICUBIC)):
        crop = resize_shorter_then_crop(img, 20, 16, 16, resample)
        write(name, patchify(quantize(crop, IMAGENET_MEAN, IMAGENET_STD,
                                      1 / 32, 0), 4, 4, True))

    # Upscale: shorter side 72 (1.5x), crop 16 x 24 (top 28, left 42), 4x4
    # patches: 4 x 6 = 24 tokens x 48 (patch 0 replaced). Bilinear, scale
    # 1/48, zero point 3.
    crop = resize_shorter_then_crop(img, 72, 16, 24, Image.BILINEAR)
    write("photo_upscale", patchify(quantize(crop, IMAGENET_MEAN, IMAGENET_STD,
                                             1 / 48, 3), 4, 4, True))

    # Gray (PIL convert("L")), resized directly to 28 x 28 (aspect ignored),
    # the fmnist normalization, 4 x 4 patches with a prepended CLS:
    # 50 tokens x 16.
    gray = img.convert("L").resize((28, 28), Image.BILINEAR)
    write("photo_gray28", patchify(quantize(gray, (128 / 255,), (128 / 255,),
                                            1 / 128, 0), 4, 4, False))

    # The fmnist_vit model's own definition (tools/vit/fmnist_data.py):
    # 28 tokens of 4 x 7. Its token 0 keeps the top-left patch (the datapath
    # ignores it); the preprocessor writes zeros there, so the golden does.
    import fmnist_data
    images, _ = fmnist_data.load("t10k")
    Image.fromarray(images[0], "L").save(os.path.join(DATA, "fmnist_t10k_0.png"),
                                         optimize=True)
    expected = fmnist_data.to_patches(images[:1])[0].copy()
    expected[0] = 0
    write("fmnist_t10k_0", expected)


if __name__ == "__main__":
    main()
