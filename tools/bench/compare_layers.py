#!/usr/bin/env python3
"""Runs the pdegen layer benchmark and its PyTorch peer on the same shapes and threads, one case at
a time alternating between the two (so machine noise hits both alike), and prints a markdown table
with the speed-up of pdegen over PyTorch for forward, backward and forward+backward.

    /usr/bin/python3 tools/bench/compare_layers.py [--bench build/cpu/bench_layers] [--threads 2]
        [--batch 4] [--size 256] [--reps 5] [--filter TEXT]
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import time


def run(cmd, env):
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--bench", default=os.path.join(here, "..", "..", "build", "cpu", "bench_layers"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--filter", default="")
    a = ap.parse_args()
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads))
    common = ["--batch", str(a.batch), "--size", str(a.size), "--reps", str(a.reps)]
    names = [r["case"] for r in run([a.bench, "--reps", "1", "--size", "32", "--filter", a.filter], env)]
    rows = []
    for name in names:
        ours = run([a.bench, *common, "--filter", name], env)
        theirs = run(["/usr/bin/python3", os.path.join(here, "torch_layers.py"), "--threads", str(a.threads),
                      *common, "--filter", name], env)
        ours = [r for r in ours if r["case"] == name]
        theirs = [r for r in theirs if r["case"] == name]
        if not ours or not theirs:
            print(f"warning: case '{name}' missing from one side", file=sys.stderr)
            continue
        rows.append((ours[0], theirs[0]))
        print(f"# done {name}", file=sys.stderr)

    print(f"Layer micro-benchmark, batch {a.batch}, {a.size}x{a.size}, {a.threads} threads, "
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
