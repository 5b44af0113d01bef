#!/usr/bin/env python3
"""Checks that HDF5 fields files are identical, bit for bit, to a reference file.

Every dataset under /fields and /sample_index of the reference must exist in each candidate with
the same shape, dtype and bytes (NaN payloads included), and the candidate must have no dataset
there that the reference lacks. Attributes are not compared: they hold the resolved deck, whose
output.dir differs between runs. Prints one line per candidate; exits 1 on any difference.

  compare_fields.py ref/fields.h5 P=2:a/fields.h5 P=3:b/fields.h5
"""
import sys

import h5py
import numpy as np

GROUPS = ("fields", "sample_index")


def datasets(path):
    """{name: array} of every dataset under GROUPS (a top-level dataset counts as itself)."""
    found = {}
    with h5py.File(path, "r") as f:
        for top in GROUPS:
            if top not in f:
                continue
            obj = f[top]
            if isinstance(obj, h5py.Dataset):
                found[top] = obj[()]
            else:
                obj.visititems(lambda name, o: found.__setitem__(f"{top}/{name}", o[()])
                               if isinstance(o, h5py.Dataset) else None)
    return found


def differences(reference, candidate):
    out = []
    for name in sorted(set(reference) | set(candidate)):
        if name not in candidate:
            out.append(f"{name} missing")
        elif name not in reference:
            out.append(f"{name} not in the reference")
        else:
            a, b = np.asarray(reference[name]), np.asarray(candidate[name])
            if a.shape != b.shape or a.dtype != b.dtype:
                out.append(f"{name}: {b.shape} {b.dtype}, reference {a.shape} {a.dtype}")
            elif a.tobytes() != b.tobytes():
                diff = np.abs(a.astype(np.float64) - b.astype(np.float64)) if a.dtype.kind == "f" else None
                worst = f", max |diff| {np.nanmax(diff):.3e}" if diff is not None and diff.size else ""
                out.append(f"{name}: values differ{worst}")
    return out


def main(argv):
    if len(argv) < 3:
        print(__doc__)
        return 2
    reference = datasets(argv[1])
    if not reference or not any(n.startswith("fields/") for n in reference):
        print(f"{argv[1]}: no datasets under /fields")
        return 1
    failed = False
    for spec in argv[2:]:
        name, _, path = spec.partition(":")
        try:
            diffs = differences(reference, datasets(path))
        except OSError as e:
            diffs = [str(e)]
        print(f"  {name}: {len(reference)} datasets " + ("identical" if not diffs else "DIFFER: " + "; ".join(diffs)))
        failed |= bool(diffs)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
