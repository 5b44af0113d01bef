#!/usr/bin/env python3
"""PyTorch's three passes of a 3x3 convolution C -> C (forward, backward-data, backward-weights), each
timed alone, in fp32 and bf16, channels_last: the same shapes and median-of-10 as
build/cpu/bench_onednn_bf16, so that pdegen's oneDNN 2.6.3 kernels and PyTorch's bundled oneDNN can
be compared pass by pass on one machine.

    OMP_NUM_THREADS=2 build/bench-venv/bin/python tools/bench/torch_conv_passes.py [N C H ...]
"""
import statistics
import sys
import time

import torch


def median_ms(call):
    call()
    call()
    times = []
    for _ in range(10):
        t0 = time.perf_counter()
        call()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def run_case(n, c, h, dtype):
    x = torch.randn(n, c, h, h).to(dtype=dtype, memory_format=torch.channels_last)
    w = (torch.randn(c, c, 3, 3) / (3 * c ** 0.5)).to(dtype=dtype, memory_format=torch.channels_last)
    b = torch.zeros(c, dtype=dtype)
    y = torch.ops.aten.convolution(x, w, b, [1, 1], [1, 1], [1, 1], False, [0, 0], 1)
    dy = torch.randn_like(y).contiguous(memory_format=torch.channels_last)

    def backward(mask):
        return lambda: torch.ops.aten.convolution_backward(dy, x, w, [c], [1, 1], [1, 1], [1, 1], False, [0, 0],
                                                           1, mask)

    fwd = median_ms(lambda: torch.ops.aten.convolution(x, w, b, [1, 1], [1, 1], [1, 1], False, [0, 0], 1))
    bwd_d = median_ms(backward([True, False, False]))
    bwd_w = median_ms(backward([False, True, True]))
    gflop = 2.0 * n * c * c * 9 * h * h / 1e9
    name = "bf16" if dtype == torch.bfloat16 else "fp32"
    print(f"{name} N{n:<3} C{c:<4} {h:4}x{h:<4} fwd {fwd:7.2f} ms {gflop / fwd * 1e3:6.0f} GFLOP/s   "
          f"bwd_w {bwd_w:7.2f} ms {gflop / bwd_w * 1e3:6.0f}   bwd_d {bwd_d:7.2f} ms {gflop / bwd_d * 1e3:6.0f}")


def main():
    dims = [int(a) for a in sys.argv[1:]] or [4, 16, 256, 4, 64, 64, 16, 16, 64]
    if len(dims) % 3:
        sys.exit("usage: torch_conv_passes.py [N C H ...] (triples)")
    torch.set_num_threads(int(__import__("os").environ.get("OMP_NUM_THREADS", "2")))
    # torch.__config__.show() names the bundled oneDNN under its old name, MKL-DNN.
    onednn = next((line.strip(" -") for line in torch.__config__.show().splitlines() if "MKL-DNN" in line),
                  "oneDNN version unknown")
    print(f"torch {torch.__version__}; {onednn}")
    with torch.no_grad():
        for i in range(0, len(dims), 3):
            for dtype in (torch.float32, torch.bfloat16):
                run_case(*dims[i:i + 3], dtype)


if __name__ == "__main__":
    main()
