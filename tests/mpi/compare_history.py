#!/usr/bin/env python3
"""Compares columns of history.csv files against a reference run, step by step.

Used by tests/mpi/test_*.sh to show that the same deck trained on P ranks follows the 1-rank
trajectory. Prints one table row: the label, then per candidate the maximum relative deviation of
each checked column (--columns, default the loss; steps where a column is empty, such as rel_l2
between evaluations, are skipped) and of grad_norm, for information. Exits 1 if a checked deviation
exceeds --tol, a candidate has a step the reference lacks, or a number of rows other than --rows.

  compare_history.py --tol 1e-5 --label none ref/history.csv P=2:a/history.csv P=3:b/history.csv
"""
import argparse
import csv
import sys


def read(path):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return {int(r["step"]): r for r in rows}


def max_relative_deviation(reference, candidate, column):
    """max over steps of |c - r| / |r| (the energy loss is bounded away from 0 on these decks), None
    when no step has the column in both files, inf when one file has it and the other not."""
    worst = None
    for step, row in candidate.items():
        r, c = reference[step][column], row[column]
        if r == "" and c == "":
            continue
        if r == "" or c == "":
            return float("inf")
        r, c = float(r), float(c)
        worst = max(worst or 0.0, abs(c - r) / max(abs(r), 1e-300))
    return worst


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tol", type=float, required=True, help="bound on the loss's relative deviation")
    parser.add_argument("--label", required=True, help="name of the table row")
    parser.add_argument("--rows", type=int, default=None, help="rows each candidate must have")
    parser.add_argument("--columns", default="loss", help="comma-separated columns held to --tol")
    parser.add_argument("reference", help="history.csv of the reference run")
    parser.add_argument("candidates", nargs="+", help="NAME:history.csv of each run to compare")
    args = parser.parse_args()

    reference = read(args.reference)
    cells, problems = [], []
    for spec in args.candidates:
        name, _, path = spec.partition(":")
        try:
            candidate = read(path)
        except (OSError, KeyError, ValueError) as e:
            cells.append(f"{name} unreadable")
            problems.append(f"{name}: {path}: {e}")
            continue
        missing = sorted(set(candidate) - set(reference))
        if missing or not candidate:
            cells.append(f"{name} bad steps")
            problems.append(f"{name}: steps {missing[:5]} not in the reference" if missing else f"{name}: no rows")
            continue
        if args.rows is not None and len(candidate) != args.rows:
            problems.append(f"{name}: {len(candidate)} rows, expected {args.rows}")
        parts = []
        for column in args.columns.split(","):
            dev = max_relative_deviation(reference, candidate, column)
            parts.append(f"{dev:8.1e}" if column == "loss" else f"{column} {dev:7.1e}" if dev is not None
                         else f"{column} none")
            if dev is None or not dev <= args.tol:  # also catches NaN
                problems.append(f"{name}: {column} deviates by {dev} > {args.tol:.0e}")
        grad = max_relative_deviation(reference, candidate, "grad_norm")
        cells.append(f"{name} {' '.join(parts)} (grad_norm {grad:7.1e})")
    print(f"{args.label:<28} " + " | ".join(cells))
    for p in problems:
        print(f"  {p}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
