#!/usr/bin/python3
"""Golden vectors for the C++ datapath: device-order inputs and the device
output words the integer reference (intref.py) computes for them, stored in
the weight container format (docs/datapath.md, "Golden vectors").

  /usr/bin/python3 tools/vit/golden.py WEIGHTS OUT [--fmnist N] [--random N]
"""

import argparse
import os
import struct
import sys
import zlib

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fmnist_data  # noqa: E402
import intref  # noqa: E402
import weightfile  # noqa: E402


def write_golden(path, model_name, flat, words, labels=None):
    """flat: int8 [N, T, V]; words: uint32 [N, C]."""
    n, t, v = flat.shape
    manifest = {"model": model_name, "images": n, "tokens": t,
                "token_values": v, "classes": words.shape[1]}
    tensors = {"input": fmnist_data.pack_device(flat).astype(np.int8),
               "output": words.astype(np.int64).astype(np.int32)}
    if labels is not None:
        tensors["true_label"] = np.asarray(labels, dtype=np.int32)
    # Same container as weight files, free-form manifest.
    out = bytearray(weightfile.MAGIC) + struct.pack("<I", weightfile.VERSION)
    text = "".join(f"{k} {v_}\n" for k, v_ in manifest.items()).encode()
    out += struct.pack("<I", len(text)) + text
    out += struct.pack("<I", len(tensors))
    for name, arr in tensors.items():
        arr = np.ascontiguousarray(arr)
        nb = name.encode()
        out += struct.pack("<H", len(nb)) + nb
        out += struct.pack("<BB", weightfile.CODES[arr.dtype], arr.ndim)
        out += struct.pack(f"<{arr.ndim}I", *arr.shape)
        data = arr.tobytes()
        out += struct.pack("<Q", len(data)) + data
    out += struct.pack("<I", zlib.crc32(bytes(out)) & 0xFFFFFFFF)
    with open(path, "wb") as f:
        f.write(out)


def stress_inputs(n, tokens, token_values, seed):
    """Inputs that push the datapath to its clamps: full-range noise, all
    -128, all 127, and sparse spikes."""
    rng = np.random.default_rng(seed)
    out = rng.integers(-128, 128, size=(n, tokens, token_values),
                       dtype=np.int16)
    if n > 1:
        out[1] = -128
    if n > 2:
        out[2] = 127
    if n > 3:
        out[3] = 0
        out[3, rng.integers(0, tokens, 8), rng.integers(0, token_values, 8)] = 127
    return out.astype(np.int8)


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("weights")
    p.add_argument("out")
    p.add_argument("--fmnist", type=int, default=0,
                   help="first N Fashion-MNIST test images")
    p.add_argument("--random", type=int, default=8,
                   help="N stress inputs (noise, extremes)")
    p.add_argument("--seed", type=int, default=7)
    args = p.parse_args()
    manifest, tensors = weightfile.read(args.weights)
    t, v = manifest["tokens"], manifest["token_values"]
    parts, labels = [], []
    if args.fmnist:
        img, lbl = fmnist_data.load("t10k")
        parts.append(fmnist_data.to_patches(img[:args.fmnist]))
        labels += [int(x) for x in lbl[:args.fmnist]]
    if args.random:
        parts.append(stress_inputs(args.random, t, v, args.seed))
        labels += [-1] * args.random
    flat = np.concatenate(parts)
    logits = intref.IntVit(manifest, tensors).forward(flat)
    write_golden(args.out, manifest["name"], flat,
                 intref.encode_logit_words(logits), labels)
    print(f"wrote {args.out}: {len(flat)} images")


if __name__ == "__main__":
    main()
