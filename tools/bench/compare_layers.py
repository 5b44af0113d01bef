#!/usr/bin/env python3
"""Runs the pdegen layer benchmark and its PyTorch peer on the same shapes and threads, one case at
a time alternating between the two (so machine noise hits both alike), and prints a markdown table
with the speed-up of pdegen over PyTorch for forward, backward and forward+backward.

    /usr/bin/python3 tools/bench/compare_layers.py [--bench build/cpu/bench_layers] [--threads 2]
        [--batch 4] [--size 256] [--reps 5] [--filter TEXT] [--device cpu|cuda] [--tf32]
        [--precision fp32|bf16] [--peer-nchw]

--device cuda runs both on the GPU (bench_layers of a CUDA build: --bench build/cuda/bench_layers);
convolutions in fp32 on both sides unless --tf32 (bench_layers --conv-math tf32, torch_layers --tf32).
--precision bf16 runs pdegen's layers on bf16 activations (channels-last on the CPU) and the peer's in
bfloat16. On the CPU the peer runs channels_last (its fast layout) unless --peer-nchw.
The peer runs under tools/bench/peer.py's choice: $PYTHON, else the --bench venv.
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peer import peer_python  # noqa: E402


def run(cmd, env):
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if p.returncode != 0:
        sys.stderr.write(p.stdout[-4000:] + p.stderr[-4000:])
        raise SystemExit(f"compare_layers: exit code {p.returncode} from {' '.join(cmd)}")
    return [json.loads(line) for line in p.stdout.splitlines() if line.startswith("{")]


def gpu_name(python, env):
    """The GPU's name as the peer's torch sees it (a child process, so this one holds no CUDA context)."""
    p = subprocess.run([python, "-c", "import torch; print(torch.cuda.get_device_name(), torch.__version__, "
                        "torch.backends.cudnn.version())"], env=env, capture_output=True, text=True)
    if p.returncode != 0 or not p.stdout.strip():
        return "unknown GPU"
    name, version, cudnn = p.stdout.strip().rsplit(" ", 2)
    return f"{name}; torch {version}, cuDNN {cudnn}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--bench", default=os.path.join(here, "..", "..", "build", "cpu", "bench_layers"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--filter", default="")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--tf32", action="store_true", help="GPU convolutions may use TF32 on both sides")
    ap.add_argument("--precision", choices=("fp32", "bf16"), default="fp32", help="activation type, both sides")
    ap.add_argument("--peer-nchw", action="store_true", help="the peer in NCHW instead of channels_last (CPU)")
    a = ap.parse_args()
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads))
    python = peer_python()
    common = ["--batch", str(a.batch), "--size", str(a.size), "--reps", str(a.reps)]
    # Both sides on the device with the same convolution math; the CPU command lines are unchanged.
    ours_extra, theirs_extra = [], []
    if a.device == "cuda":
        ours_extra = ["--device", "cuda", "--conv-math", "tf32" if a.tf32 else "fp32"]
        theirs_extra = ["--device", "cuda"] + (["--tf32"] if a.tf32 else [])
    elif not a.peer_nchw:
        theirs_extra = ["--channels-last"]
    if a.precision == "bf16":
        ours_extra += ["--precision", "bf16"]
        theirs_extra += ["--bf16"]
    names = [r["case"] for r in run([a.bench, "--reps", "1", "--size", "32", "--filter", a.filter, *ours_extra],
                                    env)]
    rows = []
    for name in names:
        ours = run([a.bench, *common, "--filter", name, *ours_extra], env)
        theirs = run([python, os.path.join(here, "torch_layers.py"), "--threads", str(a.threads),
                      *common, "--filter", name, *theirs_extra], env)
        ours = [r for r in ours if r["case"] == name]
        theirs = [r for r in theirs if r["case"] == name]
        if not ours or not theirs:
            print(f"warning: case '{name}' missing from one side", file=sys.stderr)
            continue
        rows.append((ours[0], theirs[0]))
        print(f"# done {name}", file=sys.stderr)

    if a.device == "cuda":
        print(f"Layer micro-benchmark on the GPU, batch {a.batch}, {a.size}x{a.size}, fp32, convolutions "
              f"{'in TF32' if a.tf32 else 'without TF32'}, {platform.node()} ({gpu_name(python, env)}), "
              f"{time.strftime('%Y-%m-%d')}")
    else:
        print(f"Layer micro-benchmark, batch {a.batch}, {a.size}x{a.size}, {a.threads} threads, {a.precision}, "
              f"peer {'NCHW' if a.peer_nchw else 'channels_last'}, "
              f"{platform.node()} ({platform.processor() or platform.machine()}), {time.strftime('%Y-%m-%d')}")
    print()
    print("| case | pdegen fwd ms | torch fwd ms | pdegen bwd ms | torch bwd ms | pdegen GFLOP/s f/b "
          "| torch GFLOP/s f/b | speed-up fwd+bwd |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for o, t in rows:
        sp = (t["fwd_ms"] + t["bwd_ms"]) / (o["fwd_ms"] + o["bwd_ms"])
        print(f"| {o['case']} | {o['fwd_ms']:.2f} | {t['fwd_ms']:.2f} | {o['bwd_ms']:.2f} | {t['bwd_ms']:.2f} "
              f"| {o['gflops_fwd']:.0f} / {o['gflops_bwd']:.0f} | {t['gflops_fwd']:.0f} / {t['gflops_bwd']:.0f} "
              f"| {sp:.2f}x |")


if __name__ == "__main__":
    main()
