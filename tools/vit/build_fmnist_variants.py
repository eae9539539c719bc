#!/usr/bin/python3
"""Builds fmnist_vit's bitstream variants (docs/datapath.md, "Variants") into
the model directory, beside the full model:

  skipN   the full model's float weights with N residual branches skipped
          (attention or MLP sub-blocks), no retraining (Sreedhar et al.,
          2022): the branches are chosen greedily, each the one whose removal
          costs the least float top-1 on --select training images;
  taylor  every attention replaced by ViTALiTy's linear Taylor attention,
          fine-tuned from the full model's weights (train_fmnist.py
          --init ... --attn-kind taylor): post-hoc replacement loses 23
          points.

Each is quantized on the same calibration images as the full model
(build_fmnist_model.py) and written as OUT/fmnist_vit-NAME.hgvit with its
golden vectors OUT/golden-NAME.hgvit; float and integer top-1 on the 10,000
test images are printed (the integer one is what the server answers, bit for
bit). The accuracy each manifest states is measured through the server
afterwards (eval_fmnist_server.py --weights FILE --record).

  /usr/bin/python3 tools/vit/build_fmnist_variants.py \\
      --checkpoint /tmp/hgpipe-fmnist/float.pt \\
      --taylor-checkpoint /tmp/hgpipe-fmnist/taylor.pt --out models/fmnist_vit
"""

import argparse
import json
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import build_fmnist_model  # noqa: E402
import fmnist_data  # noqa: E402
import quantize  # noqa: E402


def branches(depth):
    return [(i, part) for i in range(depth) for part in ("attn", "mlp")]


def kinds_without(depth, skipped):
    attn = ["none" if (i, "attn") in skipped else "softmax"
            for i in range(depth)]
    mlp = ["none" if (i, "mlp") in skipped else "gelu" for i in range(depth)]
    return attn, mlp


def greedy_skips(checkpoint, flat, labels, steps, log=print):
    """The order in which to skip branches: each step skips the branch whose
    removal (with those already skipped) keeps the most float top-1 on
    (flat, labels). Returns [(branch, accuracy after skipping it)]."""
    depth = build_fmnist_model.load_float(checkpoint).geometry.depth
    skipped, order = [], []
    for step in range(steps):
        best = None
        for b in branches(depth):
            if b in skipped:
                continue
            m = build_fmnist_model.load_float(
                checkpoint, *kinds_without(depth, skipped + [b]))
            acc = build_fmnist_model.float_accuracy(m, flat, labels)
            log(f"  step {step + 1}: skipping {b[1]} {b[0]} too: "
                f"{acc * 100:.2f}%")
            if best is None or acc > best[1]:
                best = (b, acc)
        skipped.append(best[0])
        order.append(best)
        log(f"step {step + 1}: skip {best[0][1]} {best[0][0]} "
            f"({best[1] * 100:.2f}% on the selection images)")
    return order


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="the full float model")
    p.add_argument("--taylor-checkpoint",
                   help="the fine-tuned Taylor-attention float model")
    p.add_argument("--out", required=True, help="model directory")
    p.add_argument("--skips", default="1,2,3",
                   help="numbers of skipped branches, one variant each")
    p.add_argument("--select", type=int, default=10000,
                   help="training images that rank the branches")
    p.add_argument("--calibration", type=int, default=2000)
    p.add_argument("--golden", type=int, default=64)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--report", help="write what was built as JSON here")
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    skips = sorted({int(x) for x in args.skips.split(",") if x})
    train_img, train_lbl = fmnist_data.load("train")
    rng = np.random.default_rng(1)
    pick = rng.choice(len(train_img), args.select, replace=False)
    select = fmnist_data.to_patches(train_img[pick])
    t0 = time.time()
    order = greedy_skips(args.checkpoint, select, train_lbl[pick],
                         max(skips, default=0))
    print(f"ranked in {time.time() - t0:.0f} s")

    calib = build_fmnist_model.calibration_patches(args.calibration)
    test_img, test_lbl = fmnist_data.load("t10k")
    flat = fmnist_data.to_patches(test_img)
    depth = build_fmnist_model.load_float(args.checkpoint).geometry.depth
    report = {"skip_order": [[b[0][1], b[0][0], b[1]] for b in order],
              "variants": {}}
    todo = [(f"skip{n}", args.checkpoint,
             kinds_without(depth, [b for b, _ in order[:n]])) for n in skips]
    if args.taylor_checkpoint:
        todo.append(("taylor", args.taylor_checkpoint,
                     (["taylor"] * depth, ["gelu"] * depth)))
    failed = []
    for name, ckpt, (attn, mlp) in todo:
        print(f"== {name}: attention {attn}, MLP {mlp}")
        model = build_fmnist_model.load_float(ckpt, attn, mlp)
        r = build_fmnist_model.export(
            model, f"fmnist_vit-{name}",
            os.path.join(args.out, f"fmnist_vit-{name}.hgvit"),
            os.path.join(args.out, f"golden-{name}.hgvit"), calib, flat,
            test_lbl, args.golden)
        terms = quantize.timing_terms(
            {k: int(r["manifest"][k]) for k in quantize.DEIT_TINY},
            attn, mlp)
        report["variants"][name] = {
            "attn_kinds": attn, "mlp_kinds": mlp, "float": r["float"],
            "integer": r["integer"], "interval_cycles": terms["interval"],
            "latency_cycles": terms["latency"], "macs": terms["work"],
            "compute_interval_cycles": terms["compute_interval"]}
        if r["wraps"]:
            failed.append(name)
    print(json.dumps(report, indent=1))
    if args.report:
        with open(args.report, "w") as f:
            json.dump(report, f, indent=1)
    if failed:
        sys.exit(f"types wrap on test images in {failed}: more headroom")


if __name__ == "__main__":
    main()
