#!/usr/bin/python3
"""Where a burgers1d network's error sits when shocks form: reads a run's fields.h5 (or predict.h5)
and reports, over its samples, the share of the squared error within +-W network cells of the
reference's steepest descent in each time row (the shock, once one has formed), the mean rel_l2 of
the rows before and after the first shock, and the shock position error (steepest descent of the
prediction against the reference's, in cells) at the last time row.

    /usr/bin/python3 tools/bench/burgers_shock_error.py RUN_OR_FILE [--width 3] [--jump 0.2]

A row has a shock when the reference drops by more than --jump (in u) across two cells.
"""
import argparse
import os
import sys

import h5py
import numpy as np


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run")
    ap.add_argument("--width", type=int, default=3)
    ap.add_argument("--jump", type=float, default=0.2)
    a = ap.parse_args()
    path = a.run
    if os.path.isdir(path):
        path = next((os.path.join(path, n) for n in ("fields.h5", "predict.h5") if os.path.isfile(os.path.join(path, n))),
                    None)
        if path is None:
            sys.exit(f"{a.run}: no fields.h5 or predict.h5")
    with h5py.File(path, "r") as f:
        pred, ref = f["fields/u_pred"][()].astype(float), f["fields/u_ref"][()].astype(float)
    near_sq = total_sq = 0.0
    before, after, offsets = [], [], []
    for s in range(ref.shape[0]):
        drop = ref[s, :, :-2] - ref[s, :, 2:]  # two-cell drop, positive across a right-going shock
        shocked = drop.max(axis=1) > a.jump
        err = (pred[s] - ref[s]) ** 2
        total_sq += err.sum()
        for n in np.nonzero(shocked)[0]:
            j = int(np.argmax(drop[n])) + 1
            near_sq += err[n, max(0, j - a.width):j + a.width + 1].sum()
        first = int(np.argmax(shocked)) if shocked.any() else ref.shape[1]
        for rows, out in ((slice(0, first), before), (slice(first, None), after)):
            r, p = ref[s, rows], pred[s, rows]
            if r.size:
                out.append(np.linalg.norm(p - r) / np.linalg.norm(r))
        if shocked[-1]:
            jp = int(np.argmax(pred[s, -1, :-2] - pred[s, -1, 2:])) + 1
            jr = int(np.argmax(drop[-1])) + 1
            offsets.append(jp - jr)
    print(f"{path}: {ref.shape[0]} samples, {ref.shape[1]} x {ref.shape[2]} (t x x)")
    print(f"  share of the squared error within +-{a.width} cells of the shock: {100 * near_sq / total_sq:.1f}%")
    print(f"  rel_l2 before the first shock: {100 * np.mean(before):.3f}% (mean over samples)")
    if after:
        print(f"  rel_l2 from the first shock on: {100 * np.mean(after):.3f}%")
    if offsets:
        o = np.array(offsets)
        print(f"  shock position at t = T, prediction - reference: mean {o.mean():+.2f} cells, "
              f"max |.| {np.abs(o).max()} cells over {len(o)} samples")
    return 0


if __name__ == "__main__":
    sys.exit(main())
