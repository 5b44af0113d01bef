#!/usr/bin/env python3
"""Checks a pdegen JSON output against the type of every field it may hold: parses FILE with a JSON
parser and exits 1 naming each field that is missing, of another type, or not listed here (a new
field must be added, with its type, so scripts can rely on it).

    /usr/bin/python3 tests/decks/check_json_types.py summary|predict|solve|dataset FILE
"""
import json
import sys

NUM, INT, STR, BOOL = "number", "integer", "string", "boolean"
OPT = "optional"  # suffix: the field may be absent

ERRORS = {"rel_l2_mean": NUM, "rel_l2_max": NUM}
VISIT = {"visit": INT, "level": INT, "resolution": INT, "first_step": INT, "steps": INT,
         "train_seconds": NUM, "ended_by": STR, **ERRORS}
LEVEL = {"level": INT, "resolution": INT, **ERRORS}
SCHEMAS = {
    "summary": {
        "status": STR, "message": STR, "steps": INT, "start_step": INT, "wall_seconds": NUM,
        "train_seconds": NUM, "final_loss": NUM,
        "eval": {**ERRORS, "samples": INT, "resolution": INT},
        "throughput": {"samples_per_s": NUM, "gflops": NUM, "step_seconds": NUM, "evaluations": INT},
        "memory": {"peak_rss_mb": NUM, "allocator_peak_mb": NUM, "device_peak_mb": (NUM, OPT)},
        "ranks": INT, "comm_seconds": NUM, "comm_exposed_seconds": NUM, "comm_exposed_fraction": NUM,
        "bucket_count": INT, "reduction": STR, "device": STR, "precision": STR, "loss_scale": NUM,
        "skipped_steps": INT, "pde": STR, "parameters": INT, "checkpoint": STR, "pdegen_version": STR,
        "multigrid": ({"cycle": STR, "optimizer_state": STR, "levels": [LEVEL], "visits": [VISIT]}, OPT),
        "val_loss": (NUM, OPT),
        "data": ({"files": INT, "training_records": INT, "validation_records": INT, "epochs": NUM, "loss": STR,
                  "wait_seconds": NUM, "wait_fraction": NUM, "read_seconds": NUM, "read_mb": NUM,
                  "read_mb_per_s": NUM, "batches_read_ahead": NUM}, OPT),
    },
    "predict": {
        "status": STR, "checkpoint": STR, "checkpoint_step": INT, "samples": INT, "precision": STR,
        "receptive_field_halo": INT, "rel_l2_mean": (NUM, OPT), "rel_l2_max": (NUM, OPT),
        "rel_l2": ([NUM], OPT), "tiles": INT, "tile": INT, "halo": INT, "window": (STR, OPT),
        "tile_batch": (INT, OPT), "halo_error_max_abs": (NUM, OPT), "halo_error_rel_l2": (NUM, OPT),
        "peak_rss_mb": NUM, "network_seconds": NUM, "write_seconds": NUM, "seconds": NUM, "file": STR,
    },
    "dataset": {
        "status": STR, "pde": STR, "samples": INT, "first_index": INT, "shard_samples": INT,
        "input_field": STR, "solution_field": STR, "index_base": INT,
        "shards": [{"file": STR, "first_index": INT, "samples": INT, "solve_seconds": NUM, "write_seconds": NUM}],
        "seconds": NUM, "samples_per_second": NUM,
    },
    "solve": {
        "status": STR, "samples": INT, "resolution": INT, "tolerance": NUM, "max_iterations": INT,
        "seconds": NUM, "seconds_per_sample": NUM, "file": STR,
    },
}


def is_type(value, kind):
    if kind == NUM:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == INT:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, {STR: str, BOOL: bool}[kind])


def check(value, schema, path, problems):
    if isinstance(schema, dict):
        if not isinstance(value, dict):
            return problems.append(f"{path}: expected an object, got {type(value).__name__} {value!r}")
        for key, want in schema.items():
            optional = isinstance(want, tuple)
            if key not in value:
                if not optional:
                    problems.append(f"{path}.{key}: missing")
                continue
            check(value[key], want[0] if optional else want, f"{path}.{key}", problems)
        for key in value.keys() - schema.keys():
            problems.append(f"{path}.{key}: not in the schema (add it with its type)")
    elif isinstance(schema, list):
        if not isinstance(value, list):
            return problems.append(f"{path}: expected an array, got {type(value).__name__} {value!r}")
        for i, item in enumerate(value):
            check(item, schema[0], f"{path}[{i}]", problems)
    elif not is_type(value, schema):
        problems.append(f"{path}: expected a {schema}, got {type(value).__name__} {value!r}")


def main():
    kind, path = sys.argv[1], sys.argv[2]
    with open(path) as f:
        data = json.load(f)
    problems = []
    check(data, SCHEMAS[kind], kind, problems)
    for p in problems:
        print(f"{path}: {p}")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
