#!/usr/bin/env python3
"""Trains one deck with `pdegen train` on the GPU once per precision (fp32, bf16, fp16) and tabulates
what mixed precision buys and costs: median step time, samples/s, device memory peak, held-out error
after the same steps, skipped (overflowed) steps and the final loss scale.

    python3 tools/bench/compare_precision.py DECK [key.path=value ...] [--steps N]
        [--pdegen build/cuda/pdegen] [--precisions fp32,bf16,fp16] [--workdir DIR]

Numbers come from each run's summary.json (throughput, memory.device_peak_mb, eval, skipped_steps,
loss_scale) and history.csv (median step time over steps 4.., from batch / samples_per_s, as in
compare_train.py). The runs share every override; fp16 gets dynamic loss scaling by default.
"""
import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile


def median_step_seconds(history_path, batch):
    with open(history_path, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("samples_per_s")]
    times = [batch / float(r["samples_per_s"]) for r in rows[3:] if float(r["samples_per_s"]) > 0]
    return statistics.median(times) if times else float("nan")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("deck")
    ap.add_argument("overrides", nargs="*")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--pdegen", default="build/cuda/pdegen")
    ap.add_argument("--precisions", default="fp32,bf16,fp16")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--device", default="cuda", help="cpu: fp32 only, to check this script without a GPU")
    args = ap.parse_args()

    work = args.workdir or tempfile.mkdtemp(prefix="compare_precision.")
    rows = []
    for precision in args.precisions.split(","):
        out = os.path.join(work, precision)
        cmd = [args.pdegen, "train", args.deck, *args.overrides, f"device={args.device}", f"precision={precision}",
               f"training.steps={args.steps}", "training.log_every=1", "evaluation.every=0",
               f"output.dir={out}", "output.fields=false"]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
            sys.exit(f"compare_precision: {precision} run failed with exit code {proc.returncode}: {' '.join(cmd)}")
        with open(os.path.join(out, "summary.json")) as f:
            s = json.load(f)
        with open(os.path.join(out, "deck.resolved.yaml")) as f:
            batch = next(int(line.split(":")[1]) for line in f if line.strip().startswith("batch_size:"))
        rows.append((precision, median_step_seconds(os.path.join(out, "history.csv"), batch),
                     s["throughput"]["samples_per_s"], s["memory"].get("device_peak_mb", s["memory"]["peak_rss_mb"]),
                     100 * s["eval"]["rel_l2_mean"], s.get("skipped_steps", 0), s.get("loss_scale", 1.0)))

    base = rows[0]
    print("| precision | median step (s) | vs first | samples/s | device peak (MiB) | vs first | "
          "rel_l2 mean after the run | skipped steps | final loss scale |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for p, step, sps, mem, err, skipped, scale in rows:
        print(f"| {p} | {step:.4f} | {step / base[1]:.2f}x | {sps:.1f} | {mem:.0f} | {mem / base[3]:.2f}x | "
              f"{err:.3f}% | {skipped} | {scale:g} |")


if __name__ == "__main__":
    main()
