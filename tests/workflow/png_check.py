"""Checks that a PNG written by the workflow tools is a real picture, for tests/workflow/test_*.sh.

    python3 tests/workflow/png_check.py FILE [--min-kb K] [--min-colours N] [--ramp x+|x-|y+|y-]

Fails (exit 1, a FAIL line) when the file is missing, smaller than K KiB, not a PNG, or has fewer
than N distinct colours (a blank or single-colour image). --ramp DIR checks orientation: along the
middle row (x) or column (y) of the largest colourful region (the first plot panel: the colour bar
is narrower), luminance must rise (+) or fall (-) from left to right / bottom to top, as a
viridis-coloured field that grows in that direction shows it.
"""
import argparse
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.image as mpimg  # noqa: E402
import numpy as np  # noqa: E402


def runs(mask):
    """(start, length) of the runs of True in a 1D mask."""
    out, start = [], None
    for i, v in enumerate(list(mask) + [False]):
        if v and start is None:
            start = i
        elif not v and start is not None:
            out.append((start, i - start))
            start = None
    return out


def ramp_ok(img, direction):
    rgb = img[..., :3]
    colourful = (rgb.max(-1) - rgb.min(-1)) > 0.15
    lum = rgb @ np.array([0.299, 0.587, 0.114])
    # The panel: the longest colourful run on the image's middle rows, then its middle column.
    h, w = colourful.shape
    best = max(((r, s, n) for r in range(h // 4, 3 * h // 4, 4) for s, n in runs(colourful[r])),
               key=lambda t: t[2], default=None)
    if best is None or best[2] < 20:
        return False, "no colourful panel found"
    row, start, length = best
    col = start + length // 2
    vruns = [(s, n) for s, n in runs(colourful[:, col]) if s <= row < s + n]
    if not vruns:
        return False, "panel has no vertical extent"
    vstart, vlen = vruns[0]
    mid_row = vstart + vlen // 2
    if direction[0] == "x":
        line = lum[mid_row, start + 2:start + length - 2]
    else:
        line = lum[vstart + 2:vstart + vlen - 2, col][::-1]  # bottom to top
    if line.size < 10:
        return False, "panel too small"
    k = max(1, line.size // 8)
    first, last = line[:k].mean(), line[-k:].mean()
    rising = last > first + 0.1
    falling = first > last + 0.1
    ok = rising if direction[1] == "+" else falling
    axis = "left to right" if direction[0] == "x" else "bottom to top"
    return ok, f"luminance {first:.2f} -> {last:.2f} {axis} over a {length}x{vlen} px panel"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("png")
    parser.add_argument("--min-kb", type=float, default=10)
    parser.add_argument("--min-colours", type=int, default=50)
    parser.add_argument("--ramp", choices=["x+", "x-", "y+", "y-"])
    args = parser.parse_args()
    if not os.path.isfile(args.png):
        print(f"FAIL: {args.png} does not exist")
        return 1
    kb = os.path.getsize(args.png) / 1024
    with open(args.png, "rb") as f:
        if f.read(8) != b"\x89PNG\r\n\x1a\n":
            print(f"FAIL: {args.png} is not a PNG")
            return 1
    img = mpimg.imread(args.png)
    colours = len(np.unique((img[..., :3] * 255).astype(np.uint8).reshape(-1, 3), axis=0))
    msg = f"{args.png}: {kb:.0f} KiB, {img.shape[1]}x{img.shape[0]} px, {colours} colours"
    failures = []
    if kb < args.min_kb:
        failures.append(f"only {kb:.1f} KiB (< {args.min_kb})")
    if colours < args.min_colours:
        failures.append(f"only {colours} distinct colours (< {args.min_colours})")
    if args.ramp:
        ok, detail = ramp_ok(img, args.ramp)
        msg += f"; {detail}"
        if not ok:
            failures.append(f"orientation: expected {args.ramp} ({detail})")
    for f in failures:
        print(f"FAIL: {msg}: {f}")
    if failures:
        return 1
    print(f"OK: {msg}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
