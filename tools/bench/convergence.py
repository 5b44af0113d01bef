#!/usr/bin/env python3
"""Time to accuracy per optimizer: trains poisson2d with several optimizers under one wall-time budget
each and reports when each run first reaches target rel_l2 values on the held-out samples.

    /usr/bin/python3 tools/bench/convergence.py [--pdegen build/conv/pdegen]
        [--deck input_decks/quickstart.yaml] [--workdir runs/convergence]
        [--methods adam,lbfgs,adam_lbfgs,lamb] [--resolutions 64,128] [--batches 8,32] [--ranks 1,2]
        [--budget 64=60 --budget 128=90] [--targets 0.02,0.01 --targets 128=0.05,0.02]
        [--skip 128:*:2] [--stop-at 0.01] [--cores 2] [--append] [--table]
        [method options: --adam-lr 8=1e-3,32=2e-3, --lamb-lr, --lamb-warmup, --lbfgs-batch,
         --lbfgs-iterations, --lbfgs-history, --switch-fraction] [key.path=value ...]

Each case (method, resolution, global batch, ranks) is one `pdegen train` of the deck with overrides
(trailing key.path=value arguments apply to every run); 1 rank runs with OMP_NUM_THREADS=--cores,
P ranks as `mpiexec.mpich -n P` with --cores/P threads each.

How the budget is kept. Adam and LAMB decay their learning rate with a cosine over
training.steps, so the step count must fit the budget: a short calibration run per (resolution,
batch, ranks) (Adam, --calibrate seconds, a history row per step) measures the step time (from
samples_per_s, evaluation excluded), the cost of one held-out evaluation and the start-up time,
and the run gets steps = (budget - start-up) / (step + evaluation share). L-BFGS has a constant
step length (lr 1, line search), so its runs get a practically unbounded step count. Every run is
also stopped with SIGTERM when its budget has elapsed (pdegen finishes the step, checkpoints and
writes summary.json), or when its mean rel_l2 reaches --stop-at, if given.

Evaluation cadence: about --evaluations held-out evaluations per budget for the first-order
methods (evaluation.every = a step count from the calibration); every step for L-BFGS, whose step
is --lbfgs-iterations quasi-Newton iterations. Adam -> L-BFGS runs in two processes of one deck
(optimizer.then: {after_steps: A, type: lbfgs}): the first trains the Adam phase (A = the
--switch-fraction of the budget's Adam steps, cosine over those A steps) with Adam's cadence, the
second restarts from its checkpoint (training.restart=latest) into the L-BFGS phase, evaluating
every step, with the rest of the budget (the restart's start-up is charged to the run).

Times are pdegen's wall_s (history.csv: from the start of training, reference solutions of the
held-out set included; plus the first process's whole duration for a restarted run); a target's
time is that of the first evaluation whose mean rel_l2 is at or below it. Writes
<workdir>/results.json (the runs, their time series, commands, machine, load) and prints the
markdown tables (--table prints them again from results.json); tools/bench/plot_convergence.py
plots it.
"""
import argparse
import csv
import datetime
import json
import math
import os
import platform
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
LABELS = {"adam": "Adam", "lbfgs": "L-BFGS", "adam_lbfgs": "Adam -> L-BFGS", "lamb": "LAMB"}
UNBOUNDED_STEPS = 1000000  # the budget, not the step count, ends these runs


def fail(message):
    print(f"convergence: error: {message}", file=sys.stderr)
    sys.exit(2)


def parse_map(items, what):
    """['64=60', '128=90'] -> {64: 60.0, 128: 90.0}."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            fail(f"{what} expects RESOLUTION=VALUE, got '{item}'")
        out[int(key)] = float(value)
    return out


def read_history(path):
    """history.csv rows as dicts of floats (empty cells: None); [] when absent."""
    if not os.path.exists(path):
        return []
    rows = []
    with open(path) as f:
        for r in csv.DictReader(f):
            row = {}
            for k, v in r.items():
                try:
                    row[k] = float(v) if v not in (None, "") else None
                except ValueError:
                    row[k] = None
            if row.get("step") is not None and row.get("wall_s") is not None:
                rows.append(row)
    return rows


def per_batch(spec, batch):
    """'1e-3' -> 1e-3 for every batch; '8=1e-3,32=2e-3' -> the value of this global batch."""
    if "=" not in spec:
        return float(spec)
    values = {int(k): float(v) for k, v in (item.split("=") for item in spec.split(","))}
    if batch not in values:
        fail(f"'{spec}' gives no value for global batch {batch}")
    return values[batch]


def target_list(text):
    """'0.02,0.01' -> [0.02, 0.01], loosest first."""
    return sorted((float(t) for t in text.split(",")), reverse=True)


def load_average():
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


class Runner:
    """Starts pdegen (directly or under mpiexec) and stops it at a deadline or a target."""

    def __init__(self, args):
        self.args = args

    def command(self, ranks, overrides):
        pdegen = [self.args.pdegen, "train", self.args.deck] + overrides
        if ranks == 1:
            return pdegen
        return [self.args.mpiexec, "-n", str(ranks)] + pdegen

    def shown(self, ranks, cmd):
        """The command line as a shell would run it, thread count included."""
        return f"OMP_NUM_THREADS={self.env(ranks)['OMP_NUM_THREADS']} " + shlex.join(cmd)

    def env(self, ranks):
        env = dict(os.environ)
        env["OMP_NUM_THREADS"] = str(max(1, self.args.cores // ranks))
        return env

    def run(self, ranks, overrides, out_dir, budget_s, stop_at=None, enough=None, log_name="pdegen.out"):
        """Runs until exit, budget_s seconds, mean rel_l2 <= stop_at, or enough(elapsed, history rows).
        Returns the record {command, elapsed_s, exit, stopped_by}."""
        cmd = self.command(ranks, overrides)
        os.makedirs(out_dir, exist_ok=True)
        history = os.path.join(out_dir, "history.csv")
        with open(os.path.join(out_dir, log_name), "w") as log:
            start = time.monotonic()
            # Only the top process gets the signal: mpiexec forwards it to the ranks (a second
            # SIGTERM would make pdegen exit without its final checkpoint).
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env(ranks),
                                    cwd=ROOT, start_new_session=True)
            why = "completed"
            while proc.poll() is None:
                time.sleep(0.2)
                elapsed = time.monotonic() - start
                reason = None
                if elapsed >= budget_s:
                    reason = "budget"
                elif stop_at is not None or enough is not None:
                    rows = read_history(history)
                    if enough is not None and enough(elapsed, rows):
                        reason = "calibrated"
                    if stop_at is not None and any(
                            r.get("rel_l2_mean") is not None and r["rel_l2_mean"] <= stop_at for r in rows):
                        reason = "target"
                if reason:
                    why = reason
                    proc.send_signal(signal.SIGTERM)
                    try:
                        proc.wait(timeout=60)
                    except subprocess.TimeoutExpired:
                        os.killpg(proc.pid, signal.SIGKILL)
                        proc.wait()
                        why += " (killed)"
                    break
        return {"command": self.shown(ranks, cmd), "elapsed_s": time.monotonic() - start,
                "exit": proc.returncode, "stopped_by": why}


def common_overrides(args, res, batch, out_dir, every, log_every=None):
    return [f"problem.resolution={res}", f"network.depth={args.depth[res]:g}", f"training.batch_size={batch}",
            f"output.dir={out_dir}", "output.fields=false", "training.checkpoint_every=0",
            f"training.log_every={log_every or every}", f"evaluation.every={every}"] + args.overrides


def calibrate(args, runner, res, batch, ranks):
    """Adam's seconds per step (evaluation excluded), seconds per held-out evaluation and start-up
    seconds on this case, from a short run with a history row per step and an evaluation every 5."""
    out_dir = os.path.join(args.workdir, f"calibrate_r{res}_b{batch}_p{ranks}")
    shutil.rmtree(out_dir, ignore_errors=True)
    every = 5
    overrides = common_overrides(args, res, batch, out_dir, every, log_every=1) + [
        f"training.steps={UNBOUNDED_STEPS}", f"optimizer.lr={per_batch(args.adam_lr, batch)}"]
    # 40 steps, or at least 10 once --calibrate seconds have passed (slow cases), at most 6x that.
    runner.run(ranks, overrides, out_dir, 6 * args.calibrate,
               enough=lambda elapsed, rows: len(rows) >= 40 or (elapsed >= args.calibrate and len(rows) >= 10))
    rows = read_history(os.path.join(out_dir, "history.csv"))
    if len(rows) < 8:
        fail(f"calibration of resolution {res}, batch {batch}, {ranks} rank(s) logged {len(rows)} steps in "
             f"{args.calibrate} s (see {out_dir}/pdegen.out); raise --calibrate")
    later = rows[2:]  # the first steps create the oneDNN primitives
    step_s = statistics.median(batch / r["samples_per_s"] for r in later)
    deltas = [(b["wall_s"] - a["wall_s"], int(b["step"]) % every == 0) for a, b in zip(later, later[1:])]
    with_eval = [d for d, e in deltas if e]
    without = [d for d, e in deltas if not e]
    eval_s = max(0.0, statistics.median(with_eval) - statistics.median(without)) if with_eval and without else 0.0
    startup_s = max(0.0, rows[0]["wall_s"] - rows[0]["step"] * step_s)
    cal = {"step_s": step_s, "eval_s": eval_s, "startup_s": startup_s, "steps_seen": len(rows)}
    print(f"# calibration r{res} b{batch} p{ranks}: {step_s * 1e3:.1f} ms/step, {eval_s * 1e3:.1f} ms/evaluation, "
          f"start-up {startup_s:.2f} s", flush=True)
    return cal


def first_order_plan(args, cal, budget):
    """(steps, evaluation.every) so that the run with its evaluations fills the budget."""
    every = max(1, round(budget / args.evaluations / cal["step_s"]))
    per_step = cal["step_s"] + cal["eval_s"] / every
    steps = max(every, int((budget - cal["startup_s"]) * args.fill / per_step))
    return steps, every


def lbfgs_section(args):
    m = args.lbfgs_iterations
    return {"type": "lbfgs", "lr": 1.0, "schedule": "{type: constant}", "line_search": "strong_wolfe",
            "history": args.lbfgs_history, "max_iterations": m, "max_evaluations": math.ceil(1.25 * m),
            "batch": args.lbfgs_batch, "damping": "true" if args.lbfgs_damping else "false"}


def flow(section):
    return "{" + ", ".join(f"{k}: {v}" for k, v in section.items()) + "}"


def series(rows, offset=0.0, after_step=None):
    """The evaluation rows as [step, time, rel_l2_mean, rel_l2_max], time shifted by offset."""
    out = []
    for r in rows:
        if after_step is not None and r["step"] <= after_step:
            continue
        if r.get("rel_l2_mean") is not None:
            out.append([int(r["step"]), r["wall_s"] + offset, r["rel_l2_mean"], r["rel_l2_max"]])
    return out


def run_case(args, runner, method, res, batch, ranks, cal):
    budget = args.budget[res]
    name = f"{method}_r{res}_b{batch}_p{ranks}"
    out_dir = os.path.join(args.workdir, name)
    shutil.rmtree(out_dir, ignore_errors=True)
    adam_steps, adam_every = first_order_plan(args, cal, budget)
    processes = []
    points = []
    if method in ("adam", "lamb"):
        extra = [f"training.steps={adam_steps}"]
        if method == "adam":
            extra += ["optimizer.type=adam", f"optimizer.lr={per_batch(args.adam_lr, batch)}",
                      "optimizer.schedule={type: cosine}"]
        else:
            warmup = round(args.lamb_warmup * adam_steps)
            extra += ["optimizer.type=lamb", f"optimizer.lr={per_batch(args.lamb_lr, batch)}",
                      f"optimizer.schedule={{type: cosine, warmup_steps: {warmup}}}"]
            if args.lamb_max_trust > 0:
                extra.append(f"optimizer.max_trust_ratio={args.lamb_max_trust}")
        overrides = common_overrides(args, res, batch, out_dir, adam_every) + extra
        processes.append(runner.run(ranks, overrides, out_dir, budget, args.stop_at))
        points = series(read_history(os.path.join(out_dir, "history.csv")))
    elif method == "lbfgs":
        extra = [f"training.steps={UNBOUNDED_STEPS}", "optimizer=" + flow(lbfgs_section(args))]
        overrides = common_overrides(args, res, batch, out_dir, 1) + extra
        processes.append(runner.run(ranks, overrides, out_dir, budget, args.stop_at))
        points = series(read_history(os.path.join(out_dir, "history.csv")))
    elif method == "adam_lbfgs":
        switch = max(1, round(args.switch_fraction * adam_steps))
        then = dict(lbfgs_section(args), after_steps=switch)
        then = {"after_steps": then.pop("after_steps"), **then}
        optimizer = flow({"type": "adam", "lr": per_batch(args.adam_lr, batch), "schedule": "{type: cosine}",
                          "then": flow(then)})
        first = common_overrides(args, res, batch, out_dir, adam_every) + [f"training.steps={switch}",
                                                                             "optimizer=" + optimizer]
        processes.append(runner.run(ranks, first, out_dir, budget, args.stop_at, log_name="pdegen.adam.out"))
        elapsed, why = processes[0]["elapsed_s"], processes[0]["stopped_by"]
        rows = read_history(os.path.join(out_dir, "history.csv"))
        points = series(rows)
        reached = args.stop_at is not None and any(p[2] <= args.stop_at for p in points)
        if why == "completed" and budget - elapsed > 1 and not reached:
            second = common_overrides(args, res, batch, out_dir, 1) + [f"training.steps={UNBOUNDED_STEPS}",
                                                                       "optimizer=" + optimizer,
                                                                       "training.restart=latest"]
            processes.append(runner.run(ranks, second, out_dir, budget - elapsed, args.stop_at))
            points += series(read_history(os.path.join(out_dir, "history.csv")), offset=elapsed, after_step=switch)
        adam_steps = switch
    else:
        fail(f"unknown method '{method}'")

    summary_path = os.path.join(out_dir, "summary.json")
    summary = json.load(open(summary_path)) if os.path.exists(summary_path) else {}
    loss_evals = summary.get("throughput", {}).get("evaluations")
    if method == "adam_lbfgs" and len(processes) == 2:
        loss_evals = (loss_evals or 0) + adam_steps  # the first process's Adam steps
    within = [p for p in points if p[1] <= budget + args.grace]
    reached = {}
    for target in args.targets[res]:
        hit = next((p for p in within if p[2] <= target), None)
        reached[f"{target:g}"] = None if hit is None else {"time_s": hit[1], "step": hit[0]}
    final = within[-1] if within else None
    result = {
        "case": name, "method": method, "label": LABELS[method], "resolution": res, "batch": batch,
        "ranks": ranks, "budget_s": budget, "calibration": cal, "planned_first_order_steps": adam_steps,
        "evaluation_every": adam_every if method != "lbfgs" else 1, "processes": processes, "series": points,
        "targets": reached, "final": None if final is None else {"step": final[0], "time_s": final[1],
                                                                  "rel_l2_mean": final[2], "rel_l2_max": final[3]},
        "steps": summary.get("steps"), "loss_evaluations": loss_evals, "rel_l2_evaluations": len(within),
        "status": summary.get("status"), "wall_s": sum(p["elapsed_s"] for p in processes),
        "load_after": load_average(),
    }
    # Seconds per loss evaluation (of the last process): against the calibration it shows whether
    # the machine was shared during the run (2 threads that compete slow down many times over).
    throughput = summary.get("throughput", {})
    if throughput.get("evaluations") and summary.get("train_seconds"):
        per_eval = summary["train_seconds"] / throughput["evaluations"]
        result["seconds_per_loss_evaluation"] = per_eval
        if per_eval > 1.5 * cal["step_s"]:
            print(f"# warning: {name}: {1e3 * per_eval:.1f} ms per loss evaluation against "
                  f"{1e3 * cal['step_s']:.1f} ms in the calibration: was the machine shared?", flush=True)
    hits = ", ".join(f"{k}: {fmt_time(v)} s" for k, v in reached.items())
    print(f"# {name}: {result['steps']} steps, final rel_l2 "
          f"{'-' if final is None else f'{100 * final[2]:.3f}%'}; targets {hits}", flush=True)
    return result


def fmt_time(entry):
    return "-" if entry is None else f"{entry['time_s']:.1f}"


def markdown(results):
    """One table per resolution (each has its own targets)."""
    tables = []
    for res in sorted({r["resolution"] for r in results}):
        mine = [r for r in results if r["resolution"] == res]
        tables.append(markdown_table(mine, sorted((float(t) for t in mine[0]["targets"]), reverse=True)))
    return "\n\n".join(tables)


def markdown_table(results, targets):
    head = ["method", "resolution", "batch", "ranks"] + [f"time to {100 * t:g}% (s)" for t in targets] + [
        "final rel_l2 mean", "final rel_l2 max", "steps", "rel_l2 evaluations", "loss evaluations"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * 4 + "---:|" * (len(head) - 4)]
    for r in results:
        f = r["final"]
        cells = [r["label"], f"{r['resolution']}^2", str(r["batch"]), str(r["ranks"])]
        cells += [fmt_time(r["targets"][f"{t:g}"]) for t in targets]
        cells += ["-" if f is None else f"{100 * f['rel_l2_mean']:.2f}%",
                  "-" if f is None else f"{100 * f['rel_l2_max']:.2f}%",
                  str(r["steps"]), str(r["rel_l2_evaluations"]), str(r["loss_evaluations"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pdegen", default=os.path.join(ROOT, "build", "conv", "pdegen"))
    p.add_argument("--mpiexec", default="mpiexec.mpich")
    p.add_argument("--deck", default=os.path.join(ROOT, "input_decks", "quickstart.yaml"))
    p.add_argument("--workdir", default=os.path.join(ROOT, "runs", "convergence"))
    p.add_argument("--methods", default="adam,lbfgs,adam_lbfgs,lamb")
    p.add_argument("--resolutions", default="64,128")
    p.add_argument("--batches", default="8,32")
    p.add_argument("--ranks", default="1,2")
    p.add_argument("--skip", action="append", default=[],
                   help="RES:BATCH:RANKS cases to leave out, * matches any (e.g. 128:*:2)")
    p.add_argument("--budget", action="append", default=[], help="RES=SECONDS (default 64=60, 128=90)")
    p.add_argument("--depth", action="append", default=[], help="RES=network.depth (default 64=4, 128=5)")
    p.add_argument("--targets", action="append", default=[],
                   help="mean rel_l2 targets T1,T2 for every resolution, or RES=T1,T2 (default 0.02,0.01)")
    p.add_argument("--stop-at", type=float, default=None, help="stop a run once its mean rel_l2 is at or below")
    p.add_argument("--cores", type=int, default=os.cpu_count() or 1, help="threads per case, shared by the ranks")
    p.add_argument("--calibrate", type=float, default=10.0,
                   help="seconds per calibration run (longer until it has logged 10 steps)")
    p.add_argument("--evaluations", type=int, default=30, help="held-out evaluations per budget (first-order)")
    p.add_argument("--fill", type=float, default=0.97, help="fraction of the budget the step count aims at")
    p.add_argument("--grace", type=float, default=0.0, help="seconds past the budget an evaluation still counts")
    p.add_argument("--adam-lr", default="1e-3", help="LR, or BATCH=LR,BATCH=LR (also Adam -> L-BFGS's Adam)")
    p.add_argument("--lamb-lr", default="1e-2", help="LR, or BATCH=LR,BATCH=LR")
    p.add_argument("--lamb-warmup", type=float, default=0.05, help="warm-up, a fraction of the steps")
    p.add_argument("--lamb-max-trust", type=float, default=0.0)
    p.add_argument("--lbfgs-batch", default="fixed", choices=["fixed", "fresh"])
    p.add_argument("--lbfgs-iterations", type=int, default=20)
    p.add_argument("--lbfgs-history", type=int, default=10)
    p.add_argument("--lbfgs-damping", action="store_true")
    p.add_argument("--switch-fraction", type=float, default=1 / 3,
                   help="Adam -> L-BFGS: the share of the budget's Adam steps run by Adam")
    p.add_argument("--append", action="store_true", help="add to an existing results.json")
    p.add_argument("--table", action="store_true", help="only print the tables of <workdir>/results.json")
    p.add_argument("overrides", nargs="*", help="key.path=value for every run")
    args = p.parse_args()

    args.budget = {64: 60.0, 128: 90.0, **parse_map(args.budget, "--budget")}
    args.depth = {64: 4, 128: 5, **parse_map(args.depth, "--depth")}
    given = args.targets
    generic = [t for t in given if "=" not in t]
    every_res = target_list(generic[-1] if generic else "0.02,0.01")
    args.targets = {int(r): every_res for r in args.resolutions.split(",")}
    for item in (t for t in given if "=" in t):
        key, _, values = item.partition("=")
        args.targets[int(key)] = target_list(values)
    args.workdir = os.path.abspath(args.workdir)
    if args.table:
        print(markdown(json.load(open(os.path.join(args.workdir, "results.json")))["runs"]))
        return
    args.deck = os.path.abspath(args.deck)
    if not os.access(args.pdegen, os.X_OK):
        fail(f"no pdegen at {args.pdegen}: build it (--target pdegen) or pass --pdegen")
    methods = args.methods.split(",")
    for m in methods:
        if m not in LABELS:
            fail(f"unknown method '{m}'; expected some of {','.join(LABELS)}")
    resolutions = [int(x) for x in args.resolutions.split(",")]
    for r in resolutions:
        if r not in args.budget or r not in args.depth:
            fail(f"resolution {r} needs --budget {r}=SECONDS and --depth {r}=DEPTH")
    batches = [int(x) for x in args.batches.split(",")]
    rank_counts = [int(x) for x in args.ranks.split(",")]

    def skipped(res, batch, ranks):
        for s in args.skip:
            parts = s.split(":")
            if len(parts) == 3 and all(a == "*" or int(a) == b for a, b in zip(parts, (res, batch, ranks))):
                return True
        return False

    os.makedirs(args.workdir, exist_ok=True)
    results_path = os.path.join(args.workdir, "results.json")
    old = json.load(open(results_path)) if args.append and os.path.exists(results_path) else None
    meta = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": shlex.join([sys.executable] + sys.argv), "host": platform.node(), "nproc": os.cpu_count(),
        "cores": args.cores, "load_before": load_average(), "targets": args.targets, "budget_s": args.budget,
        "depth": args.depth,
        "settings": {k: getattr(args, k) for k in ("adam_lr", "lamb_lr", "lamb_warmup", "lamb_max_trust",
                                                    "lbfgs_batch", "lbfgs_iterations", "lbfgs_history",
                                                    "lbfgs_damping", "switch_fraction", "evaluations", "fill")},
    }
    runner = Runner(args)
    results = old["runs"] if old else []
    for res in resolutions:
        for batch in batches:
            for ranks in rank_counts:
                if skipped(res, batch, ranks):
                    continue
                cal = calibrate(args, runner, res, batch, ranks)
                for method in methods:
                    results = [r for r in results if r["case"] != f"{method}_r{res}_b{batch}_p{ranks}"]
                    results.append(run_case(args, runner, method, res, batch, ranks, cal))
                    meta["load_after"] = load_average()
                    with open(results_path, "w") as f:
                        json.dump({"meta": old["meta"] if old else meta, "runs": results}, f, indent=1)
    print(markdown(results))
    print(f"# results: {results_path}")


if __name__ == "__main__":
    main()
