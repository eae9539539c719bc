"""The float ViT that the integer datapath (accel/vit/) quantizes.

Pre-norm ViT in HG-PIPE's token convention: the model input is the device's
[tokens][token_values] patch array; token 0 is a placeholder that the model
overwrites with the learned CLS embedding (docs/datapath.md, "Input").
Parameter names follow timm's VisionTransformer where one exists, so a
timm/DeiT state_dict maps onto this module (convert_deit_checkpoint.py).

Variants of one network (docs/datapath.md, "Variants") share its parameters
and differ per block in what runs: the attention ("softmax", "taylor": the
first-order Taylor attention of ViTALiTy, linear in the tokens, or "none":
skipped) and the MLP
("gelu" or "none"). A skipped branch is the identity of its residual.
"""

import math
from dataclasses import dataclass, asdict

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class VitGeometry:
    tokens: int         # device tokens, including the CLS placeholder
    token_values: int   # int8 values per token (patch pixels x channels)
    width: int          # embedding dimension D
    heads: int
    depth: int          # transformer blocks
    mlp_hidden: int     # MLP hidden width (D x mlp ratio)
    classes: int

    def to_dict(self):
        return asdict(self)


FMNIST_GEOMETRY = VitGeometry(tokens=28, token_values=28, width=64, heads=4,
                              depth=4, mlp_hidden=128, classes=10)
DEIT_TINY_GEOMETRY = VitGeometry(tokens=196, token_values=768, width=192,
                                 heads=3, depth=12, mlp_hidden=768,
                                 classes=1000)


ATTN_KINDS = ("softmax", "taylor", "none")
MLP_KINDS = ("gelu", "none")


def taylor_attention(q, k, v):
    """ViTALiTy's linear Taylor attention of one head (q, k, v [..., T, dh]):
    exp(q.k / sqrt(dh)) ~ 1 + q.k^ / sqrt(dh) with the keys centred on their
    mean over the tokens (k^ = k - mean k, which leaves softmax unchanged and
    makes the first-order terms of every row sum to zero, so each row's
    weights sum to exactly T):
        y_t = (sum_j v_j + q_t (K^T V) / sqrt(dh)) / T
    Linear in T: K^T V is dh x dh. No softmax; weights may be negative."""
    t, dh = k.shape[-2], k.shape[-1]
    kc = k - k.mean(dim=-2, keepdim=True)
    g = kc.transpose(-2, -1) @ v
    return (v.sum(dim=-2, keepdim=True) + (q @ g) / math.sqrt(dh)) / t


class Attention(nn.Module):
    def __init__(self, dim, heads, kind="softmax"):
        super().__init__()
        if kind not in ATTN_KINDS:
            raise ValueError(f"attention kind {kind!r} is not one of {ATTN_KINDS}")
        self.heads = heads
        self.kind = kind
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        n, t, d = x.shape
        h = self.heads
        qkv = self.qkv(x).reshape(n, t, 3, h, d // h).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        if self.kind == "taylor":
            y = taylor_attention(q, k, v)
        else:
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(d // h))
            y = att.softmax(dim=-1) @ v
        return self.proj(y.transpose(1, 2).reshape(n, t, d))


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    """Parameters are kept for skipped branches, so every variant loads the
    full network's state_dict."""

    def __init__(self, dim, heads, hidden, eps, attn_kind="softmax",
                 mlp_kind="gelu"):
        super().__init__()
        if mlp_kind not in MLP_KINDS:
            raise ValueError(f"MLP kind {mlp_kind!r} is not one of {MLP_KINDS}")
        self.mlp_kind = mlp_kind
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, heads, attn_kind)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, hidden)

    def forward(self, x):
        if self.attn.kind != "none":
            x = x + self.attn(self.norm1(x))
        if self.mlp_kind != "none":
            x = x + self.mlp(self.norm2(x))
        return x


class HgVit(nn.Module):
    """Input: float [N, tokens, token_values] (the int8 patches times the
    input scale). Output: [N, classes] logits. attn_kinds / mlp_kinds: one
    per block (default: softmax / gelu everywhere, the full network)."""

    def __init__(self, g: VitGeometry, ln_eps=1e-6, attn_kinds=None,
                 mlp_kinds=None):
        super().__init__()
        attn_kinds = list(attn_kinds or ["softmax"] * g.depth)
        mlp_kinds = list(mlp_kinds or ["gelu"] * g.depth)
        if len(attn_kinds) != g.depth or len(mlp_kinds) != g.depth:
            raise ValueError(f"need {g.depth} attention and MLP kinds")
        self.geometry = g
        self.ln_eps = ln_eps
        self.patch = nn.Linear(g.token_values, g.width)
        self.cls_token = nn.Parameter(torch.zeros(g.width))
        self.pos_embed = nn.Parameter(torch.zeros(g.tokens, g.width))
        self.blocks = nn.ModuleList(
            [Block(g.width, g.heads, g.mlp_hidden, ln_eps, a, m)
             for a, m in zip(attn_kinds, mlp_kinds)])
        self.norm = nn.LayerNorm(g.width, eps=ln_eps)
        self.head = nn.Linear(g.width, g.classes)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    @property
    def attn_kinds(self):
        return [b.attn.kind for b in self.blocks]

    @property
    def mlp_kinds(self):
        return [b.mlp_kind for b in self.blocks]

    def embed(self, x):
        h = self.patch(x)
        cls = self.cls_token.expand(h.shape[0], 1, -1)
        h = torch.cat([cls, h[:, 1:]], dim=1)  # token 0: the CLS overwrite
        return h + self.pos_embed

    def forward(self, x):
        h = self.embed(x)
        for b in self.blocks:
            h = b(h)
        return self.head(self.norm(h[:, 0]))
