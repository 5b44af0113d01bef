#!/usr/bin/env python3
"""PyTorch peer of `pdegen train` for burgers1d: the same deck, samples, network, loss and optimizer.

What is shared with pdegen, and must stay so:
  - samples: the initial condition b(x) = (1/K) sum_k (1 - cos(2 pi c_k x)) / 2 with frequencies
    drawn by Philox4x32-10 from stream (5 << 32) | k at the sample's global index (training sample p
    of step s: s*B + p), as src/physics/burgers_sampler.*; the input channels b, x and t / T;
  - network: the U-Net of src/nn/unet_plan.hpp with 3 input channels (tools/bench/torch_poisson.py's);
  - lift: u = v with u(x, 0) = b(x) and u(0, t) = 0 imposed exactly (problem.boundary exact);
  - loss: the space-time Galerkin residual J = (1/(hx ht)) sum over the nodes with t > 0, x > 0 of
    R_i^2, or the strong-form least squares (problem.loss least_squares), Q1 in (x, t) with 2 x 2
    Gauss points as src/physics/burgers_kernels.hpp, its gradient by autograd;
  - optimizer and learning-rate schedule of the deck;
  - evaluation: rel_l2 against pdegen's own finite-volume reference for the same evaluation samples,
    written by `pdegen solve` (--pdegen) and read with h5dump.
Prints a progress line per logged step and one JSON line at the end (as torch_poisson.py does, so
tools/bench/compare_train.py reads both).
    build/bench-venv/bin/python tools/bench/torch_burgers.py DECK [key.path=value ...] [--threads 2]
        [--steps N] [--max-train-seconds S] [--eval-only-at-end] [--json FILE] [--pdegen build/cpu/pdegen]
        [--channels-last] [--bf16] [--compile] [--best]
    /usr/bin/python3 tools/bench/torch_burgers.py --self-test
"""
import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import torch_poisson as tp  # noqa: E402
from surrogate_vs_solver import read_field  # noqa: E402

ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
BURGERS_STREAM = 5 << 32  # frequency k of a sample: stream (5 << 32) | k (burgers_sampler.hpp)
DEFAULTS = dict(tp.DEFAULTS)
DEFAULTS["problem"] = {"pde": None, "resolution": None, "loss": "residual", "time_resolution": 0,
                       "t_final": 0.5, "viscosity": 0.0, "ic_terms": 1, "ic_sampling": "random", "c_min": 1.0,
                       "c_max": 4.0, "boundary": "exact", "boundary_factor": 64.0}


def load_deck(path, overrides):
    import yaml

    with open(path) as f:
        root = yaml.safe_load(f) or {}
    for text in overrides:
        tp.apply_override(root, text)
    deck = tp.with_defaults(DEFAULTS, root)
    p, net = deck["problem"], deck["network"]
    problems = []
    if p["pde"] != "burgers1d":
        problems.append(f"problem.pde is '{p['pde']}'; this peer trains burgers1d (torch_poisson.py: poisson)")
    if p["boundary"] != "exact":
        problems.append("problem.boundary: the peer imposes the conditions exactly only")
    if p["loss"] not in ("residual", "least_squares"):
        problems.append(f"problem.loss '{p['loss']}' is not residual or least_squares")
    if deck["optimizer"]["type"] not in ("adam", "adamw", "sgd") or net["type"] != "unet":
        problems.append("the peer has the U-Net and adam, adamw, sgd")
    if problems:
        sys.exit("torch_burgers: " + "; ".join(problems))
    if not p["time_resolution"]:
        p["time_resolution"] = p["resolution"]
    return deck


class Sampler:
    """b(x) and the input channels [b, x, t/T] by global index, as src/physics/burgers_sampler.cpp."""

    def __init__(self, p, seed):
        self.p, self.seed = p, int(seed)
        self.nx, self.nt = int(p["resolution"]), int(p["time_resolution"])

    def frequencies(self, indices):
        p, K = self.p, int(self.p["ic_terms"])
        idx = np.asarray(indices, dtype=np.uint64)
        span = p["c_max"] - p["c_min"]
        if p["ic_sampling"] == "random":
            return np.stack([p["c_min"] + span * tp.random_uniform(self.seed, BURGERS_STREAM | k, idx)
                             for k in range(K)], axis=1)
        u = tp.random_uniform(self.seed, BURGERS_STREAM, idx)
        return np.stack([p["c_min"] + span * (k + u) / K for k in range(K)], axis=1)

    def inputs(self, indices):
        c = self.frequencies(indices)  # [B, K]
        x = np.arange(self.nx) / (self.nx - 1)
        b = (0.5 * (1 - np.cos(2 * math.pi * c[:, :, None] * x[None, None, :]))).mean(axis=1).astype(np.float32)
        out = np.empty((len(indices), 3, self.nt, self.nx), dtype=np.float32)
        out[:, 0] = b[:, None, :]
        out[:, 1] = x.astype(np.float32)[None, None, :]
        out[:, 2] = (np.arange(self.nt) / (self.nt - 1)).astype(np.float32)[None, :, None]
        return out


GAUSS = (0.21132486540518711775, 0.78867513459481288225)


def lift(v, b):
    """v [B, nt, nx] with row t = 0 set to b [B, nx] and column x = 0 (t > 0) to 0."""
    u = v.clone()
    u[:, 0, :] = b
    u[:, 1:, 0] = 0
    return u


def burgers_loss(u, p):
    """Per-sample J of burgers_loss.hpp for u [B, nt, nx] (float64 recommended)."""
    nt, nx = u.shape[1], u.shape[2]
    hx, ht, nu = 1.0 / (nx - 1), p["t_final"] / (nt - 1), float(p["viscosity"])
    w = 0.25 * hx * ht
    c = (u[:, :-1, :-1], u[:, :-1, 1:], u[:, 1:, :-1], u[:, 1:, 1:])  # local nodes k: (k & 1) x, (k >> 1) t
    R = torch.zeros_like(u)
    J = torch.zeros(u.shape[0], dtype=u.dtype, device=u.device)
    for gt in GAUSS:
        for gx in GAUSS:
            fx = (1 - gx, gx, 1 - gx, gx)
            ft = (1 - gt, 1 - gt, gt, gt)
            dfx = (-1, 1, -1, 1)
            dft = (-1, -1, 1, 1)
            val = sum(fx[k] * ft[k] * c[k] for k in range(4))
            ux = sum(dfx[k] * ft[k] * c[k] for k in range(4)) / hx
            ut = sum(fx[k] * dft[k] * c[k] for k in range(4)) / ht
            r = ut + val * ux
            if p["loss"] == "least_squares":
                J = J + w * (r * r).sum(dim=(1, 2))
                continue
            for k in range(4):
                term = w * (fx[k] * ft[k] * r + nu * dfx[k] * ft[k] / hx * ux)
                dt, dx = k >> 1, k & 1
                R = R + torch.nn.functional.pad(term, (dx, 1 - dx, dt, 1 - dt))
    if p["loss"] == "least_squares":
        return J
    test = R[:, 1:, 1:]
    return (test * test).sum(dim=(1, 2)) / (hx * ht)


def references(deck_path, overrides, pdegen, count):
    """pdegen's finite-volume reference of the evaluation samples (`pdegen solve`), [count, nt, nx]."""
    with tempfile.TemporaryDirectory() as work:
        cmd = [pdegen, "solve", deck_path, *overrides, f"output.dir={work}/solve", f"evaluation.samples={count}"]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit(f"torch_burgers: {' '.join(cmd)} failed: {r.stderr.strip()[-400:]}")
        return read_field(os.path.join(work, "solve", "reference.h5"), "/fields/u_ref").astype(np.float64)


def train(deck, args):
    t_start = time.perf_counter()
    tr, p, opt = deck["training"], deck["problem"], deck["optimizer"]
    steps, batch = int(tr["steps"]), int(tr["batch_size"])
    every = 0 if args.eval_only_at_end else int(deck["evaluation"]["every"])
    log_every = max(int(tr["log_every"]), 1)
    sampler = Sampler(p, tr["seed"])
    count = int(deck["evaluation"]["samples"])
    t = time.perf_counter()
    u_ref = references(args.deck, args.overrides + ([f"training.steps={steps}"] if args.steps else []),
                       args.pdegen, count)
    ref_seconds = time.perf_counter() - t
    eval_inputs = sampler.inputs([tp.EVAL_INDEX_BASE + e for e in range(count)])
    notes = tp.configure(args, False)
    torch.set_num_threads(args.threads)
    torch.manual_seed(int(tr["seed"]))
    model = tp.UNet(deck["network"], in_channels=3)
    parameters = sum(w.numel() for w in model.parameters())
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = tp.make_optimizer(model.parameters(), opt)
    network = torch.compile(model) if args.compile else model

    def forward(x):
        if args.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if args.bf16:
            with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
                return network(x).float()
        return network(x)

    def evaluate():
        model.eval()
        errors = []
        with torch.no_grad():
            for s in range(0, count, batch):
                x = torch.from_numpy(eval_inputs[s:s + batch])
                u = lift(forward(x)[:, 0], x[:, 0, 0, :]).double().numpy()
                ref = u_ref[s:s + batch]
                errors += list(np.linalg.norm((u - ref).reshape(len(u), -1), axis=1) /
                               np.linalg.norm(ref.reshape(len(u), -1), axis=1))
        model.train()
        return float(np.mean(errors)), float(np.max(errors))

    extras = [n for n, on in (("channels_last", args.channels_last), ("bf16 autocast", args.bf16),
                              ("torch.compile", args.compile)) if on]
    print(f"torch_burgers: {p['time_resolution']}x{p['resolution']} (t x x), nu {p['viscosity']}, loss {p['loss']}, "
          f"batch {batch}, {steps} steps, {args.threads} threads, torch {torch.__version__}, {parameters:,} "
          f"parameters{''.join(', ' + e for e in extras)}; {count} references in {ref_seconds:.1f} s", flush=True)
    for note in notes:
        print(f"torch_burgers: note: {note}", flush=True)
    step_seconds, loss_value, rel, evaluated_at, done = [], float("nan"), (float("nan"),) * 2, -1, 0
    t_train = time.perf_counter()
    for step in range(steps):
        t = time.perf_counter()
        lr = opt["lr"] * tp.lr_factor(step, steps, opt)
        for group in optimizer.param_groups:
            group["lr"] = lr
        x = torch.from_numpy(sampler.inputs([step * batch + q for q in range(batch)]))
        u = lift(forward(x)[:, 0], x[:, 0, 0, :]).double()
        loss = burgers_loss(u, p).sum() / batch
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_value = loss.item()
        step_seconds.append(time.perf_counter() - t)
        done = step + 1
        out_of_time = args.max_train_seconds is not None and sum(step_seconds) >= args.max_train_seconds
        if done % log_every == 0 or done == 1 or done == steps or out_of_time:
            print(f"step {done}/{steps} loss {loss_value:.8e} lr {lr:.3e} step_s {step_seconds[-1]:.4f} "
                  f"samples/s {batch / step_seconds[-1]:.1f}", flush=True)
        if every > 0 and done % every == 0:
            rel, evaluated_at = evaluate(), done
            print(f"eval step {done} rel_l2 mean {rel[0]:.4e} max {rel[1]:.4e} train_s "
                  f"{sum(step_seconds):.1f}", flush=True)
        if out_of_time:
            print(f"stopped after {done} steps: --max-train-seconds {args.max_train_seconds:g} reached", flush=True)
            break
    train_seconds = time.perf_counter() - t_train
    if evaluated_at != done:
        rel = evaluate()
        print(f"eval step {done} rel_l2 mean {rel[0]:.4e} max {rel[1]:.4e}", flush=True)
    timed = step_seconds[3:] if len(step_seconds) > 3 else step_seconds
    median = statistics.median(timed) if timed else float("nan")
    return {"tool": "torch_burgers", "torch": torch.__version__, "threads": args.threads,
            "resolution": int(p["resolution"]), "batch_size": batch, "steps": done, "parameters": parameters,
            "wall_seconds": time.perf_counter() - t_start, "train_seconds": train_seconds,
            "reference_seconds": ref_seconds, "median_step_seconds": median,
            "min_step_seconds": min(timed) if timed else float("nan"),
            "samples_per_s": batch / median if median > 0 else float("nan"),
            "peak_rss_bytes": tp.peak_rss_bytes(), "final_loss": loss_value, "rel_l2_mean": rel[0],
            "rel_l2_max": rel[1], "pde": "burgers1d", "loss": p["loss"], "channels_last": bool(args.channels_last),
            "bf16": bool(args.bf16), "compile": bool(args.compile), "step_seconds_sum": sum(step_seconds)}


def self_test():
    """The torch loss against a plain loop of burgers_kernels.hpp's formulas, on a random field."""
    rng = np.random.default_rng(1)
    nt, nx = 5, 6
    u = rng.uniform(0, 1, (1, nt, nx))
    failures = 0
    for loss, nu in (("residual", 0.03), ("residual", 0.0), ("least_squares", 0.0)):
        p = {"t_final": 0.5, "viscosity": nu, "loss": loss}
        hx, ht = 1 / (nx - 1), 0.5 / (nt - 1)
        R, J = np.zeros((nt, nx)), 0.0
        for en in range(nt - 1):
            for ej in range(nx - 1):
                for gt in GAUSS:
                    for gx in GAUSS:
                        psi, px, pt = {}, {}, {}
                        for k in range(4):
                            a, b_ = k & 1, k >> 1
                            fx, ft = (gx if a else 1 - gx), (gt if b_ else 1 - gt)
                            psi[k], px[k], pt[k] = fx * ft, (1 if a else -1) * ft / hx, fx * (1 if b_ else -1) / ht
                        uk = [u[0, en + (k >> 1), ej + (k & 1)] for k in range(4)]
                        val = sum(psi[k] * uk[k] for k in range(4))
                        ux = sum(px[k] * uk[k] for k in range(4))
                        ut = sum(pt[k] * uk[k] for k in range(4))
                        r = ut + val * ux
                        J += hx * ht / 4 * r * r
                        for k in range(4):
                            R[en + (k >> 1), ej + (k & 1)] += hx * ht / 4 * (psi[k] * r + nu * px[k] * ux)
        want = J if loss == "least_squares" else (R[1:, 1:] ** 2).sum() / (hx * ht)
        got = burgers_loss(torch.from_numpy(u), p).item()
        ok = abs(got - want) <= 1e-12 * max(1.0, abs(want))
        failures += not ok
        print(f"{'PASS' if ok else 'FAIL'}: {loss} nu {nu}: torch {got:.15e} loop {want:.15e}")
    return 1 if failures else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("deck", nargs="?")
    ap.add_argument("overrides", nargs="*")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int)
    ap.add_argument("--eval-only-at-end", action="store_true")
    ap.add_argument("--max-train-seconds", type=float)
    ap.add_argument("--json")
    ap.add_argument("--pdegen", default=os.path.join(ROOT, "build", "cpu", "pdegen"))
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--bf16", action="store_true")
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--best", action="store_true")
    ap.add_argument("--self-test", action="store_true")
    args = ap.parse_args()
    if args.self_test:
        return self_test()
    if not args.deck:
        ap.error("a deck is needed (or --self-test)")
    overrides = list(args.overrides) + ([f"training.steps={args.steps}"] if args.steps else [])
    deck = load_deck(args.deck, overrides)
    args.overrides = list(args.overrides)
    result = train(deck, args)
    line = json.dumps(result)
    print(line, flush=True)
    if args.json:
        with open(args.json, "w") as f:
            f.write(line + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
