#!/usr/bin/env python3
"""Plots the time-to-accuracy runs of tools/bench/convergence.py: mean rel_l2 on the held-out
samples against wall time, one line per method, one panel per (global batch, ranks), one PNG per
resolution (log y; dashed: the targets; dotted: the budget).

    /usr/bin/python3 tools/bench/plot_convergence.py [runs/convergence/results.json]
        [--out-dir docs/images] [--prefix convergence] [--dpi 90]

Writes <out-dir>/<prefix>_<resolution>.png for every resolution in the results.
"""
import argparse
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
# One colour and marker per method, the same in every panel and file.
STYLE = {"adam": ("tab:blue", "o"), "lbfgs": ("tab:red", "s"), "adam_lbfgs": ("tab:purple", "^"),
         "lamb": ("tab:green", "D")}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results", nargs="?", default=os.path.join(ROOT, "runs", "convergence", "results.json"))
    p.add_argument("--out-dir", default=os.path.join(ROOT, "docs", "images"))
    p.add_argument("--prefix", default="convergence")
    p.add_argument("--dpi", type=int, default=90)
    args = p.parse_args()
    if not os.path.exists(args.results):
        print(f"plot_convergence: error: no {args.results}: run tools/bench/convergence.py first", file=sys.stderr)
        sys.exit(2)
    data = json.load(open(args.results))
    runs, meta = data["runs"], data["meta"]
    os.makedirs(args.out_dir, exist_ok=True)

    for res in sorted({r["resolution"] for r in runs}):
        mine = [r for r in runs if r["resolution"] == res]
        panels = sorted({(r["batch"], r["ranks"]) for r in mine})
        cols = min(len(panels), 4)
        rows = (len(panels) + cols - 1) // cols
        fig, axes = plt.subplots(rows, cols, figsize=(max(5.0, 3.6 * cols), 0.4 + 3.0 * rows), sharey=True,
                                 squeeze=False)
        for ax, (batch, ranks) in zip(axes.flat, panels):
            for r in (r for r in mine if (r["batch"], r["ranks"]) == (batch, ranks)):
                pts = [pt for pt in r["series"] if pt[1] <= r["budget_s"]]
                if not pts:
                    continue
                colour, marker = STYLE.get(r["method"], ("black", "x"))
                ax.plot([pt[1] for pt in pts], [100 * pt[2] for pt in pts], color=colour, marker=marker,
                        markersize=3, linewidth=1.2, label=r["label"])
            for target in {float(t) for r in mine for t in r["targets"]}:
                ax.axhline(100 * target, color="gray", linestyle="--", linewidth=0.8)
            ax.axvline(mine[0]["budget_s"], color="gray", linestyle=":", linewidth=0.8)
            ax.set_yscale("log")
            ax.set_title(f"{res}$^2$, batch {batch}, {ranks} rank{'s' if ranks > 1 else ''}", fontsize=9)
            ax.set_xlabel("wall time (s)", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.grid(True, which="both", alpha=0.25)
        for ax in axes[:, 0]:
            ax.set_ylabel("rel_l2 mean (%)", fontsize=8)
        for ax in list(axes.flat)[len(panels):]:
            ax.set_visible(False)
        axes.flat[0].legend(fontsize=7, loc="upper right")
        fig.suptitle(f"poisson2d {res}$^2$, held-out rel_l2 against wall time\n"
                     f"{meta.get('date', '')[:10]}, {meta.get('cores', '?')} cores", fontsize=9)
        fig.tight_layout()
        out = os.path.join(args.out_dir, f"{args.prefix}_{res}.png")
        fig.savefig(out, dpi=args.dpi)
        plt.close(fig)
        print(f"{out}: {os.path.getsize(out) / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
