#!/usr/bin/python3
"""Trains the float fmnist_vit (seeded, one CPU thread by default, about 17
minutes on a loaded 2-core machine).

  /usr/bin/python3 tools/vit/train_fmnist.py --out /tmp/hgpipe-fmnist/float.pt

Then quantize, export and check it with tools/vit/build_fmnist_model.py.

The Taylor-attention variant (docs/datapath.md, "Variants") is fine-tuned
from the full model's weights with every attention replaced by ViTALiTy's
Taylor attention (about 9 minutes):

  /usr/bin/python3 tools/vit/train_fmnist.py --init /tmp/hgpipe-fmnist/float.pt \
      --attn-kind taylor --epochs 4 --lr 1e-3 --out /tmp/hgpipe-fmnist/taylor.pt
"""

import argparse
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fmnist_data  # noqa: E402
from vit_model import FMNIST_GEOMETRY, HgVit  # noqa: E402


def to_float_input(images):
    return torch.from_numpy(fmnist_data.to_patches(images).astype(np.float32)
                            * fmnist_data.INPUT_SCALE)


def evaluate(model, x, y, batch=1000):
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(x), batch):
            correct += (model(x[i:i + batch]).argmax(1) == y[i:i + batch]
                        ).sum().item()
    return correct / len(x)


def augment(images, rng):
    """Random horizontal flip and +-2 pixel shifts (uint8 [N, 28, 28])."""
    n = images.shape[0]
    out = images.copy()
    flip = rng.random(n) < 0.5
    out[flip] = out[flip][:, :, ::-1]
    padded = np.pad(out, ((0, 0), (2, 2), (2, 2)))
    dy = rng.integers(0, 5, n)
    dx = rng.integers(0, 5, n)
    for i in range(n):
        out[i] = padded[i, dy[i]:dy[i] + 28, dx[i]:dx[i] + 28]
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", required=True, help="float checkpoint to write")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=20240717)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--augment", action="store_true")
    p.add_argument("--init", help="start from this checkpoint's weights "
                   "(fine-tuning) instead of a random initialization")
    p.add_argument("--attn-kind", default="softmax",
                   choices=("softmax", "taylor"),
                   help="every block's attention (vit_model.ATTN_KINDS)")
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)

    train_img, train_lbl = fmnist_data.load("train")
    test_img, test_lbl = fmnist_data.load("t10k")
    x_test = to_float_input(test_img)
    y_test = torch.from_numpy(test_lbl.astype(np.int64))
    x_train_all = to_float_input(train_img)
    y_train = torch.from_numpy(train_lbl.astype(np.int64))

    model = HgVit(FMNIST_GEOMETRY,
                  attn_kinds=[args.attn_kind] * FMNIST_GEOMETRY.depth)
    if args.init:
        model.load_state_dict(torch.load(args.init)["state_dict"])
        print(f"from {args.init}: test {evaluate(model, x_test, y_test) * 100:.2f}%"
              f" with {args.attn_kind} attention", flush=True)
    decay = [p_ for n_, p_ in model.named_parameters() if p_.ndim >= 2]
    no_decay = [p_ for n_, p_ in model.named_parameters() if p_.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr)
    steps_per_epoch = math.ceil(len(train_img) / args.batch)
    total = steps_per_epoch * args.epochs
    warmup = steps_per_epoch // 2

    def lr_at(step):
        if step < warmup:
            return args.lr * (step + 1) / warmup
        t = (step - warmup) / max(1, total - warmup)
        return args.lr * 0.5 * (1 + math.cos(math.pi * t))

    step = 0
    start = time.time()
    for epoch in range(args.epochs):
        model.train()
        perm = torch.from_numpy(rng.permutation(len(train_img)))
        if args.augment:
            x_train = to_float_input(augment(train_img, rng))
        else:
            x_train = x_train_all
        loss_sum = 0.0
        for i in range(0, len(perm), args.batch):
            idx = perm[i:i + args.batch]
            for g in opt.param_groups:
                g["lr"] = lr_at(step)
            loss = F.cross_entropy(model(x_train[idx]), y_train[idx],
                                   label_smoothing=0.1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            loss_sum += loss.item() * len(idx)
            step += 1
        acc = evaluate(model, x_test, y_test)
        print(f"epoch {epoch + 1}/{args.epochs} loss "
              f"{loss_sum / len(perm):.4f} test {acc * 100:.2f}% "
              f"({time.time() - start:.0f} s)", flush=True)

    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    torch.save({"geometry": FMNIST_GEOMETRY.to_dict(),
                "attn_kinds": model.attn_kinds,
                "init": args.init, "lr": args.lr,
                "state_dict": model.state_dict(),
                "seed": args.seed, "epochs": args.epochs,
                "test_accuracy": acc}, args.out)
    print(f"wrote {args.out}: float test accuracy {acc * 100:.2f}%")


if __name__ == "__main__":
    main()
