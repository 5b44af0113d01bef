#!/usr/bin/env python3
"""Time to accuracy with and without multigrid training: a multigrid deck and the single-level run
of the same network at the finest grid, one after the other, then the wall time at which each first
reaches the target mean rel_l2 values at the finest grid (both runs evaluate there all along).

    /usr/bin/python3 tools/bench/multigrid_time_to_accuracy.py [--pdegen build/cpu/pdegen]
        [--multigrid input_decks/poisson2d_256_multigrid.yaml] [--single input_decks/poisson2d_256.yaml]
        [--single-steps 5000] [--workdir runs/multigrid_tta] [--targets 0.2,0.1,0.05,0.02,0.01]
        [--analyze-only] [key.path=value ...]

The single-level run takes the multigrid deck's network, evaluation cadence and samples (trailing
key.path=value arguments apply to both). Prints a Markdown table; `tools/plot history` draws both
curves (rel_l2 against wall time).
"""
import argparse
import csv
import os
import subprocess
import sys


def first_time_below(history, target):
    with open(history) as f:
        for row in csv.DictReader(f):
            if row["rel_l2_mean"] and float(row["rel_l2_mean"]) <= target:
                return float(row["wall_s"]), int(row["step"])
    return None


def last_error(history):
    last = None
    with open(history) as f:
        for row in csv.DictReader(f):
            if row["rel_l2_mean"]:
                last = (float(row["wall_s"]), float(row["rel_l2_mean"]), int(row["step"]))
    return last


def train(pdegen, deck, out, overrides):
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"))
    cmd = [pdegen, "train", deck, f"output.dir={out}", "output.existing=move_aside", *overrides]
    print("#", " ".join(cmd), flush=True)
    with open(out + ".log", "w") as log:
        subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, check=True)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pdegen", default="build/cpu/pdegen")
    p.add_argument("--multigrid", default="input_decks/poisson2d_256_multigrid.yaml")
    p.add_argument("--single", default="input_decks/poisson2d_256.yaml")
    p.add_argument("--single-steps", type=int, default=5000)
    p.add_argument("--workdir", default="runs/multigrid_tta")
    p.add_argument("--targets", default="0.2,0.1,0.05,0.02,0.01")
    p.add_argument("--analyze-only", action="store_true")
    p.add_argument("overrides", nargs="*")
    a = p.parse_args()
    mg, single = os.path.join(a.workdir, "multigrid"), os.path.join(a.workdir, "single")
    if not a.analyze_only:
        os.makedirs(a.workdir, exist_ok=True)
        train(a.pdegen, a.multigrid, mg, a.overrides)
        # The multigrid run's network and evaluation, at the finest grid alone.
        depth = subprocess.run([a.pdegen, "check", a.multigrid, *a.overrides], capture_output=True, text=True,
                               check=True).stdout
        keys = {}
        for line in depth.splitlines():
            for key in ("depth", "base_channels", "every", "samples"):
                if line.startswith(f"  {key}: "):
                    keys.setdefault(key, line.split(": ")[1])
        train(a.pdegen, a.single, single,
              [f"network.depth={keys['depth']}", f"network.base_channels={keys['base_channels']}",
               f"evaluation.every={keys['every']}", f"evaluation.samples={keys['samples']}",
               f"training.steps={a.single_steps}", *a.overrides])
    targets = [float(t) for t in a.targets.split(",")]
    print("| run | " + " | ".join(f"time to {100 * t:g}% (s)" for t in targets) + " | last rel_l2 (at s, step) |")
    print("|---|" + "---:|" * (len(targets) + 1))
    times = {}
    for name, run in (("multigrid", mg), ("single level", single)):
        history = os.path.join(run, "history.csv")
        if not os.path.exists(history):
            sys.exit(f"no {history}: run without --analyze-only first")
        reached = [first_time_below(history, t) for t in targets]
        times[name] = reached
        wall, err, step = last_error(history)
        print(f"| {name} | " + " | ".join(f"{r[0]:.0f} (step {r[1]})" if r else "-" for r in reached) +
              f" | {100 * err:.2f}% ({wall:.0f} s, step {step}) |")
    ratios = []
    for t, m, s in zip(targets, times["multigrid"], times["single level"]):
        if m and s:
            ratios.append(f"{100 * t:g}%: {s[0] / m[0]:.1f}x")
        elif m:
            ratios.append(f"{100 * t:g}%: > {last_error(os.path.join(single, 'history.csv'))[0] / m[0]:.1f}x")
    print("\nsingle-level time / multigrid time:", ", ".join(ratios) if ratios else "no target reached by both")


if __name__ == "__main__":
    main()
