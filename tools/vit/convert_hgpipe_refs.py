#!/usr/bin/python3
"""Converts the HG-PIPE authors' golden data (their DeiT-tiny: every integer
weight, table and scalar, and one image traced through every stage) into
this project's files:

  models/deit_tiny/deit_tiny.hgvit   the weight file (gzip container)
  models/deit_tiny/golden.hgvit      the traced image in device order and its
                                     logit words (the board canary, tests)
  models/deit_tiny/labels.txt        the 1,000 ImageNet class names
  tests/accel_vit/testdata/deit_tiny_trace.hgvit
                                     every stage's golden output for block 0,
                                     every block's output, patch and head

The source is the authors' case/refs/ directory (hguq/HG-PIPE, MIT, (c)
2024 hguq): one line of comma-separated integers per file. The stage types
come from hgpipe_refs_types.py (the authors' HLS typedefs). Before writing,
the whole network is run with the reference (hgpipe.py) and every traced
stage must match the authors' values exactly.

  /usr/bin/python3 tools/vit/convert_hgpipe_refs.py \\
      --refs HG-PIPE/case/refs --labels imagenet_labels.txt --out .

with HG-PIPE a checkout of the authors' repository (the files used here:
the public fork OpenDarrenlu/HG-PIPE at commit a44bb448) and
imagenet_labels.txt the 1,000 ImageNet class names, one a line, in class
order. Its outputs are committed; neither the product nor its tests run it.
"""

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hgpipe  # noqa: E402
import hgpipe_refs_types as types  # noqa: E402
import weightfile  # noqa: E402

T, TV, C, H, HIDDEN, CLASSES, DEPTH = 196, 768, 192, 3, 768, 1000, 12

# HG-PIPE on VCK190 (the authors' paper, arXiv:2407.17879): 425 MHz, the slowest stage's
# interval, first input to last output of one image.
CLOCK_HZ, INTERVAL, LATENCY = 425_000_000, 57_624, 816_584
# The host's quantization of the normalized image: max-abs int8 calibration
# of ImageNet's normalized range [-2.1179, 2.6400] (the authors' recorded
# input range over their data set is [-102, 127]); docs/datapath.md.
INPUT_SCALE = (1 - 0.406) / 0.225 / 127
# The authors' files carry no float scales. Logits rank exactly; 2^-13 puts
# typical top logits (~1e5) at DeiT-tiny's usual float range (~10 to 15).
LOGIT_SCALE = 2.0 ** -13


class Refs:
    def __init__(self, directory):
        self.dir = directory

    def __call__(self, name, shape=None):
        with open(os.path.join(self.dir, name + ".txt")) as f:
            text = f.read().strip().rstrip(",")
        a = np.array([int(v) for v in text.split(",")], dtype=np.int64)
        return a.reshape(shape) if shape is not None else a


def narrow(a, name):
    """The smallest of int8 / int16 / int32 that holds `a`."""
    for dt in (np.int8, np.int16, np.int32):
        info = np.iinfo(dt)
        if a.min() >= info.min and a.max() <= info.max:
            return a.astype(dt)
    raise ValueError(f"{name}: values do not fit int32")


def stage(types_, **scalars):
    params = dict(types_)
    params.update(scalars)
    return hgpipe.format_stage(params)


def fitted(table, type_text, name, notes):
    """The table as the bitstream's ROM holds it: values wrapped to their
    HLS type (an out-of-range initializer is truncated by ap_uint<W>)."""
    t = hgpipe.IntType(type_text)
    wrapped = t.wrap(table)
    for i in np.nonzero(wrapped != table)[0]:
        notes.append(f"{name}[{i}] = {table[i]} does not fit {type_text}; "
                     f"stored as {wrapped[i]}, as the bitstream's ROM holds it")
    return wrapped


def build(refs, labels):
    man, ten, notes = {}, {}, []
    man.update(name="deit_tiny", tokens=T, token_values=TV, width=C,
               heads=H, depth=DEPTH, mlp_hidden=HIDDEN, classes=CLASSES,
               input_scale=repr(INPUT_SCALE), logit_scale=repr(LOGIT_SCALE),
               clock_hz=CLOCK_HZ, interval_cycles=INTERVAL,
               latency_cycles=LATENCY)

    (shift,) = refs("patch_embed_scalars")
    man["patch"] = stage(types.PATCH, shift=shift)
    ten["patch.weight"] = refs("patch_embed_matmul_weight", (C, TV)).astype(np.int8)
    ten["patch.bias"] = refs("patch_embed_matmul_bias", (T, C)).astype(np.int32)
    ten["patch.cls"] = refs("patch_embed_cls").astype(np.int32)

    def norm(key, prefix, ty):
        sc = refs(prefix + "lnq_scalars")
        c1m, c1s, b, s1, bound, s2, clamp_bits = (int(v) for v in sc)
        if clamp_bits != hgpipe.IntType(ty["out"]).bits:
            raise ValueError(f"{prefix}lnq: clamp_bits {clamp_bits} != out {ty['out']}")
        man[key] = stage(ty, mean_mult=c1m, mean_shift=c1s, var_offset=b,
                         var_shift=s1, var_bound=bound, out_shift=s2)
        ten[key + ".weight"] = refs(prefix + "lnq_lnw_m").astype(np.int32)
        ten[key + ".bias"] = refs(prefix + "lnq_lnb_m").astype(np.int64)
        ten[key + ".rsqrt"] = fitted(refs(prefix + "lnq_rsqrt_table_m"),
                                     ty["rsqrt"], key + ".rsqrt",
                                     notes).astype(np.int32)

    def linear(key, weight, bias, shape, ty):
        man[key] = stage(ty)
        ten[key + ".weight"] = refs(weight, shape).astype(np.int8)
        ten[key + ".bias"] = refs(bias).astype(np.int32)

    def lut(key, scalars, table, ty):
        b, s, bound = (int(v) for v in refs(scalars))
        man[key] = stage(ty, offset=b, shift=s, bound=bound)
        ten[key + ".table"] = fitted(refs(table), ty["out"], key + ".table",
                                     notes).astype(np.int32)

    for i in range(DEPTH):
        at, p, k = types.ATTN[i], f"attn_{i}_", f"blocks.{i}.attn"
        norm(k + ".norm", p, at["norm"])
        for m in "qkv":
            linear(f"{k}.{m}", f"{p}gen_{m}_matmul_weight",
                   f"{p}gen_{m}_matmul_bias", (C, C), at[m])
            lut(f"{k}.{m}_quant", f"{p}{m}_q_scalars", f"{p}{m}_q_table_m",
                at[m + "_quant"])
        man[k + ".scores"] = stage(at["scores"])
        sc = [int(v) for v in refs(p + "softmaxq_scalars")]
        if sc[13] != hgpipe.IntType(at["softmax"]["out"]).bits:
            raise ValueError(f"{p}softmax: clamp_bits {sc[13]}")
        man[k + ".softmax"] = stage(
            at["softmax"], exp_offset=sc[0], exp_shift=sc[1], exp_bound=sc[2],
            one_offset=sc[3], one_shift=sc[4], one_bound=sc[5],
            one_out_offset=sc[6], one_out_shift=sc[7], two_offset=sc[8],
            two_shift=sc[9], two_bound=sc[10], two_out_offset=sc[11],
            two_out_shift=sc[12])
        sm = at["softmax"]
        ten[k + ".softmax.exp"] = fitted(refs(p + "softmaxq_exp_opp_table_m"),
                                         sm["exp"], k + ".softmax.exp",
                                         notes).astype(np.int32)
        for part in ("one", "two"):
            ten[f"{k}.softmax.recip_{part}"] = fitted(
                refs(f"{p}softmaxq_recip_scaled_table_m_{part}"), sm["recip"],
                f"{k}.softmax.recip_{part}", notes).astype(np.int32)
        man[k + ".context"] = stage(at["context"])
        lut(k + ".context_quant", p + "a_q_scalars", p + "a_q_table_m",
            at["context_quant"])
        linear(k + ".o", p + "gen_o_matmul_weight", p + "gen_o_matmul_bias",
               (C, C), at["o"])
        mult, rshift = (int(v) for v in refs(p + "scalars"))
        man[k + ".residual"] = stage(at["residual"], mult=mult, shift=rshift)

        ml, p, k = types.MLP[i], f"mlp_{i}_", f"blocks.{i}.mlp"
        norm(k + ".norm", p, ml["norm"])
        linear(k + ".fc1", p + "matmul1_weight", p + "matmul1_bias",
               (HIDDEN, C), ml["fc1"])
        lut(k + ".gelu", p + "geluq_scalars", p + "geluq_table_m", ml["gelu"])
        linear(k + ".fc2", p + "matmul2_weight", p + "matmul2_bias",
               (C, HIDDEN), ml["fc2"])
        mult, rshift = (int(v) for v in refs(p + "scalars"))
        man[k + ".residual"] = stage(ml["residual"], mult=mult, shift=rshift)

    norm("head.norm", "head_", types.HEAD["norm"])
    linear("head", "head_matmul_weight", "head_matmul_bias", (CLASSES, C),
           types.HEAD["head"])
    ten["labels"] = np.frombuffer("\n".join(labels).encode("utf-8"),
                                  dtype=np.uint8)
    return man, ten, notes


def check_types_chain():
    """Each stage's input type is the previous stage's output type."""
    prev = types.PATCH["out"]
    for i in range(DEPTH):
        for kind, ty in (("attn", types.ATTN[i]), ("mlp", types.MLP[i])):
            if ty["in"] != prev:
                raise ValueError(f"{kind}{i}: input {ty['in']} != {prev}")
            prev = ty["residual"]["out"]
    if types.HEAD["in"] != prev:
        raise ValueError(f"head: input {types.HEAD['in']} != {prev}")


def verify(model, refs):
    """Runs the reference and compares every traced value; returns the trace
    tensors in this project's layout."""
    x = refs("patch_embed_input", (1, T, TV))
    trace = {}
    logits = model.forward(x, trace)
    hd = C // H

    def merged(a):  # authors' [H][T][dh] -> [T][H * dh]
        return a.reshape(H, T, hd).transpose(1, 0, 2).reshape(T, C)

    expected = {"patch": refs("patch_embed_output", (T, C)),
                "head.norm": refs("head_lnq_output"),
                "head": refs("network_output")}
    for i in range(DEPTH):
        expected[f"blocks.{i}.attn.residual"] = refs(f"attn_{i}_output", (T, C))
        expected[f"blocks.{i}.mlp.residual"] = refs(f"mlp_{i}_output", (T, C))
        if i + 1 < DEPTH:
            if not np.array_equal(refs(f"mlp_{i}_output"),
                                  refs(f"attn_{i + 1}_input")):
                raise ValueError(f"block chain broken after mlp_{i}")
    a, m = "blocks.0.attn.", "blocks.0.mlp."
    expected.update({
        a + "norm": refs("attn_0_lnq_output", (T, C)),
        a + "q": refs("attn_0_gen_q_matmul_output", (T, C)),
        a + "k": refs("attn_0_gen_k_matmul_output", (T, C)),
        a + "v": refs("attn_0_gen_v_matmul_output", (T, C)),
        a + "q_quant": refs("attn_0_qq_output", (T, C)),
        a + "k_quant": refs("attn_0_kq_output", (T, C)),
        a + "v_quant": refs("attn_0_vq_output", (T, C)),
        a + "scores": refs("attn_0_gen_r_matmul_output", (H, T, T)),
        a + "softmax": refs("attn_0_softmaxq_output", (H, T, T)),
        a + "context": merged(refs("attn_0_gen_a_matmul_output")),
        a + "context_quant": merged(refs("attn_0_aq_output")),
        a + "o": refs("attn_0_gen_o_matmul_output", (T, C)),
        m + "norm": refs("mlp_0_lnq_output", (T, C)),
        m + "fc1": refs("mlp_0_matmul1_output", (T, HIDDEN)),
        m + "gelu": refs("mlp_0_geluq_output", (T, HIDDEN)),
        m + "fc2": refs("mlp_0_matmul2_output", (T, C)),
    })
    out = {"patch.input": x[0].astype(np.int8)}
    for name, want in expected.items():
        got = trace[name][0]
        if got.shape != want.shape or not np.array_equal(got, want):
            bad = int((got.reshape(want.shape) != want).sum()) \
                if got.size == want.size else got.size
            raise ValueError(f"{name}: reference differs from the authors' "
                             f"trace in {bad} of {want.size} values")
        out[name] = narrow(want, name)
    if not np.array_equal(logits[0], refs("network_output")):
        raise ValueError("network output differs")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--refs", required=True, help="the authors' refs/ directory")
    ap.add_argument("--labels", required=True, help="imagenet_labels.txt")
    ap.add_argument("--out", default=".", help="repository root to write into")
    args = ap.parse_args()

    refs = Refs(args.refs)
    with open(args.labels) as f:
        labels = [line.rstrip("\n") for line in f if line.strip()]
    if len(labels) != CLASSES:
        raise SystemExit(f"{args.labels}: {len(labels)} labels, want {CLASSES}")
    check_types_chain()
    man, ten, notes = build(refs, labels)
    for n in notes:
        print("note:", n)
    model = hgpipe.Model(*weightfile.parse(weightfile.serialize(man, ten)))
    trace = verify(model, refs)
    print(f"reference matches the authors' trace: {len(trace) - 1} stages, "
          f"all {CLASSES} logits")

    models = os.path.join(args.out, "models", "deit_tiny")
    os.makedirs(models, exist_ok=True)
    weightfile.write(os.path.join(models, "deit_tiny.hgvit"), man, ten,
                     compress=True)
    x = trace["patch.input"][None]
    golden_man = {"model": "deit_tiny", "images": 1, "tokens": T,
                  "token_values": TV, "classes": CLASSES}
    golden = {"input": hgpipe.to_device_order(x).astype(np.int8),
              "output": hgpipe.encode_logit_words(refs("network_output"))[None],
              "true_label": np.array([-1], dtype=np.int32)}
    weightfile.write(os.path.join(models, "golden.hgvit"), golden_man, golden,
                     compress=True)
    with open(os.path.join(models, "labels.txt"), "w") as f:
        f.write("\n".join(labels) + "\n")
    testdata = os.path.join(args.out, "tests", "accel_vit", "testdata")
    os.makedirs(testdata, exist_ok=True)
    weightfile.write(os.path.join(testdata, "deit_tiny_trace.hgvit"),
                     {"model": "deit_tiny", "source": "hguq/HG-PIPE case/refs"},
                     trace, compress=True)
    print("wrote", models, testdata)


if __name__ == "__main__":
    main()
