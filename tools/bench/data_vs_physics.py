#!/usr/bin/env python3
"""Data-driven against data-free training of the same network on the same problem: error on the same
held-out samples (the evaluation set, solved by the reference solver) against total cost, dataset
generation included. With --map inverse, the map u -> log nu (problem.map inverse) on the same
(forward) datasets, whose error is that of log nu against the true coefficient; the data-free
inverse trains on sampled fields (solved on the fly) and on the dataset's u (training.objective
hybrid with data.weight 0: the physics residual alone, the dataset's log_nu used only on x = 0).

For each dataset size, `pdegen dataset` writes the samples and their reference solutions (timed, on
--dataset-ranks ranks), then the deck trains with training.objective data (each --loss) and hybrid;
the physics (data-free) run trains the deck as it is. Every run takes the same steps, batch, network
and optimizer, and reports summary.json's final evaluation. Runs one after the other (the machine
has few cores); prints a Markdown table.

    /usr/bin/python3 tools/bench/data_vs_physics.py [--deck input_decks/quickstart.yaml]
        [--samples 1000 10000] [--losses mse rel_l2] [--hybrid-weight 1.0] [--map forward|inverse]
        [--workdir runs/data_vs_physics]
        [--pdegen build/cpu/pdegen] [--analyze-only] [key.path=value ...]
"""
import argparse
import json
import os
import subprocess
import sys
import time


def run(cmd, log, env=None):
    t = time.time()
    with open(log, "w") as f:
        subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, check=True, env=env)
    return time.time() - t


def summary(directory):
    with open(os.path.join(directory, "summary.json")) as f:
        return json.load(f)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--deck", default="input_decks/quickstart.yaml")
    p.add_argument("--samples", type=int, nargs="+", default=[1000, 10000])
    p.add_argument("--losses", nargs="+", default=["mse", "rel_l2"])
    p.add_argument("--hybrid-weight", type=float, default=1.0)
    p.add_argument("--dataset-ranks", type=int, default=2)
    p.add_argument("--map", choices=("forward", "inverse"), default="forward")
    p.add_argument("--pdegen", default="build/cpu/pdegen")
    p.add_argument("--workdir", default="runs/data_vs_physics")
    p.add_argument("--analyze-only", action="store_true", help="only print the table of an earlier run")
    p.add_argument("overrides", nargs="*", help="key.path=value for every training run")
    a = p.parse_args()
    os.makedirs(a.workdir, exist_ok=True)
    one_rank = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"))
    per_rank = dict(os.environ, OMP_NUM_THREADS="1")
    rows = []  # (name, samples, dataset seconds, run directory)
    inverse = a.map == "inverse"
    tag = "inverse_" if inverse else ""
    runs = [("physics (data-free" + (", sampled u)" if inverse else ")"), 0, 0.0,
             os.path.join(a.workdir, tag + "physics"), ["training.objective=physics"])]
    for n in a.samples:
        ds = os.path.join(a.workdir, f"dataset_{n}")
        timing = os.path.join(ds, "seconds.txt")
        if not a.analyze_only and not os.path.exists(timing):
            seconds = run(["mpiexec.mpich", "-n", str(a.dataset_ranks), a.pdegen, "dataset", a.deck,
                           "--samples", str(n), f"output.dir={ds}"], ds + ".log", per_rank)
            with open(timing, "w") as f:
                f.write(f"{seconds}\n")
        with open(timing) as f:
            seconds = float(f.read())
        files = f"data.files={ds}/dataset_*.h5"
        for loss in a.losses:
            runs.append((f"data, {loss}", n, seconds, os.path.join(a.workdir, f"{tag}data_{loss}_{n}"),
                         ["training.objective=data", files, f"data.loss={loss}"]))
        runs.append((f"hybrid, mse x {a.hybrid_weight:g}", n, seconds, os.path.join(a.workdir, f"{tag}hybrid_{n}"),
                     ["training.objective=hybrid", files, f"data.weight={a.hybrid_weight}"]))
        if inverse:
            runs.append(("physics (data-free, the dataset's u)", n, seconds,
                         os.path.join(a.workdir, f"{tag}physics_{n}"),
                         ["training.objective=hybrid", files, "data.weight=0"]))
    for name, n, ds_seconds, out, extra in runs:
        if not a.analyze_only:
            maps = ["problem.map=inverse"] if inverse else []
            run([a.pdegen, "train", a.deck, f"output.dir={out}", "output.existing=move_aside"] + maps + extra +
                a.overrides,
                out + ".log", one_rank)
        rows.append((name, n, ds_seconds, summary(out)))
    print("| training | dataset samples | dataset s | train s | total s | epochs | wait | rel_l2 mean | rel_l2 max |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, n, ds_seconds, s in rows:
        d = s.get("data", {})
        print(f"| {name} | {n or '-'} | {ds_seconds:.1f} | {s['train_seconds']:.1f} | "
              f"{ds_seconds + s['train_seconds']:.1f} | {d.get('epochs', float('nan')):.1f} | "
              f"{100 * d.get('wait_fraction', 0):.2f}% | {100 * s['eval']['rel_l2_mean']:.2f}% | "
              f"{100 * s['eval']['rel_l2_max']:.2f}% |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
