#!/usr/bin/python3
"""Converts a timm / DeiT state_dict file into the HG-PIPE ViT weight format
(docs/datapath.md, "DeiT checkpoints"). Nothing is downloaded: give the
checkpoint as a path, e.g. deit_tiny_patch16_224-a1311bcf.pth.

  /usr/bin/python3 tools/vit/convert_deit_checkpoint.py CKPT.pth OUT.hgvit \\
      [--precision w3a3|w8a8] [--heads 3] [--calibration IMAGES.npy]

HG-PIPE runs 196 tokens: token 0 carries the CLS embedding (and CLS
position) and token t >= 1 is patch t with timm's position t + 1; the first
patch is dropped, as on the hardware. Activation scales come from
calibration images (uint8 [N, 224, 224, 3] RGB, already resized and
cropped) or, without them, from deterministic synthetic images: fine for
serving the geometry, not for accuracy. Post-training quantization to W3A3
loses most of DeiT's accuracy (HG-PIPE trains for it); W8A8 keeps most.

  --self-test   converts a random DeiT-tiny-shaped state_dict and checks the
                float model against timm's architecture (first patch dropped)
"""

import argparse
import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import quantize  # noqa: E402
import weightfile  # noqa: E402
from vit_model import HgVit, VitGeometry  # noqa: E402

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406])
IMAGENET_STD = np.array([0.229, 0.224, 0.225])
INPUT_SCALE = 1.0 / 32.0     # int8 q stands for normalized value q / 32


def images_to_patches(images, patch=16):
    """uint8 [N, H, W, 3] RGB -> int8 [N, tokens, patch * patch * 3]:
    normalize with ImageNet mean/std, q = clamp(round(x * 32)); patch (py, px)
    is token py * (W / patch) + px, values ordered (iy * patch + ix) * 3 + c."""
    x = (images.astype(np.float64) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
    q = np.clip(np.floor(x / INPUT_SCALE + 0.5), -128, 127).astype(np.int8)
    n, h, w, c = q.shape
    q = q.reshape(n, h // patch, patch, w // patch, patch, c)
    q = q.transpose(0, 1, 3, 2, 4, 5)
    return np.ascontiguousarray(q.reshape(n, (h // patch) * (w // patch),
                                          patch * patch * c))


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
    g = VitGeometry(tokens=patches, token_values=p * p * c, width=d,
                    heads=heads, depth=depth,
                    mlp_hidden=sd["blocks.0.mlp.fc1.weight"].shape[0],
                    classes=sd["head.weight"].shape[0])
    if d % heads:
        raise ValueError(f"width {d} is not a multiple of --heads {heads}")
    m = HgVit(g, ln_eps=1e-6)
    new = {}
    new["patch.weight"] = conv.permute(0, 2, 3, 1).reshape(d, p * p * c)
    new["patch.bias"] = sd["patch_embed.proj.bias"]
    new["cls_token"] = sd["cls_token"].reshape(d)
    new["pos_embed"] = torch.cat([pos[0:1], pos[2:]], dim=0)
    for k, v in sd.items():
        if k.startswith(("blocks.", "norm.", "head.")):
            new[k] = v
    missing, unexpected = m.load_state_dict(new, strict=False)
    if missing:
        raise ValueError(f"state_dict lacks {missing}")
    return m, p


def convert(sd, out, precision, heads, calibration, name=None):
    model, patch = to_hgvit(sd, heads)
    images = calibration if calibration is not None else synthetic_images(64)
    calib = images_to_patches(images, patch)
    calib_x = torch.from_numpy(calib.astype(np.float32) * INPUT_SCALE)
    cfg = quantize.QuantConfig()
    if precision == "w3a3":
        cfg.block_weight_bits = 3
        cfg.act_bits = 3
    name = name or ("deit_tiny" if precision == "w3a3" else "deit_tiny_w8a8")
    manifest, tensors, _ = quantize.quantize(model, calib_x, cfg, name,
                                             INPUT_SCALE)
    weightfile.write(out, manifest, tensors)
    return model, manifest


def reference_forward(sd, heads, x_img):
    """timm's DeiT forward on normalized images [N, 3, H, W], with the first
    patch token dropped (HG-PIPE's convention), written independently of
    HgVit."""
    d = sd["cls_token"].shape[-1]
    t = F.conv2d(x_img, sd["patch_embed.proj.weight"],
                 sd["patch_embed.proj.bias"], stride=16)
    t = t.flatten(2).transpose(1, 2)                  # [N, 196, D]
    t = torch.cat([sd["cls_token"].expand(t.shape[0], -1, -1), t], dim=1)
    t = t + sd["pos_embed"]
    t = torch.cat([t[:, :1], t[:, 2:]], dim=1)        # drop patch 0
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
    import intref
    torch.set_num_threads(1)
    sd = random_deit_tiny_state_dict(depth=2)
    model, _ = to_hgvit(sd, heads=3)
    images = synthetic_images(2, seed=1)
    patches = images_to_patches(images)
    x = torch.from_numpy(patches.astype(np.float32) * INPUT_SCALE)
    # The reference sees the same quantized pixels, unfolded by conv.
    img = torch.from_numpy(patches.astype(np.float32) * INPUT_SCALE)
    img = img.reshape(2, 14, 14, 16, 16, 3).permute(0, 5, 1, 3, 2, 4)
    img = img.reshape(2, 3, 224, 224)
    with torch.no_grad():
        got = model(x)
        want = reference_forward(sd, 3, img)
    err = (got - want).abs().max().item()
    print(f"float mapping: max |HgVit - timm| = {err:.2e}")
    assert err < 1e-4, "patch / position mapping is wrong"
    for precision in ("w8a8", "w3a3"):
        m2, manifest = convert(sd, out, precision, 3, None)
        man, tensors = weightfile.read(out)
        logits = intref.IntVit(man, tensors).forward(patches)
        with torch.no_grad():
            fl = m2(x).numpy()
        agree = np.corrcoef(logits[0] * man["logit_scale"], fl[0])[0, 1]
        print(f"{precision}: wrote {out}; integer vs float logits "
              f"correlation {agree:.3f}")
        if precision == "w8a8":
            assert agree > 0.9, "W8A8 conversion disagrees with the float model"
    print("self-test passed")


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("checkpoint", nargs="?")
    p.add_argument("out")
    p.add_argument("--precision", choices=("w3a3", "w8a8"), default="w3a3")
    p.add_argument("--heads", type=int, default=3,
                   help="attention heads (not stored in a state_dict): "
                        "3 for DeiT-tiny, 6 small, 12 base")
    p.add_argument("--calibration", help="uint8 [N, 224, 224, 3] .npy")
    p.add_argument("--name", help="manifest name (default deit_tiny / "
                                  "deit_tiny_w8a8)")
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
    _, manifest = convert(sd, args.out, args.precision, args.heads, calib,
                          args.name)
    print(f"wrote {args.out}: {manifest['name']}, {manifest['depth']} blocks, "
          f"width {manifest['width']}, {manifest['classes']} classes, "
          f"W{manifest['block_weight_bits']}A{manifest['act_bits']}")


if __name__ == "__main__":
    main()
