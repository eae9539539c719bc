"""HG-PIPE's integer ViT datapath in numpy: the reference the C++ emulated
board (accel/vit/) follows bit for bit, written from the specification in
docs/datapath.md ("Numerics"), which in turn states what the authors' HLS
code (hguq/HG-PIPE, src/*.h) computes with its ap_int types.

A model is a weight container (weightfile.py) whose manifest names each
stage's integer types and scalars ("blocks.0.attn.norm" -> "sum=s15 ...
mean_mult=43691 ...") and whose tensors hold its weights and tables. Every
value is an int64 numpy array; every intermediate result is wrapped to its
stage's type exactly as an HLS assignment to ap_int<W> / ap_uint<W> does.

Each block's attention is softmax (HG-PIPE's), taylor (ViTALiTy's linear
Taylor attention, docs/datapath.md "Taylor attention") or none (skipped), its MLP
gelu or none: the manifest keys blocks.I.attn.kind and blocks.I.mlp.kind,
softmax and gelu when absent.
"""

import numpy as np

import weightfile

# Every type of a stage line is "s<bits>" (ap_int) or "u<bits>" (ap_uint).
MAX_TYPE_BITS = 56

ATTN_KINDS = ("softmax", "taylor", "none")
MLP_KINDS = ("gelu", "none")


class IntType:
    """An HLS integer type: ap_int<bits> (signed) or ap_uint<bits>."""

    def __init__(self, text):
        if len(text) < 2 or text[0] not in "su" or not text[1:].isdigit():
            raise ValueError(f"type {text!r} is not s<bits> or u<bits>")
        self.signed = text[0] == "s"
        self.bits = int(text[1:])
        if not 1 <= self.bits <= MAX_TYPE_BITS:
            raise ValueError(f"type {text!r}: bits must be 1..{MAX_TYPE_BITS}")
        self.lo = -(1 << (self.bits - 1)) if self.signed else 0
        self.hi = (1 << (self.bits - 1)) - 1 if self.signed else (1 << self.bits) - 1

    def __str__(self):
        return f"{'s' if self.signed else 'u'}{self.bits}"

    def wrap(self, v):
        """v modulo 2^bits, in the type's range (HLS AP_WRAP)."""
        v = np.asarray(v, dtype=np.int64)
        u = v & np.int64((1 << self.bits) - 1)
        if self.signed:
            u = np.where(u > self.hi, u - np.int64(1 << self.bits), u)
        return u

    def clamp(self, v):
        return np.clip(v, self.lo, self.hi)

    def fits(self, v):
        v = np.asarray(v)
        return v.size == 0 or (v.min() >= self.lo and v.max() <= self.hi)


def parse_stage(text):
    """'sum=s15 mean_mult=43691' -> {'sum': IntType, 'mean_mult': 43691}."""
    out = {}
    for item in str(text).split():
        k, _, v = item.partition("=")
        if not k or not v:
            raise ValueError(f"stage parameter {item!r} is not key=value")
        out[k] = IntType(v) if v[0] in "su" else int(v)
    return out


def format_stage(params):
    return " ".join(f"{k}={v}" for k, v in params.items())


def wrap_to(t, v):
    return t.wrap(v)


# ---- The stages (docs/datapath.md, "Numerics") -----------------------------

def layernorm(x, in_t, p, weight, bias, rsqrt):
    """Rows of x ([..., C], in_t values) -> [..., C] values of p['out']."""
    s = p["sum"].wrap(x.sum(-1, keepdims=True))
    tmp = p["divc"].wrap(s * p["mean_mult"])
    tmp = p["divc"].wrap(tmp + (1 << (p["mean_shift"] - 1)))
    mean = p["mean"].wrap(tmp >> p["mean_shift"])
    d = in_t.wrap(x - mean)
    var = p["var"].wrap((d * d).sum(-1, keepdims=True))
    cur = np.clip(p["cursor"].wrap((var + p["var_offset"]) >> p["var_shift"]),
                  0, p["var_bound"])
    r = rsqrt.astype(np.int64)[cur]
    val = p["affine"].wrap(d * r * weight.astype(np.int64) +
                           bias.astype(np.int64))
    return p["out"].clamp(p["shift"].wrap(val >> p["out_shift"]))


def table_lookup(x, p, table):
    """Requantization or GELU: a table indexed by (x + offset) >> shift."""
    cur = np.clip(p["cursor"].wrap((x + p["offset"]) >> p["shift"]), 0,
                  p["bound"])
    return table.astype(np.int64)[cur]


def linear(x, p, weight, bias):
    """x [..., K] times weight [N, K] transposed plus bias, in p['acc']."""
    acc = x.astype(np.int64) @ weight.astype(np.int64).T
    return p["acc"].wrap(bias.astype(np.int64) + acc)


def softmax(s, p, exp, recip_one, recip_two):
    """Rows of scores [..., T] -> probabilities in p['out'] (unsigned)."""
    m = s.max(-1, keepdims=True)
    d = p["minus"].wrap(m - s)
    c1 = np.clip(p["cursor1"].wrap((d + p["exp_offset"]) >> p["exp_shift"]),
                 0, p["exp_bound"])
    e = exp.astype(np.int64)[c1]
    z = p["sum"].wrap(e.sum(-1, keepdims=True))
    one = p["cursor2_one"].wrap((z + p["one_offset"]) >> p["one_shift"])
    two = one > p["one_bound"]
    c_two = np.clip(p["cursor2_two"].wrap((z + p["two_offset"]) >>
                                          p["two_shift"]), 0, p["two_bound"])
    c_one = np.clip(one, 0, p["one_bound"])
    rec = np.where(two, recip_two.astype(np.int64)[c_two],
                   recip_one.astype(np.int64)[c_one])
    b3 = np.where(two, p["two_out_offset"], p["one_out_offset"])
    s3 = np.where(two, p["two_out_shift"], p["one_out_shift"])
    val = p["affine"].wrap(e * rec)
    return p["out"].clamp(p["cursor3"].wrap((val + b3) >> s3))


def taylor_attention(q, k, v, tokens, p):
    """ViTALiTy's Taylor attention of one head's rows: q [..., T, dh] (the
    `.q_quant` values), k, v [..., T, dh] -> the context accumulator
    [..., T, dh] in the `.context` stage's acc type (wrapped by the caller).
    p: the `.taylor` stage line. g = T K^T V - (sum K)^T (sum V) is
    T K^T V with the keys centred on their mean, exactly, in integers."""
    ksum = p["ksum"].wrap(k.sum(-2, keepdims=True))             # [..., 1, dh]
    vsum = p["vsum"].wrap(v.sum(-2, keepdims=True))             # [..., 1, dh]
    kv = p["kv"].wrap(np.swapaxes(k, -1, -2) @ v)               # [..., dh, dh]
    g = p["g"].wrap(tokens * kv - np.swapaxes(ksum, -1, -2) * vsum)
    gq = p["gout"].clamp(p["gshift"].wrap(
        (g + (1 << (p["g_shift"] - 1))) >> p["g_shift"]))
    m = p["mterm"].wrap((vsum * p["mean_mult"] +
                         (1 << (p["mean_shift"] - 1))) >> p["mean_shift"])
    return m + q @ gq


def residual(x, main, p):
    """main + x rescaled by mult / 2^shift (rounded), in p['out']."""
    return p["out"].wrap(main + ((x * p["mult"] + (1 << (p["shift"] - 1))) >>
                                 p["shift"]))


# ---- The network -----------------------------------------------------------

class Model:
    """A weight container as HG-PIPE's network."""

    def __init__(self, manifest, tensors):
        self.manifest = manifest
        self.t = tensors
        m = manifest
        self.tokens = int(m["tokens"])
        self.token_values = int(m["token_values"])
        self.width = int(m["width"])
        self.heads = int(m["heads"])
        self.depth = int(m["depth"])
        self.hidden = int(m["mlp_hidden"])
        self.classes = int(m["classes"])

    @classmethod
    def load(cls, path):
        return cls(*weightfile.read(path))

    def p(self, key):
        return parse_stage(self.manifest[key])

    def w(self, name):
        return self.t[name].astype(np.int64)

    def attn_kind(self, i):
        k = str(self.manifest.get(f"blocks.{i}.attn.kind", "softmax"))
        if k not in ATTN_KINDS:
            raise ValueError(f"blocks.{i}.attn.kind: {k!r} is not one of "
                             f"{ATTN_KINDS}")
        return k

    def mlp_kind(self, i):
        k = str(self.manifest.get(f"blocks.{i}.mlp.kind", "gelu"))
        if k not in MLP_KINDS:
            raise ValueError(f"blocks.{i}.mlp.kind: {k!r} is not one of "
                             f"{MLP_KINDS}")
        return k

    def stream_stages(self):
        """The stages that write the residual stream, in order: "patch",
        then each block's "blocks.I.attn" / "blocks.I.mlp" that runs."""
        out = ["patch"]
        for i in range(self.depth):
            if self.attn_kind(i) != "none":
                out.append(f"blocks.{i}.attn")
            if self.mlp_kind(i) != "none":
                out.append(f"blocks.{i}.mlp")
        return out

    def in_type(self, block_kind, i):
        """The type of the residual stream entering a stage: the out type of
        the last stage before it that writes the stream."""
        stages = self.stream_stages()
        if block_kind == "head":
            before = stages[-1]
        else:
            before = stages[stages.index(f"blocks.{i}.{block_kind}") - 1]
        return self.p("patch" if before == "patch" else
                      before + ".residual")["out"]

    def norm(self, prefix, x, in_t):
        return layernorm(x, in_t, self.p(prefix), self.w(prefix + ".weight"),
                         self.w(prefix + ".bias"), self.w(prefix + ".rsqrt"))

    def lin(self, prefix, x):
        return linear(x, self.p(prefix), self.w(prefix + ".weight"),
                      self.w(prefix + ".bias"))

    def lut(self, prefix, x):
        return table_lookup(x, self.p(prefix), self.w(prefix + ".table"))

    def patch_embed(self, x):
        """x: int [n, T, TV] -> residual [n, T, C]."""
        p = self.p("patch")
        acc = x.astype(np.int64) @ self.w("patch.weight").T
        acc = p["acc"].wrap(self.w("patch.bias")[None] + acc)
        acc[:, 0, :] = p["acc"].wrap(self.w("patch.cls"))
        return p["out"].wrap((acc + (1 << (p["shift"] - 1))) >> p["shift"])

    def attention(self, i, x, trace=None):
        """x: residual [n, T, C] -> [n, T, C]. `trace` (a dict) receives
        every stage's output, named as docs/datapath.md's stages."""
        b = f"blocks.{i}.attn"
        n, T, C = x.shape
        H = self.heads
        dh = C // H
        out = {}
        out["norm"] = a = self.norm(b + ".norm", x, self.in_type("attn", i))
        for m in "qkv":
            out[m] = self.lin(f"{b}.{m}", a)
            out[m + "_quant"] = self.lut(f"{b}.{m}_quant", out[m])
        heads = lambda v: v.reshape(n, T, H, dh).transpose(0, 2, 1, 3)
        q, k, v = (heads(out[m + "_quant"]) for m in "qkv")
        if self.attn_kind(i) == "taylor":
            ctx = self.p(b + ".context")["acc"].wrap(
                taylor_attention(q, k, v, T, self.p(b + ".taylor")))
        else:
            out["scores"] = s = self.p(b + ".scores")["acc"].wrap(
                q @ k.transpose(0, 1, 3, 2))
            out["softmax"] = pr = softmax(s, self.p(b + ".softmax"),
                                          self.w(b + ".softmax.exp"),
                                          self.w(b + ".softmax.recip_one"),
                                          self.w(b + ".softmax.recip_two"))
            ctx = self.p(b + ".context")["acc"].wrap(pr @ v)
        out["context"] = ctx = ctx.transpose(0, 2, 1, 3).reshape(n, T, C)
        out["context_quant"] = cq = self.lut(b + ".context_quant", ctx)
        out["o"] = o = self.lin(b + ".o", cq)
        out["residual"] = y = residual(x, o, self.p(b + ".residual"))
        if trace is not None:
            trace.update({f"{b}.{k}": v for k, v in out.items()})
        return y

    def mlp(self, i, x, trace=None):
        b = f"blocks.{i}.mlp"
        out = {}
        out["norm"] = a = self.norm(b + ".norm", x, self.in_type("mlp", i))
        out["fc1"] = h = self.lin(b + ".fc1", a)
        out["gelu"] = g = self.lut(b + ".gelu", h)
        out["fc2"] = o = self.lin(b + ".fc2", g)
        out["residual"] = y = residual(x, o, self.p(b + ".residual"))
        if trace is not None:
            trace.update({f"{b}.{k}": v for k, v in out.items()})
        return y

    def head(self, x, trace=None):
        """Residual [n, T, C] -> logits [n, classes] (the head's acc type)."""
        a = self.norm("head.norm", x[:, 0, :], self.in_type("head", 0))
        y = self.lin("head", a)
        if trace is not None:
            trace["head.norm"] = a
            trace["head"] = y
        return y

    def forward(self, x, trace=None):
        """x: int8 [n, T, TV] flat (not device order) -> logits [n, classes]."""
        h = self.patch_embed(x)
        if trace is not None:
            trace["patch"] = h
        for i in range(self.depth):
            if self.attn_kind(i) != "none":
                h = self.attention(i, h, trace)
            if self.mlp_kind(i) != "none":
                h = self.mlp(i, h, trace)
        return self.head(h, trace)


def encode_logit_words(logits):
    """Logits -> the device's 32-bit words (19-bit two's complement, not
    sign-extended)."""
    return (np.asarray(logits, dtype=np.int64) & ((1 << 19) - 1)).astype(
        np.int32)


def decode_logit_words(words):
    v = np.asarray(words, dtype=np.int64) & ((1 << 19) - 1)
    return np.where(v >= (1 << 18), v - (1 << 19), v)


def to_device_order(flat):
    """[n, T, TV] -> the AXI stream order, [n, T*TV] (docs/datapath.md)."""
    n, t, v = flat.shape
    return flat.reshape(n, t // 2, 2, v // 2, 2).transpose(0, 1, 3, 2, 4) \
               .reshape(n, t * v)


def from_device_order(dev, tokens, token_values):
    n = dev.shape[0]
    return dev.reshape(n, tokens // 2, token_values // 2, 2, 2) \
              .transpose(0, 1, 3, 2, 4).reshape(n, tokens, token_values)
