"""The integer reference of HG-PIPE's ViT datapath (docs/datapath.md,
"Numerics"): numpy, int64, bit-exact with accel/vit/ (C++). The C++ kernel is
tested against golden vectors this module writes.

Matrix products are computed in float64, which is exact here: every product
of an int8 activation and an int8 weight summed over K <= 4096 terms stays
far below 2^53.
"""

import numpy as np


def round_shift(v, s):
    """(v + 2^(s-1)) >> s, arithmetic; s may be an array (per channel);
    s == 0 leaves v unchanged."""
    s = np.asarray(s, dtype=np.int64)
    half = np.where(s > 0, np.left_shift(np.int64(1), np.maximum(s - 1, 0)),
                    0)
    return (v + half) >> s


def requant(acc, bias, rq):
    """(acc + bias) * M >> S with rounding; rq: int32 [N, 2] = (M, S) per
    output channel (the last axis of acc)."""
    m = rq[:, 0].astype(np.int64)
    s = rq[:, 1].astype(np.int64)
    if bias is not None:
        acc = acc + bias.astype(np.int64)
    return round_shift(acc * m, s)


def signed_range(bits):
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


def clip_bits(v, bits):
    lo, hi = signed_range(bits)
    return np.clip(v, lo, hi)


def matmul(a, w):
    """a int [..., K] times w int [N, K] transposed -> int64 [..., N]."""
    return np.rint(a.astype(np.float64) @ w.astype(np.float64).T).astype(
        np.int64)


def bit_length(v):
    """Bit length of each non-negative int64."""
    v = v.astype(np.int64).copy()
    n = np.zeros_like(v)
    for shift in (32, 16, 8, 4, 2, 1):
        big = v >= (np.int64(1) << shift)
        n += np.where(big, shift, 0)
        v = np.where(big, v >> shift, v)
    return n + (v > 0)


def layernorm(x, table, eps, index_bits, frac_bits, out_bits):
    """x: int64 [..., D] residual values -> int64 [..., D] in out_bits."""
    d = x.shape[-1]
    total = x.sum(-1, keepdims=True)
    mean = (2 * total + d) // (2 * d)          # round half up of total / D
    c = x - mean
    var = (c * c).sum(-1, keepdims=True) + int(eps)
    j = np.maximum(0, (bit_length(var) - index_bits + 1) // 2)
    m = var >> (2 * j)
    r = table.astype(np.int64)[m]
    return clip_bits(round_shift(c * r, frac_bits + j), out_bits)


def softmax(scores, exp_index, exp_table, prob_bits):
    """scores: int64 [..., T] -> unsigned int64 probabilities in prob_bits,
    scale 2^-prob_bits."""
    d = scores.max(-1, keepdims=True) - scores
    idx = np.minimum(round_shift(d * int(exp_index[0]), int(exp_index[1])),
                     len(exp_table) - 1)
    e = exp_table.astype(np.int64)[idx]
    z = e.sum(-1, keepdims=True)
    r = (np.int64(1) << 31) // z
    p = (e * r + (np.int64(1) << (30 - prob_bits))) >> (31 - prob_bits)
    return np.minimum(p, (1 << prob_bits) - 1)


class IntVit:
    """The datapath of one weight file (weightfile.read output)."""

    def __init__(self, manifest, tensors):
        self.m = manifest
        self.t = tensors

    def forward(self, flat):
        """flat: int8 [N, tokens, token_values] (token 0's values are ignored)
        -> int64 logits [N, classes] (19-bit range)."""
        m, t = self.m, self.t
        rb = m["residual_bits"]
        ab = m["act_bits"]
        n = flat.shape[0]
        x = requant(matmul(flat, t["patch.weight"]), t["patch.bias"],
                    t["patch.requant"])
        x[:, 0, :] = t["cls"].astype(np.int64)
        x = clip_bits(x + t["pos"].astype(np.int64), rb)
        heads, width = m["heads"], m["width"]
        dh = width // heads
        tokens = m["tokens"]
        for i in range(m["depth"]):
            p = f"blocks.{i}."
            a = self._ln(x, p + "norm1", ab)
            qkv = clip_bits(requant(matmul(a, t[p + "attn.qkv.weight"]),
                                    t[p + "attn.qkv.bias"],
                                    t[p + "attn.qkv.requant"]), ab)
            qkv = qkv.reshape(n, tokens, 3, heads, dh).transpose(2, 0, 3, 1, 4)
            q, k, v = qkv[0], qkv[1], qkv[2]          # [N, H, T, dh]
            s = np.rint(q.astype(np.float64) @ k.astype(np.float64).swapaxes(
                -1, -2)).astype(np.int64)
            prob = softmax(s, t[p + "attn.exp_index"], t[p + "attn.exp"],
                           m["prob_bits"])
            ctx = np.rint(prob.astype(np.float64) @ v.astype(np.float64)
                          ).astype(np.int64)
            ctx = ctx.transpose(0, 2, 1, 3).reshape(n, tokens, width)
            ctx = clip_bits(requant(ctx, None, t[p + "attn.context.requant"]),
                            ab)
            y = requant(matmul(ctx, t[p + "attn.proj.weight"]),
                        t[p + "attn.proj.bias"], t[p + "attn.proj.requant"])
            x = clip_bits(x + y, rb)
            a = self._ln(x, p + "norm2", ab)
            g = clip_bits(requant(matmul(a, t[p + "mlp.fc1.weight"]),
                                  t[p + "mlp.fc1.bias"],
                                  t[p + "mlp.fc1.requant"]), m["gelu_in_bits"])
            h = t[p + "mlp.gelu"].astype(np.int64)[
                g + (1 << (m["gelu_in_bits"] - 1))]
            y = requant(matmul(h, t[p + "mlp.fc2.weight"]),
                        t[p + "mlp.fc2.bias"], t[p + "mlp.fc2.requant"])
            x = clip_bits(x + y, rb)
        a = self._ln(x[:, 0], "norm", m["head_act_bits"])
        logits = requant(matmul(a, t["head.weight"]), t["head.bias"],
                         t["head.requant"])
        return clip_bits(logits, 19)

    def _ln(self, x, name, out_bits):
        return layernorm(x, self.t[name + ".rsqrt"], self.t[name + ".eps"][0],
                         self.m["rsqrt_index_bits"], self.m["rsqrt_frac_bits"],
                         out_bits)


def encode_logit_words(logits):
    """19-bit logits -> device words (uint32, not sign-extended)."""
    return (logits.astype(np.int64) & ((1 << 19) - 1)).astype(np.uint32)
