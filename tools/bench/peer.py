"""The interpreter the PyTorch peer runs under, chosen in one place for every comparison script.

$PYTHON if set; else the virtual environment that `tools/install_deps.sh --bench` creates
(build/bench-venv, or $PDEGEN_BENCH_VENV) with the newest PyTorch from PyPI; else this script's
interpreter (Debian's PyTorch 1.13, which no user would pick today: a warning says so).
"""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def peer_python():
    if os.environ.get("PYTHON"):
        return os.environ["PYTHON"]
    venv = os.environ.get("PDEGEN_BENCH_VENV") or os.path.join(ROOT, "build", "bench-venv")
    python = os.path.join(venv, "bin", "python")
    if os.access(python, os.X_OK):
        return python
    print(f"peer.py: no {python} (run tools/install_deps.sh --bench): the peer runs under {sys.executable}, "
          "whose PyTorch may be far from the newest", file=sys.stderr)
    return sys.executable


def torch_version(python):
    """The peer's torch version, or the reason it has none."""
    r = subprocess.run([python, "-c", "import torch; print(torch.__version__)"], capture_output=True, text=True)
    return r.stdout.strip() if r.returncode == 0 else f"none ({r.stderr.strip().splitlines()[-1:]})"
