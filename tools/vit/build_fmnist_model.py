#!/usr/bin/python3
"""Quantizes the trained float fmnist_vit into HG-PIPE's datapath
(quantize.py), writes the model directory, and reports float and integer
top-1 on the 10,000 Fashion-MNIST test images.

  /usr/bin/python3 tools/vit/train_fmnist.py --out /tmp/hgpipe-fmnist/float.pt
  /usr/bin/python3 tools/vit/build_fmnist_model.py \\
      --checkpoint /tmp/hgpipe-fmnist/float.pt --out models/fmnist_vit

Writes OUT/fmnist_vit.hgvit (gzip container), OUT/labels.txt and
OUT/golden.hgvit (the first --golden test images and 8 stress inputs with
the reference's logit words). Also checks that no value on any test image
falls outside its type (no wrap) and prints how much headroom the measured
types (residual stream, logits) kept.
"""

import argparse
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fmnist_data  # noqa: E402
import golden  # noqa: E402
import hgpipe  # noqa: E402
import quantize  # noqa: E402
import weightfile  # noqa: E402
from vit_model import HgVit, VitGeometry  # noqa: E402


def float_accuracy(model, flat, labels, batch=1000):
    x = torch.from_numpy(flat.astype(np.float32) * fmnist_data.INPUT_SCALE)
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(x), batch):
            correct += int((model(x[i:i + batch]).argmax(1).numpy() ==
                            labels[i:i + batch]).sum())
    return correct / len(x)


def int_accuracy(net, flat, labels, batch=500):
    correct = 0
    for i in range(0, len(flat), batch):
        logits = net.forward(flat[i:i + batch])
        correct += int((logits.argmax(1) == labels[i:i + batch]).sum())
    return correct / len(flat)


def export(model, name, weights_path, golden_path, calib, flat, labels,
           golden_count=64, log=print):
    """Quantizes the float `model` (quantize.py) on `calib` (device patches),
    writes `weights_path` (gzip container) and `golden_path` (the first
    `golden_count` of `flat` and 8 stress inputs with the reference's words),
    and measures float and integer top-1 on `flat` / `labels`. Returns a
    dict: float, integer (accuracies), manifest, wraps (types that wrap on
    `flat`: must be empty)."""
    t0 = time.time()
    manifest, tensors, report = quantize.quantize(
        model, calib, fmnist_data.INPUT_SCALE, name=name,
        labels=fmnist_data.LABELS)
    for n in report["notes"]:
        log(n)
    log(f"quantized in {time.time() - t0:.0f} s")
    weightfile.write(weights_path, manifest, tensors, compress=True)
    net = hgpipe.Model.load(weights_path)  # what C++ will see

    t0 = time.time()
    fa = float_accuracy(model, flat, labels)
    ia = int_accuracy(net, flat, labels)
    log(f"{name}: float top-1 {fa * 100:.2f}%, integer top-1 {ia * 100:.2f}% "
        f"({len(flat):,} test images, {time.time() - t0:.0f} s)")
    probe = quantize.RangeProbe(net.manifest, net.t)
    quantize.forward_batched(probe, flat)
    rows = quantize.headroom(probe.ranges)
    for h, tag, t, lo, hi in rows:
        if h < 0 or tag.endswith((".residual.out", "head.acc")):
            log(f"test images: {h} bits of headroom in {tag} ({t}, range "
                f"{lo}..{hi})")
    wraps = [r for r in rows if r[0] < 0]

    gflat = np.concatenate([
        flat[:golden_count],
        golden.stress_inputs(8, net.tokens, net.token_values, seed=7)])
    glabels = [int(x) for x in labels[:golden_count]] + [-1] * 8
    golden.write_golden(golden_path, name, gflat, golden.logit_words(net, gflat),
                        glabels)
    size = os.path.getsize(weights_path)
    log(f"wrote {weights_path} ({size} bytes), {golden_path} "
        f"({len(gflat)} images)")
    log(f"logit_scale {manifest['logit_scale']}, timing "
        f"{manifest['interval_cycles']} / {manifest['latency_cycles']} "
        f"cycles at {manifest['clock_hz']} Hz")
    return dict(float=fa, integer=ia, manifest=manifest, wraps=wraps)


def calibration_patches(count, seed=0):
    train_img, _ = fmnist_data.load("train")
    rng = np.random.default_rng(seed)
    return fmnist_data.to_patches(
        train_img[rng.choice(len(train_img), count, replace=False)])


def load_float(path, attn_kinds=None, mlp_kinds=None):
    ckpt = torch.load(path)
    model = HgVit(VitGeometry(**ckpt["geometry"]), attn_kinds=attn_kinds,
                  mlp_kinds=mlp_kinds)
    model.load_state_dict(ckpt["state_dict"])
    model.eval()
    return model


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--out", required=True, help="model directory")
    p.add_argument("--calibration", type=int, default=2000,
                   help="training images used to calibrate")
    p.add_argument("--golden", type=int, default=64,
                   help="test images in the golden vectors (+ 8 stress)")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    model = load_float(args.checkpoint)
    calib = calibration_patches(args.calibration)
    test_img, test_lbl = fmnist_data.load("t10k")
    flat = fmnist_data.to_patches(test_img)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "labels.txt"), "w") as f:
        f.write("\n".join(fmnist_data.LABELS) + "\n")
    r = export(model, "fmnist_vit", os.path.join(args.out, "fmnist_vit.hgvit"),
               os.path.join(args.out, "golden.hgvit"), calib, flat, test_lbl,
               args.golden)
    if r["wraps"]:
        sys.exit(f"{len(r['wraps'])} types wrap on test images: more headroom")


if __name__ == "__main__":
    main()
