/**
 * The signal–noise coefficients recovered from the reference's weights (Definition 5.2)
 * against the paper's coefficient recursion (Lemma 5.3, with the factor c_i = 4λζ_iℓ''_i/m²
 * that finite differences confirm; the paper prints /m). The recursion is implemented here
 * in (γ, ρ) space only, from the Lemma and the inner-product identities (A.1)–(A.3): it sees
 * the data only through <w⁰, μ>, <w⁰, ξ_i> and the Gram matrix, never the weights, so
 * agreement to rounding error is an independent check of the weight-space update.
 */
import assert from "node:assert/strict";
import { validateRunSpec } from "../server/experiments/registry.ts";
import {
  type PegrPrepared,
  type PegrReplica,
  pegrStep,
  preparePegr,
  replicaView,
} from "../server/experiments/pegr.ts";
import {
  dot,
  filterSign,
  logisticD1,
  logisticD2,
  recoverCoefficients,
  relu,
} from "../server/experiments/pegr_model.ts";

function setup(params: Record<string, unknown>) {
  const spec = validateRunSpec({
    experiment: "pegr",
    replicas: 1,
    steps: 1000,
    backend: "reference",
    params: { d: 100, n: 10, m: 4, n_test: 4, seed: 5, ...params },
  });
  const prep = preparePegr(spec);
  return { prep, rep: replicaView(prep, 0) };
}

/**
 * One step of Lemma 5.3 in coefficient space:
 *   γ ← γ − (2η/nm) Σ_i [ℓ'_i(1 + c_i) ReLU(<w, y_iμ>)‖μ‖² + (2λ/m) ℓ'_i² ReLU(<w, y_iμ>)‖μ‖⁴ j y_i]
 *   ρ_i ← ρ_i − (2η/nm) [ℓ'_i(1 + c_i) ReLU(<w, ξ_i>)‖ξ_i‖² j y_i + (2λ/m) ℓ'_i² ReLU(<w, ξ_i>)‖ξ_i‖⁴]
 * with <w, y_iμ> = <w⁰, y_iμ> + j y_i γ and <w, ξ_i> = <w⁰, ξ_i> + Σ_i' ρ_i' <ξ_i', ξ_i>/‖ξ_i'‖².
 */
class CoefficientRecursion {
  gamma: Float64Array;
  rho: Float64Array;
  private w0mu: Float64Array;
  private w0xi: Float64Array;

  constructor(private rep: PegrReplica, private cDenominatorPower = 2) {
    const p = rep.problem, { d, n, m } = p;
    this.gamma = new Float64Array(2 * m);
    this.rho = new Float64Array(2 * m * n);
    this.w0mu = new Float64Array(2 * m);
    this.w0xi = new Float64Array(2 * m * n);
    for (let q = 0; q < 2 * m; q++) {
      this.w0mu[q] = dot(rep.W0, q * d, p.mu, 0, d);
      for (let i = 0; i < n; i++) this.w0xi[q * n + i] = dot(rep.W0, q * d, p.xi, i * d, d);
    }
  }

  step(eta: number, lambda: number) {
    const p = this.rep.problem, { n, m } = p;
    const sig = new Float64Array(2 * m * n), noi = new Float64Array(2 * m * n);
    const f = new Float64Array(n), zeta = new Float64Array(n);
    for (let q = 0; q < 2 * m; q++) {
      const j = filterSign(q, m);
      for (let i = 0; i < n; i++) {
        sig[q * n + i] = p.y[i] * this.w0mu[q] + j * p.y[i] * this.gamma[q];
        let e = this.w0xi[q * n + i];
        for (let k = 0; k < n; k++) {
          e += this.rho[q * n + k] * p.xiGram[k * n + i] / p.xiNormSq[k];
        }
        noi[q * n + i] = e;
        const a = relu(sig[q * n + i]), b = relu(e);
        f[i] += j * (a * a + b * b) / m;
        zeta[i] += a * a * p.muNormSq + b * b * p.xiNormSq[i];
      }
    }
    const muSq = p.muNormSq;
    for (let q = 0; q < 2 * m; q++) {
      const j = filterSign(q, m);
      let dGamma = 0;
      for (let i = 0; i < n; i++) {
        const u = p.y[i] * f[i];
        const l1 = logisticD1(u), l2 = logisticD2(u);
        const c = 4 * lambda * zeta[i] * l2 / m ** this.cDenominatorPower;
        const a = relu(sig[q * n + i]), b = relu(noi[q * n + i]);
        dGamma += l1 * (1 + c) * a * muSq +
          (2 * lambda / m) * l1 * l1 * a * muSq * muSq * j * p.y[i];
        const xiSq = p.xiNormSq[i];
        this.rho[q * n + i] -= (2 * eta / (n * m)) *
          (l1 * (1 + c) * b * xiSq * j * p.y[i] + (2 * lambda / m) * l1 * l1 * b * xiSq * xiSq);
      }
      this.gamma[q] -= (2 * eta / (n * m)) * dGamma;
    }
  }
}

/** max |a − b| / max |b| over γ and ρ together. */
function coefficientError(
  rec: { gamma: Float64Array; rho: Float64Array },
  ref: { gamma: Float64Array; rho: Float64Array },
) {
  let num = 0, den = 0;
  for (const [a, b] of [[rec.gamma, ref.gamma], [rec.rho, ref.rho]]) {
    for (let k = 0; k < a.length; k++) {
      num = Math.max(num, Math.abs(a[k] - b[k]));
      den = Math.max(den, Math.abs(b[k]));
    }
  }
  return num / den;
}

function runAndCompare(prep: PegrPrepared, rep: PegrReplica, steps: number, power = 2) {
  const W = Float64Array.from(rep.W0);
  const rec = new CoefficientRecursion(rep, power);
  let worst = 0;
  for (let t = 0; t < steps; t++) {
    pegrStep(prep, rep, W, t);
    rec.step(rep.lr, t < prep.regOff ? rep.lambda : 0);
    if ((t + 1) % 50 === 0) {
      const err = coefficientError(rec, recoverCoefficients(W, rep.W0, rep.problem, rep.chol));
      if (Deno.env.get("PEGR_VERBOSE")) console.log(t + 1, err);
      worst = Math.max(worst, err);
    }
  }
  return { worst, W, rec };
}

// A large initialisation and a small λ make ζ_iℓ''_i large, so the 1/m² vs 1/m factor of the
// ζℓ'' term changes the trajectory visibly; the first 150 steps are regularised.
const STRONG_ZETA = {
  algo: "pegr",
  sigma_p: 1,
  sigma0: 0.2,
  lr: 0.01,
  lambda: 0.01,
  pegr_off: 150,
};

Deno.test("pegr: recovered coefficients follow Lemma 5.3 (corrected factor) step by step", () => {
  const { prep, rep } = setup(STRONG_ZETA);
  const { worst, rec } = runAndCompare(prep, rep, 300);
  assert(worst < 1e-9, `coefficients deviate from the recursion by ${worst}`);
  // The run is not trivial: noise coefficients moved by O(1).
  assert(Math.max(...rec.rho.map(Math.abs)) > 0.1);
});

Deno.test("pegr: the paper's printed factor (1 + 4λζℓ''/m) does not reproduce the weights", () => {
  const { prep, rep } = setup(STRONG_ZETA);
  const { worst } = runAndCompare(prep, rep, 150, 1);
  assert(worst > 1e-3, `the printed factor should deviate, got ${worst}`);
});

Deno.test("pegr: Lemma 5.3 in the theory regime (λ = 1/(σ_p√d), small σ0), PEGR then GD", () => {
  const { prep, rep } = setup({
    algo: "pegr",
    sigma_p: 1,
    sigma0: 0.01,
    lr: 0.05,
    lambda_mode: "theory",
    pegr_off: 400,
  });
  // Only 100 steps past the switch-off: PEGR drives the active noise inner products down to
  // the rounding floor (~1e-16), and plain GD then regrows them by a factor ~1.06 per step,
  // so any two correct float64 implementations drift apart there at that rate (measured:
  // 1e-15 at step 450, 2e-14 at 500, 3e-7 at 700, 2e-3 at 800). That is the dynamics'
  // sensitivity, not an error of either side; docs/experiments/pegr.md discusses it.
  const { worst, rec } = runAndCompare(prep, rep, 500);
  assert(worst < 1e-9, `coefficients deviate from the recursion by ${worst}`);
  assert(Math.max(...rec.gamma) > 0.01, "the signal coefficient should grow");
});

Deno.test("pegr: GD coefficients follow Appendix C's recursion (Lemma 5.3 with λ = 0)", () => {
  const { prep, rep } = setup({ algo: "gd", sigma_p: 1, sigma0: 0.05, lr: 0.05 });
  const { worst, rec } = runAndCompare(prep, rep, 400);
  assert(worst < 1e-9, `coefficients deviate from the recursion by ${worst}`);
  // Appendix C: γ and ρ̄ are non-decreasing from 0, ρ̲ non-increasing: signs at the end.
  const { m, n } = rep.problem;
  for (let q = 0; q < 2 * m; q++) {
    assert(rec.gamma[q] >= 0);
    for (let i = 0; i < n; i++) {
      const same = filterSign(q, m) === rep.problem.y[i];
      assert(same ? rec.rho[q * n + i] >= 0 : rec.rho[q * n + i] <= 0);
    }
  }
});

Deno.test("pegr: FGR weights stay in W0 + span{μ, ξ_i} (the decomposition is exact)", () => {
  const { prep, rep } = setup({ algo: "fgr", sigma_p: 1, sigma0: 0.1, lr: 0.02, lambda: 0.5 });
  const W = Float64Array.from(rep.W0);
  for (let t = 0; t < 200; t++) pegrStep(prep, rep, W, t);
  const { gamma, rho } = recoverCoefficients(W, rep.W0, rep.problem, rep.chol);
  const p = rep.problem, { d, n, m } = p;
  let worst = 0, scale = 0;
  for (let q = 0; q < 2 * m; q++) {
    for (let k = 0; k < d; k++) {
      let w = rep.W0[q * d + k] + filterSign(q, m) * gamma[q] * p.mu[k] / p.muNormSq;
      for (let i = 0; i < n; i++) w += rho[q * n + i] * p.xi[i * d + k] / p.xiNormSq[i];
      worst = Math.max(worst, Math.abs(w - W[q * d + k]));
      scale = Math.max(scale, Math.abs(W[q * d + k] - rep.W0[q * d + k]));
    }
  }
  assert(scale > 1e-2, "FGR should have moved the weights");
  assert(worst < 1e-10 * Math.max(1, scale), `reconstruction error ${worst}`);
});
