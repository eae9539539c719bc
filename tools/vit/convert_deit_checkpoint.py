#!/usr/bin/python3
"""Converts a timm / DeiT state_dict file into an HG-PIPE parameter set
(quantize.py; docs/datapath.md, "Quantizing a trained ViT"). Nothing is
downloaded: give the checkpoint as a path, e.g.
deit_tiny_patch16_224-a1311bcf.pth.

  /usr/bin/python3 tools/vit/convert_deit_checkpoint.py CKPT.pth OUT.hgvit \\
      --calibration IMAGES.npy [--heads 3] [--weight-bits 8] [--act-bits 8]

The result takes the same device input as models/deit_tiny (the HG-PIPE
authors' host transform, preprocess::DeitTinyOptions): 196 tokens of 768
int8 values, channel-major inside a token, scale 2.64 / 127; token 0 holds
the last patch, which the CLS embedding replaces, and token t >= 1 is patch
t - 1 with timm's position t. So a converted checkpoint serves with
models/deit_tiny/config.pbtxt's preprocessing. Calibration images: uint8
[N, 224, 224, 3] RGB, already resized and cropped (a few hundred ImageNet
validation images); without them, smooth synthetic images: fine for the
geometry, not for accuracy.

  --self-test   converts a random DeiT-tiny-shaped state_dict (2 blocks) and
                checks the token mapping against timm's forward and the
                integer model against the float one
"""

import argparse
import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hgpipe  # noqa: E402
import quantize  # noqa: E402
import weightfile  # noqa: E402
from vit_model import HgVit, VitGeometry  # noqa: E402

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
INPUT_SCALE = np.float32(2.64 / 127)   # preprocess::kDeitTinyQuantScale


def images_to_patches(images, patch=16):
    """uint8 [N, H, W, 3] RGB -> int8 [N, patches, 3 * patch * patch] as the
    server's DeiT-tiny preprocessing (float32: (p / 255 - mean) / std, then
    round half to even at INPUT_SCALE, clamped), values channel-major,
    tokens rotated by one (token 0 = the last patch)."""
    x = (images.astype(np.float32) / np.float32(255) - IMAGENET_MEAN) \
        / IMAGENET_STD
    q = np.clip(np.rint(x / INPUT_SCALE), -128, 127).astype(np.int8)
    n, h, w, c = q.shape
    q = q.reshape(n, h // patch, patch, w // patch, patch, c)
    q = q.transpose(0, 1, 3, 5, 2, 4)          # [n, gy, gx, c, iy, ix]
    q = q.reshape(n, (h // patch) * (w // patch), c * patch * patch)
    return np.ascontiguousarray(np.roll(q, 1, axis=1))


def synthetic_images(n, size=224, seed=0):
    """Smooth random RGB images (low-frequency noise, bilinear upsampling)."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, 7, 7, generator=g)
    img = F.interpolate(low, size=(size, size), mode="bilinear",
                        align_corners=False)
    img = img + 0.1 * torch.rand(n, 3, size, size, generator=g)
    img = (img.clamp(0, 1) * 255).round().to(torch.uint8)
    return img.permute(0, 2, 3, 1).numpy()


def load_state_dict(path):
    obj = torch.load(path, map_location="cpu")
    for key in ("model", "state_dict", "model_ema"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or "patch_embed.proj.weight" not in obj:
        raise ValueError(f"{path}: not a timm ViT/DeiT state_dict "
                         "(no patch_embed.proj.weight)")
    return obj


def to_hgvit(sd, heads):
    """timm state_dict -> HgVit (float) in HG-PIPE's token convention."""
    conv = sd["patch_embed.proj.weight"]             # [D, C, P, P]
    d, c, p, _ = conv.shape
    pos = sd["pos_embed"].reshape(-1, d)              # [1 + patches, D]
    patches = pos.shape[0] - 1
    depth = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("blocks."))
    if "head.weight" not in sd:
        raise ValueError("state_dict has no classification head")
    if d % heads:
        raise ValueError(f"width {d} is not a multiple of --heads {heads}")
    g = VitGeometry(tokens=patches, token_values=p * p * c, width=d,
                    heads=heads, depth=depth,
                    mlp_hidden=sd["blocks.0.mlp.fc1.weight"].shape[0],
                    classes=sd["head.weight"].shape[0])
    m = HgVit(g, ln_eps=1e-6)
    new = {"patch.weight": conv.reshape(d, c * p * p),   # chw value order
           "patch.bias": sd["patch_embed.proj.bias"],
           "cls_token": sd["cls_token"].reshape(d),
           "pos_embed": pos[:patches]}   # token t: position t; the last dropped
    for k, v in sd.items():
        if k.startswith(("blocks.", "norm.", "head.")):
            new[k] = v
    missing, _ = m.load_state_dict(new, strict=False)
    if missing:
        raise ValueError(f"state_dict lacks {missing}")
    return m, p


def convert(sd, out, heads, calibration, name="deit_tiny_ptq", cfg=None,
            labels=None):
    model, patch = to_hgvit(sd, heads)
    images = calibration if calibration is not None else synthetic_images(64)
    calib = images_to_patches(images, patch)
    man, ten, report = quantize.quantize(model, calib, float(INPUT_SCALE),
                                         cfg or quantize.QuantConfig(),
                                         name=name, labels=labels)
    weightfile.write(out, man, ten, compress=True)
    return model, man, report["notes"]


def reference_forward(sd, heads, x_img):
    """timm's DeiT forward on normalized images [N, 3, H, W] with the last
    patch token dropped (HG-PIPE's 196 tokens), written independently of
    HgVit."""
    d = sd["cls_token"].shape[-1]
    t = F.conv2d(x_img, sd["patch_embed.proj.weight"],
                 sd["patch_embed.proj.bias"], stride=16)
    t = t.flatten(2).transpose(1, 2)                  # [N, 196, D]
    t = torch.cat([sd["cls_token"].expand(t.shape[0], -1, -1), t], dim=1)
    t = (t + sd["pos_embed"])[:, :-1]                 # drop the last patch
    depth = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("blocks."))
    for i in range(depth):
        p = f"blocks.{i}."
        h = F.layer_norm(t, (d,), sd[p + "norm1.weight"], sd[p + "norm1.bias"],
                         1e-6)
        qkv = F.linear(h, sd[p + "attn.qkv.weight"], sd[p + "attn.qkv.bias"])
        n, tt, _ = qkv.shape
        qkv = qkv.reshape(n, tt, 3, heads, d // heads).permute(2, 0, 3, 1, 4)
        a = (qkv[0] @ qkv[1].transpose(-2, -1)) / math.sqrt(d // heads)
        y = (a.softmax(-1) @ qkv[2]).transpose(1, 2).reshape(n, tt, d)
        t = t + F.linear(y, sd[p + "attn.proj.weight"], sd[p + "attn.proj.bias"])
        h = F.layer_norm(t, (d,), sd[p + "norm2.weight"], sd[p + "norm2.bias"],
                         1e-6)
        h = F.linear(F.gelu(F.linear(h, sd[p + "mlp.fc1.weight"],
                                     sd[p + "mlp.fc1.bias"])),
                     sd[p + "mlp.fc2.weight"], sd[p + "mlp.fc2.bias"])
        t = t + h
    t = F.layer_norm(t[:, 0], (d,), sd["norm.weight"], sd["norm.bias"], 1e-6)
    return F.linear(t, sd["head.weight"], sd["head.bias"])


def random_deit_tiny_state_dict(seed=0, depth=12):
    g = torch.Generator().manual_seed(seed)

    def r(*shape, std=0.02):
        return torch.randn(*shape, generator=g) * std

    d, hid = 192, 768
    sd = {"cls_token": r(1, 1, d), "pos_embed": r(1, 197, d),
          "patch_embed.proj.weight": r(d, 3, 16, 16),
          "patch_embed.proj.bias": r(d), "norm.weight": 1 + r(d),
          "norm.bias": r(d), "head.weight": r(1000, d), "head.bias": r(1000)}
    for i in range(depth):
        p = f"blocks.{i}."
        sd.update({p + "norm1.weight": 1 + r(d), p + "norm1.bias": r(d),
                   p + "attn.qkv.weight": r(3 * d, d),
                   p + "attn.qkv.bias": r(3 * d),
                   p + "attn.proj.weight": r(d, d), p + "attn.proj.bias": r(d),
                   p + "norm2.weight": 1 + r(d), p + "norm2.bias": r(d),
                   p + "mlp.fc1.weight": r(hid, d), p + "mlp.fc1.bias": r(hid),
                   p + "mlp.fc2.weight": r(d, hid), p + "mlp.fc2.bias": r(d)})
    return sd


def self_test(out):
    torch.set_num_threads(1)
    sd = random_deit_tiny_state_dict(depth=2)
    model, _ = to_hgvit(sd, heads=3)
    images = synthetic_images(4, seed=1)
    patches = images_to_patches(images)
    x = torch.from_numpy(patches.astype(np.float32) * INPUT_SCALE)
    # The reference sees the same quantized pixels, unrotated and unfolded.
    img = torch.from_numpy(np.roll(patches, -1, axis=1).astype(np.float32) *
                           INPUT_SCALE)
    img = img.reshape(4, 14, 14, 3, 16, 16).permute(0, 3, 1, 4, 2, 5)
    img = img.reshape(4, 3, 224, 224)
    with torch.no_grad():
        got = model(x)
        want = reference_forward(sd, 3, img)
    err = (got - want).abs().max().item()
    print(f"float mapping: max |HgVit - timm| = {err:.2e}")
    assert err < 1e-4, "patch / position mapping is wrong"
    model, man, _ = convert(sd, out, 3, synthetic_images(16, seed=2))
    net = hgpipe.Model.load(out)
    logits = net.forward(patches) * float(net.manifest["logit_scale"])
    with torch.no_grad():
        fl = model(x).numpy()
    agree = min(np.corrcoef(logits[i], fl[i])[0, 1] for i in range(len(fl)))
    print(f"W8A8: wrote {out}; integer vs float logits correlation "
          f">= {agree:.4f}")
    assert agree > 0.99, "the integer model does not follow the float one"
    print("self-test passed")


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("checkpoint", nargs="?")
    p.add_argument("out")
    p.add_argument("--heads", type=int, default=3,
                   help="attention heads (not stored in a state_dict): "
                        "3 for DeiT-tiny, 6 small, 12 base")
    p.add_argument("--calibration", help="uint8 [N, 224, 224, 3] .npy")
    p.add_argument("--labels", help="class names, one a line")
    p.add_argument("--weight-bits", type=int, default=8)
    p.add_argument("--act-bits", type=int, default=8)
    p.add_argument("--name", default="deit_tiny_ptq", help="manifest name")
    p.add_argument("--self-test", action="store_true")
    args = p.parse_args()
    if args.self_test:
        self_test(args.out)
        return
    if not args.checkpoint:
        p.error("checkpoint path required")
    sd = {k: v.float() for k, v in load_state_dict(args.checkpoint).items()
          if torch.is_tensor(v)}
    calib = np.load(args.calibration) if args.calibration else None
    labels = None
    if args.labels:
        with open(args.labels) as f:
            labels = [line.rstrip("\n") for line in f if line.strip()]
    cfg = quantize.QuantConfig(
        patch_weight_bits=args.weight_bits, weight_bits=args.weight_bits,
        head_weight_bits=args.weight_bits, act_bits=args.act_bits,
        kv_bits=min(7, args.act_bits), prob_bits=args.act_bits)
    _, man, notes = convert(sd, args.out, args.heads, calib, args.name, cfg,
                            labels)
    for n in notes:
        print(n)
    print(f"wrote {args.out}: {man['name']}, {man['depth']} blocks, width "
          f"{man['width']}, {man['classes']} classes, W{args.weight_bits}"
          f"A{args.act_bits}")


if __name__ == "__main__":
    main()
