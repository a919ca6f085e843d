"""Shape Matters label-noise SGD in numba (njit, fastmath, float32 loops), as a skilled
researcher writes it: replicas outer (prange when given threads), steps inner, the same update
as the lab (server/experiments/shape_matters.ts, label-noise, Gaussian s):
  c = (X(v⊙v) − y)/n;  c_i −= δ s;  v ← v − lr_t·v⊙(Xᵀc),  lr ÷10 at 1e5 and 2e5."""

import time

from common import SHAPE, median, parse_args, report, shape_data, shape_test_error

args = parse_args(__doc__)

import numba  # noqa: E402
import numpy as np  # noqa: E402
from numba import njit, prange  # noqa: E402


def make(parallel):
    @njit(fastmath=True, parallel=parallel)
    def run(V, X, y, T, lr0, delta, m1, m2, seed):
        np.random.seed(seed)
        R, d = V.shape
        n = X.shape[0]
        for r in prange(R):
            v = V[r]
            u = np.empty(d, np.float32)
            c = np.empty(n, np.float32)
            g = np.empty(d, np.float32)
            inv_n = np.float32(1.0 / n)
            for t in range(T):
                lr = np.float32(lr0 * (0.1 if t >= m1 else 1.0) * (0.1 if t >= m2 else 1.0))
                for k in range(d):
                    u[k] = v[k] * v[k]
                for i in range(n):
                    acc = np.float32(0.0)
                    for k in range(d):
                        acc += X[i, k] * u[k]
                    c[i] = (acc - y[i]) * inv_n
                i = np.random.randint(0, n)
                c[i] -= np.float32(delta * np.random.standard_normal())
                for k in range(d):
                    g[k] = 0
                for i in range(n):
                    ci = c[i]
                    for k in range(d):
                        g[k] += ci * X[i, k]
                for k in range(d):
                    v[k] -= lr * v[k] * g[k]
        return V

    return run


run = make(args.threads > 1 and args.replicas > 1)
numba.set_num_threads(max(1, min(args.threads, numba.config.NUMBA_NUM_THREADS)))
X, y, vstar_sq = shape_data(args.seed)
m1, m2 = SHAPE["milestones"]
V = np.full((args.replicas, X.shape[1]), SHAPE["tau"], np.float32)

t0 = time.perf_counter()
run(V.copy(), X, y, 1, SHAPE["lr"], SHAPE["delta"], m1, m2, args.seed)  # compiles
t1 = time.perf_counter()
run(V, X, y, args.steps, SHAPE["lr"], SHAPE["delta"], m1, m2, args.seed)
t2 = time.perf_counter()
err = median(shape_test_error(V, vstar_sq))
report("numba", "shape-matters", args, t1 - t0, t2 - t1, "test_error", err)
