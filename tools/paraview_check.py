"""Opens a pdegen fields.xdmf the way ParaView's File > Open does and reports what ParaView sees.

    xvfb-run -a pvpython tools/paraview_check.py OUTPUT_DIR/fields.xdmf [--check-coordinates FIELD]

Prints the reader ParaView picked (OpenDataFile, i.e. the reader the GUI uses for the file), the
point-data arrays with their ranges, the grid dimensions and bounds and the time steps, and exits
non-zero when something a user would miss is wrong: a field of the XDMF that ParaView does not show,
a time step count that is not the sample count, bounds that do not put x (the fastest axis of the
HDF5 data) to the right from origin_x to origin_x + (Nx - 1) dx.

--check-coordinates FIELD additionally requires FIELD == x + 10 y + 100 z + 1000 t at every node of
every time step t (the test data of tests/unit/test_fields_file.cpp), which pins orientation, spacing,
origin and the time step <-> sample mapping. --reader NAME opens with a named reader instead
(Xdmf3ReaderS, Xdmf3ReaderT or XDMFReader) to compare them.
"""
import argparse
import math
import sys
import xml.etree.ElementTree as ET

from paraview import servermanager
from paraview import simple


def expected_from_xdmf(path):
    """Node-centred field names, sample count, nodes/origin/spacing (x first) declared by the XDMF."""
    root = ET.parse(path).getroot()  # raises on malformed XML
    grids = [g for g in root.iter("Grid") if g.get("GridType") == "Uniform"]
    if not grids:
        raise SystemExit(f"FAIL: {path} declares no uniform grid")
    first = grids[0]
    fields = [a.get("Name") for a in first.iter("Attribute") if a.get("Center") == "Node"]
    dims = [int(v) for v in first.find("Topology").get("Dimensions").split()][::-1]
    items = first.find("Geometry").findall("DataItem")
    origin = [float(v) for v in items[0].text.split()][::-1]
    spacing = [float(v) for v in items[1].text.split()][::-1]
    return fields, len(grids), dims, origin, spacing


def leaves(data):
    """The datasets inside a (possibly composite) data object."""
    if not data.IsA("vtkCompositeDataSet"):
        return [data]
    out = []
    it = data.NewIterator()
    it.InitTraversal()
    while not it.IsDoneWithTraversal():
        out.append(it.GetCurrentDataObject())
        it.GoToNextItem()
    return out


def open_reader(path, name):
    if not name:
        return simple.OpenDataFile(path)
    if name == "XDMFReader":
        return simple.XDMFReader(FileNames=[path])
    return getattr(simple, name)(FileName=path)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("xdmf")
    parser.add_argument("--check-coordinates", metavar="FIELD")
    parser.add_argument("--reader", help="open with this reader instead of ParaView's choice")
    args = parser.parse_args()

    fields, samples, nodes, origin, spacing = expected_from_xdmf(args.xdmf)
    reader = open_reader(args.xdmf, args.reader)
    if reader is None:
        print(f"FAIL: ParaView found no reader for {args.xdmf}")
        return 1
    print(f"reader: {reader.GetXMLName()} ('{reader.GetXMLLabel()}', VTK class "
          f"{reader.SMProxy.GetVTKClassName()}){' [chosen by --reader]' if args.reader else ''}")
    times = list(reader.TimestepValues) if reader.TimestepValues else [0.0]
    print(f"time steps: {len(times)} ({times[0]:g} .. {times[-1]:g})")

    failures = []
    if len(times) != samples:
        failures.append(f"{len(times)} time steps for {samples} samples")
    worst = 0.0
    for step, t in enumerate(times):
        # Without an explicit time the Xdmf3 readers may deliver an empty grid.
        reader.UpdatePipeline(t)
        blocks = [b for b in leaves(servermanager.Fetch(reader)) if b is not None and b.GetNumberOfPoints() > 0]
        if len(blocks) != 1:
            failures.append(f"time {t:g}: {len(blocks)} non-empty datasets, expected 1")
            continue
        data = blocks[0]
        pd = data.GetPointData()
        names = [pd.GetArrayName(i) for i in range(pd.GetNumberOfArrays())]
        if step == 0:
            dims = data.GetDimensions() if data.IsA("vtkImageData") else "n/a"
            print(f"dataset: {data.GetClassName()}, dimensions {dims}, points {data.GetNumberOfPoints()}")
            print(f"bounds: x [{data.GetBounds()[0]:g}, {data.GetBounds()[1]:g}], "
                  f"y [{data.GetBounds()[2]:g}, {data.GetBounds()[3]:g}], "
                  f"z [{data.GetBounds()[4]:g}, {data.GetBounds()[5]:g}]")
            print("point data arrays (time step 0):")
            for name in names:
                lo, hi = pd.GetArray(name).GetRange()
                print(f"  {name:14s} range [{lo:.6g}, {hi:.6g}]")
            fd = data.GetFieldData()
            for i in range(fd.GetNumberOfArrays()):
                print(f"  field data {fd.GetArrayName(i)} = {fd.GetArray(i).GetTuple1(0):.0f}")
            bounds = data.GetBounds()
            for axis in range(3):
                lo = origin[axis] if axis < len(origin) else 0.0
                hi = lo + (nodes[axis] - 1) * spacing[axis] if axis < len(nodes) else 0.0
                got = bounds[2 * axis], bounds[2 * axis + 1]
                if abs(got[0] - lo) > 1e-9 or abs(got[1] - hi) > 1e-9:
                    failures.append(f"axis {'xyz'[axis]} spans [{got[0]:g}, {got[1]:g}], expected [{lo:g}, {hi:g}]")
            if data.GetNumberOfPoints() != math.prod(nodes):
                failures.append(f"{data.GetNumberOfPoints()} points, expected {'x'.join(map(str, nodes))}")
        for name in fields:
            if name not in names:
                failures.append(f"time {t:g}: field '{name}' missing (ParaView shows {names})")
        if args.check_coordinates:
            array = pd.GetArray(args.check_coordinates)
            if array is None:
                continue
            for i in range(data.GetNumberOfPoints()):
                x, y, z = data.GetPoint(i)
                worst = max(worst, abs(array.GetTuple1(i) - (x + 10 * y + 100 * z + 1000 * t)))
    if args.check_coordinates:
        print(f"max |{args.check_coordinates} - (x + 10 y + 100 z + 1000 t)| = {worst:.3g}")
        if worst > 1e-3:
            failures.append(f"{args.check_coordinates} does not match its coordinates: wrong orientation, "
                            f"spacing or time step order")
    for f in failures[:20]:
        print(f"FAIL: {f}")
    if failures:
        return 1
    print(f"OK: {len(fields)} fields x {len(times)} time steps")
    return 0


if __name__ == "__main__":
    sys.exit(main())
