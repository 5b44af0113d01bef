#!/usr/bin/env python3
"""The PyTorch peer under its first name: the same program as tools/bench/torch_poisson.py (which
trains poisson2d and, since, poisson3d decks; see its docstring for the options), kept so that the
commands and imports written for torch_poisson2d.py go on working unchanged.
    /usr/bin/python3 tools/bench/torch_poisson2d.py DECK [key.path=value ...] [--threads 2] ...
    /usr/bin/python3 tools/bench/torch_poisson2d.py --self-test [--device cuda]
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_poisson import *  # noqa: E402,F401,F403  (import torch_poisson2d as peer keeps working)
from torch_poisson import main  # noqa: E402

if __name__ == "__main__":
    main()
