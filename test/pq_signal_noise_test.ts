/**
 * The signal/noise split of W (seed-001 eq. 3.4, seed-000 App. D.1) as the P/Q metrics
 * report it (w_signal_norm, w_signal_along_wstar, w_noise_norm): the tracked noise part W̃
 * and the signal W̄ = W − W̃, checked against the signal accumulated independently from its
 * own definition — the decayed sum of full-batch gradients for large-lr, the sum of
 * smoothed-loss gradients −α∇ℓ̄(y f) for label-noise SGD (Γ ≡ −1) — and reported by the
 * metrics from the same arrays.
 */
import assert from "node:assert/strict";
import { validateRunSpec } from "../server/experiments/registry.ts";
import {
  initLabelNoiseReplica,
  labelNoiseStep,
  prepareLabelNoise,
  sgdDraws,
} from "../server/experiments/label_noise_anneal.ts";
import { initLargeLrReplica, largeLrStep, prepareLargeLr } from "../server/experiments/large_lr.ts";
import {
  accumulateGradient,
  forwardExample,
  logisticDeriv,
  pqMetrics,
  type PQNet,
  trainExample,
} from "../server/experiments/pq_model.ts";

const PARAMS = { d: 12, kappa_sq: 0.25, m: 10, m_p: 8, m_q: 6, n_test: 20, r_scale: 10, tau0: 0.3 };

function worstGap(net: PQNet, signal: Float64Array): [number, number] {
  let gap = 0, scale = 0;
  net.W.forEach((w, k) => {
    gap = Math.max(gap, Math.abs(w - net.Wn![k] - signal[k]));
    scale = Math.max(scale, Math.abs(signal[k]));
  });
  return [gap, scale];
}

function assertMetrics(
  net: PQNet,
  signal: Float64Array,
  prep: Parameters<typeof pqMetrics>[1],
  shape: Parameters<typeof pqMetrics>[2],
) {
  const m = pqMetrics(net, prep, shape, 0, null);
  const norm = (a: ArrayLike<number>, pick = (_k: number) => true) =>
    Math.sqrt(Array.from(a).reduce((s, v, k) => s + (pick(k) ? v * v : 0), 0));
  assert.ok(Math.abs(m.w_signal_norm - norm(signal)) < 1e-9);
  assert.ok(Math.abs(m.w_signal_along_wstar - norm(signal, (k) => k % shape.d === 0)) < 1e-9);
  assert.ok(Math.abs(m.w_noise_norm - norm(net.Wn!)) < 1e-9);
}

Deno.test("large-lr: W − W̃ is the decayed sum of the full-batch gradients, W̃ the noise recursion", () => {
  const prep = prepareLargeLr(validateRunSpec({
    experiment: "large-lr",
    params: {
      ...PARAMS,
      algo: "large-then-small",
      eta1: 2,
      eta2: 0.2,
      anneal: "step",
      anneal_step: 20,
      lambda_scale: 30,
    },
  }));
  const state = initLargeLrReplica(prep, 0);
  const signal = new Float64Array(state.net.W.length);
  for (let t = 0; t < 40; t++) {
    largeLrStep(prep, state, 0, t);
    // Ū_{t+1} = (1 − γλ)Ū_t − γ∇L̂(U_t) (eq. 3.4), with this step's γ and gradient.
    const decay = 1 - state.lr * prep.lambda[0];
    signal.forEach((s, k) => signal[k] = decay * s - state.lr * state.gW[k]);
  }
  const [gap, scale] = worstGap(state.net, signal);
  assert.ok(scale > 1e-3 && gap < 1e-12 * Math.max(1, scale), `gap ${gap}, scale ${scale}`);
  assertMetrics(state.net, signal, prep.data, prep.shape);
});

Deno.test("label noise: W − W̃ is the sum of −α∇ℓ̄(y f) (smoothed loss), W̃ the ε-martingale", () => {
  const delta = 0.3;
  const prep = prepareLabelNoise(validateRunSpec({
    experiment: "label-noise-anneal",
    params: {
      ...PARAMS,
      algo: "lnsgd-ls",
      eta1: 1,
      eta2: 0.3,
      anneal: "step",
      anneal_step: 50,
      delta,
    },
  }));
  const state = initLabelNoiseReplica(prep, 0);
  const signal = new Float64Array(state.net.W.length);
  const scratchV = new Float64Array(state.net.V.length);
  const hW = new Float64Array(prep.shape.halfP), hV = new Float64Array(prep.shape.halfQ);
  let flips = 0;
  const lrs = new Set<number>();
  for (let t = 0; t < 100; t++) {
    // ∇ℓ̄(yf) = [(1−δ)ℓ'(yf) − δℓ'(−yf)]·y·∇f at U_t, on this step's example (clean label).
    const { i, sigma } = sgdDraws(prep, 0, t);
    flips += sigma < 0 ? 1 : 0;
    const ex = trainExample(prep.data, prep.shape, 0, i);
    const y = prep.data.y[ex.index];
    const z = y * forwardExample(state.net, ex, hW, hV, null);
    labelNoiseStep(prep, state, 0, t);
    // The step's learning rate (η1, then η2 from its anneal on).
    const c = -state.lr * ((1 - delta) * logisticDeriv(z) - delta * logisticDeriv(-z)) * y;
    accumulateGradient(state.net, ex, hW, hV, c, signal, scratchV);
    lrs.add(state.lr);
  }
  assert.deepEqual([...lrs], [1, 0.3], "both phases");
  assert.ok(flips > 10, "some labels were flipped");
  const [gap, scale] = worstGap(state.net, signal);
  assert.ok(scale > 1e-3 && gap < 1e-12 * Math.max(1, scale), `gap ${gap}, scale ${scale}`);
  assertMetrics(state.net, signal, prep.data, prep.shape);
});
