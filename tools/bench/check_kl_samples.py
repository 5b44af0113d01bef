#!/usr/bin/env python3
"""Checks the PyTorch peer's KL samples (tools/bench/torch_poisson.py) against pdegen's own
(physics/kl_sampler.*, printed by the dump_kl_samples benchmark target), for a poisson2d or
poisson3d deck: training and evaluation indices, fp32 bit for bit, else the largest difference.

    cmake --build BUILD --target dump_kl_samples
    /usr/bin/python3 tools/bench/check_kl_samples.py --dump BUILD/dump_kl_samples DECK [key.path=value ...]
        [--index G]... [--eval E]... [--tolerance 1e-6]

Exit 0 when every value agrees within --tolerance (absolute, default 1e-6), 1 otherwise.
"""
import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_poisson as peer  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("deck")
    ap.add_argument("overrides", nargs="*")
    ap.add_argument("--dump", required=True, help="the dump_kl_samples executable")
    ap.add_argument("--index", type=int, action="append", default=[], help="global index (default 0, 1, 7, 12345)")
    ap.add_argument("--eval", type=int, action="append", default=[], help="evaluation sample (default 0, 3)")
    ap.add_argument("--tolerance", type=float, default=1e-6)
    a = ap.parse_intermixed_args()
    indices = a.index or ([] if a.eval else [0, 1, 7, 12345])
    evals = a.eval or ([] if a.index else [0, 3])
    deck = peer.load_deck(a.deck, a.overrides)
    p = deck["problem"]
    n, dims = p["resolution"], peer.spatial_dims(deck)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "samples.f32")
        cmd = [a.dump, a.deck, *a.overrides, "--binary", path]
        for g in indices:
            cmd += ["--index", str(g)]
        for e in evals:
            cmd += ["--eval", str(e)]
        subprocess.run(cmd, check=True)
        theirs = np.fromfile(path, dtype=np.float32).reshape((len(indices) + len(evals),) + (n,) * dims)
    glob = np.array(indices + [peer.EVAL_INDEX_BASE + e for e in evals], dtype=np.uint64)
    ours = peer.make_sampler(p, deck["training"]["seed"]).log_nu(glob)
    diff = np.abs(ours.astype(np.float64) - theirs.astype(np.float64))
    exact = np.count_nonzero(ours == theirs)
    print(f"{p['pde']} {'x'.join([str(n)] * dims)}, kl_modes {p['kl_modes']}, seed {deck['training']['seed']}: "
          f"{len(glob)} samples (global {', '.join(str(int(g)) for g in glob)}), {exact} of {ours.size} "
          f"values bitwise equal, max |difference| {diff.max():.3e} (values up to {np.abs(theirs).max():.3f})")
    ok = diff.max() <= a.tolerance
    print("check_kl_samples: " + ("agree" if ok else f"DIFFER by more than {a.tolerance:g}"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
