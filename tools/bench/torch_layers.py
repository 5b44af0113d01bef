#!/usr/bin/env python3
"""PyTorch peer of tools/bench/bench_layers.cpp: the same layers on the same shapes and threads.

Prints one JSON object per line: {"case", "fwd_ms", "bwd_ms", "gflop_fwd", "gflop_bwd"} with the
median times over the repetitions (on cuda also "peak_mib", torch.cuda.max_memory_allocated of the
case). Run with the peer's python (build/bench-venv from tools/install_deps.sh --bench), or any
python with torch.
    build/bench-venv/bin/python tools/bench/torch_layers.py --threads 2 [--batch 4] [--size 256] [--filter conv]
        [--device cpu|cuda] [--tf32] [--no-cudnn-benchmark] [--channels-last] [--bf16]
--channels-last puts modules and inputs in channels_last (PyTorch's fast CPU layout); --bf16 runs
module and inputs in bfloat16 (what autocast gives a convolution; on CPUs with AMX or AVX512-BF16).
On cuda the convolutions run in fp32 unless --tf32 (PyTorch's own default lets cuDNN use TF32): that
is bench_layers' default --conv-math fp32, so both sides round alike. cuDNN times its candidate
algorithms on the first call of a shape (cudnn.benchmark), as pdegen does (cuda::conv_algo_search).
"""
import argparse
import json
import statistics
import time

import torch
import torch.nn as nn


def cases(batch, size):
    """(name, module factory, input shapes, flops fwd, flops bwd) mirroring bench_layers.cpp."""
    n, s = batch, size
    out = []

    def conv(cin, cout, k, stride=1, pad=None):
        pad = k // 2 if pad is None else pad
        so = (s + 2 * pad - k) // stride + 1
        fl = 2.0 * n * cout * so * so * cin * k * k
        out.append((f"conv{k}x{k}_s{stride} {cin}->{cout}", lambda: nn.Conv2d(cin, cout, k, stride, pad),
                    [(n, cin, s, s)], fl, 2 * fl))

    conv(1, 16, 3)
    conv(16, 16, 3)
    conv(32, 32, 3)
    conv(64, 64, 3)
    conv(16, 1, 1)
    for cin, cout in ((32, 16), (64, 32)):
        fl = 2.0 * n * cin * s * s * cout * 4
        out.append((f"convT2x2_s2 {cin}->{cout}", (lambda ci=cin, co=cout: nn.ConvTranspose2d(ci, co, 2, 2)),
                    [(n, cin, s, s)], fl, 2 * fl))
    for c in (16, 32, 64):
        e = n * c * s * s
        out.append((f"batch_norm {c}", (lambda c=c: nn.BatchNorm2d(c)), [(n, c, s, s)], 5.0 * e, 8.0 * e))
    e = n * 16 * s * s
    out.append(("instance_norm 16", lambda: nn.InstanceNorm2d(16, affine=True), [(n, 16, s, s)], 5.0 * e, 8.0 * e))
    for act, mod in (("relu", nn.ReLU), ("silu", nn.SiLU), ("tanh", nn.Tanh)):
        out.append((f"{act} 16", mod, [(n, 16, s, s)], 1.0 * e, 1.0 * e))
    for c in (16, 64):
        e = n * c * (s // 2) * (s // 2)
        out.append((f"max_pool2x2 {c}", (lambda: nn.MaxPool2d(2)), [(n, c, s, s)], 4.0 * e, 4.0 * e))
    out.append(("avg_pool2x2 16", lambda: nn.AvgPool2d(2), [(n, 16, s, s)], 4.0 * n * 16 * (s // 2) ** 2,
                4.0 * n * 16 * (s // 2) ** 2))

    class Cat(nn.Module):
        def forward(self, a, b):
            return torch.cat([a, b], 1)

    out.append(("concat 16+16", Cat, [(n, 16, s, s), (n, 16, s, s)], 0.0, 0.0))
    return out


def no_sync():
    pass


def median_ms(fn, reps, sync=no_sync):
    """Median wall time of fn() in ms; `sync` waits for queued GPU work before and after."""
    times = []
    for _ in range(reps):
        sync()
        t = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def run_case(make, shapes, device, sync, reps, dtype=torch.float32, channels_last=False):
    """(median forward ms, median backward ms, peak MiB on the GPU or None) of one case. A function
    of its own so that the case's module and tensors are freed before the next case starts."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    m = make().to(device=device, dtype=dtype, memory_format=fmt)
    xs = [torch.randn(*sh, device=device).to(dtype=dtype, memory_format=fmt).requires_grad_() for sh in shapes]
    y = m(*xs)
    dy = torch.randn_like(y)

    def fwd():
        with torch.no_grad():
            m(*xs)

    def bwd_ms():
        out = m(*xs)  # recorded forward, not timed
        sync()
        t = time.perf_counter()
        out.backward(dy)
        sync()
        return (time.perf_counter() - t) * 1e3

    for _ in range(2):  # warm-up: oneDNN JIT (cuDNN algorithm search) and allocator, both paths
        fwd()
        bwd_ms()
    on_gpu = device.type == "cuda"
    if on_gpu:  # the peak of the timed calls, as bench_layers reports it
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    f = median_ms(fwd, reps, sync)
    b = statistics.median(bwd_ms() for _ in range(reps))
    return f, b, torch.cuda.max_memory_allocated() / 2 ** 20 if on_gpu else None


def use_device(name, tf32, cudnn_benchmark):
    """The torch.device to run on and the function that waits for it; exits when cuda is missing."""
    if name == "cpu":
        return torch.device("cpu"), no_sync
    if not torch.cuda.is_available():
        raise SystemExit(f"torch_layers: --device cuda, but torch {torch.__version__} sees no CUDA device")
    # Both switches, so no convolution or matmul rounds its inputs to TF32 unless asked.
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.benchmark = cudnn_benchmark
    return torch.device("cuda"), torch.cuda.synchronize


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--filter", default="")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--tf32", action="store_true", help="let cuDNN and cuBLAS use TF32 (cuda; default off)")
    ap.add_argument("--no-cudnn-benchmark", dest="cudnn_benchmark", action="store_false",
                    help="take cuDNN's heuristic algorithm instead of timing the candidates (cuda)")
    ap.add_argument("--channels-last", action="store_true", help="modules and inputs in channels_last")
    ap.add_argument("--bf16", action="store_true", help="modules and inputs in bfloat16")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    device, sync = use_device(a.device, a.tf32, a.cudnn_benchmark)
    for name, make, shapes, fl_f, fl_b in cases(a.batch, a.size):
        if a.filter not in name:
            continue
        f, b, peak = run_case(make, shapes, device, sync, a.reps, torch.bfloat16 if a.bf16 else torch.float32,
                              a.channels_last)
        result = {"case": name, "fwd_ms": f, "bwd_ms": b,
                  "gflops_fwd": fl_f / f / 1e6 if fl_f else 0.0,
                  "gflops_bwd": fl_b / b / 1e6 if fl_b else 0.0}
        if peak is not None:
            result["peak_mib"] = peak
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
