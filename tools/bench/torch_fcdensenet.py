#!/usr/bin/env python3
"""The PyTorch peer of pdegen's FC-DenseNet (src/nn/fc_densenet_plan.hpp): the same network (first
conv, pre-activation dense layers, transitions down with a 1x1 conv and 2x2 max-pool, transitions up
by 2x2 stride-2 transposed convs, the [up, skip] concat order, a 1x1 head), trained from data: MSE
against a fixed random target, Adam, the given batch. Prints one JSON line: median step time over
the steps after --warmup, peak RSS, parameters.

    PYTHON tools/bench/torch_fcdensenet.py [--preset fc56|fc67|fc103] [--resolution 64] [--dims 2]
        [--batch 8] [--steps 20] [--warmup 5] [--threads 2] [--norm batch|none] [--best]
        [--channels-last] [--bf16] [--compile]

--best = --channels-last --compile, plus --bf16 where the CPU has amx_bf16 or avx512_bf16.
"""
import argparse
import json
import resource
import statistics
import time

import torch
import torch.nn as nn

PRESETS = {"fc56": (12, [4, 4, 4, 4, 4, 4]), "fc67": (16, [5, 5, 5, 5, 5, 5]),
           "fc103": (16, [4, 5, 7, 10, 12, 15])}


class Layer(nn.Sequential):
    def __init__(self, cin, growth, conv, bn, norm):
        mods = ([bn(cin)] if norm else []) + [nn.ReLU(inplace=False), conv(cin, growth, 3, padding=1, bias=not norm)]
        super().__init__(*mods)


class Block(nn.Module):
    """Returns concat(x, new) when whole, else concat(new)."""

    def __init__(self, cin, growth, layers, conv, bn, norm, whole):
        super().__init__()
        self.layers = nn.ModuleList(Layer(cin + j * growth, growth, conv, bn, norm) for j in range(layers))
        self.whole = whole

    def forward(self, x):
        feats, new = [x], []
        h = x
        for j, layer in enumerate(self.layers):
            y = layer(h)
            feats.append(y)
            new.append(y)
            if j + 1 < len(self.layers):
                h = torch.cat(feats, 1)
        if self.whole:
            return torch.cat(feats, 1)
        return new[0] if len(new) == 1 else torch.cat(new, 1)


class FCDenseNet(nn.Module):
    def __init__(self, growth, layers, dims=2, first=48, norm=True):
        super().__init__()
        conv = nn.Conv2d if dims == 2 else nn.Conv3d
        convt = nn.ConvTranspose2d if dims == 2 else nn.ConvTranspose3d
        bn = nn.BatchNorm2d if dims == 2 else nn.BatchNorm3d
        pool = nn.MaxPool2d if dims == 2 else nn.MaxPool3d
        self.first = conv(1, first, 3, padding=1, bias=not norm)
        self.down, self.td, skips = nn.ModuleList(), nn.ModuleList(), []
        c = first
        for n in layers[:-1]:
            self.down.append(Block(c, growth, n, conv, bn, norm, True))
            c += n * growth
            skips.append(c)
            self.td.append(nn.Sequential(*([bn(c)] if norm else []), nn.ReLU(), conv(c, c, 1, bias=not norm), pool(2)))
        self.bottleneck = Block(c, growth, layers[-1], conv, bn, norm, len(layers) == 1)
        up = layers[-1] * growth
        self.tu, self.up = nn.ModuleList(), nn.ModuleList()
        for i in range(len(layers) - 2, -1, -1):
            self.tu.append(convt(up, up, 2, stride=2, bias=not norm))
            cin = up + skips[i]
            self.up.append(Block(cin, growth, layers[i], conv, bn, norm, i == 0))
            up = cin + layers[i] * growth if i == 0 else layers[i] * growth
        self.head = conv(up, 1, 1)

    def forward(self, x):
        h = self.first(x)
        skips = []
        for block, td in zip(self.down, self.td):
            h = block(h)
            skips.append(h)
            h = td(h)
        h = self.bottleneck(h)
        for tu, block in zip(self.tu, self.up):
            h = block(torch.cat([tu(h), skips.pop()], 1))
        return self.head(h)


def has_bf16():
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", choices=sorted(PRESETS), default="fc56")
    ap.add_argument("--resolution", type=int, default=64)
    ap.add_argument("--dims", type=int, choices=(2, 3), default=2)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--norm", choices=("batch", "none"), default="batch")
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--bf16", action="store_true")
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--best", action="store_true")
    a = ap.parse_args()
    if a.best:
        a.channels_last = a.compile = True
        a.bf16 = has_bf16()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    growth, layers = PRESETS[a.preset]
    model = FCDenseNet(growth, layers, a.dims, norm=a.norm == "batch")
    shape = (a.batch, 1) + (a.resolution,) * a.dims
    x, target = torch.randn(shape), torch.randn(shape)
    fmt = torch.channels_last if a.dims == 2 else torch.channels_last_3d
    if a.channels_last:
        model, x, target = model.to(memory_format=fmt), x.to(memory_format=fmt), target.to(memory_format=fmt)
    net = torch.compile(model) if a.compile and hasattr(torch, "compile") else model
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    times = []
    for step in range(a.warmup + a.steps):
        t = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.bf16):
            y = net(x)
        loss = torch.mean((y.float() - target) ** 2)
        loss.backward()
        opt.step()
        if step >= a.warmup:
            times.append(time.perf_counter() - t)
    print(json.dumps({"peer": "torch", "torch": torch.__version__, "preset": a.preset, "resolution": a.resolution,
                      "dims": a.dims, "batch": a.batch, "threads": a.threads,
                      "parameters": sum(p.numel() for p in model.parameters()),
                      "channels_last": a.channels_last, "bf16": a.bf16, "compile": a.compile,
                      "step_seconds": statistics.median(times),
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "final_loss": loss.item()}))


if __name__ == "__main__":
    main()
