"""Post-training quantization of a trained float ViT (vit_model.HgVit) into
HG-PIPE's integer datapath: the weight container hgpipe.py and the C++
emulated board run (docs/datapath.md, "Quantizing a trained ViT").

Every stage becomes what HG-PIPE's bitstream computes:
  patch     int8 patches x int8 weights + a per-token bias (positions folded
            in), token 0 replaced by CLS (+ its position), >> shift
  norm      LayerNorm: mean by multiply-shift, variance into a linear-bucket
            cursor, rsqrt table, gamma and beta as lnw / lnb with the output
            shift (rounding folded into lnb), clamp to the operand type
  q, k, v, o, fc1, fc2, head
            int8 products with a bias, in an accumulator type
  *_quant   requantization tables indexed by (acc + offset) >> shift
  softmax   exp table over (max - score), two-segment reciprocal table
  taylor    ViTALiTy's linear Taylor attention (blocks whose kind is taylor):
            sums over the tokens, T K^T V - (sum K)^T (sum V), shifted to an
            operand, times q, plus the mean of V by (mult, shift)
  gelu      GELU and its requantization as one table
  residual  the stream rescaled to the block's accumulator scale by
            (mult, shift) and added
Scales are per tensor (one table serves every channel of a stage).

Widths: every operand of a matrix product has the width the config asks
for; every other type is either a worst-case bound from the types that feed
it (it cannot wrap, whatever the input) or, for the residual stream and the
logits, the range measured by running the integer model on the calibration
images times 2^headroom. `check_no_wraps` runs a model against a copy whose
wrapping types are all 56 bits wide: equal outputs mean nothing wrapped.
"""

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

import hgpipe
from vit_model import HgVit, taylor_attention

# HG-PIPE's DeiT-tiny on VCK190 (the authors' paper, arXiv:2407.17879; docs/datapath.md): the timing every
# other model's is scaled from.
DEIT_CLOCK_HZ = 425_000_000
DEIT_INTERVAL_CYCLES = 57_624
DEIT_LATENCY_CYCLES = 816_584
DEIT_TINY = dict(tokens=196, token_values=768, width=192, heads=3, depth=12,
                 mlp_hidden=768, classes=1000)

LOGIT_BITS = 19          # the device's logit word (accel/device_layout.h)
ACC_BITS = 32            # accumulators and the residual stream live in int32
WIDE_BITS = hgpipe.MAX_TYPE_BITS
INT32_MAX = (1 << 31) - 1  # the HLS code holds scalars in `int`


@dataclass
class QuantConfig:
    # Operands of the matrix products (ap_int<bits>).
    patch_weight_bits: int = 8
    weight_bits: int = 8        # q, k, v, o, fc1, fc2
    head_weight_bits: int = 8
    act_bits: int = 8           # LayerNorm outputs, q, context, GELU outputs
    kv_bits: int = 7            # k and v: the emulation's batched products
                                # take at most 7-bit weights (accel/vit/matmul.h)
    prob_bits: int = 8          # softmax output, unsigned
    # Activation scale: this percentile of |x| on the calibration images
    # maps to the largest code.
    act_percentile: float = 100.0
    # Tables.
    table_steps: int = 4        # requant / GELU entries per output step
    max_table_entries: int = 1 << 14
    rsqrt_bits: int = 16        # rsqrt table values (unsigned)
    lnw_bits: int = 16          # |lnw| < 2^(lnw_bits - 1)
    rsqrt_step: float = 1 / 64  # bucket width / variance at the low end
    var_margin: float = 2.0     # rsqrt table spans [min / m, max * m]
    exp_bits: int = 16          # exp table values, exp(0) = 2^(exp_bits - 1)
    exp_step: float = 1 / 128   # exp bucket width in real units of x
    recip_bits: int = 16        # reciprocal table values (unsigned)
    recip_step: float = 1 / 512  # half bucket width / sum, reciprocal tables
    residual_mult_bits: int = 23  # residual mult in [2^22, 2^23)
    # Data-dependent widths: measured range times 2^headroom.
    stream_headroom_bits: int = 2
    logit_headroom_bits: int = 1
    # The patch embedding's output shift puts the stream near this many bits.
    patch_out_bits: int = 15
    # Taylor attention: the context matrix G as a product operand.
    taylor_g_bits: int = 8


# ---- helpers ---------------------------------------------------------------

def round_half_up(x):
    return np.floor(np.asarray(x, dtype=np.float64) + 0.5).astype(np.int64)


def signed_bits(lo, hi):
    """The smallest b with ap_int<b> holding [lo, hi]."""
    lo, hi = int(lo), int(hi)
    b = 1
    while lo < -(1 << (b - 1)) or hi > (1 << (b - 1)) - 1:
        b += 1
    return b


def unsigned_bits(hi):
    hi = int(hi)
    b = 1
    while hi > (1 << b) - 1:
        b += 1
    return b


def int_type(lo, hi, what, max_bits=WIDE_BITS):
    """The narrowest type holding [lo, hi]: unsigned if lo >= 0."""
    if lo >= 0:
        t = f"u{unsigned_bits(hi)}"
    else:
        t = f"s{signed_bits(lo, hi)}"
    if int(t[1:]) > max_bits:
        raise ValueError(f"{what}: range [{lo}, {hi}] needs {t}, more than "
                         f"{max_bits} bits")
    return t


def type_range(text):
    t = hgpipe.IntType(text)
    return t.lo, t.hi


def mag(text):
    """The largest |value| of a type."""
    lo, hi = type_range(text)
    return max(-lo, hi)


def floor_shift(lo_hi, offset, shift):
    """[lo, hi] of (v + offset) >> shift over v in lo_hi."""
    return (lo_hi[0] + offset) >> shift, (lo_hi[1] + offset) >> shift


def stages(g, attn_kinds=None, mlp_kinds=None):
    """The hardware stages of one image's pipeline, in order, as (name, kind,
    multiply-accumulates): the patch embedding, each block's attention and
    MLP that runs, the head. docs/datapath.md, "Timing in the manifest"."""
    t, d, h = g["tokens"], g["width"], g["heads"]
    dh = d // h
    attn_kinds = attn_kinds or ["softmax"] * g["depth"]
    mlp_kinds = mlp_kinds or ["gelu"] * g["depth"]
    out = [("patch", "patch", t * g["token_values"] * d)]
    for i in range(g["depth"]):
        a = attn_kinds[i]
        if a == "softmax":   # q, k, v, o; q k^T and p v per head
            out.append((f"blocks.{i}.attn", a, 4 * t * d * d + 2 * t * t * d))
        elif a == "taylor":  # q, k, v, o; K^T V and q G per head: T dh^2 each
            out.append((f"blocks.{i}.attn", a, 4 * t * d * d + 2 * t * d * dh))
        if mlp_kinds[i] != "none":
            out.append((f"blocks.{i}.mlp", mlp_kinds[i],
                        2 * t * d * g["mlp_hidden"]))
    out.append(("head", "head", d * g["classes"]))
    return out


def macs(g, attn_kinds=None, mlp_kinds=None):
    """Multiply-accumulates of one image through the datapath."""
    return sum(w for _, _, w in stages(g, attn_kinds, mlp_kinds))


# HG-PIPE's head stage runs 48,001 of the pipeline's 57,624 cycles per image
# (the authors' paper, arXiv:2407.17879; docs/datapath.md); its other
# stages' fill, in intervals, is what
# remains of DeiT-tiny's latency after its 12 attention barriers and the
# head: (816,584 - 12 x 57,624 - 48,001) / (25 x 57,624).
DEIT_HEAD_CYCLES = 48_001
DEIT_STAGES = 26


def timing_terms(g, attn_kinds=None, mlp_kinds=None):
    """The per-stage timing model (docs/datapath.md, "Timing in the
    manifest"): returns a dict with the stages' work, the interval before and
    after the I/O floor, and the latency's parts, in cycles at 425 MHz."""
    from fractions import Fraction
    st = stages(g, attn_kinds, mlp_kinds)
    work = sum(w for _, _, w in st)
    # A bitstream on HG-PIPE's device balances its stages (each gets DSPs
    # and LUTs in proportion to its work), so the interval scales with the
    # total work; the 32-bit input stream (4 int8 a cycle) and the output
    # (one word a cycle) bound it below.
    compute = math.ceil(Fraction(DEIT_INTERVAL_CYCLES) * work / macs(DEIT_TINY))
    beats = g["tokens"] * g["token_values"] // 4
    interval = max(compute, beats, g["classes"])
    barriers = sum(1 for _, k, _ in st if k in ("softmax", "taylor"))
    head = Fraction(DEIT_HEAD_CYCLES, DEIT_INTERVAL_CYCLES)
    fill = (Fraction(DEIT_LATENCY_CYCLES, DEIT_INTERVAL_CYCLES) - 12 - head) \
        / (DEIT_STAGES - 1)
    # An attention (either kind) emits its first token only once the last
    # token of the image has reached it: one interval per attention; the
    # head emits the classes over its own interval once the CLS token
    # arrives; every other stage adds its fill.
    latency_ii = barriers + head + (len(st) - 1) * fill
    latency = max(math.ceil(interval * latency_ii), interval)
    return dict(stages=st, work=work, compute_interval=compute,
                input_beats=beats, interval=interval, barriers=barriers,
                latency_intervals=float(latency_ii), latency=latency)


def derived_timing(g, attn_kinds=None, mlp_kinds=None):
    """(clock_hz, interval_cycles, latency_cycles) of the model on HG-PIPE's
    device: timing_terms(). For DeiT-tiny it gives HG-PIPE's own figures."""
    t = timing_terms(g, attn_kinds, mlp_kinds)
    return DEIT_CLOCK_HZ, t["interval"], t["latency"]


def _np(t):
    return t.detach().double().cpu().numpy()


# ---- calibration (float) ---------------------------------------------------

class _Stats:
    """Per quantization point: |x| samples (for percentiles) or extrema."""

    def __init__(self):
        self.abs = {}
        self.lo = {}
        self.hi = {}

    def add_abs(self, key, v):
        self.abs.setdefault(key, []).append(
            np.abs(v.detach().float().numpy().ravel()))

    def add_range(self, key, v):
        v = v.detach().double()
        lo, hi = float(v.min()), float(v.max())
        self.lo[key] = min(self.lo.get(key, lo), lo)
        self.hi[key] = max(self.hi.get(key, hi), hi)

    def top(self, key, percentile):
        a = np.concatenate(self.abs[key])
        if percentile >= 100:
            return max(float(a.max()), 1e-12)
        return max(float(np.percentile(a, percentile)), 1e-12)

    def absmax(self, key):
        return max(-self.lo[key], self.hi[key], 1e-12)


def _ln_var(x):
    """Population variance of each row (what LayerNorm normalizes by)."""
    return x.var(-1, unbiased=False)


def _observe_attention(st, p, blk, h, g, dh):
    if blk.attn.kind == "none":
        return h
    n, t, d = h.shape
    st.add_range(p + "attn.norm.var", _ln_var(h))
    a = blk.norm1(h)
    st.add_abs(p + "attn.norm", a)
    qkv = blk.attn.qkv(a)
    q, k, v = qkv[..., :d], qkv[..., d:2 * d], qkv[..., 2 * d:]
    st.add_abs(p + "attn.q", q)
    st.add_abs(p + "attn.k", k)
    st.add_abs(p + "attn.v", v)
    heads = lambda y: y.reshape(n, t, g.heads, dh).transpose(1, 2)
    if blk.attn.kind == "taylor":
        kc = heads(k) - heads(k).mean(dim=-2, keepdim=True)
        st.add_range(p + "attn.taylor.g", kc.transpose(-2, -1) @ heads(v))
        y = taylor_attention(heads(q), heads(k), heads(v))
    else:
        att = ((heads(q) @ heads(k).transpose(-2, -1)) /
               math.sqrt(dh)).softmax(-1)
        st.add_range(p + "attn.softmax", att)
        y = att @ heads(v)
    ctx = y.transpose(1, 2).reshape(n, t, d)
    st.add_abs(p + "attn.context", ctx)
    h = h + blk.attn.proj(ctx)
    st.add_range(p + "attn.residual", h)
    return h


def _observe_mlp(st, p, blk, h):
    if blk.mlp_kind == "none":
        return h
    st.add_range(p + "mlp.norm.var", _ln_var(h))
    a = blk.norm2(h)
    st.add_abs(p + "mlp.norm", a)
    f1 = blk.mlp.fc1(a)
    st.add_range(p + "mlp.fc1", f1)
    ge = F.gelu(f1)
    st.add_abs(p + "mlp.gelu", ge)
    h = h + blk.mlp.fc2(ge)
    st.add_range(p + "mlp.residual", h)
    return h


def observe(model: HgVit, x, batch=250):
    """Runs the float model on x [N, T, V] (float input) and records what
    the quantizer needs at every point."""
    model.eval()
    g = model.geometry
    dh = g.width // g.heads
    st = _Stats()
    with torch.no_grad():
        for i in range(0, len(x), batch):
            h = model.embed(x[i:i + batch])
            st.add_range("patch", h)
            n, t, d = h.shape
            for bi, blk in enumerate(model.blocks):
                p = f"blocks.{bi}."
                st.add_range(p + "attn.norm.var", _ln_var(h))
                a = blk.norm1(h)
                st.add_abs(p + "attn.norm", a)
                h = _observe_attention(st, p, blk, h, g, dh)
                h = _observe_mlp(st, p, blk, h)
            c = h[:, 0]
            st.add_range("head.norm.var", _ln_var(c))
            a = model.norm(c)
            st.add_abs("head.norm", a)
            st.add_range("head", model.head(a))
    return st


# ---- the stages ------------------------------------------------------------

class Builder:
    """Accumulates the manifest's stage lines and the tensors."""

    def __init__(self, cfg: QuantConfig):
        self.cfg = cfg
        self.man = {}
        self.ten = {}
        self.notes = []   # one line per stage: what was chosen
        self.worst = {}   # linear stage -> worst-case accumulator type
        self.scales = {}  # stage -> the real value of an output of 1

    def stage(self, key, **params):
        self.man[key] = hgpipe.format_stage(params)

    # Weights: symmetric, per tensor.
    def weights(self, w, bits, scale=None):
        qmax = (1 << (bits - 1)) - 1
        if scale is None:
            scale = max(float(np.abs(w).max()), 1e-12) / qmax
        q = np.clip(round_half_up(w / scale), -qmax, qmax)
        return q, scale

    def linear(self, key, w, b, in_type, in_scale, bits, w_scale=None,
               acc_type=None):
        """y = x W^T + b. Returns (acc type, acc scale)."""
        wq, ws = self.weights(w, bits, w_scale)
        acc_scale = in_scale * ws
        bq = round_half_up(b / acc_scale)
        bound = int((np.abs(wq).sum(1) * mag(in_type) + np.abs(bq)).max())
        worst = int_type(-bound, bound, key + " accumulator", WIDE_BITS)
        self.worst[key] = worst
        if acc_type is None:
            acc_type = worst
            if int(acc_type[1:]) > ACC_BITS:
                raise ValueError(f"{key}: worst-case accumulator {acc_type} is "
                                 f"wider than {ACC_BITS} bits")
        bias_lo, bias_hi = int(bq.min()), int(bq.max())
        self.stage(key, weight=f"s{bits}",
                   bias=int_type(min(bias_lo, 0) - 1, max(bias_hi, 0), key),
                   acc=acc_type)
        self.ten[key + ".weight"] = wq.astype(np.int8)
        self.ten[key + ".bias"] = bq.astype(np.int32)
        self.notes.append(f"{key}: W s{bits} (scale {ws:.3g}), acc {acc_type}"
                          f" (worst case {worst})")
        self.scales[key] = acc_scale
        return acc_type, acc_scale

    def table(self, key, in_type, in_scale, out_type, out_scale, fn, slope=1.0,
              lo_real=None, hi_real=None):
        """out = table[clamp((x + offset) >> shift, 0, bound)] approximating
        clamp(round(fn(x * in_scale) / out_scale)) over the input's type.
        The table covers [lo_real, hi_real] (real units); outside it the end
        entries hold (they must be the saturated values there)."""
        cfg = self.cfg
        olo, ohi = type_range(out_type)
        step = out_scale / in_scale / slope        # input units per output step
        shift = max(0, math.floor(math.log2(max(step / cfg.table_steps, 1))))
        lo = math.floor(lo_real / in_scale)
        hi = math.ceil(hi_real / in_scale)
        while True:
            w = 1 << shift
            x0 = (lo // w) * w
            entries = (hi - x0) // w + 1
            if entries <= cfg.max_table_entries:
                break
            shift += 1
        if -x0 > INT32_MAX or x0 > INT32_MAX:
            raise ValueError(f"{key}: table offset {-x0} does not fit int32")
        offset = -x0
        centers = x0 + np.arange(entries, dtype=np.float64) * w + (w - 1) / 2
        vals = np.clip(round_half_up(fn(centers * in_scale) / out_scale), olo,
                       ohi)
        cursor = int_type(*floor_shift(type_range(in_type), offset, shift),
                          key + " cursor")
        self.stage(key, cursor=cursor, out=out_type, offset=offset,
                   shift=shift, bound=entries - 1)
        self.ten[key + ".table"] = vals.astype(np.int32)
        self.scales[key] = out_scale
        self.notes.append(f"{key}: {entries} entries of {out_type}, bucket "
                          f"2^{shift} (output step {step:.4g})")

    def requant(self, key, in_type, in_scale, out_type, out_scale):
        olo, ohi = type_range(out_type)
        self.table(key, in_type, in_scale, out_type, out_scale,
                   lambda x: x, lo_real=(olo - 0.5) * out_scale,
                   hi_real=(ohi + 0.5) * out_scale)

    def gelu(self, key, in_type, in_scale, out_type, out_scale):
        olo, ohi = type_range(out_type)

        def fn(x):
            return F.gelu(torch.from_numpy(np.asarray(x, np.float64))).numpy()

        # Below lo_real GELU rounds to 0 (the table's first entry holds
        # there; one real unit of margin keeps that entry 0); above hi_real
        # it saturates. Found on a fine grid.
        grid = np.linspace(-30, 0, 300_001)
        nz = np.nonzero(round_half_up(fn(grid) / out_scale) != 0)[0]
        lo_real = (grid[nz[0]] if len(nz) else 0.0) - 1.0
        hi_real = (ohi + 0.5) * out_scale
        hi_real = hi_real + 0.5 * out_scale   # GELU(x) < x: a little beyond
        while fn(np.array([hi_real]))[0] < (ohi + 0.5) * out_scale:
            hi_real += out_scale
        self.table(key, in_type, in_scale, out_type, out_scale, fn,
                   slope=1.13, lo_real=lo_real, hi_real=hi_real)

    def norm(self, key, in_type, in_scale, gamma, beta, eps, var_lo, var_hi,
             out_type, out_scale):
        """LayerNorm of rows of `in_type` (real value = x * in_scale) with
        float population variance in [var_lo, var_hi] on calibration data."""
        cfg = self.cfg
        c = len(gamma)
        lo_in, hi_in = type_range(in_type)
        # mean = (sum * mean_mult + 2^(mean_shift-1)) >> mean_shift
        cbits = max(1, math.ceil(math.log2(c)))
        if c & (c - 1) == 0 and c > 1:
            mean_mult, mean_shift = 1, cbits
        else:   # mean_mult carries 16 bits (the authors': 43691 / 2^23)
            mean_shift = min(31, 15 + cbits)
            mean_mult = round(2 ** mean_shift / c)
        sum_t = int_type(lo_in * c, hi_in * c, key + " sum")
        s_lo, s_hi = type_range(sum_t)
        half = 1 << (mean_shift - 1)
        d_lo = min(s_lo * mean_mult, s_hi * mean_mult) + half
        d_hi = max(s_lo * mean_mult, s_hi * mean_mult) + half
        divc_t = int_type(d_lo, d_hi, key + " divc")
        mean_t = int_type(d_lo >> mean_shift, d_hi >> mean_shift, key + " mean")
        # var = sum (x - mean)^2, x - mean wrapped to the input type.
        dmax = max(-lo_in, hi_in)
        var_max = c * dmax * dmax
        var_t = int_type(0, var_max, key + " var")
        # The rsqrt table: linear buckets over the calibrated variance (in
        # integer units, var_int = C var / in_scale^2).
        to_int = c / in_scale ** 2
        v_lo = max(var_lo * to_int / cfg.var_margin, 1.0)
        v_hi = max(var_hi * to_int * cfg.var_margin, v_lo + 1)
        eps_int = c * eps / in_scale ** 2
        shift = max(0, math.floor(math.log2(max(v_lo * cfg.rsqrt_step, 1))))
        while True:
            w = 1 << shift
            v0 = min(math.floor(v_lo / w) * w, (INT32_MAX // w) * w)
            entries = math.ceil((v_hi - v0) / w) + 1
            if entries <= cfg.max_table_entries:
                break
            shift += 1
        var_offset = -v0
        centers = v0 + np.arange(entries, dtype=np.float64) * w + (w - 1) / 2
        inv = 1.0 / np.sqrt(np.maximum(centers, 0) + eps_int)
        rmax = (1 << cfg.rsqrt_bits) - 1
        r_scale = rmax / inv.max()
        rsqrt = np.clip(round_half_up(inv * r_scale), 0, rmax)
        cursor_t = int_type(*floor_shift((0, var_max), var_offset, shift),
                            key + " cursor")
        # out = clamp((d * r * lnw + lnb) >> out_shift): lnw carries gamma
        # and the scales, lnb beta and the rounding.
        gmax = max(float(np.abs(gamma).max()), 1e-12)
        unit = math.sqrt(c) / (r_scale * out_scale)   # lnw per gamma / 2^os
        out_shift = math.floor(math.log2(((1 << (cfg.lnw_bits - 1)) - 1) /
                                         (gmax * unit)))
        # |d| r is at most r[i] times the largest |d| in bucket i:
        # min(dmax, sqrt(upper variance)), the last bucket taking the rest.
        upper = v0 + (np.arange(entries, dtype=np.float64) + 1) * w
        upper[-1] = var_max
        dr = float((rsqrt * np.minimum(dmax, np.sqrt(upper))).max())
        while True:
            if out_shift < 0:
                raise ValueError(f"{key}: no output shift fits lnw")
            lnw = round_half_up(gamma * unit * 2.0 ** out_shift)
            lnb = round_half_up(beta / out_scale * 2.0 ** out_shift) + (
                (1 << out_shift) >> 1)
            aff = int(dr * np.abs(lnw).max() + np.abs(lnb).max()) + 1
            if signed_bits(-aff, aff) <= WIDE_BITS - 2:
                break
            out_shift -= 1
        affine_t = int_type(-aff, aff, key + " affine")
        shift_t = int_type(-aff >> out_shift, aff >> out_shift, key + " shift")
        self.stage(key, sum=sum_t, divc=divc_t, mean=mean_t, var=var_t,
                   cursor=cursor_t, rsqrt=f"u{cfg.rsqrt_bits}",
                   affine=affine_t, shift=shift_t, out=out_type,
                   mean_mult=mean_mult, mean_shift=mean_shift,
                   var_offset=var_offset, var_shift=shift,
                   var_bound=entries - 1, out_shift=out_shift)
        self.ten[key + ".weight"] = lnw.astype(np.int32)
        self.ten[key + ".bias"] = lnb.astype(np.int64)
        self.ten[key + ".rsqrt"] = rsqrt.astype(np.int32)
        self.scales[key] = out_scale
        self.notes.append(
            f"{key}: in {in_type}, rsqrt {entries} entries (bucket 2^{shift}, "
            f"variance {v_lo:.3g}..{v_hi:.3g}), out_shift {out_shift}, "
            f"affine {affine_t}, out {out_type} (scale {out_scale:.3g})")

    def softmax(self, key, scores_type, score_scale, tokens, top):
        """Rows of scores (real score = s * score_scale, 1/sqrt(dh) folded
        in) -> probabilities p * top / (2^prob_bits - 1): `top`, the largest
        probability seen in calibration, takes the largest code (flat
        attention over many tokens keeps its resolution; larger ones
        saturate)."""
        cfg = self.cfg
        out_t = f"u{cfg.prob_bits}"
        p_max = ((1 << cfg.prob_bits) - 1) / min(max(top, 1e-6), 1.0)
        s_lo, s_hi = type_range(scores_type)
        minus_t = int_type(0, s_hi - s_lo, key + " minus")
        # exp[i] = E exp(-i w a): bucket i centred on i w (offset w / 2).
        e_one = 1 << (cfg.exp_bits - 1)
        exp_shift = max(0, math.floor(math.log2(max(cfg.exp_step /
                                                    score_scale, 1))))
        while True:
            w = 1 << exp_shift
            n = math.ceil(math.log(2 * e_one) / (score_scale * w)) + 1
            if n <= cfg.max_table_entries:
                break
            exp_shift += 1
        exp_offset = w >> 1
        exp = round_half_up(e_one * np.exp(-score_scale * w *
                                           np.arange(n, dtype=np.float64)))
        nz = np.nonzero(exp == 0)[0]
        if len(nz):
            exp = exp[:nz[0] + 1]          # one zero ends the table
        exp_bound = len(exp) - 1
        cursor1_t = int_type(*floor_shift((0, s_hi - s_lo), exp_offset,
                                          exp_shift), key + " cursor1")
        # The row sum z is in [E, T E]: the maximum contributes exp[0] = E.
        z_max = tokens * e_one
        sum_t = int_type(0, z_max, key + " sum")
        # Segment one: z < zb in buckets of w1, centred on i w1.
        w1_shift = max(0, math.floor(math.log2(2 * cfg.recip_step * e_one)))
        w1 = 1 << w1_shift
        z_split = math.sqrt(e_one * z_max)
        one_bound = max(1, math.ceil(z_split / w1) - 1)
        one_offset = w1 >> 1
        zb = (one_bound + 1) * w1 - one_offset   # first z of segment two
        # Segment two: z >= zb in buckets of w2, bucket j centred on zb + j w2.
        w2_shift = max(0, math.floor(math.log2(2 * cfg.recip_step * zb)))
        while True:
            w2 = 1 << w2_shift
            two_bound = max(1, math.ceil((z_max - zb) / w2))
            if two_bound + 1 <= cfg.max_table_entries:
                break
            w2_shift += 1
        two_offset = (w2 >> 1) - zb
        rmax = (1 << cfg.recip_bits) - 1
        s1 = min(62, math.floor(math.log2(rmax * e_one / p_max)))
        s2 = min(62, math.floor(math.log2(rmax * zb / p_max)))
        z1 = np.maximum(np.arange(one_bound + 1, dtype=np.float64) * w1, e_one)
        z2 = zb + np.arange(two_bound + 1, dtype=np.float64) * w2
        recip_one = np.minimum(round_half_up(2.0 ** s1 * p_max / z1), rmax)
        recip_two = np.minimum(round_half_up(2.0 ** s2 * p_max / z2), rmax)
        cursor2_one_t = int_type(0, (z_max + one_offset) >> w1_shift,
                                 key + " cursor2_one")
        cursor2_two_t = int_type(*floor_shift((0, z_max), two_offset, w2_shift),
                                 key + " cursor2_two")
        aff_max = e_one * rmax
        affine_t = int_type(0, aff_max, key + " affine")
        b3_one, b3_two = 1 << (s1 - 1), 1 << (s2 - 1)
        cursor3_t = int_type(0, (aff_max + max(b3_one, b3_two)) >> min(s1, s2),
                             key + " cursor3")
        self.stage(key, minus=minus_t, cursor1=cursor1_t,
                   exp=f"u{cfg.exp_bits}", sum=sum_t, recip=f"u{cfg.recip_bits}",
                   cursor2_one=cursor2_one_t, cursor2_two=cursor2_two_t,
                   affine=affine_t, cursor3=cursor3_t, out=out_t,
                   exp_offset=exp_offset, exp_shift=exp_shift,
                   exp_bound=exp_bound, one_offset=one_offset,
                   one_shift=w1_shift, one_bound=one_bound,
                   one_out_offset=b3_one, one_out_shift=s1,
                   two_offset=two_offset, two_shift=w2_shift,
                   two_bound=two_bound, two_out_offset=b3_two,
                   two_out_shift=s2)
        self.ten[key + ".exp"] = exp.astype(np.int32)
        self.ten[key + ".recip_one"] = recip_one.astype(np.int32)
        self.ten[key + ".recip_two"] = recip_two.astype(np.int32)
        self.notes.append(
            f"{key}: exp {len(exp)} entries (bucket 2^{exp_shift}), "
            f"reciprocal {one_bound + 1} + {two_bound + 1} entries "
            f"(split at {zb}), out {out_t}")
        self.scales[key] = 1.0 / p_max
        return 1.0 / p_max

    def residual(self, key, in_scale, main_scale, out_type):
        """out = main + round(x mult / 2^shift), mult / 2^shift = the ratio
        of the stream's scale to the block output's."""
        ratio = in_scale / main_scale
        shift = (self.cfg.residual_mult_bits - 1) - math.floor(math.log2(ratio))
        shift = min(max(shift, 1), 31)
        mult = int(round_half_up(ratio * 2.0 ** shift))
        if not 0 < mult <= INT32_MAX:
            raise ValueError(f"{key}: residual ratio {ratio} does not fit")
        self.stage(key, out=out_type, mult=mult, shift=shift)
        self.scales[key] = main_scale

    def taylor(self, b, tokens, dh, q_type, kv_type, scales, g_real_max):
        """ViTALiTy's Taylor attention between the q/k/v tables and the
        context table (docs/datapath.md, "Taylor attention"): the `.taylor`
        and `.context` stage lines. g_real_max: the largest |K^ T V| entry
        (keys centred, real units) on the calibration images. Returns the
        context accumulator's (type, scale)."""
        cfg = self.cfg
        key = b + ".taylor"
        t = tokens
        k_lo, k_hi = type_range(kv_type)
        kmag = mag(kv_type)
        sum_t = int_type(t * k_lo, t * k_hi, key + " ksum")
        kvb = t * kmag * kmag
        kv_t = int_type(-kvb, kvb, key + " kv")
        gb = t * kvb + (t * kmag) ** 2
        g_t = int_type(-gb, gb, key + " g")
        # g = T K^T V - (sum K)^T (sum V) = T K^ T V in integer units.
        g_int_max = t * g_real_max / (scales["k"] * scales["v"])
        qmax = (1 << (cfg.taylor_g_bits - 1)) - 1
        g_shift = 1
        while g_int_max / (1 << g_shift) > qmax + 0.5 and g_shift < 62:
            g_shift += 1
        half = 1 << (g_shift - 1)
        gshift_t = int_type(*floor_shift((-gb, gb), half, g_shift),
                            key + " gshift")
        gout_t = f"s{cfg.taylor_g_bits}"
        # The context y_t = (sum V + q_t K^ T V / sqrt(dh)) / T in real
        # units: q gq counts units of u = s_q s_k s_v 2^g_shift /
        # (T^2 sqrt(dh)); the mean of V (s_v vsum / T) enters in the same
        # units as vsum * mean_mult / 2^mean_shift.
        u = scales["q"] * scales["k"] * scales["v"] * 2.0 ** g_shift / (
            t * t * math.sqrt(dh))
        ratio = scales["v"] / (t * u)
        mean_shift = (cfg.residual_mult_bits - 1) - math.floor(math.log2(ratio))
        mean_shift = min(max(mean_shift, 1), 62)
        mean_mult = int(round_half_up(ratio * 2.0 ** mean_shift))
        if not 0 < mean_mult <= INT32_MAX:
            raise ValueError(f"{key}: mean ratio {ratio} does not fit")
        mhalf = 1 << (mean_shift - 1)
        m_lo = (t * k_lo * mean_mult + mhalf) >> mean_shift
        m_hi = (t * k_hi * mean_mult + mhalf) >> mean_shift
        mterm_t = int_type(m_lo, m_hi, key + " mterm")
        cb = max(-m_lo, m_hi) + dh * mag(q_type) * mag(gout_t)
        ctx_t = int_type(-cb, cb, b + ".context", ACC_BITS)
        self.stage(key, ksum=sum_t, vsum=sum_t, kv=kv_t, g=g_t,
                   gshift=gshift_t, gout=gout_t, mterm=mterm_t,
                   g_shift=g_shift, mean_mult=mean_mult, mean_shift=mean_shift)
        self.stage(b + ".context", acc=ctx_t)
        self.scales[key] = u
        self.notes.append(
            f"{key}: g {g_t} >> {g_shift} to {gout_t} (|G| up to "
            f"{g_int_max:.4g} in integer units), mean of V x {mean_mult} / "
            f"2^{mean_shift}, context {ctx_t}")
        return ctx_t, u


# ---- the network -----------------------------------------------------------

def _attention(bld, b, i, blk, st, sd, x_type, x_scale, g, act, kv, act_scale,
               stream_type):
    """One attention block (softmax or taylor): its stage lines and tensors.
    Returns the residual stream's (type, scale) after it."""
    cfg = bld.cfg
    d, dh = g.width, g.width // g.heads
    a_scale = act_scale(b + ".norm", cfg.act_bits)
    bld.norm(b + ".norm", x_type, x_scale, sd[f"blocks.{i}.norm1.weight"],
             sd[f"blocks.{i}.norm1.bias"], blk.norm1.eps,
             st.lo[b + ".norm.var"], st.hi[b + ".norm.var"], act, a_scale)
    qkv_w = sd[f"blocks.{i}.attn.qkv.weight"]
    qkv_b = sd[f"blocks.{i}.attn.qkv.bias"]
    scales = {}
    for j, (m, out_t_) in enumerate((("q", act), ("k", kv), ("v", kv))):
        at, asc = bld.linear(f"{b}.{m}", qkv_w[j * d:(j + 1) * d],
                             qkv_b[j * d:(j + 1) * d], act, a_scale,
                             cfg.weight_bits)
        scales[m] = act_scale(f"{b}.{m}", int(out_t_[1:]))
        bld.requant(f"{b}.{m}_quant", at, asc, out_t_, scales[m])
    if blk.attn.kind == "taylor":
        ctx_t, ctx_scale = bld.taylor(b, g.tokens, dh, act, kv, scales,
                                      st.absmax(b + ".taylor.g"))
    else:
        sbound = dh * mag(act) * mag(kv)
        scores_t = int_type(-sbound, sbound, b + ".scores", ACC_BITS)
        bld.stage(b + ".scores", acc=scores_t)
        bld.scales[b + ".scores"] = scales["q"] * scales["k"]
        p_scale = bld.softmax(b + ".softmax", scores_t,
                              scales["q"] * scales["k"] / math.sqrt(dh),
                              g.tokens, st.hi[b + ".softmax"])
        cbound = g.tokens * ((1 << cfg.prob_bits) - 1) * mag(kv)
        ctx_t = int_type(-cbound, cbound, b + ".context", ACC_BITS)
        bld.stage(b + ".context", acc=ctx_t)
        ctx_scale = p_scale * scales["v"]
    bld.scales[b + ".context"] = ctx_scale
    c_scale = act_scale(b + ".context", cfg.act_bits)
    bld.requant(b + ".context_quant", ctx_t, ctx_scale, act, c_scale)
    o_t, o_scale = bld.linear(b + ".o", sd[f"blocks.{i}.attn.proj.weight"],
                              sd[f"blocks.{i}.attn.proj.bias"], act,
                              c_scale, cfg.weight_bits)
    res_t = stream_type(b + ".residual", o_scale)
    bld.residual(b + ".residual", x_scale, o_scale, res_t)
    return res_t, o_scale


def _headroom_type(lo, hi, bits, what, max_bits):
    lo = min(int(lo), 0) << bits
    hi = max(int(hi), 0) << bits
    return int_type(min(lo, -1), hi, what, max_bits)


def build(model: HgVit, st: _Stats, cfg: QuantConfig, input_scale,
          stream_types=None, head_acc=None, head_w_scale=None):
    """One pass: the container's manifest and tensors from the float model,
    the calibration statistics and (after a measuring pass) the residual
    stream types and the head's accumulator."""
    g = model.geometry
    d, dh = g.width, g.width // g.heads
    sd = {k: _np(v) for k, v in model.state_dict().items()}
    bld = Builder(cfg)
    stream_types = stream_types or {}

    def stream_type(key, scale):
        """Measured (pass 2) or the float range with one more bit (pass 1)."""
        if key in stream_types:
            return stream_types[key]
        top = round(max(-st.lo[key], st.hi[key]) / scale)
        return _headroom_type(-top, top, cfg.stream_headroom_bits + 1, key,
                              ACC_BITS)
    act = f"s{cfg.act_bits}"
    kv = f"s{cfg.kv_bits}"

    def act_scale(key, bits):
        return st.top(key, cfg.act_percentile) / ((1 << (bits - 1)) - 1)

    # Patch embedding: acc scale input_scale * s_w; out >> shift.
    wq, ws = bld.weights(sd["patch.weight"], cfg.patch_weight_bits)
    acc_scale = input_scale * ws
    pos = sd["pos_embed"].reshape(g.tokens, d)
    bias = round_half_up((sd["patch.bias"][None, :] + pos) / acc_scale)
    cls = round_half_up((sd["cls_token"].reshape(d) + pos[0]) / acc_scale)
    bias[0] = 0   # token 0 never uses it: CLS replaces the whole row
    bound = int(np.abs(wq).sum(1).max() * 128 +
                max(np.abs(bias).max(), np.abs(cls).max()))
    acc_t = int_type(-bound, bound, "patch acc", ACC_BITS)
    want = st.absmax("patch") / acc_scale
    shift = max(1, math.ceil(math.log2(max(want, 1))) - cfg.patch_out_bits)
    out_lo, out_hi = (-bound + (1 << (shift - 1))) >> shift, \
        (bound + (1 << (shift - 1))) >> shift
    out_t = int_type(out_lo, out_hi, "patch out", ACC_BITS)
    bias_t = int_type(min(bias.min(), cls.min(), -1),
                      max(bias.max(), cls.max()), "patch bias", ACC_BITS)
    bld.stage("patch", **{"in": "s8"}, weight=f"s{cfg.patch_weight_bits}",
              bias=bias_t, acc=acc_t, out=out_t, shift=shift)
    bld.ten["patch.weight"] = wq.astype(np.int8)
    bld.ten["patch.bias"] = bias.astype(np.int32)
    bld.ten["patch.cls"] = cls.astype(np.int32)
    bld.notes.append(f"patch: W s{cfg.patch_weight_bits}, acc {acc_t}, "
                     f"shift {shift}, out {out_t}")
    x_type, x_scale = out_t, acc_scale * 2.0 ** shift
    bld.scales["patch"] = x_scale

    for i, blk in enumerate(model.blocks):
        b = f"blocks.{i}.attn"
        bld.man[b + ".kind"] = blk.attn.kind
        bld.man[f"blocks.{i}.mlp.kind"] = blk.mlp_kind
        if blk.attn.kind != "none":
            x_type, x_scale = _attention(bld, b, i, blk, st, sd, x_type,
                                         x_scale, g, act, kv, act_scale,
                                         stream_type)
        b = f"blocks.{i}.mlp"
        if blk.mlp_kind == "none":
            continue
        a_scale = act_scale(b + ".norm", cfg.act_bits)
        bld.norm(b + ".norm", x_type, x_scale, sd[f"blocks.{i}.norm2.weight"],
                 sd[f"blocks.{i}.norm2.bias"], blk.norm2.eps,
                 st.lo[b + ".norm.var"], st.hi[b + ".norm.var"], act, a_scale)
        h_t, h_scale = bld.linear(b + ".fc1", sd[f"blocks.{i}.mlp.fc1.weight"],
                                  sd[f"blocks.{i}.mlp.fc1.bias"], act, a_scale,
                                  cfg.weight_bits)
        g_scale = act_scale(b + ".gelu", cfg.act_bits)
        bld.gelu(b + ".gelu", h_t, h_scale, act, g_scale)
        o_t, o_scale = bld.linear(b + ".fc2", sd[f"blocks.{i}.mlp.fc2.weight"],
                                  sd[f"blocks.{i}.mlp.fc2.bias"], act, g_scale,
                                  cfg.weight_bits)
        res_t = stream_type(b + ".residual", o_scale)
        bld.residual(b + ".residual", x_scale, o_scale, res_t)
        x_type, x_scale = res_t, o_scale

    h_scale = act_scale("head.norm", cfg.act_bits)
    bld.norm("head.norm", x_type, x_scale, sd["norm.weight"], sd["norm.bias"],
             model.norm.eps, st.lo["head.norm.var"], st.hi["head.norm.var"],
             act, h_scale)
    head_acc = head_acc or f"s{WIDE_BITS}"
    _, logit_scale = bld.linear("head", sd["head.weight"], sd["head.bias"], act,
                                h_scale, cfg.head_weight_bits,
                                w_scale=head_w_scale, acc_type=head_acc)
    return bld, logit_scale


class _Recording(hgpipe.IntType):
    """A type that records the range of everything wrapped to it."""

    def __init__(self, text, tag, log):
        super().__init__(text)
        self.tag, self.log = tag, log

    def wrap(self, v):
        v = np.asarray(v, dtype=np.int64)
        if v.size:
            lo, hi = int(v.min()), int(v.max())
            old = self.log.get(self.tag, (lo, hi, str(self)))
            self.log[self.tag] = (min(old[0], lo), max(old[1], hi), str(self))
        return super().wrap(v)


class RangeProbe(hgpipe.Model):
    """hgpipe.Model recording, per stage type, the range of the values
    wrapped to it (before wrapping): `ranges["blocks.0.attn.norm.var"]`."""

    def __init__(self, manifest, tensors):
        super().__init__(manifest, tensors)
        self.ranges = {}

    def p(self, key):
        out = {}
        for k, v in super().p(key).items():
            out[k] = (_Recording(str(v), f"{key}.{k}", self.ranges)
                      if isinstance(v, hgpipe.IntType) else v)
        return out

    def in_type(self, block_kind, i):
        t = super().in_type(block_kind, i)
        where = {"attn": f"blocks.{i}.attn.norm", "mlp": f"blocks.{i}.mlp.norm",
                 "head": "head.norm"}[block_kind]
        return _Recording(str(t), where + ".in", self.ranges)


# The types a stage's arithmetic wraps to (the rest are operands, tables
# and weights, which are clamped or stored).
WRAPPING = {
    "patch": ("acc", "out"),
    "norm": ("sum", "divc", "mean", "var", "cursor", "affine", "shift"),
    "linear": ("acc",),
    "table": ("cursor",),
    "acc": ("acc",),
    "softmax": ("minus", "cursor1", "sum", "cursor2_one", "cursor2_two",
                "affine", "cursor3"),
    "residual": ("out",),
    "taylor": ("ksum", "vsum", "kv", "g", "gshift", "mterm"),
}


def stage_kind(key):
    last = key.rsplit(".", 1)[-1]
    if key == "patch":
        return "patch"
    if last == "norm":
        return "norm"
    if last in ("q", "k", "v", "o", "fc1", "fc2", "head"):
        return "linear"
    if last.endswith("_quant") or last == "gelu":
        return "table"
    if last in ("scores", "context"):
        return "acc"
    if last in ("softmax", "residual", "taylor"):
        return last
    return None


def stage_keys(manifest):
    return [k for k in manifest if stage_kind(k) is not None
            and isinstance(manifest[k], str) and "=" in manifest[k]]


def widened(manifest):
    """The manifest with every wrapping type 56 bits wide (signed): a model
    that computes the same as `manifest` unless something wraps there."""
    out = dict(manifest)
    for key in stage_keys(manifest):
        p = hgpipe.parse_stage(manifest[key])
        for name in WRAPPING[stage_kind(key)]:
            p[name] = hgpipe.IntType(f"s{WIDE_BITS}")
        out[key] = hgpipe.format_stage(p)
    return out


def forward_batched(model, flat, batch=500):
    return np.concatenate([model.forward(flat[i:i + batch])
                           for i in range(0, len(flat), batch)])


def check_no_wraps(manifest, tensors, flat, batch=500):
    """The number of images whose logits differ between the model and its
    widened copy (0: no type wrapped on these inputs)."""
    narrow = hgpipe.Model(manifest, tensors)
    wide = hgpipe.Model(widened(manifest), tensors)
    bad = 0
    for i in range(0, len(flat), batch):
        a = narrow.forward(flat[i:i + batch])
        b = wide.forward(flat[i:i + batch])
        bad += int((a != b).any(axis=1).sum())
    return bad


def headroom(ranges):
    """Per wrapping type: its bits minus the bits the recorded range needs
    (negative: it wrapped), smallest first, as (bits, tag, type, lo, hi)."""
    rows = []
    for tag, (lo, hi, text) in ranges.items():
        t = hgpipe.IntType(text)
        if t.signed:
            need = signed_bits(lo, hi)
        else:
            need = unsigned_bits(hi) if lo >= 0 else t.bits + 1
        rows.append((t.bits - need, tag, text, lo, hi))
    return sorted(rows)


def quantize(model: HgVit, calib_flat, input_scale, cfg=None, name="vit",
             labels=None, timing=None, log=print):
    """Quantizes `model` for HG-PIPE's datapath.

    calib_flat: int8 [N, T, V] device patches (not device order) of
    calibration images; input_scale: the real value of an input int8 of 1.
    Returns (manifest, tensors, report): the first two for weightfile.write;
    report["notes"] says what was chosen per stage, report["scales"] the
    real value of an output of 1 of every traced stage (hgpipe.Model's
    trace names).
    """
    cfg = cfg or QuantConfig()
    g = model.geometry
    x = torch.from_numpy(calib_flat.astype(np.float32) * input_scale)
    st = observe(model, x)
    gd = g.to_dict()
    clock, interval, latency = timing or derived_timing(
        gd, model.attn_kinds, model.mlp_kinds)

    def container(bld, logit_scale):
        man = dict(name=name, **{k: gd[k] for k in (
            "tokens", "token_values", "width", "heads", "depth", "mlp_hidden",
            "classes")})
        man.update(input_scale=repr(float(input_scale)),
                   logit_scale=repr(float(logit_scale)), clock_hz=clock,
                   interval_cycles=interval, latency_cycles=latency)
        man.update(bld.man)
        ten = dict(bld.ten)
        if labels:
            ten["labels"] = np.frombuffer("\n".join(labels).encode("utf-8"),
                                          dtype=np.uint8).copy()
        return man, ten

    # Pass 1: wide residual stream and logits; measure them.
    bld, logit_scale = build(model, st, cfg, input_scale)
    man, ten = container(bld, logit_scale)
    probe = RangeProbe(man, ten)
    forward_batched(probe, calib_flat)
    r = probe.ranges
    streams = {}
    for key in man:
        if key.endswith(".residual"):
            lo, hi, _ = r[key + ".out"]
            streams[key] = _headroom_type(lo, hi, cfg.stream_headroom_bits,
                                          key, ACC_BITS)
    # The logits: measured, with headroom, in the 19-bit word; if they do
    # not fit, coarser head weights shrink them.
    lo, hi, _ = r["head.acc"]
    w_scale = None
    need = signed_bits(min(lo, -1) << cfg.logit_headroom_bits,
                       hi << cfg.logit_headroom_bits)
    if need > LOGIT_BITS:
        wmax = float(np.abs(_np(model.head.weight)).max())
        w_scale = wmax / ((1 << (cfg.head_weight_bits - 1)) - 1) * \
            2.0 ** (need - LOGIT_BITS)
        log(f"head: logits need {need} bits; head weights coarsened "
            f"{2 ** (need - LOGIT_BITS)}x")
    worst = int(bld.worst["head"][1:])
    head_acc = f"s{min(max(need, 2), LOGIT_BITS, worst)}"

    # Pass 2: the measured widths.
    bld, logit_scale = build(model, st, cfg, input_scale, streams, head_acc,
                             w_scale)
    man, ten = container(bld, logit_scale)
    probe = RangeProbe(man, ten)
    forward_batched(probe, calib_flat)
    rows = headroom(probe.ranges)
    if rows and rows[0][0] < 0:
        raise ValueError(f"calibration images wrap {rows[0][1]} "
                         f"({rows[0][2]}, range {rows[0][3]}..{rows[0][4]})")
    bad = check_no_wraps(man, ten, calib_flat)
    if bad:
        raise ValueError(f"{bad} calibration images wrap a type")
    measured = [r for r in rows if r[1].endswith((".residual.out", "head.acc"))]
    return man, ten, {"scales": bld.scales, "notes": bld.notes + [
        f"headroom on calibration: {h} bits in {tag} ({t}, range {lo}..{hi})"
        for h, tag, t, lo, hi in measured]}
