#!/usr/bin/env python3
"""FC-DenseNet training step, pdegen against its PyTorch peer (tools/bench/torch_fcdensenet.py): the
same network, trained from data (MSE, Adam) at the same grid, batch and thread count. pdegen trains
from a small generated dataset (`pdegen dataset`, read by its reader thread) with
training.objective=data; its step time is the median of batch / samples_per_s over the steps after
--warmup (history.csv), its memory summary.json's peak RSS. The peer runs as it is (eager, fp32) and
in its best configuration (--best: channels_last, torch.compile, bf16 autocast where the CPU has
AMX or AVX512-BF16); pdegen in fp32 and in bf16. Runs alternate; prints a Markdown table.

    /usr/bin/python3 tools/bench/compare_fcdensenet.py [--presets fc56 fc103] [--resolution 64]
        [--batch 8] [--steps 20] [--warmup 5] [--threads 2] [--pdegen build/cpu/pdegen] [--workdir DIR]
"""
import argparse
import csv
import json
import os
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peer import peer_python, torch_version  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def pdegen_step(a, preset, dataset, precision, out):
    deck = os.path.join(os.path.dirname(os.path.dirname(HERE)), "input_decks", "poisson2d_64_fcdensenet_data.yaml")
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads))
    cmd = [a.pdegen, "train", deck, f"output.dir={out}", "output.existing=move_aside", f"problem.resolution={a.resolution}",
           f"network.preset={preset}", "data.loss=mse", "data.validation_fraction=0",
           f"data.files={dataset}/dataset_*.h5", f"training.batch_size={a.batch}",
           f"training.steps={a.warmup + a.steps}", "training.log_every=1", "evaluation.every=0", "evaluation.samples=1",
           "output.fields=false", f"precision={precision}", "optimizer.schedule.type=constant"]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, env=env)
    with open(os.path.join(out, "history.csv")) as f:
        rows = [r for r in csv.DictReader(f) if int(r["step"]) > a.warmup]
    with open(os.path.join(out, "summary.json")) as f:
        s = json.load(f)
    return {"step_seconds": statistics.median(a.batch / float(r["samples_per_s"]) for r in rows),
            "peak_rss_mb": s["memory"]["peak_rss_mb"], "parameters": s["parameters"]}


def torch_step(a, preset, extra):
    cmd = [peer_python(), os.path.join(HERE, "torch_fcdensenet.py"), "--preset", preset, "--resolution",
           str(a.resolution), "--batch", str(a.batch), "--steps", str(a.steps), "--warmup", str(a.warmup),
           "--threads", str(a.threads)] + extra
    r = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", nargs="+", default=["fc56", "fc103"])
    ap.add_argument("--resolution", type=int, default=64)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--pdegen", default="build/cpu/pdegen")
    ap.add_argument("--workdir", default="runs/compare_fcdensenet")
    a = ap.parse_args()
    os.makedirs(a.workdir, exist_ok=True)
    dataset = os.path.join(a.workdir, f"dataset_{a.resolution}")
    deck = os.path.join(os.path.dirname(os.path.dirname(HERE)), "input_decks", "quickstart.yaml")
    subprocess.run([a.pdegen, "dataset", deck, "--samples", str(4 * a.batch), f"problem.resolution={a.resolution}",
                    f"output.dir={dataset}"], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    print(f"torch {torch_version(peer_python())}; {a.resolution}^2, batch {a.batch}, {a.threads} threads, "
          f"median of {a.steps} steps after {a.warmup}")
    print("| network | parameters | run | step s | peak RSS MiB | vs torch eager | vs torch best |")
    print("|---|---:|---|---:|---:|---:|---:|")
    for preset in a.presets:
        eager = torch_step(a, preset, [])
        best = torch_step(a, preset, ["--best"])
        runs = [("torch eager fp32", eager), (f"torch best ({'bf16, ' if best['bf16'] else ''}compile, channels_last)", best)]
        for precision in ("fp32", "bf16"):
            r = pdegen_step(a, preset, dataset, precision, os.path.join(a.workdir, f"{preset}_{precision}"))
            runs.append((f"pdegen {precision}", r))
        for name, r in runs:
            print(f"| {preset} | {r['parameters']:,} | {name} | {r['step_seconds']:.3f} | {r['peak_rss_mb']:.0f} | "
                  f"{eager['step_seconds'] / r['step_seconds']:.2f}x | {best['step_seconds'] / r['step_seconds']:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
