"""What every peer baseline shares: its command line, the experiments' data (drawn from the
peer's own RNG with the lab's distributions and defaults), the median over replicas, and the
one JSON line it prints. Run by `deno task bench --peers` (test/bench_peers.ts)."""

import argparse
import json
import os
import time

import numpy as np

PROCESS_START = time.perf_counter()

# The lab's defaults (server/experiments/shape_matters.ts, App. A.1 and the released code).
SHAPE = dict(d=100, n=40, r=5, tau=1.0, lr=0.01, delta=1.0, milestones=(100_000, 200_000))
# server/experiments/linear_label_noise_setup.ts (the released code's README).
LINEAR = dict(m=1000, d=20, n=200, lr=0.001, sigma=4.0)


def parse_args(description):
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--replicas", type=int, default=1)
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="threads the peer may use")
    return p.parse_args()


def shape_data(seed):
    """X ~ N(0, I), v* = (1 [r times], 0, …), y = <v*⊙v*, x>, all float32."""
    rng = np.random.default_rng(seed)
    d, n, r = SHAPE["d"], SHAPE["n"], SHAPE["r"]
    X = rng.standard_normal((n, d)).astype(np.float32)
    vstar_sq = np.zeros(d, np.float32)
    vstar_sq[:r] = 1
    y = (X.astype(np.float64) @ vstar_sq).astype(np.float32)
    return X, y, vstar_sq


def shape_test_error(V, vstar_sq):
    """‖v⊙v − v*⊙v*‖² per replica (the lab's test_error)."""
    V = np.asarray(V, np.float64).reshape(-1, vstar_sq.shape[0])
    return ((V * V - vstar_sq) ** 2).sum(axis=1)


def linear_data(seed):
    """θ* (norm m^-1/4), the training set, W(0) rows N(0, I/d), a(0) ~ N(0, I/m)."""
    rng = np.random.default_rng(seed)
    m, d, n = LINEAR["m"], LINEAR["d"], LINEAR["n"]
    theta = rng.standard_normal(d)
    theta = (theta * m**-0.25 / np.linalg.norm(theta)).astype(np.float32)
    X = rng.standard_normal((n, d)).astype(np.float32)
    y = (X.astype(np.float64) @ theta).astype(np.float32)
    W0 = (rng.standard_normal((m, d)) / np.sqrt(d)).astype(np.float32)
    a0 = (rng.standard_normal(m) / np.sqrt(m)).astype(np.float32)
    return dict(theta=theta, X=X, y=y, W0=W0, a0=a0)


def median(values):
    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v)]
    return float(np.median(v)) if v.size else float("nan")


def report(contestant, experiment, args, compile_s, run_s, metric, value):
    print(json.dumps({
        "contestant": contestant,
        "experiment": experiment,
        "replicas": args.replicas,
        "steps": args.steps,
        "threads": args.threads,
        "compile_s": compile_s,
        "run_s": run_s,
        "steps_per_s": args.steps / run_s,
        "replica_steps_per_s": args.replicas * args.steps / run_s,
        "process_s": time.perf_counter() - PROCESS_START,
        metric: value,
        "pid": os.getpid(),
    }), flush=True)


def linear_w_norm_mean(W):
    """(1/m) Σ_i ‖w_i‖ per replica (the lab's w_norm_mean: label noise shrinks the neurons)."""
    W = np.asarray(W, np.float64).reshape(-1, LINEAR["m"], LINEAR["d"])
    return np.sqrt((W * W).sum(axis=2)).mean(axis=1)
