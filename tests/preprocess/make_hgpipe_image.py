#!/usr/bin/python3
"""Reconstructs the HG-PIPE authors' traced DeiT-tiny input image from their
golden data, once, for tests/preprocess/hgpipe_golden_test.cc.

The authors (hguq/HG-PIPE, MIT licence) publish what their host sends the
board for one ImageNet image, refs/patch_embed_input.txt: 196 x 768 int8
values. What that file is (checked here, exits non-zero otherwise):
  - token t (1..195) holds patch t-1 of the 14 x 14 grid (row-major), and
    token 0 the last patch (np.roll(patches, 1, axis=0));
  - within a token, value (c * 16 + iy) * 16 + ix (channel-major, CHW);
  - q = round(x / s), s = 2.64 / 127, x = (v / 255 - mean[c]) / std[c] with
    ImageNet's mean and std; refs/network_raw_input.txt is trunc(x) of the
    same image, [3][224][224].
The original pixels are not published, but each int8 value pins its pixel
to one or two uint8 values (a pixel step is ~0.82 of a quantization step);
this picks, for each value, a pixel p whose quantized value equals it
(computed in float32 step by step, as preprocess/preprocessor.cc does) and
whose trunc(x) equals network_raw_input, preferring the smaller p.

Writes into tests/preprocess/data/ (committed; tests never run Python and
never read the authors' files):
  hgpipe_deit_tiny_224.png           the 224 x 224 RGB image
  hgpipe_patch_embed_input.int8      the authors' 150,528 int8 values,
                                     token-major [196][768], raw bytes
Run from the repository root, with the authors' case/refs/ folder (a
checkout of hguq/HG-PIPE; the files used here: the public fork
OpenDarrenlu/HG-PIPE at commit a44bb448):
  /usr/bin/python3 tests/preprocess/make_hgpipe_image.py HG-PIPE/case/refs
"""

import os
import sys

import numpy as np
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "data")

MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
SCALE = np.float32(2.64 / 127)


def load(refs, name):
    with open(os.path.join(refs, name)) as f:
        text = f.read().strip().rstrip(",")
    return np.array([int(v) for v in text.split(",")], dtype=np.int64)


def quantize_table():
    """q[c][p] and trunc(x)[c][p] for every channel c and pixel value p, in
    float32 operation by operation (ToTensor, Normalize, / scale, round half
    to even), as the C++ lookup table."""
    p = np.arange(256, dtype=np.float32)
    x = (p[None, :] / np.float32(255) - MEAN[:, None]) / STD[:, None]
    q = np.clip(np.rint(x / SCALE), -128, 127).astype(np.int64)
    return q, np.trunc(x).astype(np.int64)


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    refs = sys.argv[1]
    tokens = load(refs, "patch_embed_input.txt").reshape(196, 768)
    raw = load(refs, "network_raw_input.txt").reshape(3, 224, 224)

    # Undo the rotation (token 0 = last patch) and the CHW-in-token order.
    patches = np.roll(tokens, -1, axis=0)  # patches[k] = patch k
    chw = patches.reshape(14, 14, 3, 16, 16).transpose(2, 0, 3, 1, 4).reshape(3, 224, 224)

    q_of, trunc_of = quantize_table()
    image = np.zeros((224, 224, 3), dtype=np.uint8)
    for c in range(3):
        for q in np.unique(chw[c]):
            for r in np.unique(raw[c][chw[c] == q]):
                candidates = np.nonzero((q_of[c] == q) & (trunc_of[c] == r))[0]
                if len(candidates) == 0:
                    sys.exit(f"no pixel of channel {c} gives q={q} with trunc(x)={r}")
                image[..., c][(chw[c] == q) & (raw[c] == r)] = candidates[0]

    # Check: forward transform of the image gives the authors' values exactly.
    q_img = np.stack([q_of[c][image[..., c]] for c in range(3)])  # [3][224][224]
    assert np.array_equal(q_img, chw), "quantized image differs"
    assert np.array_equal(np.stack([trunc_of[c][image[..., c]] for c in range(3)]), raw)
    fwd = q_img.reshape(3, 14, 16, 14, 16).transpose(1, 3, 0, 2, 4).reshape(196, 768)
    assert np.array_equal(np.roll(fwd, 1, axis=0), tokens), "token order differs"

    os.makedirs(DATA, exist_ok=True)
    png = os.path.join(DATA, "hgpipe_deit_tiny_224.png")
    Image.fromarray(image, "RGB").save(png, optimize=True)
    assert np.array_equal(np.asarray(Image.open(png)), image)
    with open(os.path.join(DATA, "hgpipe_patch_embed_input.int8"), "wb") as f:
        f.write(tokens.astype(np.int8).tobytes())
    print("wrote", png, "and hgpipe_patch_embed_input.int8")


if __name__ == "__main__":
    main()
