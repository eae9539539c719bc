"""Post-training quantization of an HgVit (vit_model.py) to the integer
datapath (docs/datapath.md): calibrates activation scales on sample inputs,
folds LayerNorm affines into the following linear layers, and produces the
manifest and integer tensors weightfile.write stores.
"""

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from vit_model import HgVit

# HG-PIPE DeiT-tiny on VCK190 (accel/bitstream.h).
DEIT_CLOCK_HZ = 425_000_000
DEIT_INTERVAL_CYCLES = 57_624
DEIT_LATENCY_CYCLES = 816_584


@dataclass
class QuantConfig:
    residual_bits: int = 16
    patch_weight_bits: int = 8
    block_weight_bits: int = 8
    head_weight_bits: int = 8
    act_bits: int = 8
    head_act_bits: int = 8
    prob_bits: int = 8
    gelu_in_bits: int = 8
    rsqrt_index_bits: int = 10
    rsqrt_frac_bits: int = 16
    exp_frac_bits: int = 15
    exp_entries: int = 512
    exp_step: float = 1.0 / 32.0    # exp table: entry i = exp(-i * step)
    multiplier_bits: int = 23       # requant multipliers in [2^22, 2^23)


def macs(g):
    """Multiply-accumulates of one image through the datapath."""
    t, d = g["tokens"], g["width"]
    block = 4 * t * d * d + 2 * t * t * d + 2 * t * d * g["mlp_hidden"]
    return t * g["token_values"] * d + g["depth"] * block + d * g["classes"]


DEIT_TINY = dict(tokens=196, token_values=768, width=192, heads=3, depth=12,
                 mlp_hidden=768, classes=1000)


def derived_timing(g):
    """HG-PIPE's DeiT-tiny pipeline scaled by the model's op count, with the
    interval no shorter than the 32-bit input stream (4 int8 per cycle) or
    the output stream (one word per cycle). docs/datapath.md, "Timing"."""
    ratio = macs(g) / macs(DEIT_TINY)
    beats = g["tokens"] * g["token_values"] // 4
    interval = max(math.ceil(DEIT_INTERVAL_CYCLES * ratio), beats,
                   g["classes"])
    latency = max(math.ceil(DEIT_LATENCY_CYCLES * ratio), interval)
    return DEIT_CLOCK_HZ, interval, latency


def round_half_up(x):
    return np.floor(np.asarray(x, dtype=np.float64) + 0.5)


def mult_shift(ratio, bits=23):
    """Positive real ratios -> int32 [N, 2] (M, S) with M / 2^S ~ ratio."""
    ratio = np.atleast_1d(np.asarray(ratio, dtype=np.float64))
    out = np.zeros((ratio.size, 2), dtype=np.int64)
    for i, r in enumerate(ratio):
        if not r > 0:
            raise ValueError(f"requant ratio must be > 0, got {r}")
        e = math.floor(math.log2(r))
        s = (bits - 1) - e
        s = min(max(s, 0), 62)
        m = int(round_half_up(r * 2.0 ** s))
        if m >= 2 ** 31:
            raise ValueError(f"requant ratio {r} too large")
        out[i] = (m, s)
    return out.astype(np.int32)


def act_scale(values, bits, percentile=99.999):
    """Symmetric scale for a signed activation of `bits`: a percentile of
    |x| for 6 bits and more, the MSE-optimal clip below."""
    a = np.abs(np.asarray(values, dtype=np.float64).ravel())
    qmax = (1 << (bits - 1)) - 1
    top = max(float(np.percentile(a, percentile)), 1e-8)
    if bits >= 6:
        return top / qmax
    if a.size > 200_000:
        a = np.random.default_rng(0).choice(a, 200_000, replace=False)
    best, best_err = top / qmax, None
    for frac in np.linspace(0.05, 1.0, 96):
        s = top * frac / qmax
        q = np.clip(np.floor(a / s + 0.5), 0, qmax + 1) * s
        err = float(np.mean((a - q) ** 2))
        if best_err is None or err < best_err:
            best, best_err = s, err
    return best


def quantize_weight(w, bits):
    """Per-output-channel symmetric: w float [N, K] -> (int8 [N, K], scale
    [N]). Below 6 bits the clip is the per-row MSE-optimal one."""
    w = np.asarray(w, dtype=np.float64)
    qmax = (1 << (bits - 1)) - 1
    top = np.maximum(np.abs(w).max(axis=1), 1e-12)
    if bits >= 6:
        scale = top / qmax
    else:
        best = np.full(w.shape[0], np.inf)
        scale = top / qmax
        for frac in np.linspace(0.2, 1.0, 41):
            s = top * frac / qmax
            q = np.clip(round_half_up(w / s[:, None]), -qmax, qmax) * s[:, None]
            err = ((w - q) ** 2).mean(axis=1)
            better = err < best
            best = np.where(better, err, best)
            scale = np.where(better, s, scale)
    q = np.clip(round_half_up(w / scale[:, None]), -qmax, qmax)
    return q.astype(np.int8), scale


def quantize_bias(b, acc_scale):
    q = round_half_up(np.asarray(b, dtype=np.float64) / acc_scale)
    if np.any(np.abs(q) > 2 ** 30):
        raise ValueError("bias does not fit 2^30 in the accumulator scale")
    return q.astype(np.int32)


def rsqrt_table(width, out_scale, index_bits, frac_bits):
    m = np.arange(1 << index_bits, dtype=np.float64)
    t = np.zeros_like(m)
    t[1:] = round_half_up(2.0 ** frac_bits * math.sqrt(width) /
                          (out_scale * np.sqrt(m[1:])))
    if t.max() >= 2 ** 31:
        raise ValueError("rsqrt table overflows int32; lower rsqrt_frac_bits")
    return t.astype(np.int32)


def exp_table(cfg):
    i = np.arange(cfg.exp_entries, dtype=np.float64)
    return round_half_up(2.0 ** cfg.exp_frac_bits *
                         np.exp(-i * cfg.exp_step)).astype(np.int32)


def gelu_table(in_bits, in_scale, out_bits, out_scale):
    lo, hi = -(1 << (in_bits - 1)), (1 << (in_bits - 1))
    x = torch.arange(lo, hi, dtype=torch.float64) * in_scale
    y = F.gelu(x).numpy() / out_scale
    olo, ohi = -(1 << (out_bits - 1)), (1 << (out_bits - 1)) - 1
    return np.clip(round_half_up(y), olo, ohi).astype(np.int8)


def _norm(x, eps):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + eps)


def calibrate(model: HgVit, x, batch=256):
    """Runs the float model on x [N, T, V] and returns the observed values
    at every quantization point (float64 numpy arrays, flattened)."""
    model.eval()
    g = model.geometry
    dh = g.width // g.heads
    obs = {}

    def add(key, v):
        obs.setdefault(key, []).append(v.detach().double().numpy().ravel())

    with torch.no_grad():
        for i in range(0, len(x), batch):
            h = model.embed(x[i:i + batch])
            add("residual", h)
            n, t, d = h.shape
            for bi, blk in enumerate(model.blocks):
                p = f"blocks.{bi}."
                a = _norm(h, blk.norm1.eps)
                add(p + "norm1", a)
                qkv = blk.attn.qkv(a * blk.norm1.weight + blk.norm1.bias)
                add(p + "q", qkv[..., :d])
                add(p + "k", qkv[..., d:2 * d])
                add(p + "v", qkv[..., 2 * d:])
                qkv = qkv.reshape(n, t, 3, g.heads, dh).permute(2, 0, 3, 1, 4)
                att = (qkv[0] @ qkv[1].transpose(-2, -1)) / math.sqrt(dh)
                ctx = (att.softmax(-1) @ qkv[2]).transpose(1, 2).reshape(n, t,
                                                                         d)
                add(p + "context", ctx)
                h = h + blk.attn.proj(ctx)
                add("residual", h)
                a = _norm(h, blk.norm2.eps)
                add(p + "norm2", a)
                f1 = blk.mlp.fc1(a * blk.norm2.weight + blk.norm2.bias)
                add(p + "fc1", f1)
                ge = F.gelu(f1)
                add(p + "gelu", ge)
                h = h + blk.mlp.fc2(ge)
                add("residual", h)
            a = _norm(h[:, 0], model.norm.eps)
            add("norm", a)
            add("logits", model.head(a * model.norm.weight + model.norm.bias))
    return {k: np.concatenate(v) for k, v in obs.items()}


def _fold(norm, linear):
    """LayerNorm affine folded into the next linear: W' = W diag(gamma),
    b' = b + W beta."""
    w = linear.weight.detach().double().numpy()
    b = linear.bias.detach().double().numpy()
    gamma = norm.weight.detach().double().numpy()
    beta = norm.bias.detach().double().numpy()
    return w * gamma[None, :], b + w @ beta


def quantize(model: HgVit, calib_x, cfg: QuantConfig, name, input_scale,
             scales=None, labels=None):
    """-> (manifest dict, tensors dict, scales dict). `scales` overrides
    calibrated activation scales by key (see calibrate)."""
    g = model.geometry
    gd = g.to_dict()
    d, dh = g.width, g.width // g.heads
    obs = calibrate(model, calib_x)
    s = {}
    s["residual"] = np.abs(obs["residual"]).max() * 1.25 / (
        (1 << (cfg.residual_bits - 1)) - 1)
    s["logits"] = np.abs(obs["logits"]).max() * 2.0 / ((1 << 18) - 1)
    s["norm"] = act_scale(obs["norm"], cfg.head_act_bits)
    for i in range(g.depth):
        p = f"blocks.{i}."
        for k in ("norm1", "q", "k", "v", "context", "norm2", "gelu"):
            s[p + k] = act_scale(obs[p + k], cfg.act_bits)
        s[p + "fc1"] = act_scale(obs[p + "fc1"], cfg.gelu_in_bits)
    if scales:
        s.update(scales)
    sr = s["residual"]

    t = {}
    sd = {k: v.detach().double().numpy() for k, v in model.state_dict().items()}
    w, ws = quantize_weight(sd["patch.weight"], cfg.patch_weight_bits)
    t["patch.weight"] = w
    t["patch.bias"] = quantize_bias(sd["patch.bias"], input_scale * ws)
    t["patch.requant"] = mult_shift(input_scale * ws / sr, cfg.multiplier_bits)
    rmax = (1 << (cfg.residual_bits - 1)) - 1
    t["cls"] = np.clip(round_half_up(sd["cls_token"].reshape(-1) / sr),
                       -rmax - 1, rmax).astype(np.int32)
    t["pos"] = np.clip(round_half_up(sd["pos_embed"].reshape(g.tokens, d) / sr),
                       -rmax - 1, rmax).astype(np.int32)

    def ln_tensors(prefix, norm, out_scale):
        t[prefix + ".rsqrt"] = rsqrt_table(d, out_scale, cfg.rsqrt_index_bits,
                                           cfg.rsqrt_frac_bits)
        eps = max(1, int(round_half_up(norm.eps * d / sr ** 2)))
        t[prefix + ".eps"] = np.array([eps], dtype=np.int32)

    def linear(prefix, wf, bf, in_scale, out_scale, bits):
        wq, wsc = quantize_weight(wf, bits)
        t[prefix + ".weight"] = wq
        t[prefix + ".bias"] = quantize_bias(bf, in_scale * wsc)
        t[prefix + ".requant"] = mult_shift(in_scale * wsc / out_scale,
                                            cfg.multiplier_bits)

    wb = cfg.block_weight_bits
    for i, blk in enumerate(model.blocks):
        p = f"blocks.{i}."
        ln_tensors(p + "norm1", blk.norm1, s[p + "norm1"])
        wf, bf = _fold(blk.norm1, blk.attn.qkv)
        out_scale = np.concatenate([np.full(d, s[p + "q"]),
                                    np.full(d, s[p + "k"]),
                                    np.full(d, s[p + "v"])])
        linear(p + "attn.qkv", wf, bf, s[p + "norm1"], out_scale, wb)
        t[p + "attn.exp_index"] = mult_shift(
            s[p + "q"] * s[p + "k"] / (math.sqrt(dh) * cfg.exp_step),
            cfg.multiplier_bits).reshape(2)
        t[p + "attn.exp"] = exp_table(cfg)
        t[p + "attn.context.requant"] = mult_shift(
            np.full(d, 2.0 ** -cfg.prob_bits * s[p + "v"] / s[p + "context"]),
            cfg.multiplier_bits)
        linear(p + "attn.proj", sd[p + "attn.proj.weight"],
               sd[p + "attn.proj.bias"], s[p + "context"], sr, wb)
        ln_tensors(p + "norm2", blk.norm2, s[p + "norm2"])
        wf, bf = _fold(blk.norm2, blk.mlp.fc1)
        linear(p + "mlp.fc1", wf, bf, s[p + "norm2"], s[p + "fc1"], wb)
        t[p + "mlp.gelu"] = gelu_table(cfg.gelu_in_bits, s[p + "fc1"],
                                       cfg.act_bits, s[p + "gelu"])
        linear(p + "mlp.fc2", sd[p + "mlp.fc2.weight"], sd[p + "mlp.fc2.bias"],
               s[p + "gelu"], sr, wb)
    ln_tensors("norm", model.norm, s["norm"])
    wf, bf = _fold(model.norm, model.head)
    linear("head", wf, bf, s["norm"], s["logits"], cfg.head_weight_bits)
    if labels:
        t["labels"] = np.frombuffer("\n".join(labels).encode("utf-8"),
                                    dtype=np.uint8).copy()

    clock, interval, latency = derived_timing(gd)
    manifest = dict(name=name, **{k: gd[k] for k in (
        "tokens", "token_values", "width", "heads", "depth", "mlp_hidden",
        "classes")})
    manifest.update(
        residual_bits=cfg.residual_bits,
        patch_weight_bits=cfg.patch_weight_bits,
        block_weight_bits=cfg.block_weight_bits,
        head_weight_bits=cfg.head_weight_bits, act_bits=cfg.act_bits,
        head_act_bits=cfg.head_act_bits, prob_bits=cfg.prob_bits,
        gelu_in_bits=cfg.gelu_in_bits, rsqrt_index_bits=cfg.rsqrt_index_bits,
        rsqrt_frac_bits=cfg.rsqrt_frac_bits, input_scale=repr(input_scale),
        logit_scale=repr(float(s["logits"])), clock_hz=clock,
        interval_cycles=interval, latency_cycles=latency)
    return manifest, t, s
