#!/usr/bin/python3
"""Golden vectors for the C++ datapath: device-order inputs and the device
output words the reference (hgpipe.py) computes for them, stored in the
weight container format (docs/datapath.md, "Golden vectors").

  /usr/bin/python3 tools/vit/golden.py WEIGHTS OUT [--fmnist N] [--random N]
"""

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fmnist_data  # noqa: E402
import hgpipe  # noqa: E402
import weightfile  # noqa: E402


def write_golden(path, model_name, flat, words, labels=None):
    """flat: int8 [N, T, V] (not device order); words: the device's logit
    words [N, classes]; labels: true class per image, -1 if none."""
    n, t, v = flat.shape
    manifest = {"model": model_name, "images": n, "tokens": t,
                "token_values": v, "classes": words.shape[1]}
    tensors = {"input": hgpipe.to_device_order(flat).astype(np.int8),
               "output": np.asarray(words).astype(np.int64).astype(np.int32)}
    if labels is not None:
        tensors["true_label"] = np.asarray(labels, dtype=np.int32)
    weightfile.write(path, manifest, tensors, compress=True)


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


def logit_words(model, flat, batch=500):
    logits = np.concatenate([model.forward(flat[i:i + batch])
                             for i in range(0, len(flat), batch)])
    return hgpipe.encode_logit_words(logits)


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
    model = hgpipe.Model.load(args.weights)
    parts, labels = [], []
    if args.fmnist:
        img, lbl = fmnist_data.load("t10k")
        parts.append(fmnist_data.to_patches(img[:args.fmnist]))
        labels += [int(x) for x in lbl[:args.fmnist]]
    if args.random:
        parts.append(stress_inputs(args.random, model.tokens,
                                   model.token_values, args.seed))
        labels += [-1] * args.random
    flat = np.concatenate(parts)
    write_golden(args.out, model.manifest["name"], flat,
                 logit_words(model, flat), labels)
    print(f"wrote {args.out}: {len(flat)} images")


if __name__ == "__main__":
    main()
