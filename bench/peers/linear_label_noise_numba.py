"""Two-layer linear network under label-noise SGD in numba (njit, fastmath, float32 loops):
replicas outer (prange when given threads), steps inner; shared data, init and sample order,
each replica its own ±σ noise (the lab's data=shared, init=shared). Same update as the lab
(linear_label_noise_reference.ts sgdStep):
  r = aᵀWx − y − ε;  W ← W − η r a xᵀ;  a ← a − η r W x  (simultaneous, from time-t values).
W is held as Wᵀ (d × m, neurons contiguous, as the lab's kernel does) so the inner loops run
over m and vectorise."""

import time

from common import LINEAR, linear_data, linear_w_norm_mean, median, parse_args, report

args = parse_args(__doc__)

import numba  # noqa: E402
import numpy as np  # noqa: E402
from numba import njit, prange  # noqa: E402


def make(parallel):
    @njit(fastmath=True, parallel=parallel)
    def run(Wt, A, X, y, idx, lr, sigma, seed):
        np.random.seed(seed)
        R, d, m = Wt.shape
        for rep in prange(R):
            W = Wt[rep]
            a = A[rep]
            h = np.empty(m, np.float32)
            for t in range(idx.shape[0]):
                i = idx[t]
                e = np.float32(sigma if np.random.random() < 0.5 else -sigma)
                h[:] = 0
                for k in range(d):
                    xk = X[i, k]
                    for j in range(m):
                        h[j] += W[k, j] * xk
                f = np.float32(0.0)
                for j in range(m):
                    f += a[j] * h[j]
                lrr = np.float32(lr) * (f - y[i] - e)
                for k in range(d):
                    cx = lrr * X[i, k]
                    for j in range(m):
                        W[k, j] -= cx * a[j]
                for j in range(m):
                    a[j] -= lrr * h[j]
        return Wt, A

    return run


run = make(args.threads > 1 and args.replicas > 1)
numba.set_num_threads(max(1, min(args.threads, numba.config.NUMBA_NUM_THREADS)))
data = linear_data(args.seed)
R = args.replicas
W = np.ascontiguousarray(np.repeat(data["W0"].T[None], R, axis=0))
A = np.repeat(data["a0"][None], R, axis=0)
idx = np.random.default_rng(args.seed + 1).integers(0, LINEAR["n"], args.steps).astype(np.int32)

t0 = time.perf_counter()
run(W.copy(), A.copy(), data["X"], data["y"], idx[:1], LINEAR["lr"], LINEAR["sigma"], 1)
t1 = time.perf_counter()
run(W, A, data["X"], data["y"], idx, LINEAR["lr"], LINEAR["sigma"], args.seed)
t2 = time.perf_counter()
norm = median(linear_w_norm_mean(np.swapaxes(W, 1, 2)))
report("numba", "linear-label-noise", args, t1 - t0, t2 - t1, "w_norm_mean", norm)
