#!/usr/bin/env python3
"""When does the network pay? `pdegen predict` (the trained surrogate) against `pdegen solve` (the
multigrid-preconditioned CG reference solver) on the same problem, per resolution: samples per second
and the mean relative L2 error each gives against the tight reference (solver tolerance 1e-10).

The solver runs at several tolerances (a loose one is what a user who wants the network's accuracy
would run); its error at a tolerance is measured against its own 1e-10 solution of the same samples
(reference.h5, read with h5dump, no h5py needed). The network's throughput is predict.json's
network_seconds (the forwards alone, `training.batch_size` samples each, after the coefficient fields
are sampled; the first forward builds oneDNN's primitives and is included), its error predict.json's
rel_l2_mean. A checkpoint trained at another resolution still gives the throughput (the networks are
fully convolutional), and its error says what a network not trained there is worth.

    /usr/bin/python3 tools/bench/surrogate_vs_solver.py --deck input_decks/quickstart.yaml \\
        --checkpoint 64=runs/x/checkpoints/step_00018000.h5 [--checkpoint 256=...] \\
        [--resolutions 64 256 1024] [--samples 64=256 256=32 1024=8] [--precisions fp32 bf16] \\
        [--tolerances 1e-10 1e-6 1e-3] [--train-seconds 64=570] [--pdegen build/cpu/pdegen] [--workdir DIR]

With --train-seconds (the checkpoint's training time), the break-even sample count is the training
time divided by what each predicted sample saves against the solver at the tolerance that comes
closest to the network's error from below. Prints a markdown table.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))


def pairs(items, cast):
    """['64=a', '256=b'] -> {64: cast('a'), 256: cast('b')}."""
    out = {}
    for item in items or []:
        key, _, value = item.partition("=")
        if not value:
            sys.exit(f"expected RESOLUTION=VALUE, got {item!r}")
        out[int(key)] = cast(value)
    return out


def run(cmd, log):
    with open(log, "w") as f:
        r = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT)
    if r.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed with exit {r.returncode}; see {log}")


def read_field(path, name):
    """Dataset `name` of an HDF5 file as a numpy array, through h5dump's binary output."""
    header = subprocess.run(["h5dump", "-H", "-d", name, path], capture_output=True, text=True, check=True).stdout
    dims = [int(d) for d in header.split("DATASPACE")[1].split("(")[1].split(")")[0].split(",")]
    dtype = np.float64 if "IEEE_F64" in header else np.float32
    with tempfile.NamedTemporaryFile(suffix=".bin") as raw:
        subprocess.run(["h5dump", "-d", name, "-b", "LE", "-o", raw.name, path], capture_output=True, check=True)
        return np.fromfile(raw.name, dtype=dtype).reshape(dims)


def rel_l2_mean(u, ref):
    n = u.shape[0]
    diff = (u - ref).reshape(n, -1)
    return float(np.mean(np.linalg.norm(diff, axis=1) / np.linalg.norm(ref.reshape(n, -1), axis=1)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--deck", default=os.path.join(ROOT, "input_decks", "quickstart.yaml"))
    ap.add_argument("--checkpoint", action="append", required=True, help="RESOLUTION=PATH (trained there)")
    ap.add_argument("--resolutions", type=int, nargs="+", default=[64, 256, 1024])
    ap.add_argument("--samples", nargs="+", default=["64=256", "256=32", "1024=8"], help="RESOLUTION=N")
    ap.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
    ap.add_argument("--tolerances", type=float, nargs="+", default=[1e-10, 1e-6, 1e-3])
    ap.add_argument("--train-seconds", nargs="*", help="RESOLUTION=SECONDS the checkpoint took to train")
    ap.add_argument("--pdegen", default=os.path.join(ROOT, "build", "cpu", "pdegen"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workdir", help="where runs go (default: a temporary directory, removed)")
    a = ap.parse_args()
    checkpoints = pairs(a.checkpoint, str)
    samples = pairs(a.samples, int)
    train_seconds = pairs(a.train_seconds, float)
    tight = min(a.tolerances)
    work = a.workdir or tempfile.mkdtemp(prefix="surrogate_")
    os.makedirs(work, exist_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads))
    os.environ.update(env)
    rows = []
    for res in a.resolutions:
        n = samples.get(res, 8)
        common = [f"problem.resolution={res}", f"evaluation.samples={n}"]
        solved = {}
        for tol in sorted(a.tolerances):
            out = os.path.join(work, f"solve_{res}_{tol:g}")
            shutil.rmtree(out, ignore_errors=True)
            run([a.pdegen, "solve", a.deck, *common, f"evaluation.solver_tolerance={tol}", f"output.dir={out}"],
                out + ".log")
            info = json.load(open(os.path.join(out, "solve.json")))
            solved[tol] = (info["seconds_per_sample"], read_field(os.path.join(out, "reference.h5"), "/fields/u_ref"))
        for tol in sorted(a.tolerances):
            sec, u = solved[tol]
            err = 0.0 if tol == tight else rel_l2_mean(u, solved[tight][1])
            rows.append((res, f"solve, tolerance {tol:g}", n, 1.0 / sec, err, None))
        trained = max((r for r in checkpoints if r <= res), default=min(checkpoints))
        for precision in a.precisions:
            out = os.path.join(work, f"predict_{res}_{precision}")
            shutil.rmtree(out, ignore_errors=True)
            run([a.pdegen, "predict", a.deck, *common, f"precision={precision}", f"output.dir={out}",
                 "--checkpoint", checkpoints[trained]], out + ".log")
            info = json.load(open(os.path.join(out, "predict.json")))
            per_s = n / info["network_seconds"]
            rows.append((res, f"predict {precision} (trained at {trained}^2)", n, per_s, info["rel_l2_mean"],
                         trained))
    print(f"| resolution | method | samples | samples/s | mean rel_l2 | break-even samples |")
    print("|---|---|---:|---:|---:|---:|")
    for res, method, n, per_s, err, trained in rows:
        even = ""
        if trained is not None and trained == res and res in train_seconds:
            # The cheapest solver tolerance at least as accurate as the network.
            solves = [r for r in rows if r[0] == res and r[5] is None and r[4] <= err]
            if solves:
                fastest = max(solves, key=lambda r: r[3])
                saved = 1.0 / fastest[3] - 1.0 / per_s
                even = f"{train_seconds[res] / saved:,.0f} (vs {fastest[1]})" if saved > 0 else "never"
        print(f"| {res}^2 | {method} | {n} | {per_s:,.1f} | {100 * err:.3f}% | {even} |")
    if not a.workdir:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
