#!/usr/bin/env python3
"""Trains one poisson2d, poisson3d or burgers1d deck with `pdegen train` and with its PyTorch peer, and tabulates both.

The peer is tools/bench/torch_poisson.py (the deck's problem.pde picks 2D or 3D), or for burgers1d
tools/bench/torch_burgers.py (evaluated against pdegen's own references); both get the same
overrides and thread count, runs alternate (so machine noise hits both alike), and the markdown
table gives median step time, peak memory, rel_l2 mean/max after the same steps, final loss and wall
time, with the ratios.

    /usr/bin/python3 tools/bench/compare_train.py DECK [key.path=value ...] [--threads 2] [--steps N]
        [--repeats 1] [--eval-only-at-end] [--pdegen build/cpu/pdegen] [--workdir DIR] [--only pdegen|torch]
        [--device cpu|cuda] [--no-tf32] [--equal-wall] [--peer-best] [--peer-args="--bf16 --compile"]
        [--pdegen-override precision=bf16]

--equal-wall compares the error after equal training time instead of equal steps: pdegen runs the
deck's steps, then the peer trains until it has spent pdegen's summary.json train_seconds on its
steps (torch_poisson.py --max-train-seconds; evaluations excluded on both sides) or has done the
deck's steps, whichever comes first; the table then has each side's steps. Give training.steps
enough for the slower side to use the time, and a schedule that does not depend on the step count
(constant) for a like-for-like error. --peer-best gives the peer --best (channels_last(_3d), bf16
autocast where the CPU/GPU has it, torch.compile where torch has it); --peer-args passes any other
torch_poisson.py options (write it --peer-args="..." since the value starts with --).

pdegen's numbers come from <output.dir>/summary.json (status, steps, wall_seconds, final_loss,
eval.rel_l2_mean/max, memory.peak_rss_mb, else its peak RSS from /usr/bin/time -v) and
<output.dir>/history.csv (the median step time, steps 4.. as for the peer, from batch / samples_per_s:
both sides get training.log_every=1 unless an override sets it). The peer's from its final JSON line.
Medians over the repeats are reported.

--device cuda trains both on the GPU: pdegen (a CUDA build: --pdegen build/cuda/pdegen) with the
override device=cuda, the peer with --device cuda. pdegen's convolutions then use cuDNN's TF32 math
(cuda::conv_math's default; no deck key sets it yet), so the peer gets --tf32 too unless --no-tf32.
GPU memory is reported twice: each side's allocator peak (the peer's torch.cuda.max_memory_allocated;
pdegen's from summary.json memory.device_peak_mb when the trainer writes it, else n/a), and the
growth of the GPU's used memory (nvidia-smi, sampled every 100 ms, CUDA context and caches included,
the same measure for both). The peer runs under tools/bench/peer.py's choice: $PYTHON, else the --bench venv.
"""
import argparse
import csv
import json
import os
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peer import peer_python  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))


class GpuMemoryWatch:
    """Peak growth of the used memory of all GPUs (nvidia-smi) while a child runs, in bytes: one
    `nvidia-smi -lms 100` process, started before the child and stopped after it. None without
    nvidia-smi or when it fails."""

    QUERY = ["--query-gpu=memory.used", "--format=csv,noheader,nounits"]

    def __init__(self, enabled):
        self.tool = shutil.which("nvidia-smi") if enabled else None
        self.proc, self.reader, self.samples, self.baseline = None, None, [], None

    @staticmethod
    def _used_mib(lines):
        """MiB in use over all GPUs: one number per line, one line per GPU."""
        return sum(float(x) for x in lines if x.strip())

    def __enter__(self):
        if not self.tool:
            return self
        try:
            once = subprocess.run([self.tool, *self.QUERY], capture_output=True, text=True, timeout=30)
            self.baseline = self._used_mib(once.stdout.splitlines()) if once.returncode == 0 else None
        except (OSError, subprocess.TimeoutExpired, ValueError):
            self.baseline = None
        if self.baseline is None:
            return self
        gpus = len([x for x in once.stdout.splitlines() if x.strip()])
        self.proc = subprocess.Popen([self.tool, *self.QUERY, "-lms", "100"], stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True)

        def read():
            lines = []
            for line in self.proc.stdout:
                lines.append(line)
                if len(lines) == gpus:  # one line per GPU per sample
                    try:
                        self.samples.append(self._used_mib(lines))
                    except ValueError:
                        pass
                    lines = []

        self.reader = threading.Thread(target=read, daemon=True)
        self.reader.start()
        return self

    def __exit__(self, *exc):
        if self.proc:
            time.sleep(0.15)  # one more sample
            self.proc.terminate()
            self.proc.wait()
            self.reader.join(timeout=5)

    def peak_bytes(self):
        if self.baseline is None or not self.samples:
            return None
        return max(0.0, max(self.samples) - self.baseline) * 2 ** 20


def peak_rss_from_time(stderr):
    m = re.search(r"Maximum resident set size \(kbytes\):\s*(\d+)", stderr)
    return int(m.group(1)) * 1024 if m else None


def dig(obj, *paths):
    """The first of the dotted `paths` present in the nested dict `obj`, else None."""
    for path in paths:
        node = obj
        for key in path.split("."):
            if not isinstance(node, dict) or key not in node:
                node = None
                break
            node = node[key]
        if node is not None:
            return node
    return None


def step_seconds_from_history(path, batch):
    """Median per-step seconds from history.csv, skipping the first 3 steps: a per-step time column
    if there is one, else batch / samples_per_s (per row: per step with training.log_every=1).
    Returns (median, fastest, how) or (None, None, reason)."""
    if not os.path.exists(path):
        return None, None, "no history.csv"
    with open(path) as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return None, None, "empty history.csv"
    cols = rows[0].keys()

    def numbers(col):
        out = []
        for r in rows:
            try:
                out.append((float(r.get("step", "nan")), float(r[col])))
            except (TypeError, ValueError):
                pass
        return out

    later = lambda pairs: [v for s, v in pairs if not s == s or s > 3] or [v for _, v in pairs]
    for col in ("step_seconds", "step_s"):
        if col in cols and numbers(col):
            times = later(numbers(col))
            return statistics.median(times), min(times), f"history.csv {col}"
    # samples_per_s is over the steps since the previous row, evaluation excluded (wall_s is not).
    if "samples_per_s" in cols and numbers("samples_per_s"):
        times = [batch / v for v in later(numbers("samples_per_s"))]
        return statistics.median(times), min(times), "history.csv batch / samples_per_s"
    return None, None, f"history.csv has no step time column ({', '.join(cols)})"


def run_pdegen(a, overrides, outdir, env):
    # /usr/bin/time only for the peak RSS fallback; GPU machines may not have it.
    timer = ["/usr/bin/time", "-v"] if os.path.exists("/usr/bin/time") else []
    cmd = [*timer, a.pdegen, "train", a.deck, *overrides, *a.pdegen_override, f"output.dir={outdir}"]
    t = time.perf_counter()
    with GpuMemoryWatch(a.device == "cuda") as watch:
        p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if p.returncode != 0:
        sys.stderr.write(p.stdout[-4000:] + p.stderr[-4000:])
        raise RuntimeError(f"pdegen train failed with exit code {p.returncode}: {' '.join(cmd)}")
    with open(os.path.join(outdir, "summary.json")) as f:
        summary = json.load(f)
    if summary.get("status") != "completed":
        print(f"warning: pdegen summary status '{summary.get('status')}': {summary.get('message')}",
              file=sys.stderr)
    batch = a.batch
    # The median over steps 4.. from history.csv, else pdegen's mean step time.
    step, fastest, how = step_seconds_from_history(os.path.join(outdir, "history.csv"), batch)
    if step is None:
        step, how = dig(summary, "throughput.step_seconds"), "summary.json throughput.step_seconds (mean)"
    rss, rss_how = dig(summary, "memory.peak_rss_mb"), "summary.json memory.peak_rss_mb"
    if rss is not None:
        rss = rss * 2 ** 20
    else:
        rss, rss_how = peak_rss_from_time(p.stderr), "/usr/bin/time -v"
    result = {"step": step, "fastest": fastest, "step_how": how, "rss": rss, "rss_how": rss_how,
              "rel_mean": dig(summary, "eval.rel_l2_mean"), "rel_max": dig(summary, "eval.rel_l2_max"),
              "steps": dig(summary, "steps"), "final_loss": dig(summary, "final_loss"),
              "wall": dig(summary, "wall_seconds") or wall, "process_wall": wall,
              "train_seconds": dig(summary, "train_seconds")}
    if a.device == "cuda":
        device_mb = dig(summary, "memory.device_peak_mb", "memory.device_allocator_peak_mb", "memory.gpu_peak_mb")
        result["device_peak"] = None if device_mb is None else device_mb * 2 ** 20
        result["gpu_used"] = watch.peak_bytes()
    return result


def deck_pde(path):
    """problem.pde of a deck (a crude read: the peer script checks the deck properly)."""
    with open(path) as f:
        for line in f:
            words = line.split("#")[0].split()
            if len(words) == 2 and words[0] == "pde:":
                return words[1]
    return ""


def run_torch(a, overrides, json_path, env, max_train_seconds=None):
    if deck_pde(a.deck) == "burgers1d":  # its own peer, with pdegen's finite-volume references
        cmd = [a.python, os.path.join(HERE, "torch_burgers.py"), a.deck, *overrides,
               "--threads", str(a.threads), "--json", json_path, "--pdegen", a.pdegen]
    else:
        cmd = [a.python, os.path.join(HERE, "torch_poisson.py"), a.deck, *overrides,
               "--threads", str(a.threads), "--json", json_path, "--ref-cache", a.ref_cache]
    if a.device == "cuda":
        cmd += ["--device", "cuda"] + ([] if a.no_tf32 else ["--tf32"])
    cmd += (["--best"] if a.peer_best else []) + shlex.split(a.peer_args or "")
    if max_train_seconds is not None:
        cmd += ["--max-train-seconds", f"{max_train_seconds:.6f}"]
    t = time.perf_counter()
    with GpuMemoryWatch(a.device == "cuda") as watch:
        p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if p.returncode != 0:
        sys.stderr.write(p.stdout[-4000:] + p.stderr[-4000:])
        raise RuntimeError(f"torch_poisson failed with exit code {p.returncode}: {' '.join(cmd)}")
    with open(json_path) as f:
        r = json.load(f)
    result = {"step": r["median_step_seconds"], "fastest": r.get("min_step_seconds"),
              "step_how": "its steps 4..",
              "rss": r["peak_rss_bytes"], "rss_how": "ru_maxrss", "rel_mean": r["rel_l2_mean"],
              "rel_max": r["rel_l2_max"], "steps": r["steps"], "final_loss": r["final_loss"],
              "wall": r["wall_seconds"], "process_wall": wall, "train_seconds": r.get("train_seconds"),
              "flags": " ".join(f for f in ("channels_last", "bf16", "compile") if r.get(f))}
    if a.device == "cuda":
        result.update(device_peak=r.get("peak_device_bytes"), gpu_used=watch.peak_bytes(),
                      device_name=r.get("device_name"), torch=r.get("torch"), cudnn=r.get("cudnn"),
                      tf32=r.get("tf32"))
    return result


def pdegen_version(a, env):
    """`pdegen --version`'s first line and its cuda backend line (CUDA/cuDNN versions, GPU), or ''."""
    try:
        p = subprocess.run([a.pdegen, "--version"], env=env, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    lines = [line.strip() for line in p.stdout.splitlines() if line.strip()]
    cuda = [line for line in lines[1:] if line.startswith("cuda")]
    return "; ".join(lines[:1] + cuda[:1])


def med(runs, key):
    vals = [r[key] for r in runs if isinstance(r.get(key), (int, float)) and r[key] == r[key]]
    return statistics.median(vals) if vals else None


def fmt(v, spec, unit=""):
    return "n/a" if v is None else f"{v:{spec}}{unit}"


def ratio(p, t):
    return "n/a" if p is None or t is None or t == 0 else f"{p / t:.2f}x"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("deck")
    ap.add_argument("overrides", nargs="*", help="key.path=value, given to both")
    ap.add_argument("--pdegen", default=os.path.join(ROOT, "build", "cpu", "pdegen"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, help="training.steps=N for both")
    ap.add_argument("--repeats", type=int, default=1, help="runs of each, alternating (medians reported)")
    ap.add_argument("--eval-only-at-end", action="store_true", help="evaluation.every=0 for both")
    ap.add_argument("--workdir", help="where runs go (default: a temporary directory, removed)")
    ap.add_argument("--ref-cache", help="the peer's reference-solution cache (default: WORKDIR/ref_cache)")
    ap.add_argument("--only", choices=("pdegen", "torch"), help="run one side only")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                    help="train both on this device (cuda: pdegen gets device=cuda)")
    ap.add_argument("--no-tf32", action="store_true",
                    help="cuda: the peer's convolutions without TF32 (pdegen train's still use it)")
    ap.add_argument("--equal-wall", action="store_true",
                    help="the peer trains for pdegen's train_seconds instead of the same steps")
    ap.add_argument("--peer-best", action="store_true", help="the peer's fastest configuration (torch_poisson.py --best)")
    ap.add_argument("--peer-args", help="more torch_poisson.py options, one string (e.g. \"--bf16 --channels-last\")")
    ap.add_argument("--pdegen-override", action="append", default=[], metavar="KEY=VALUE",
                    help="an override for pdegen only (e.g. precision=bf16; the peer takes --bf16 instead)")
    a = ap.parse_intermixed_args()
    if a.equal_wall and a.only:
        ap.error("--equal-wall needs both sides")
    a.python = peer_python()

    # One history row per step, so pdegen's median step time can be taken like the peer's.
    overrides = (["training.log_every=1"] if not any(o.startswith("training.log_every=") for o in a.overrides)
                 else []) + list(a.overrides)
    if a.steps is not None:
        overrides.append(f"training.steps={a.steps}")
    if a.eval_only_at_end:
        overrides.append("evaluation.every=0")
    if a.device == "cuda":
        overrides.append("device=cuda")
    # Batch size and grid as the deck resolves them, for the table's title and step-time fallbacks.
    sys.path.insert(0, HERE)
    import torch_poisson as peer  # noqa: E402  (needs only yaml at import; torch comes with it)
    if deck_pde(a.deck) == "burgers1d":
        import torch_burgers  # noqa: E402

        deck = torch_burgers.load_deck(a.deck, overrides)
    else:
        deck = peer.load_deck(a.deck, overrides)
    pde = deck["problem"]["pde"]
    a.batch = deck["training"]["batch_size"]
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads))

    tmp = None if a.workdir else tempfile.TemporaryDirectory(prefix="compare_train_")
    work = a.workdir or tmp.name
    os.makedirs(work, exist_ok=True)
    a.ref_cache = a.ref_cache or os.path.join(work, "ref_cache")  # solved once, reused by the repeats
    ours, theirs = [], []
    for rep in range(a.repeats):
        if a.only != "torch":
            ours.append(run_pdegen(a, overrides, os.path.join(work, f"pdegen_{rep}"), env))
            print(f"# pdegen run {rep + 1}: {ours[-1]}", file=sys.stderr, flush=True)
        if a.only != "pdegen":
            budget = ours[-1].get("train_seconds") if a.equal_wall else None
            if a.equal_wall and not budget:
                raise RuntimeError("--equal-wall: pdegen's summary.json has no train_seconds")
            theirs.append(run_torch(a, overrides, os.path.join(work, f"torch_{rep}.json"), env, budget))
            print(f"# torch run {rep + 1}: {theirs[-1]}", file=sys.stderr, flush=True)

    n, steps = deck["problem"]["resolution"], deck["training"]["steps"]
    grid = "x".join([str(n)] * peer.spatial_dims(deck))
    flags = theirs[0].get("flags") if theirs else ""
    what = (f"equal training time (the peer stops at pdegen's train_seconds)" if a.equal_wall
            else f"{steps} steps")
    mb = lambda v: None if v is None else v / 2 ** 20
    if a.device == "cuda":
        peer = theirs[0] if theirs else {}
        tf32 = "not TF32" if a.no_tf32 else "TF32"
        print(f"{pde} training on the GPU, {grid}, batch {a.batch}, {what}, {a.threads} host threads, "
              f"{a.repeats} run(s) each, {platform.node()} ({peer.get('device_name') or 'GPU'}), "
              f"{time.strftime('%Y-%m-%d %H:%M')}")
        print(f"pdegen: {pdegen_version(a, env) or a.pdegen}, cuDNN convolutions in TF32 "
              f"(cuda::conv_math default); PyTorch {peer.get('torch', '?')} (cuDNN {peer.get('cudnn', '?')}), "
              f"convolutions in {tf32}{', ' + flags if flags else ''}")
        print(f"deck {a.deck} {' '.join(overrides)}")
        print()
        print("| metric | pdegen | PyTorch | pdegen / PyTorch |")
        print("|---|---:|---:|---:|")
        memory_rows = [
            ("peak GPU memory, allocator (MiB)", mb(med(ours, "device_peak")), mb(med(theirs, "device_peak")), ".0f"),
            ("peak GPU memory, nvidia-smi (MiB)", mb(med(ours, "gpu_used")), mb(med(theirs, "gpu_used")), ".0f"),
            ("peak host memory (MiB)", mb(med(ours, "rss")), mb(med(theirs, "rss")), ".0f")]
    else:
        print(f"{pde} training, {grid}, batch {a.batch}, {what}, {a.threads} threads, "
              f"{a.repeats} run(s) each, {platform.node()} ({platform.processor() or platform.machine()}), "
              f"{time.strftime('%Y-%m-%d %H:%M')}")
        print(f"deck {a.deck} {' '.join(overrides)}" + (f"; pdegen with {' '.join(a.pdegen_override)}"
                                                           if a.pdegen_override else "")
              + (f"; PyTorch with {flags}" if flags else ""))
        print()
        print("| metric | pdegen | PyTorch | pdegen / PyTorch |")
        print("|---|---:|---:|---:|")
        memory_rows = [("peak memory (MiB)", mb(med(ours, "rss")), mb(med(theirs, "rss")), ".0f")]
    rows = [("median step time (s)", med(ours, "step"), med(theirs, "step"), ".4f"),
            ("fastest step (s)", med(ours, "fastest"), med(theirs, "fastest"), ".4f"),
            *memory_rows,
            ("rel_l2 mean", med(ours, "rel_mean"), med(theirs, "rel_mean"), ".4%"),
            ("rel_l2 max", med(ours, "rel_max"), med(theirs, "rel_max"), ".4%"),
            ("final loss", med(ours, "final_loss"), med(theirs, "final_loss"), ".6g"),
            ("wall time (s)", med(ours, "wall"), med(theirs, "wall"), ".1f")]
    if a.equal_wall:
        rows[-1:-1] = [("steps done", med(ours, "steps"), med(theirs, "steps"), ".0f"),
                       ("training time (s)", med(ours, "train_seconds"), med(theirs, "train_seconds"), ".1f")]
    for name, p, t, spec in rows:
        print(f"| {name} | {fmt(p, spec)} | {fmt(t, spec)} | {ratio(p, t)} |")
    if ours and a.device == "cuda":
        print()
        print(f"pdegen step time from {ours[0]['step_how']}; allocator peaks: pdegen's device allocator "
              f"(summary.json), PyTorch's torch.cuda.max_memory_allocated; nvidia-smi: growth of the GPU's "
              f"used memory during the run (CUDA context, cuDNN/cuBLAS handles and cached blocks included); "
              f"host memory: pdegen {ours[0]['rss_how']}, PyTorch ru_maxrss.")
    elif ours:
        print()
        print(f"pdegen step time from {ours[0]['step_how']}, memory from {ours[0]['rss_how']}; "
              f"PyTorch memory is ru_maxrss (interpreter and libraries included).")
    if tmp:
        tmp.cleanup()


if __name__ == "__main__":
    main()
