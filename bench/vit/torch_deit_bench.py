#!/usr/bin/python3
"""Images/s of PyTorch CPU fp32 DeiT-tiny (timm's architecture: 16x16 patch
convolution, CLS token, 197 tokens, width 192, 3 heads, 12 blocks, 1000
classes), random weights, eval mode, no_grad: the baseline run_bench.sh sets
against the integer datapath.

  /usr/bin/python3 bench/vit/torch_deit_bench.py --threads 2 --batch 16
"""

import argparse
import os
import sys
import time

import torch
import torch.nn as nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "..", "tools", "vit"))
from vit_model import Block  # noqa: E402


class DeitTiny(nn.Module):
    def __init__(self, dim=192, depth=12, heads=3, classes=1000):
        super().__init__()
        self.patch = nn.Conv2d(3, dim, kernel_size=16, stride=16)
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.pos_embed = nn.Parameter(torch.randn(1, 197, dim) * 0.02)
        self.blocks = nn.Sequential(
            *[Block(dim, heads, 4 * dim, 1e-6) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, classes)

    def forward(self, x):
        x = self.patch(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        x = self.blocks(x + self.pos_embed)
        return self.head(self.norm(x[:, 0]))


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--images", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = DeitTiny().eval()
    x = torch.randn(args.images, 3, 224, 224)
    with torch.no_grad():
        def run():
            for i in range(0, args.images, args.batch):
                model(x[i:i + args.batch])
        run()  # warm-up
        best = best_cpu = float("inf")
        for _ in range(args.repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            run()
            best = min(best, time.perf_counter() - t0)
            best_cpu = min(best_cpu, time.process_time() - c0)
    # CPU time as well as wall time: on a shared machine the wall clock
    # counts time the process waited for a core.
    print(f"model=torch_fp32_deit_tiny threads={args.threads} "
          f"batch={args.batch} images={args.images}: "
          f"{args.images / best:.1f} images/s "
          f"({1e3 * best / args.images:.2f} ms/image), "
          f"{args.images / best_cpu:.1f} images/cpu-s")


if __name__ == "__main__":
    main()
