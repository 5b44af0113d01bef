"""Renders one sample of a pdegen fields.xdmf to a PNG with ParaView (pvpython), with a colour bar.

    xvfb-run -a pvpython tools/render_sample.py RUN/fields.xdmf [--field u_pred] [--sample 0]
                                               [-o sample.png] [--size 800x640] [--slice Z]

pdegen's XDMF is a temporal collection with one time step per sample (time value = position of the
sample in the file), so --sample N is ParaView's time step N; --field is any field of the file
(log_nu, u_pred, u_ref, error). The file is opened with the reader ParaView picks itself (what
File > Open does). 2D grids are shown from +z with x to the right and y up; 3D grids as the z slice
--slice (default: the middle). The error field gets a diverging colour map symmetric about 0, the
others viridis over the sample's own range. Where no display exists (a login node, CI), run it under
xvfb-run as above; ParaView's python: tools/install_deps.sh --paraview.
"""
import argparse
import os
import sys
import xml.etree.ElementTree as ET

from paraview import servermanager
from paraview import simple


def fields_of(path):
    """Node-centred field names and the grid's node counts (x first) declared by the XDMF."""
    root = ET.parse(path).getroot()
    grid = next((g for g in root.iter("Grid") if g.get("GridType") == "Uniform"), None)
    if grid is None:
        raise SystemExit(f"render_sample: error: {path} declares no uniform grid")
    names = [a.get("Name") for a in grid.iter("Attribute") if a.get("Center") == "Node"]
    dims = [int(v) for v in grid.find("Topology").get("Dimensions").split()][::-1]
    return names, dims


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("xdmf", help="fields.xdmf (or predict.xdmf, reference.xdmf) of a run")
    parser.add_argument("--field", default="u_pred")
    parser.add_argument("--sample", type=int, default=0, help="sample position in the file = time step")
    parser.add_argument("-o", "--output", default="sample.png")
    parser.add_argument("--size", default="800x640", help="image size WIDTHxHEIGHT in pixels")
    parser.add_argument("--slice", type=int, help="3D grids: the z index shown (default: the middle)")
    args = parser.parse_args()

    names, dims = fields_of(args.xdmf)
    if args.field not in names:
        print(f"render_sample: error: no field '{args.field}' in {args.xdmf} (it has {', '.join(names)})",
              file=sys.stderr)
        return 2
    width, height = (int(v) for v in args.size.lower().split("x"))

    reader = simple.OpenDataFile(args.xdmf)
    if reader is None:
        print(f"render_sample: error: ParaView found no reader for {args.xdmf}", file=sys.stderr)
        return 2
    times = list(reader.TimestepValues) if reader.TimestepValues else [0.0]
    if not 0 <= args.sample < len(times):
        print(f"render_sample: error: sample {args.sample} not in 0..{len(times) - 1}", file=sys.stderr)
        return 2
    t = times[args.sample]
    reader.UpdatePipeline(t)

    source = reader
    three_d = len(dims) == 3 and dims[2] > 1
    if three_d:
        bounds = servermanager.Fetch(reader).GetBounds()
        k = dims[2] // 2 if args.slice is None else args.slice
        z = bounds[4] + (bounds[5] - bounds[4]) * k / max(dims[2] - 1, 1)
        source = simple.Slice(Input=reader)
        source.SliceType = "Plane"
        source.SliceType.Origin = [0.5 * (bounds[0] + bounds[1]), 0.5 * (bounds[2] + bounds[3]), z]
        source.SliceType.Normal = [0.0, 0.0, 1.0]
        source.UpdatePipeline(t)

    view = simple.CreateView("RenderView")
    view.ViewSize = [width, height]
    view.ViewTime = t
    view.Background = [1.0, 1.0, 1.0]
    view.OrientationAxesVisibility = 0
    # ParaView 5.10+ may otherwise use its palette's background instead of the one set above.
    if hasattr(view, "UseColorPaletteForBackground"):
        view.UseColorPaletteForBackground = 0
    display = simple.Show(source, view)
    display.Representation = "Surface"
    simple.ColorBy(display, ("POINTS", args.field))
    lut = simple.GetColorTransferFunction(args.field)
    lo, hi = source.PointData[args.field].GetRange()
    if args.field == "error":
        m = max(abs(lo), abs(hi), 1e-30)
        lut.ApplyPreset("Cool to Warm", True)
        lut.RescaleTransferFunction(-m, m)
    else:
        lut.ApplyPreset("Viridis (matplotlib)", True)
        lut.RescaleTransferFunction(lo, hi if hi > lo else lo + 1e-30)
    display.SetScalarBarVisibility(view, True)
    bar = simple.GetScalarBar(lut, view)
    bar.Title = args.field
    bar.ComponentTitle = ""
    bar.TitleColor = bar.LabelColor = [0.0, 0.0, 0.0]
    bar.WindowLocation = "Any Location"
    bar.Position = [0.86, 0.1]
    bar.ScalarBarLength = 0.8
    bar.RangeLabelFormat = "%-#.3g"

    label = simple.Text(Text=f"{args.field}, sample {args.sample} (time step {t:g})"
                        + (f", z slice {dims[2] // 2 if args.slice is None else args.slice}" if three_d else ""))
    text = simple.Show(label, view)
    text.Color = [0.0, 0.0, 0.0]
    text.FontSize = 14
    text.WindowLocation = "Upper Left Corner"

    # Looking down -z with y up puts x to the right, as in the data (x is the fastest axis).
    view.InteractionMode = "2D"
    view.ResetCamera()
    cam = view.GetActiveCamera()
    focal = cam.GetFocalPoint()
    cam.SetPosition(focal[0], focal[1], focal[2] + 10.0)
    cam.SetViewUp(0.0, 1.0, 0.0)
    view.ResetCamera()
    cam.Zoom(1.0)
    simple.Render(view)
    simple.SaveScreenshot(args.output, view, ImageResolution=[width, height], TransparentBackground=0)
    print(f"render_sample: {args.output} ({args.field}, sample {args.sample} of {len(times)}, range [{lo:.4g}, {hi:.4g}])")
    return 0


if __name__ == "__main__":
    code = main()
    # Tearing down the OpenGL context under Xvfb aborts some ParaView builds (GLXBadContext) after
    # the image is safely written: leave without the teardown.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
