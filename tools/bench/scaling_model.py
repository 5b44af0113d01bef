#!/usr/bin/env python3
"""Weak scaling on paper: measured compute times from a pdegen timeline.json + an alpha-beta network model.

Why: the target is >= 0.93 weak-scaling efficiency of the 1024^2 U-Net at 27,600 GPUs (Summit:
4600 nodes of 6 GPUs). No such machine is at hand, so the step is modelled: the compute timeline (forward,
the backward's per-layer events, the moments at which each gradient is complete) is MEASURED, the
gradient reduction is MODELLED, and efficiency(P) = t_step(1) / t_step(P) at the same per-GPU batch.

    /usr/bin/python3 tools/bench/scaling_model.py RUN_DIR/timeline.json [--compute-scale S | --step-seconds T]
        [--other-seconds O] [--bucket-mb 4 --first-bucket-mb 1] [network constants ...]

Input trace. `pdegen train DECK timeline.enabled=true timeline.first_step=K timeline.steps=2` on >= 2
ranks (the reducer records only when it communicates). Per rank, the compute track (tid 0) holds one
"sample + forward + loss" event, one event per layer backward (from net->backward) and "wait for gradient
reduction"; the reduction track (tid 1) holds "bucket b" events, launch to completion, args
{"parameters", "bytes"}. With the flat form and overlap on (one node: the default), a bucket is launched
the moment its last gradient is marked ready, so a bucket's launch time IS its ready time. Record with
parallel.bucket_mb=0.000001 parallel.first_bucket_mb=0.000001: every parameter is then its own bucket,
which gives every parameter's size and ready time, and this script can rebuild the schedule for any
bucket_mb exactly as src/parallel/bucket_schedule.cpp does (a bucket closes once it holds >= the limit,
the first bucket's limit is first_bucket_mb, a parameter is never split). A trace with real buckets is
used as recorded (its bucket sizes; no rebucketing).

Timing of one step (rank --rank, step --step of the recorded ones):
  forward = the forward event; backward = first layer event start .. last layer event end; ready_b =
  launch of bucket b, clipped into the backward, as an offset from its start; other = from the end of the
  wait event to the next step's forward (optimizer, clipping, logging; from the previous step's gap when
  the chosen step is the last recorded). --compute-scale S multiplies all of them (CPU trace -> a faster
  device); --step-seconds T picks S so that forward + backward + other = T (with --other-seconds O given:
  forward + backward = T - O, and other = O).

Network model, per bucket of n bytes, g GPUs a node, N nodes (hierarchical form of docs/parallel.md):
  reduce-scatter in node (ring): (g-1) a_nv + (g-1)/g n / B_nv
  allreduce of the n/g shard across nodes; the g shards of a node cross the node's NICs at the same time,
  so each gets B_ib_node / g:
     ring: 2 (N-1) a_ib + 2 (N-1)/N (n/g) / (B_ib_node/g)
     tree (NCCL double binary tree, pipelined in chunks c): 2 ceil(log2 N) (a_ib + c'/B) + 2 (n/g) / B,
           B = B_ib_node / g, c' = min(c, n/g)
     best = min(ring, tree) per bucket (NCCL's tuner picks per size)
  allgather in node (ring): (g-1) a_nv + (g-1)/g n / B_nv
  N = 1: the in-node steps only (no cross-node phase).
Buckets are serialised on one stream: bucket b starts at max(ready_b, end_{b-1}). Exposed communication
= max(0, end_last - backward_end). The loss sum (one double, after the reduction) costs one more small
allreduce. t_step(P) = forward + backward + exposed + loss allreduce + other; t_step(1) has no
communication (a single GPU reduces nothing).
Not modelled unless asked: compute slowed by the concurrent reduction (--overlap-slowdown), stragglers
(--jitter: per-rank compute time spread; the step waits for the slowest of P, expected maximum of P
normals ~ sigma sqrt(2 ln P)), network contention from other jobs, the consistency checksum every 100 steps.
"""
import argparse
import json
import math
import sys

import numpy as np

FORWARD_EVENT = "sample + forward + loss"
WAIT_EVENT = "wait for gradient reduction"
P_TABLE = [6, 96, 1536, 6912, 27600]
MIB = 1024.0 * 1024.0


def parse_args(argv):
    p = argparse.ArgumentParser(
        description="Weak-scaling model of a pdegen training step: measured compute (timeline.json) + "
        "alpha-beta model of the gradient allreduce (hierarchical, serialised buckets). Defaults describe "
        "Summit (ORNL): 4600 nodes x 6 V100, NVLink 2 inside a node, 2 x EDR InfiniBand per node.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("timeline", help="timeline.json written by `pdegen train ... timeline.enabled=true`")
    p.add_argument("--rank", type=int, default=0, help="whose events to use (pid in the trace)")
    p.add_argument("--step", type=int, default=0,
                   help="which recorded step (0 = the first in the trace, -1 = the last)")
    scale = p.add_mutually_exclusive_group()
    scale.add_argument("--compute-scale", type=float, default=1.0,
                       help="multiply every measured compute time (forward, backward, ready offsets, other) "
                       "by this: maps the CPU-measured step onto a faster device (derivation: "
                       "docs/performance.md)")
    scale.add_argument("--step-seconds", type=float, default=None,
                       help="rescale the trace so that forward + backward + other = this many seconds "
                       "(with --other-seconds: forward + backward = this minus other)")
    p.add_argument("--other-seconds", type=float, default=None,
                   help="time per step outside forward/backward/reduction (optimizer etc.) instead of the "
                   "measured (scaled) gap; 0 models a device-resident optimizer")
    p.add_argument("--bucket-mb", type=float, default=None,
                   help="rebuild the bucket schedule with this bucket size in MiB (needs a per-parameter "
                   "trace); default: the trace's buckets")
    p.add_argument("--first-bucket-mb", type=float, default=1.0,
                   help="first bucket's size in MiB when rebuilding (pdegen's default, docs/parallel.md)")
    # Machine. Sources: OLCF Summit user guide (node: 2 POWER9 + 6 V100 in two groups of three, NVLink 2
    # bricks of 25 GB/s per direction, two bricks between GPUs of a group = 50 GB/s per direction;
    # dual-rail EDR InfiniBand, 2 x 12.5 GB/s per node; 4608 nodes, 4600 usable for jobs of record).
    p.add_argument("--gpus-per-node", type=int, default=6, help="Summit: 6 V100 per node")
    p.add_argument("--nvlink-gbs", type=float, default=50.0,
                   help="in-node ring bandwidth per GPU and direction, GB/s (Summit NVLink 2: 2 bricks x "
                   "25 GB/s per direction between the GPUs of a socket group)")
    p.add_argument("--nvlink-alpha-us", type=float, default=10.0,
                   help="in-node per-message latency, µs (NCCL over NVLink: 5-10 µs per ring step; upper "
                   "end taken)")
    p.add_argument("--ib-node-gbs", type=float, default=25.0,
                   help="injection bandwidth of one node, GB/s per direction (Summit: 2 x EDR 100 Gb/s "
                   "= 2 x 12.5 GB/s), shared by the node's GPUs")
    p.add_argument("--ib-alpha-us", type=float, default=5.0,
                   help="cross-node per-message latency, µs (EDR MPI/NCCL point-to-point: 1.5-5 µs; upper "
                   "end taken, it covers switch hops of the fat tree)")
    p.add_argument("--tree-chunk-kib", type=float, default=128.0,
                   help="pipeline chunk of the tree allreduce, KiB (NCCL's tree chunk order of magnitude)")
    p.add_argument("--compression", choices=["none", "bf16", "fp16"], default="none",
                   help="parallel.compression: 16-bit values on the wire of the cross-node step (pdegen's "
                   "hierarchical form compresses that step only), halving its bytes")
    p.add_argument("--algo", choices=["best", "ring", "tree"], default="best",
                   help="cross-node allreduce algorithm: per bucket the faster of ring and tree, or one")
    p.add_argument("--overlap-slowdown", type=float, default=0.0,
                   help="fraction by which compute slows while a reduction runs beside it (NCCL kernels "
                   "take SMs and memory bandwidth); 0 = not modelled")
    p.add_argument("--jitter", type=float, default=0.0,
                   help="relative standard deviation of per-rank compute time per step (stragglers); the "
                   "step waits for the slowest of P ranks")
    p.add_argument("--ranks", type=int, nargs="*", default=P_TABLE, help="GPU counts to tabulate")
    p.add_argument("--no-sensitivity", action="store_true", help="print only the main table")
    return p.parse_args(argv)


# ----------------------------------------------------------------------------------------------------------
# The trace
# ----------------------------------------------------------------------------------------------------------
def load_step(path, rank, step_index):
    """Returns dict(forward, backward, other, layers[(name, dur)], buckets[(bytes, ready_offset, params)])
    in seconds, from one rank's events of one recorded step."""
    with open(path) as f:
        trace = json.load(f)
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    mine = [e for e in events if e.get("ph") == "X" and e.get("pid") == rank]
    if not mine:
        sys.exit(f"no events of rank {rank} in {path}")
    compute = sorted((e for e in mine if e.get("tid") == 0), key=lambda e: e["ts"])
    comm = sorted((e for e in mine if e.get("tid") == 1), key=lambda e: e["ts"])
    forwards = [k for k, e in enumerate(compute) if e["name"] == FORWARD_EVENT]
    if not forwards:
        sys.exit(f"no '{FORWARD_EVENT}' event in {path}: not a pdegen training timeline")
    steps = []
    for i, k in enumerate(forwards):
        end = forwards[i + 1] if i + 1 < len(forwards) else len(compute)
        body = compute[k:end]
        waits = [e for e in body if e["name"] == WAIT_EVENT]
        layers = [e for e in body[1:] if e["name"] != WAIT_EVENT]
        if not waits or not layers:
            continue  # a step cut off by the end of the window
        next_forward = compute[end]["ts"] if end < len(compute) else None
        steps.append((body[0], layers, waits[0], next_forward))
    if not steps:
        sys.exit(f"no complete step (forward, layer backward events, wait) for rank {rank} in {path}")
    fwd, layers, wait, next_forward = steps[step_index]
    gaps = [(nf - w["ts"] - w["dur"]) for _, _, w, nf in steps if nf is not None]
    bwd_start = layers[0]["ts"]
    bwd_end = max(e["ts"] + e["dur"] for e in layers)
    t_lo, t_hi = fwd["ts"], wait["ts"] + wait["dur"] + 1.0  # launches inside this step
    buckets = []
    for e in comm:
        if not (t_lo <= e["ts"] <= t_hi) or not e["name"].startswith("bucket "):
            continue
        args = e.get("args", {})
        ready = min(max(e["ts"] - bwd_start, 0.0), bwd_end - bwd_start)
        buckets.append((int(e["name"].split()[1]), float(args["bytes"]), ready * 1e-6, int(args["parameters"])))
    buckets.sort()
    if not buckets:
        sys.exit(f"no bucket events in step {step_index} of rank {rank}: record with >= 2 ranks")
    gap = None
    if next_forward is not None:
        gap = next_forward - wait["ts"] - wait["dur"]
    elif gaps:
        gap = float(np.median(gaps))
    return {
        "forward": fwd["dur"] * 1e-6,
        "backward": (bwd_end - bwd_start) * 1e-6,
        "other": (gap or 0.0) * 1e-6,
        "other_measured": gap is not None,
        "wait": wait["dur"] * 1e-6,
        "layers": [(e["name"], e["dur"] * 1e-6) for e in layers],
        "bucket_bytes": np.array([b[1] for b in buckets]),
        "bucket_ready": np.array([b[2] for b in buckets]),
        "bucket_params": np.array([b[3] for b in buckets]),
        "n_steps": len(steps),
    }


def rebucket(param_bytes, param_ready, bucket_mb, first_bucket_mb):
    """bucket_schedule.cpp's rule on per-parameter (bytes, ready) in backward order."""
    sizes, ready = [], []
    for nbytes, t in zip(param_bytes, param_ready):
        # A bucket closes once it holds at least its limit (bucket 0: first_bucket_mb; >= one fp32 value).
        limit = max(4.0, (first_bucket_mb if len(sizes) == 1 else bucket_mb) * MIB)
        if not sizes or sizes[-1] >= limit:
            sizes.append(0.0)
            ready.append(0.0)
        sizes[-1] += nbytes
        ready[-1] = max(ready[-1], t)
    return np.array(sizes), np.array(ready)


# ----------------------------------------------------------------------------------------------------------
# The network
# ----------------------------------------------------------------------------------------------------------
class Machine:
    def __init__(self, a):
        self.g = a.gpus_per_node
        self.b_nv = a.nvlink_gbs * 1e9
        self.a_nv = a.nvlink_alpha_us * 1e-6
        self.b_ib = a.ib_node_gbs * 1e9
        self.a_ib = a.ib_alpha_us * 1e-6
        self.chunk = a.tree_chunk_kib * 1024.0
        self.algo = a.algo
        self.wire = 0.5 if a.compression != "none" else 1.0

    def scaled(self, alpha=1.0, beta=1.0):
        m = Machine.__new__(Machine)
        m.__dict__.update(self.__dict__)
        m.a_nv, m.a_ib = self.a_nv * alpha, self.a_ib * alpha
        m.b_nv, m.b_ib = self.b_nv / beta, self.b_ib / beta  # beta = seconds per byte: x2 halves bandwidth
        return m

    def in_node(self, n, g):
        """One ring phase (reduce-scatter or allgather) over g GPUs of a node."""
        if g <= 1:
            return 0.0
        return (g - 1) * self.a_nv + (g - 1) / g * n / self.b_nv

    def cross_node(self, shard, nodes, streams):
        """Allreduce of `shard` bytes over `nodes` nodes; `streams` shards share the node's NICs."""
        if nodes <= 1:
            return 0.0, 0.0
        bw = self.b_ib / streams
        ring = 2 * (nodes - 1) * self.a_ib + 2 * (nodes - 1) / nodes * shard / bw
        depth = math.ceil(math.log2(nodes))
        tree = 2 * depth * (self.a_ib + min(self.chunk, shard) / bw) + 2 * shard / bw
        return ring, tree

    def allreduce(self, n, p):
        """Hierarchical allreduce of n bytes over p GPUs; returns seconds."""
        g = min(self.g, p)
        nodes = math.ceil(p / g)
        ring, tree = self.cross_node(n / g * self.wire, nodes, g)
        cross = {"ring": ring, "tree": tree, "best": min(ring, tree)}[self.algo]
        return 2 * self.in_node(n, g) + cross


# ----------------------------------------------------------------------------------------------------------
# The step
# ----------------------------------------------------------------------------------------------------------
def model_step(step, sizes, ready, machine, p, overlap_slowdown=0.0, jitter=0.0):
    """Returns dict(t, exposed, comm, per-bucket) for p GPUs (p = 1: no communication)."""
    fwd, bwd, other = step["forward"], step["backward"], step["other"]
    straggle = jitter * math.sqrt(2.0 * math.log(p)) if p > 1 else 0.0
    if p == 1:
        return {"t": fwd + bwd + other, "exposed": 0.0, "comm": 0.0, "loss_sum": 0.0}
    end, comm, overlapped = 0.0, 0.0, 0.0
    for n, r in zip(sizes, ready):
        d = machine.allreduce(n, p)
        start = max(r, end)
        end = start + d
        comm += d
        overlapped += max(0.0, min(end, bwd) - start)
    bwd_eff = bwd + overlap_slowdown * overlapped
    exposed = max(0.0, end - bwd_eff)
    loss_sum = machine.allreduce(8.0, p)  # one double: latency only
    t = (fwd + bwd_eff) * (1.0 + straggle) + exposed + loss_sum + other
    return {"t": t, "exposed": exposed, "comm": comm, "loss_sum": loss_sum}


def efficiency_row(step, sizes, ready, machine, ranks, a):
    t1 = model_step(step, sizes, ready, machine, 1)["t"]
    return [(p, t1 / model_step(step, sizes, ready, machine, p, a.overlap_slowdown, a.jitter)["t"]) for p in ranks]


def main(argv):
    a = parse_args(argv)
    step = load_step(a.timeline, a.rank, a.step)
    measured_total = step["forward"] + step["backward"] + step["other"]
    scale = a.compute_scale
    if a.step_seconds is not None:
        target = a.step_seconds - (a.other_seconds or 0.0)
        base = step["forward"] + step["backward"] + (0.0 if a.other_seconds is not None else step["other"])
        if target <= 0:
            sys.exit("--step-seconds must exceed --other-seconds")
        scale = target / base
    for key in ("forward", "backward", "other"):
        step[key] *= scale
    step["bucket_ready"] = step["bucket_ready"] * scale
    if a.other_seconds is not None:
        step["other"] = a.other_seconds

    per_param = bool(np.all(step["bucket_params"] == 1))
    if a.bucket_mb is not None and not per_param:
        sys.exit("--bucket-mb needs a per-parameter trace (record with parallel.bucket_mb=0.000001 "
                 "parallel.first_bucket_mb=0.000001)")
    if a.bucket_mb is not None:
        sizes, ready = rebucket(step["bucket_bytes"], step["bucket_ready"], a.bucket_mb, a.first_bucket_mb)
        schedule = f"rebuilt: bucket_mb {a.bucket_mb:g}, first_bucket_mb {a.first_bucket_mb:g}"
    else:
        sizes, ready = step["bucket_bytes"], step["bucket_ready"]
        schedule = "as recorded" + (" (one parameter per bucket)" if per_param else "")
    machine = Machine(a)

    total = step["bucket_bytes"].sum()
    print(f"trace: {a.timeline}, rank {a.rank}, recorded step {a.step} of {step['n_steps']}")
    print(f"measured step (unscaled): {measured_total:.4f} s; compute scale {scale:.6g}")
    print(f"modelled single-GPU step: forward {step['forward'] * 1e3:.3f} ms, backward "
          f"{step['backward'] * 1e3:.3f} ms, other {step['other'] * 1e3:.3f} ms"
          f"{'' if step['other_measured'] or a.other_seconds is not None else ' (no gap measured)'}")
    print(f"gradient: {total / MIB:.2f} MiB in {len(sizes)} buckets ({schedule}); sizes MiB: "
          + " ".join(f"{s / MIB:.2f}" for s in sizes[:40]) + (" ..." if len(sizes) > 40 else ""))
    print(f"machine: {machine.g} GPUs/node, NVLink {machine.b_nv / 1e9:g} GB/s alpha {machine.a_nv * 1e6:g} us, "
          f"IB {machine.b_ib / 1e9:g} GB/s/node alpha {machine.a_ib * 1e6:g} us, tree chunk "
          f"{machine.chunk / 1024:g} KiB, algo {machine.algo}, overlap slowdown {a.overlap_slowdown:g}, "
          f"jitter {a.jitter:g}, cross-node wire {a.compression}")
    print()
    t1 = model_step(step, sizes, ready, machine, 1)["t"]
    print("| GPUs | nodes | reduction (sum over buckets) ms | ring / tree for the largest bucket ms | "
          "exposed ms | t_step ms | efficiency |")
    print("|---|---|---|---|---|---|---|")
    big = float(sizes.max())
    for p in a.ranks:
        r = model_step(step, sizes, ready, machine, p, a.overlap_slowdown, a.jitter)
        g = min(machine.g, p)
        ring, tree = machine.cross_node(big / g * machine.wire, math.ceil(p / g), g)
        rt = f"{(ring + 2 * machine.in_node(big, g)) * 1e3:.2f} / {(tree + 2 * machine.in_node(big, g)) * 1e3:.2f}"
        print(f"| {p} | {math.ceil(p / g)} | {r['comm'] * 1e3:.2f} | {rt} | {r['exposed'] * 1e3:.3f} | "
              f"{r['t'] * 1e3:.2f} | {t1 / r['t']:.4f} |")
    print(f"(t_step(1) = {t1 * 1e3:.2f} ms)")
    if a.no_sensitivity:
        return 0

    print()
    print("Sensitivity: efficiency at each GPU count")
    head = "| variant | " + " | ".join(str(p) for p in a.ranks) + " |"
    print(head)
    print("|---|" + "---|" * len(a.ranks))

    def row(label, sz, rd, m, st=step):
        effs = efficiency_row(st, sz, rd, m, a.ranks, a)
        print(f"| {label} | " + " | ".join(f"{e:.4f}" for _, e in effs) + " |")

    row("as above", sizes, ready, machine)
    if per_param:
        for mb in (1.0, 4.0, 25.0):
            sz, rd = rebucket(step["bucket_bytes"], step["bucket_ready"], mb, a.first_bucket_mb)
            row(f"bucket_mb {mb:g} ({len(sz)} buckets)", sz, rd, machine)
    for label, m in (("alpha x2", machine.scaled(alpha=2.0)), ("beta x2 (bandwidths / 2)", machine.scaled(beta=2.0)),
                     ("alpha x2 and beta x2", machine.scaled(alpha=2.0, beta=2.0))):
        row(label, sizes, ready, m)
    for algo in ("ring", "tree"):
        m = machine.scaled()
        m.algo = algo
        row(f"cross-node {algo} only", sizes, ready, m)
    def scaled_step(factor):
        st = dict(step)
        for key in ("forward", "backward", "other"):
            st[key] = step[key] * factor
        return st

    row("compute x0.5 (a 2x faster device)", sizes, ready * 0.5, machine, scaled_step(0.5))
    row("compute x2 (2 samples per GPU)", sizes, ready * 2, machine, scaled_step(2.0))
    row("compute x4 (4 samples per GPU)", sizes, ready * 4, machine, scaled_step(4.0))
    if machine.wire == 1.0:
        m = machine.scaled()
        m.wire = 0.5
        row("bf16 wire across nodes", sizes, ready, m)
        row("bf16 wire + 2 samples per GPU", sizes, ready * 2, m, scaled_step(2.0))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
