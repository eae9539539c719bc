#!/usr/bin/python3
"""Builds the model repository of bench/variants_vs_plan.sh: fmnist_vit's
variants with HG-PIPE's timing scaled by a factor, served as pixels.

  variants_repo.py SRC_MODEL_DIR OUT_REPO SCALE FAST_SPEEDUP FULL_TOP1 FAST_DROP [FAST_VARIANT]

SRC_MODEL_DIR is models/fmnist_vit. The variants are the ones its
config.pbtxt lists (`variants { name weights }`), or, when it lists none,
the full model alone (its `weights`). Each variant's weight file is copied
with its manifest's timing rewritten:

  - intervals and latencies are multiplied by two factors, the same for
    every variant, that give the first (full) variant HG-PIPE DeiT-tiny's
    57,624-cycle interval and 816,584-cycle latency (fmnist_vit's own timing
    is input-bound, docs/datapath.md: its variants differ in latency, not
    interval, and keep those ratios);
  - the clock is HG-PIPE's 425 MHz divided by SCALE, so every interval and
    latency is HG-PIPE's times SCALE (the server's host cost per request
    then stays small against the boards' times);
  - one variant is made FAST_SPEEDUP times faster (its interval divided,
    latency kept): ILLUSTRATIVE timing, no bitstream we have. With listed
    variants it is FAST_VARIANT (default `taylor`: linear attention is what
    shortens the interval where the pipeline is compute-bound, as
    DeiT-tiny's is) or, if that is not listed, the least accurate one (its
    weights and stated top-1 kept); with none, a variant `fast` is added that runs the FULL weights
    with a stated top-1 of FULL_TOP1 - FAST_DROP (a placeholder: its
    measured accuracy is then the full model's).

A manifest without top1_accuracy (the full weights have none until the
variants land) gets FULL_TOP1 (fmnist_vit's accuracy measured through the
server, docs/BENCHMARKS.md) for the full model.

Writes OUT_REPO/fmnist_vit/{config.pbtxt, *.hgvit} and prints one JSON
object: per variant (most accurate first) name, weights (the source file),
top1, clock_hz, interval_cycles, latency_cycles, illustrative (bool),
full_weights (bool: runs the full model's weights in place of its own).
"""
import gzip
import json
import os
import re
import struct
import sys
import zlib

MAGIC = b"HGPVIT\r\n"
HGPIPE_II = 57624
HGPIPE_LATENCY = 816584
HGPIPE_CLOCK = 425e6


def read_container(path):
    with open(path, "rb") as f:
        data = f.read()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    if data[:8] != MAGIC:
        raise SystemExit(f"{path}: not an HG-PIPE weight container")
    (mlen,) = struct.unpack_from("<I", data, 12)
    lines = data[16:16 + mlen].decode("ascii").splitlines()
    manifest = [tuple(line.split(" ", 1)) for line in lines if line.strip()]
    return data[:12], manifest, data[16 + mlen:-4]


def write_container(path, head, manifest, rest):
    text = "".join(f"{k} {v}\n" for k, v in manifest).encode("ascii")
    out = head + struct.pack("<I", len(text)) + text + rest
    out += struct.pack("<I", zlib.crc32(out) & 0xFFFFFFFF)
    with open(path, "wb") as f:
        f.write(out)


def get(manifest, key):
    for k, v in manifest:
        if k == key:
            return v
    return None


def put(manifest, key, value):
    for i, (k, _) in enumerate(manifest):
        if k == key:
            manifest[i] = (k, str(value))
            return
    manifest.append((key, str(value)))


def main():
    src, out, scale, speedup, full_top1, fast_drop = sys.argv[1:7]
    fast_name = sys.argv[7] if len(sys.argv) > 7 else "taylor"
    scale, speedup = float(scale), float(speedup)
    full_top1, fast_drop = float(full_top1), float(fast_drop)
    with open(os.path.join(src, "config.pbtxt")) as f:
        config = f.read()
    listed = re.findall(
        r'variants\s*\{\s*name:\s*"([^"]+)"\s*weights:\s*"([^"]+)"[^}]*\}', config)
    full_weights = re.search(r'^\s*weights:\s*"([^"]+)"', config, re.M)
    variants = []
    for name, weights in listed:
        variants.append({"name": name, "weights": weights, "full_weights": False})
    if not variants:
        variants.append({"name": "full", "weights": full_weights.group(1),
                         "full_weights": False})
    for v in variants:
        head, manifest, rest = read_container(os.path.join(src, v["weights"]))
        top1 = get(manifest, "top1_accuracy")
        v["top1"] = float(top1) if top1 is not None else (
            full_top1 if v is variants[0] else None)
        if v["top1"] is None:
            raise SystemExit(f"{v['weights']}: no top1_accuracy in its manifest")
        v["container"] = (head, manifest, rest)
    first = variants[0]["container"][1]
    factor = HGPIPE_II / int(get(first, "interval_cycles"))
    latency_factor = HGPIPE_LATENCY / int(get(first, "latency_cycles"))
    if len(variants) == 1:
        head, manifest, rest = variants[0]["container"]
        variants.append({"name": "fast", "weights": variants[0]["weights"],
                         "full_weights": True,
                         "top1": round(variants[0]["top1"] - fast_drop, 6),
                         "container": (head, list(manifest), rest)})
        fast = variants[-1]
    else:
        named = [v for v in variants[1:] if v["name"] == fast_name]
        fast = named[0] if named else min(variants[1:], key=lambda v: v["top1"])
    model_dir = os.path.join(out, "fmnist_vit")
    os.makedirs(model_dir, exist_ok=True)
    lines = []
    for v in variants:
        head, manifest, rest = v["container"]
        manifest = list(manifest)
        interval = round(int(get(manifest, "interval_cycles")) * factor)
        latency = round(int(get(manifest, "latency_cycles")) * latency_factor)
        v["illustrative"] = v is fast
        if v is fast:
            interval = round(interval / speedup)
        v["clock_hz"] = HGPIPE_CLOCK / scale
        v["interval_cycles"] = interval
        v["latency_cycles"] = max(latency, interval)
        put(manifest, "clock_hz", repr(v["clock_hz"]))
        put(manifest, "interval_cycles", v["interval_cycles"])
        put(manifest, "latency_cycles", v["latency_cycles"])
        put(manifest, "top1_accuracy", v["top1"])
        if get(manifest, "accuracy_dataset") is None:
            put(manifest, "accuracy_dataset", "Fashion-MNIST-test")
        write_container(os.path.join(model_dir, v["name"] + ".hgvit"), head, manifest, rest)
        lines.append(f'variants {{ name: "{v["name"]}" weights: "{v["name"]}.hgvit" }}')
        del v["container"]
    # The stock config, taking pixels (the load generator's labelled images)
    # instead of encoded files, and the variants above.
    body = re.sub(r'variants\s*\{[^}]*\}\s*', "", config)
    body = re.sub(r'^\s*weights:\s*"[^"]*"\s*\n', "", body, flags=re.M)
    body = re.sub(r"input_format:\s*\w+", "input_format: PIXELS", body)
    with open(os.path.join(model_dir, "config.pbtxt"), "w") as f:
        f.write(body.rstrip() + "\n" + "\n".join(lines) + "\n")
    for extra in ("labels.txt",):
        p = os.path.join(src, extra)
        if os.path.exists(p):
            with open(p, "rb") as fi, open(os.path.join(model_dir, extra), "wb") as fo:
                fo.write(fi.read())
    variants.sort(key=lambda v: -v["top1"])
    print(json.dumps({"interval_factor": factor, "latency_factor": latency_factor,
                      "variants": variants}))


if __name__ == "__main__":
    main()
