"""The float ViT that the integer datapath (accel/vit/) quantizes.

Pre-norm ViT in HG-PIPE's token convention: the model input is the device's
[tokens][token_values] patch array; token 0 is a placeholder that the model
overwrites with the learned CLS embedding (docs/datapath.md, "Input").
Parameter names follow timm's VisionTransformer where one exists, so a
timm/DeiT state_dict maps onto this module (convert_deit_checkpoint.py).
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


class Attention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        n, t, d = x.shape
        h = self.heads
        qkv = self.qkv(x).reshape(n, t, 3, h, d // h).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(d // h))
        att = att.softmax(dim=-1)
        y = (att @ v).transpose(1, 2).reshape(n, t, d)
        return self.proj(y)


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim, heads, hidden, eps):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, hidden)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class HgVit(nn.Module):
    """Input: float [N, tokens, token_values] (the int8 patches times the
    input scale). Output: [N, classes] logits."""

    def __init__(self, g: VitGeometry, ln_eps=1e-6):
        super().__init__()
        self.geometry = g
        self.ln_eps = ln_eps
        self.patch = nn.Linear(g.token_values, g.width)
        self.cls_token = nn.Parameter(torch.zeros(g.width))
        self.pos_embed = nn.Parameter(torch.zeros(g.tokens, g.width))
        self.blocks = nn.ModuleList(
            [Block(g.width, g.heads, g.mlp_hidden, ln_eps)
             for _ in range(g.depth)])
        self.norm = nn.LayerNorm(g.width, eps=ln_eps)
        self.head = nn.Linear(g.width, g.classes)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

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
